//! Digit images for `predict` (`image::read_digit`: PGM P2/P5, PNG of any colour type): any
//! file gives 28×28 pixels, or an `Err` naming the file, with memory bounded by the file's
//! length, not by the size its header claims. `invert` flips every pixel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_mlp::image::{read_digit, SIDE};
use mnist_mlp_fuzz::{bounded_alloc, check_error, scratch_file};

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("fuzz-digit", data);
    // The file's bytes, a 28×28 RGBA16 frame at most, the decoder's buffers.
    let limit = 2 * data.len() + (1 << 20);
    match bounded_alloc(limit, "read_digit", || read_digit(&path, false)) {
        Ok(pixels) => {
            assert_eq!(pixels.len(), SIDE * SIDE);
            let inverted = read_digit(&path, true).expect("the same file read again");
            assert!(pixels.iter().zip(&inverted).all(|(&p, &q)| p == 255 - q));
        }
        Err(e) => check_error(&e, &path),
    }
});
