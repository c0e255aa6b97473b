//! IDX files (the MNIST format): opened, validated and exposed as borrowed `u8` slices.
//!
//! A raw file is memory-mapped and never copied: the pixels stay `u8` in the page cache and the
//! data module converts one batch at a time. A `.gz` file is decompressed once into memory
//! (there is nothing to map); `decompressed_bytes` tells the caller, who can suggest gunzipping.
//!
//! Every size the header claims is checked against the real length of the file before anything
//! is allocated or mapped for it, so a crafted header cannot make the program allocate
//! gigabytes; a consistent file must also stay within the [`Limits`] (image count, image side,
//! decompressed size of a `.gz`), so a genuine but enormous one cannot either. This
//! module knows nothing of MNIST beyond the format: pairing images with labels and checking the
//! labels is the data module's job.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;
use std::path::{Path, PathBuf};

use byteorder::{BigEndian, ByteOrder};
use flate2::read::GzDecoder;
use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::fsio::{open_input, sniff};
use crate::limits::{LimitKind, Limits};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Deflate cannot expand data by more than about 1032:1; a gzip file that claims more than this
/// many bytes per compressed byte is truncated or lying, and is refused before any allocation.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The bytes of a whole IDX file: mapped when raw, inflated when decompressed from `.gz`,
/// owned when handed over in memory.
enum Bytes {
    Mapped(Mmap),
    Inflated(Vec<u8>),
    Owned(Vec<u8>),
}

impl Bytes {
    /// Bytes this file holds in memory because it was decompressed.
    fn inflated(&self) -> usize {
        match self {
            Bytes::Inflated(v) => v.len(),
            _ => 0,
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Inflated(v) | Bytes::Owned(v) => v,
        }
    }
}

/// A validated IDX header: the dimensions and where the payload starts.
struct Header {
    dims: Vec<usize>,
    len: usize,
    payload: u64,
}

/// An IDX image file: `count` images of `rows × cols` unsigned bytes.
pub struct Images {
    path: PathBuf,
    bytes: Bytes,
    header_len: usize,
    count: usize,
    rows: usize,
    cols: usize,
}

impl Images {
    /// Opens and validates an image file (`.gz` is decompressed, anything else is mapped),
    /// within the default [`Limits`].
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &Limits::default())
    }

    /// [`Images::open`] within `limits`.
    pub fn open_with(path: &Path, limits: &Limits) -> Result<Self> {
        let (bytes, header) = load(path, IMAGES_MAGIC, limits)?;
        Self::new(path, bytes, header)
    }

    /// An image file already in memory (e.g. synthetic data for benchmarks); `name` stands
    /// for its path in errors. No [`Limits`] apply: the bytes are already allocated.
    pub fn from_vec(name: &Path, bytes: Vec<u8>) -> Result<Self> {
        let header = parse_header(name, &bytes, IMAGES_MAGIC, Some(bytes.len() as u64))?;
        Self::new(name, Bytes::Owned(bytes), header)
    }

    fn new(path: &Path, bytes: Bytes, header: Header) -> Result<Self> {
        let (count, rows, cols) = (header.dims[0], header.dims[1], header.dims[2]);
        if count > 0 && (rows == 0 || cols == 0) {
            return Err(Error::idx(
                path,
                format!("images of {rows}×{cols} pixels are empty"),
            ));
        }
        Ok(Images {
            path: path.to_path_buf(),
            bytes,
            header_len: header.len,
            count,
            rows,
            cols,
        })
    }

    /// The file this came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of images.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Bytes held in memory because the file was a `.gz` (0 when it is mapped).
    pub fn decompressed_bytes(&self) -> usize {
        self.bytes.inflated()
    }

    /// Image height in pixels.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Image width in pixels.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Pixels per image (`rows × cols`).
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`, row-major, 0 = background. Panics if `i >= count()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let p = self.pixels();
        let start = self.header_len + i * p;
        &self.bytes[start..start + p]
    }
}

/// An IDX label file: `count` unsigned bytes.
pub struct Labels {
    path: PathBuf,
    bytes: Bytes,
    header_len: usize,
}

impl Labels {
    /// Opens and validates a label file (`.gz` is decompressed, anything else is mapped),
    /// within the default [`Limits`].
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &Limits::default())
    }

    /// [`Labels::open`] within `limits`.
    pub fn open_with(path: &Path, limits: &Limits) -> Result<Self> {
        let (bytes, header) = load(path, LABELS_MAGIC, limits)?;
        Ok(Labels {
            path: path.to_path_buf(),
            bytes,
            header_len: header.len,
        })
    }

    /// A label file already in memory; `name` stands for its path in errors.
    pub fn from_vec(name: &Path, bytes: Vec<u8>) -> Result<Self> {
        let header = parse_header(name, &bytes, LABELS_MAGIC, Some(bytes.len() as u64))?;
        let bytes = Bytes::Owned(bytes);
        Ok(Labels {
            path: name.to_path_buf(),
            bytes,
            header_len: header.len,
        })
    }

    /// The file this came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes held in memory because the file was a `.gz` (0 when it is mapped).
    pub fn decompressed_bytes(&self) -> usize {
        self.bytes.inflated()
    }

    /// The labels, one byte each.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[self.header_len..]
    }
}

fn kind(magic: u32) -> &'static str {
    match magic {
        IMAGES_MAGIC => "images",
        LABELS_MAGIC => "labels",
        _ => "unknown",
    }
}

/// Reads and validates the header at the start of `head`. `whole_len` is the length of the
/// whole file, checked against what the header claims (`None` while still unknown, for `.gz`).
fn parse_header(path: &Path, head: &[u8], magic: u32, whole_len: Option<u64>) -> Result<Header> {
    let want = kind(magic);
    if head.len() < 4 {
        return Err(Error::idx(
            path,
            format!(
                "truncated: {} bytes, too short for an IDX header",
                head.len()
            ),
        ));
    }
    let found = BigEndian::read_u32(head);
    if found != magic {
        let what = match (kind(found), sniff(head)) {
            ("unknown", Some("a gzip file")) => {
                "this is a gzip file: name it with a .gz extension to have it decompressed"
                    .to_string()
            }
            ("unknown", Some(other)) => format!("this is {other}, not an IDX file"),
            ("unknown", None) => "this is not an IDX file of unsigned bytes".to_string(),
            (other, _) => format!("this is an IDX {other} file"),
        };
        return Err(Error::idx(
            path,
            format!("wrong magic number 0x{found:08x} (expected 0x{magic:08x} for {want}): {what}"),
        ));
    }
    let ndims = (magic & 0xff) as usize;
    let len = 4 + 4 * ndims;
    if head.len() < len {
        return Err(Error::idx(
            path,
            format!(
                "truncated: {} bytes, the IDX {want} header needs {len}",
                head.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| BigEndian::read_u32(&head[4 + 4 * d..]) as usize)
        .collect();
    let payload = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let claim = describe(&dims);
    let payload =
        payload.ok_or_else(|| Error::idx(path, format!("header claims {claim}: too large")))?;
    if let Some(whole) = whole_len {
        let have = whole - len as u64;
        if have < payload {
            return Err(Error::idx(
                path,
                format!("truncated: header says {claim} = {payload} bytes, but only {have} bytes follow the header"),
            ));
        }
        if have > payload {
            return Err(Error::idx(
                path,
                format!(
                    "header counts do not match the file length: header says {claim} = {payload} bytes, \
                     but {have} bytes follow the header"
                ),
            ));
        }
    }
    Ok(Header { dims, len, payload })
}

fn describe(dims: &[usize]) -> String {
    match dims {
        [n, r, c] => format!("{n} images of {r}×{c}"),
        [n] => format!("{n} labels"),
        _ => format!("{dims:?}"),
    }
}

/// The claims of a header that passed [`parse_header`], against `limits`.
fn check_limits(path: &Path, header: &Header, limits: &Limits) -> Result<()> {
    let over = |what: String, kind, limit: usize| Err(Error::limit(path, what, kind, limit as u64));
    let count = header.dims[0];
    if count > limits.max_images {
        let noun = if header.dims.len() == 1 {
            "labels"
        } else {
            "images"
        };
        return over(
            format!("holds {count} {noun}"),
            LimitKind::Images,
            limits.max_images,
        );
    }
    if let [_, rows, cols] = header.dims[..] {
        if rows.max(cols) > limits.max_image_side {
            return over(
                format!("images of {rows}×{cols} pixels are larger than allowed"),
                LimitKind::ImageSide,
                limits.max_image_side,
            );
        }
    }
    Ok(())
}

fn open_file(path: &Path) -> Result<(File, u64)> {
    let file = open_input(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::MissingData {
            path: path.to_path_buf(),
        },
        _ => Error::io(path, e),
    })?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::idx(path, "not a regular file"));
    }
    Ok((file, meta.len()))
}

fn load(path: &Path, magic: u32, limits: &Limits) -> Result<(Bytes, Header)> {
    let (file, len) = open_file(path)?;
    let is_gz = path.extension().is_some_and(|e| e == "gz");
    if is_gz {
        return load_gz(path, file, len, magic, limits);
    }
    // The header alone first: nothing is mapped for a file whose claims are refused.
    let mut head = [0u8; 4 + 4 * 3];
    let head_len = (len.min(head.len() as u64)) as usize;
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut head[..head_len], 0)
        .map_err(|e| Error::io(path, e))?;
    let header = parse_header(path, &head[..head_len], magic, Some(len))?;
    check_limits(path, &header, limits)?;
    // SAFETY: the file is opened read-only and the mapping lives as long as the `Images`/`Labels`
    // that own it. Another process truncating the file while we run would fault, as it would for
    // any mmap-based reader; the data files are inputs nobody rewrites during training.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    // Parsed again from the mapping: the file may have changed since the header was read.
    let header = parse_header(path, &map, magic, Some(map.len() as u64))?;
    check_limits(path, &header, limits)?;
    Ok((Bytes::Mapped(map), header))
}

fn load_gz(
    path: &Path,
    file: File,
    compressed_len: u64,
    magic: u32,
    limits: &Limits,
) -> Result<(Bytes, Header)> {
    let gz_err = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::idx(path, "truncated: the gzip stream ends early"),
        _ => Error::idx(path, format!("corrupt gzip data: {e}")),
    };
    let mut dec = GzDecoder::new(file);
    // The header first, to learn how much data to expect.
    let mut head = [0u8; 4 + 4 * 3];
    let head_len = 4 + 4 * (magic & 0xff) as usize;
    let mut got = 0;
    while got < head_len {
        match dec.read(&mut head[got..head_len]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(gz_err(e)),
        }
    }
    let header = parse_header(path, &head[..got], magic, None)?;
    let limit = compressed_len.saturating_mul(MAX_DEFLATE_RATIO);
    if header.payload > limit {
        return Err(Error::idx(
            path,
            format!(
                "truncated or corrupt: header says {} = {} bytes, more than a {compressed_len}-byte \
                 gzip file can hold",
                describe(&header.dims),
                header.payload
            ),
        ));
    }
    check_limits(path, &header, limits)?;
    let decompressed = header.len as u64 + header.payload;
    if decompressed > limits.max_file_bytes {
        return Err(Error::limit(
            path,
            format!(
                "{} decompress to {decompressed} bytes in memory (gunzip it: raw files are \
                 memory-mapped, not loaded)",
                describe(&header.dims)
            ),
            LimitKind::FileBytes,
            limits.max_file_bytes,
        ));
    }
    // Grow with the real data rather than trusting the claim for the whole reservation.
    let reserve = header.payload.min(compressed_len.saturating_mul(16)) as usize;
    let mut bytes = Vec::with_capacity(header.len + reserve);
    bytes.extend_from_slice(&head[..header.len]);
    // One byte more than promised tells "too long" from "exact".
    dec.take(header.payload + 1)
        .read_to_end(&mut bytes)
        .map_err(gz_err)?;
    if bytes.len() as u64 > header.len as u64 + header.payload {
        return Err(Error::idx(
            path,
            format!(
                "header counts do not match the file length: header says {} = {} bytes, but the \
                 decompressed data is longer",
                describe(&header.dims),
                header.payload
            ),
        ));
    }
    let header = parse_header(path, &bytes, magic, Some(bytes.len() as u64))?;
    // The binary says so at info level once every input is known good (an error then stays
    // the only line); see `decompressed_bytes`.
    log::debug!(
        "decompressed {} into memory ({} bytes)",
        path.display(),
        bytes.len()
    );
    Ok((Bytes::Inflated(bytes), header))
}
