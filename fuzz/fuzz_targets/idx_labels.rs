//! IDX label files from memory (`Labels::from_vec`): any input is `Ok` with exactly the labels
//! the header promises, or an `Err` naming the file, and no more than a few KiB are allocated
//! beside the bytes themselves.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mnist_mlp::idx::Labels;
use mnist_mlp_fuzz::{bounded_alloc, check_error};

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz-labels-idx1-ubyte");
    let bytes = data.to_vec();
    match bounded_alloc(64 << 10, "Labels::from_vec", || {
        Labels::from_vec(name, bytes)
    }) {
        Ok(labels) => {
            let claimed = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
            assert_eq!(labels.as_slice().len(), claimed);
            assert_eq!(labels.as_slice(), &data[8..]);
        }
        Err(e) => check_error(&e, name),
    }
});
