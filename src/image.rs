//! Reading one digit image for `predict`: 28×28 grayscale from PGM (P2/P5) or PNG.
//!
//! Pixels are returned in MNIST polarity (white digit on black, 0 = background); `invert`
//! flips black-on-white scans. Conversions that lose nothing the network needs are done
//! (16-bit or palette → 8-bit, RGB → luma, a fully opaque alpha channel dropped); anything
//! else (another size, real transparency) is refused with a message saying what to do. No
//! resizing: a digit scaled by a guess is a wrong answer waiting to happen.

use std::path::Path;

use crate::error::{Error, Result};
use crate::fsio::{read_bounded, sniff, ReadError};

/// Image side the network expects.
pub const SIDE: usize = 28;
/// Largest image file read (a 28×28 image is far smaller; this only bounds the work done on
/// a wrong file). Whatever its header claims, an image must be [`SIDE`]×[`SIDE`]: the size is
/// checked from the header before any pixel is decoded, so a claim of 100000×100000 costs
/// nothing.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Reads `path` as a 28×28 grayscale digit, white on black (after `invert` if set).
pub fn read_digit(path: &Path, invert: bool) -> Result<Vec<u8>> {
    let bytes = read_bounded(path, MAX_FILE_BYTES).map_err(|e| match e {
        ReadError::NotFound => Error::image(path, "no such image file"),
        ReadError::NotRegular { dir: true } => {
            Error::image(path, "is a directory, not an image file")
        }
        ReadError::NotRegular { dir: false } => Error::image(path, "not a regular file"),
        ReadError::TooLarge { bytes } => Error::image(
            path,
            format!("{bytes} bytes is too large for a {SIDE}×{SIDE} digit image"),
        ),
        ReadError::Io(e) => Error::io(path, e),
    })?;
    let (w, h, mut pixels) = match bytes.get(..2) {
        Some(b"P2") | Some(b"P5") => pgm(&bytes).map_err(|p| Error::image(path, p))?,
        Some(&[0x89, b'P']) => png(&bytes).map_err(|p| Error::image(path, p))?,
        _ if bytes.is_empty() => return Err(Error::image(path, "empty file (0 bytes)")),
        _ => {
            let problem = match sniff(&bytes) {
                Some(kind) => format!("this is {kind}, not a PGM (P2/P5) or PNG image"),
                None => "not a PGM (P2/P5) or PNG image".to_string(),
            };
            return Err(Error::image(path, problem));
        }
    };
    if (w, h) != (SIDE, SIDE) {
        return Err(Error::image(
            path,
            format!(
                "image is {w}×{h}, expected {SIDE}×{SIDE} (MNIST size): crop or scale it first"
            ),
        ));
    }
    if invert {
        pixels.iter_mut().for_each(|p| *p = 255 - *p);
    }
    Ok(pixels)
}

/// Netpbm graymap: `P2` (ASCII) or `P5` (binary), any maxval up to 65535, scaled to 0–255.
fn pgm(bytes: &[u8]) -> std::result::Result<(usize, usize, Vec<u8>), String> {
    let mut pos = 2;
    let next_token = |pos: &mut usize| -> Option<u32> {
        loop {
            match bytes.get(*pos)? {
                b'#' => {
                    while *bytes.get(*pos)? != b'\n' {
                        *pos += 1;
                    }
                }
                c if c.is_ascii_whitespace() => *pos += 1,
                _ => break,
            }
        }
        let start = *pos;
        while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
            *pos += 1;
        }
        std::str::from_utf8(&bytes[start..*pos]).ok()?.parse().ok()
    };
    let bad = "malformed PGM header".to_string();
    let w = next_token(&mut pos).ok_or_else(|| bad.clone())? as usize;
    let h = next_token(&mut pos).ok_or_else(|| bad.clone())? as usize;
    let max = next_token(&mut pos).ok_or_else(|| bad.clone())?;
    if !(1..=65535).contains(&max) {
        return Err(format!("PGM maxval {max} is not in 1..=65535"));
    }
    if (w, h) != (SIDE, SIDE) {
        return Ok((w, h, Vec::new())); // the caller reports the size
    }
    let scale = |v: u32| ((v.min(max) * 255 + max / 2) / max) as u8;
    let n = w * h;
    let pixels = if bytes[1] == b'5' {
        pos += 1; // the single whitespace after maxval
        let width = if max < 256 { 1 } else { 2 };
        let body = bytes
            .get(pos..pos + n * width)
            .ok_or("PGM pixel data is truncated")?;
        body.chunks_exact(width)
            .map(|c| scale(c.iter().fold(0u32, |a, &b| a << 8 | u32::from(b))))
            .collect()
    } else {
        (0..n)
            .map(|_| {
                next_token(&mut pos)
                    .map(scale)
                    .ok_or("PGM pixel data is truncated or not numbers")
            })
            .collect::<std::result::Result<Vec<u8>, _>>()?
    };
    Ok((w, h, pixels))
}

/// PNG of any colour type, reduced to 8-bit gray when that loses nothing.
fn png(bytes: &[u8]) -> std::result::Result<(usize, usize, Vec<u8>), String> {
    // The size from the IHDR chunk (always first, at a fixed place) before the decoder sees
    // anything: a wrong size is reported as such whatever follows it.
    if let (Some(b"IHDR"), Some(w), Some(h)) =
        (bytes.get(12..16), bytes.get(16..20), bytes.get(20..24))
    {
        let dim = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let (w, h) = (dim(w), dim(h));
        if (w, h) != (SIDE, SIDE) {
            return Ok((w, h, Vec::new())); // the caller reports the size
        }
    }
    let mut decoder = png::Decoder::new(bytes);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("not a readable PNG: {e}"))?;
    let (w, h) = (reader.info().width as usize, reader.info().height as usize);
    if (w, h) != (SIDE, SIDE) {
        return Ok((w, h, Vec::new())); // the caller reports the size; nothing decoded
    }
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("PNG data is corrupt: {e}"))?;
    let data = &buf[..frame.buffer_size()];
    let channels = frame.color_type.samples();
    let opaque = |alpha: u8| alpha == 255;
    let px: Vec<&[u8]> = data.chunks_exact(channels).collect();
    if matches!(
        frame.color_type,
        png::ColorType::GrayscaleAlpha | png::ColorType::Rgba
    ) && !px.iter().all(|p| opaque(p[channels - 1]))
    {
        return Err("image has transparency; flatten it onto a background first".into());
    }
    let gray = px
        .iter()
        .map(|p| match channels {
            1 | 2 => p[0],
            // ITU-R BT.601 luma, as most tools convert RGB to gray.
            _ => {
                ((299 * u32::from(p[0]) + 587 * u32::from(p[1]) + 114 * u32::from(p[2]) + 500)
                    / 1000) as u8
            }
        })
        .collect();
    Ok((w, h, gray))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pgm_p5(w: usize, h: usize, body: &[u8]) -> Vec<u8> {
        let mut v = format!("P5\n# a comment\n{w} {h}\n255\n").into_bytes();
        v.extend_from_slice(body);
        v
    }

    fn png_bytes(w: u32, h: u32, color: png::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(data).unwrap();
        out
    }

    fn read(bytes: &[u8], invert: bool) -> Result<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("digit");
        std::fs::write(&p, bytes).unwrap();
        read_digit(&p, invert)
    }

    #[test]
    fn pgm_binary_and_ascii_read_the_same_pixels() {
        let body: Vec<u8> = (0..784).map(|i| (i % 256) as u8).collect();
        assert_eq!(read(&pgm_p5(28, 28, &body), false).unwrap(), body);
        let ascii = format!(
            "P2 28 28 255 {}",
            body.iter().map(u8::to_string).collect::<Vec<_>>().join(" ")
        );
        assert_eq!(read(ascii.as_bytes(), false).unwrap(), body);
        let inverted = read(&pgm_p5(28, 28, &body), true).unwrap();
        assert_eq!(inverted[1], 254);
    }

    #[test]
    fn png_gray_rgb_and_opaque_alpha_are_converted() {
        let gray: Vec<u8> = (0..784).map(|i| (i % 200) as u8).collect();
        assert_eq!(
            read(&png_bytes(28, 28, png::ColorType::Grayscale, &gray), false).unwrap(),
            gray
        );
        let rgb: Vec<u8> = gray.iter().flat_map(|&g| [g, g, g]).collect();
        assert_eq!(
            read(&png_bytes(28, 28, png::ColorType::Rgb, &rgb), false).unwrap(),
            gray
        );
        let rgba: Vec<u8> = gray.iter().flat_map(|&g| [g, g, g, 255]).collect();
        assert_eq!(
            read(&png_bytes(28, 28, png::ColorType::Rgba, &rgba), false).unwrap(),
            gray
        );
    }

    #[test]
    fn unsafe_conversions_are_refused_with_a_reason() {
        let rgba: Vec<u8> = (0..784).flat_map(|i| [9, 9, 9, (i % 256) as u8]).collect();
        let e = read(&png_bytes(28, 28, png::ColorType::Rgba, &rgba), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("transparency"), "{e}");
        let e = read(
            &png_bytes(32, 30, png::ColorType::Grayscale, &[0; 960]),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("image is 32×30, expected 28×28"), "{e}");
        let e = read(&pgm_p5(28, 28, &[0; 100]), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = read(b"GIF89a....", false).unwrap_err().to_string();
        assert!(e.contains("not a PGM (P2/P5) or PNG"), "{e}");
        let e = read(&[0, 0, 8, 3, 0, 0, 0, 1], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("this is an IDX images file, not a PGM"), "{e}");
        let e = read(b"", false).unwrap_err().to_string();
        assert!(e.contains("empty file"), "{e}");
        let mut huge = png_bytes(28, 28, png::ColorType::Grayscale, &[7; 784]);
        huge[16..24].copy_from_slice(&[0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0]); // CRC now wrong
        let e = read(&huge, false).unwrap_err().to_string();
        assert!(e.contains("image is 100000×100000, expected 28×28"), "{e}");
        let e = read(b"P5 28 28 0\n", false).unwrap_err().to_string();
        assert!(e.contains("maxval 0"), "{e}");
        let mut png = png_bytes(28, 28, png::ColorType::Grayscale, &[7; 784]);
        let n = png.len();
        png.truncate(n - 30);
        assert!(read(&png, false).is_err());
    }
}
