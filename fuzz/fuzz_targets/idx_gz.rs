//! `.gz` IDX files (`Images::open` / `Labels::open` on a `.gz` path: decompression, then the
//! header checks, then the payload): any input is read as both kinds of file and gives `Ok`
//! with the promised data or an `Err` naming the file. Memory is bounded by what the
//! compressed bytes can hold (deflate expands at most 1032:1; twice that for a growing
//! buffer), never by the header's claim.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_mlp::idx::{Images, Labels};
use mnist_mlp_fuzz::{bounded_alloc, check_error, scratch_file};

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("fuzz-idx-ubyte.gz", data);
    let limit = 2 * 1032 * data.len() + (1 << 20);
    match bounded_alloc(limit, "Images::open", || Images::open(&path)) {
        Ok(images) => {
            for i in 0..images.count() {
                assert_eq!(images.image(i).len(), images.pixels());
            }
        }
        Err(e) => check_error(&e, &path),
    }
    match bounded_alloc(limit, "Labels::open", || Labels::open(&path)) {
        Ok(labels) => {
            let _ = labels.as_slice().iter().map(|&l| l as usize).sum::<usize>();
        }
        Err(e) => check_error(&e, &path),
    }
});
