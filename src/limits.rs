//! How much a file may make the program allocate: the ceilings on what a header may claim.
//!
//! Every claim is first checked against the file's real length (a header that promises more
//! than the file holds is refused as truncated, whatever the limits). These limits bound what
//! a *consistent* file can cost, so that a crafted or mistaken one (a sparse 8 GiB file with a
//! matching header, a small `.gz` that inflates to gigabytes) is refused before it can exhaust
//! a 2 GB board. The defaults admit every MNIST-style data set we know of (MNIST 60,000
//! images, EMNIST ByClass 697,932, all 28×28); the command line raises or lowers each one.
//!
//! Fixed bounds that no flag changes live beside the code they protect: a model file is never
//! larger than the largest network ([`crate::model::MAX_PARAMS`]) with its checkpoint state,
//! its safetensors header never longer than 1 MiB, and a `predict` image file never larger
//! than 16 MiB and always exactly 28×28 (checked from its header before any pixel is decoded).

/// Default [`Limits::max_images`]: EMNIST's largest split (697,932) fits, a header claiming
/// billions does not. Images are mapped, not copied, but the batch order costs 4 bytes each.
pub const DEFAULT_MAX_IMAGES: usize = 1_000_000;

/// Default [`Limits::max_image_side`]: far above MNIST's 28, below what an MLP input of
/// `side²` floats per image can afford in a batch.
pub const DEFAULT_MAX_IMAGE_SIDE: usize = 1024;

/// Default [`Limits::max_file_bytes`], 512 MiB: a `.gz` data file is decompressed into memory
/// and a model file read into it, so this is what one file may take of a 2 GB board. Full
/// MNIST needs 45 MiB; EMNIST ByClass's training images (522 MiB) are better gunzipped, since
/// raw files are memory-mapped and not subject to this limit.
pub const DEFAULT_MAX_FILE_MIB: u64 = 512;

/// Ceilings on the sizes files may claim; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most images (and labels) one IDX file may hold (`--max-images`).
    pub max_images: usize,
    /// Most rows, and most columns, of an IDX image (`--max-image-side`).
    pub max_image_side: usize,
    /// Most bytes one file may occupy in memory: a `.gz` data file once decompressed, or a
    /// model or checkpoint file (`--max-file-mib`).
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_images: DEFAULT_MAX_IMAGES,
            max_image_side: DEFAULT_MAX_IMAGE_SIDE,
            max_file_bytes: DEFAULT_MAX_FILE_MIB << 20,
        }
    }
}

/// Which limit a file went over; it names the command-line flag that raises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// [`Limits::max_images`].
    Images,
    /// [`Limits::max_image_side`].
    ImageSide,
    /// [`Limits::max_file_bytes`].
    FileBytes,
}

impl LimitKind {
    /// The command-line flag that sets this limit.
    pub fn flag(self) -> &'static str {
        match self {
            LimitKind::Images => "--max-images",
            LimitKind::ImageSide => "--max-image-side",
            LimitKind::FileBytes => "--max-file-mib",
        }
    }

    /// `limit` in the words and unit of the flag (`1000000 images`, `1024 pixels`, `512 MiB`).
    pub fn describe(self, limit: u64) -> String {
        match self {
            LimitKind::Images => format!("{limit} images"),
            LimitKind::ImageSide => format!("{limit} pixels"),
            LimitKind::FileBytes if limit % (1 << 20) == 0 => format!("{} MiB", limit >> 20),
            LimitKind::FileBytes => format!("{limit} bytes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::Images;
    use std::io::Write;

    fn refused(path: &std::path::Path, limits: &Limits) -> String {
        match Images::open_with(path, limits) {
            Ok(_) => panic!("{} accepted within {limits:?}", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn each_limit_refuses_what_is_over_it_and_names_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = vec![0, 0, 8, 3];
        for d in [3u32, 28, 28] {
            idx.extend_from_slice(&d.to_be_bytes());
        }
        idx.resize(16 + 3 * 784, 7);
        let raw = dir.path().join("images");
        std::fs::write(&raw, &idx).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&idx).unwrap();
        let gz_path = dir.path().join("images.gz");
        std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();

        let d = Limits::default();
        for p in [&raw, &gz_path] {
            assert_eq!(Images::open_with(p, &d).unwrap().count(), 3);
        }
        let e = refused(&raw, &Limits { max_images: 2, ..d });
        assert!(
            e.contains("holds 3 images, over the limit of 2 images")
                && e.contains("raise the limit with --max-images"),
            "{e}"
        );
        let e = refused(
            &gz_path,
            &Limits {
                max_image_side: 27,
                ..d
            },
        );
        assert!(
            e.contains("28×28 pixels")
                && e.contains("limit of 27 pixels;")
                && e.contains("--max-image-side"),
            "{e}"
        );
        let e = refused(
            &gz_path,
            &Limits {
                max_file_bytes: 2000,
                ..d
            },
        );
        assert!(
            e.contains("decompress to 2368 bytes")
                && e.contains("limit of 2000 bytes")
                && e.contains("--max-file-mib"),
            "{e}"
        );
        // A raw file is mapped, not loaded: the memory limit does not apply to it.
        assert!(Images::open_with(
            &raw,
            &Limits {
                max_file_bytes: 2000,
                ..d
            }
        )
        .is_ok());
        assert_eq!(LimitKind::FileBytes.describe(512 << 20), "512 MiB");
    }
}
