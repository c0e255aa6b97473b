//! IDX image files from memory (`Images::from_vec`, the parser behind every raw file): any
//! input is `Ok` with exactly the images the header promises, or an `Err` naming the file,
//! and no more than a few KiB are allocated beside the bytes themselves.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mnist_mlp::idx::Images;
use mnist_mlp_fuzz::{bounded_alloc, check_error};

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz-images-idx3-ubyte");
    let bytes = data.to_vec();
    // The bytes are the file: parsing needs only a few small blocks beside them.
    match bounded_alloc(64 << 10, "Images::from_vec", || {
        Images::from_vec(name, bytes)
    }) {
        Ok(images) => {
            let mut seen = 0;
            for i in 0..images.count() {
                let px = images.image(i);
                assert_eq!(px.len(), images.rows() * images.cols());
                seen += px.len();
            }
            assert_eq!(16 + seen, data.len(), "the header and the payload disagree");
        }
        Err(e) => check_error(&e, name),
    }
});
