//! MNIST-style data sets: an image file paired with its label file, and the batches drawn
//! from them.
//!
//! A [`Dataset`] checks that the pair fits together (same count, labels below [`CLASSES`], at
//! least one image). A [`Batcher`] hands out mini-batches like TensorFlow's
//! `mnist.train.next_batch`: a seeded random order, reshuffled at every epoch, a batch that
//! crosses the end of an epoch taking the rest of the old order and the start of the new one.
//! Pixels are converted from the mapped `u8` to `f32 / 255` straight into the caller's batch
//! buffer, in the shuffled order: there is never an `f32` copy of the data set.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::idx::{Images, Labels};
use crate::limits::Limits;
use crate::pool;
use crate::rng::Rng;

/// Rows of a batch converted per unit of the pool.
const GATHER_ROWS: usize = 32;

/// Number of classes (digits 0–9, or Fashion-MNIST's ten garments).
pub const CLASSES: usize = 10;

/// Where `scripts/fetch-mnist.sh` stores the full MNIST set, relative to the current directory.
pub const FETCHED_DIR: &str = "data/mnist";

/// The 10,000-digit MNIST subset bundled with the repository, relative to its root.
pub const BUNDLED_DIR: &str = "data/mnist-10k";

/// The data directory used when none is given: [`FETCHED_DIR`] if that directory exists,
/// otherwise [`BUNDLED_DIR`]. Both are relative to the current directory, so in a clone of the
/// repository the full set wins once it has been fetched and the bundled subset is used before.
pub fn default_dir() -> PathBuf {
    if Path::new(FETCHED_DIR).is_dir() {
        PathBuf::from(FETCHED_DIR)
    } else {
        PathBuf::from(BUNDLED_DIR)
    }
}

/// Which half of the standard file set to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `train-images-idx3-ubyte` / `train-labels-idx1-ubyte`.
    Train,
    /// `t10k-images-idx3-ubyte` / `t10k-labels-idx1-ubyte`.
    Test,
}

impl Split {
    /// The file names of the split's images and labels (each may also be read as `NAME.gz`).
    pub fn stems(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        }
    }
}

/// The path of `stem` in `dir`: the raw file if present (it can be mapped), else `stem.gz`.
/// When neither exists the error names the raw path and says how to get the data; when `dir`
/// is not a directory, or a path cannot be examined (permissions, a symlink loop), the error
/// says that instead of calling the file missing.
pub fn locate(dir: &Path, stem: &str) -> Result<PathBuf> {
    let raw = dir.join(stem);
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(Error::Dataset {
                path: dir.to_path_buf(),
                problem: format!(
                    "{}: not a directory (the data set is a directory holding the four IDX files)",
                    dir.display()
                ),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingData { path: raw })
        }
        Err(e) => return Err(Error::io(dir, e)),
    }
    let gz = dir.join(format!("{stem}.gz"));
    for candidate in [raw.clone(), gz] {
        match std::fs::metadata(&candidate) {
            Ok(_) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&candidate, e)),
        }
    }
    Err(Error::MissingData { path: raw })
}

/// Images and their labels, validated as a pair.
pub struct Dataset {
    images: Images,
    labels: Labels,
}

impl Dataset {
    /// Opens the standard files of `split` in `dir` (raw or `.gz`), within the default
    /// [`Limits`].
    pub fn open(dir: &Path, split: Split) -> Result<Self> {
        Self::open_with(dir, split, &Limits::default())
    }

    /// [`Dataset::open`] within `limits`.
    pub fn open_with(dir: &Path, split: Split, limits: &Limits) -> Result<Self> {
        let (img_stem, lbl_stem) = split.stems();
        let images = Images::open_with(&locate(dir, img_stem)?, limits)?;
        let labels = Labels::open_with(&locate(dir, lbl_stem)?, limits)?;
        Self::new(images, labels)
    }

    /// Pairs an image file with a label file, checking that they fit together.
    pub fn new(images: Images, labels: Labels) -> Result<Self> {
        let (ni, nl) = (images.count(), labels.as_slice().len());
        if ni != nl {
            return Err(Error::Dataset {
                path: labels.path().to_path_buf(),
                problem: format!(
                    "{} holds {ni} images but {} holds {nl} labels",
                    images.path().display(),
                    labels.path().display()
                ),
            });
        }
        if ni == 0 {
            return Err(Error::Dataset {
                path: images.path().to_path_buf(),
                problem: format!("{} contains no images", images.path().display()),
            });
        }
        if let Some((i, &l)) = labels
            .as_slice()
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= CLASSES)
        {
            return Err(Error::Dataset {
                path: labels.path().to_path_buf(),
                problem: format!(
                    "{}: label {l} at index {i} is not a class (expected 0..={})",
                    labels.path().display(),
                    CLASSES - 1
                ),
            });
        }
        Ok(Dataset { images, labels })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.images.count()
    }

    /// Always false: an empty data set is refused by the constructor.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.images.pixels()
    }

    /// The files of this data set held in memory because they were `.gz`, with their
    /// decompressed sizes in bytes (raw files are mapped and not listed).
    pub fn decompressed(&self) -> Vec<(&Path, usize)> {
        [
            (self.images.path(), self.images.decompressed_bytes()),
            (self.labels.path(), self.labels.decompressed_bytes()),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .collect()
    }

    /// The image file.
    pub fn images(&self) -> &Images {
        &self.images
    }

    /// All labels, in file order.
    pub fn labels(&self) -> &[u8] {
        self.labels.as_slice()
    }

    /// Checks that the images are `pixels` long, the size of a network's input.
    pub fn expect_pixels(&self, pixels: usize) -> Result<()> {
        if self.pixels() == pixels {
            return Ok(());
        }
        Err(Error::Dataset {
            path: self.images.path().to_path_buf(),
            problem: format!(
                "{}: images are {}×{} = {} pixels but the network takes {pixels} inputs",
                self.images.path().display(),
                self.images.rows(),
                self.images.cols(),
                self.pixels()
            ),
        })
    }

    /// Writes examples `indices` into `x` (`(B, pixels)`, scaled to `[0, 1]`) and `y` (`(B)`).
    pub fn gather(&self, indices: &[u32], x: &mut [f32], y: &mut [u8]) {
        let p = self.pixels();
        assert_eq!(x.len(), indices.len() * p);
        assert_eq!(y.len(), indices.len());
        let labels = self.labels();
        for (&i, label) in indices.iter().zip(y.iter_mut()) {
            *label = labels[i as usize];
        }
        // The rows are scattered over the data set, so most of the time is cache misses: the
        // pool's threads take blocks of rows and wait for their misses side by side.
        let x = pool::SharedMut::new(x);
        pool::chunks(indices.len(), GATHER_ROWS, &|rows| {
            // SAFETY: the units of `chunks` cover disjoint ranges of rows.
            let out = unsafe { x.part(rows.start * p..rows.end * p) };
            for (&i, row) in indices[rows].iter().zip(out.chunks_exact_mut(p)) {
                to_unit_f32(row, self.images.image(i as usize));
            }
        });
    }

    /// Writes the consecutive examples `start..start + y.len()` into `x` and `y`.
    pub fn gather_range(&self, start: usize, x: &mut [f32], y: &mut [u8]) {
        let p = self.pixels();
        assert_eq!(x.len(), y.len() * p);
        for (k, row) in x.chunks_exact_mut(p).enumerate() {
            to_unit_f32(row, self.images.image(start + k));
        }
        y.copy_from_slice(&self.labels()[start..start + y.len()]);
    }
}

/// `out = pixels / 255`, as TensorFlow's MNIST reader scales (multiply by `1/255` in f32).
pub(crate) fn to_unit_f32(out: &mut [f32], pixels: &[u8]) {
    const SCALE: f32 = 1.0 / 255.0;
    for (o, &p) in out.iter_mut().zip(pixels) {
        *o = f32::from(p) * SCALE;
    }
}

/// A [`Batcher`]'s position in its sequence of batches, for checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatcherState {
    /// The current epoch's order of example indices.
    pub order: Vec<u32>,
    /// Next position in `order`.
    pub pos: usize,
    /// Completed epochs.
    pub epoch: usize,
    /// State of the shuffling generator.
    pub rng: [u64; 4],
    /// Whether batches are shuffled.
    pub shuffle: bool,
}

/// Mini-batches in TensorFlow's `next_batch` order; allocation-free after construction.
#[derive(Debug)]
pub struct Batcher {
    order: Vec<u32>,
    pos: usize,
    epoch: usize,
    shuffle: bool,
    rng: Rng,
    batch: Vec<u32>,
}

impl Batcher {
    /// Batches of `batch` examples out of `n`, shuffled with `rng` when `shuffle` is set.
    /// `batch` must be between 1 and `n`.
    pub fn new(n: usize, batch: usize, shuffle: bool, rng: Rng) -> Result<Self> {
        if batch == 0 {
            return Err(Error::config("batch size must be at least 1"));
        }
        if batch > n {
            return Err(Error::config(format!(
                "batch size {batch} is larger than the training set ({n} images)"
            )));
        }
        let n32 =
            u32::try_from(n).map_err(|_| Error::config(format!("{n} examples are too many")))?;
        Ok(Batcher {
            order: (0..n32).collect(),
            pos: 0,
            epoch: 0,
            shuffle,
            rng,
            batch: vec![0; batch],
        })
    }

    /// Completed passes over the data.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Everything needed to continue this exact sequence of batches later.
    pub fn state(&self) -> BatcherState {
        BatcherState {
            order: self.order.clone(),
            pos: self.pos,
            epoch: self.epoch,
            rng: self.rng.state(),
            shuffle: self.shuffle,
        }
    }

    /// A batcher that continues from `state`, for batches of `batch` out of `n` examples.
    /// The state is checked (a permutation of `0..n`, a position inside it), never trusted.
    pub fn restore(n: usize, batch: usize, state: BatcherState) -> Result<Self> {
        let bad = |what: &str| Error::config(format!("the saved data order is not usable: {what}"));
        let mut b = Batcher::new(n, batch, state.shuffle, Rng::new(0))?;
        if state.order.len() != n {
            return Err(bad(&format!(
                "it covers {} examples, the training set has {n}",
                state.order.len()
            )));
        }
        let mut seen = vec![false; n];
        for &i in &state.order {
            match seen.get_mut(i as usize) {
                Some(s) if !*s => *s = true,
                _ => return Err(bad("it is not a permutation of the training set")),
            }
        }
        if state.pos > n {
            return Err(bad("its position is past the end"));
        }
        b.rng =
            Rng::from_state(state.rng).ok_or_else(|| bad("the generator state is all zeros"))?;
        b.order = state.order;
        b.pos = state.pos;
        b.epoch = state.epoch;
        Ok(b)
    }

    /// The indices of the next batch.
    pub fn next_indices(&mut self) -> &[u32] {
        let (n, b) = (self.order.len(), self.batch.len());
        if self.epoch == 0 && self.pos == 0 && self.shuffle {
            self.rng.shuffle(&mut self.order);
        }
        let start = self.pos;
        // As in TensorFlow, an epoch that ends exactly at a batch boundary is counted (and the
        // order reshuffled) on the next call, with an empty tail.
        if start + b > n {
            // The epoch ends inside this batch: its tail, then the head of a fresh order.
            let rest = n - start;
            self.batch[..rest].copy_from_slice(&self.order[start..]);
            self.epoch += 1;
            if self.shuffle {
                self.rng.shuffle(&mut self.order);
            }
            self.pos = b - rest;
            self.batch[rest..].copy_from_slice(&self.order[..self.pos]);
        } else {
            self.pos += b;
            self.batch.copy_from_slice(&self.order[start..self.pos]);
        }
        &self.batch
    }

    /// Fills `x` (`(B, pixels)`) and `y` (`(B)`) with the next batch of `ds`.
    pub fn next_batch(&mut self, ds: &Dataset, x: &mut [f32], y: &mut [u8]) {
        self.next_indices();
        ds.gather(&self.batch, x, y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_each_epoch_once_and_wrap_like_tensorflow() {
        let n = 10;
        let mut b = Batcher::new(n, 4, true, Rng::new(9)).unwrap();
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.extend_from_slice(b.next_indices());
        }
        // 20 indices: two full epochs of 10, each a permutation.
        for epoch in seen.chunks(n) {
            let mut e = epoch.to_vec();
            e.sort_unstable();
            assert_eq!(e, (0..n as u32).collect::<Vec<_>>());
        }
        assert_ne!(seen[..n], seen[n..], "reshuffled at the epoch boundary");
        assert_eq!(b.epoch(), 1);
    }

    #[test]
    fn a_restored_batcher_continues_the_same_sequence() {
        let mut a = Batcher::new(10, 4, true, Rng::new(3)).unwrap();
        for _ in 0..4 {
            a.next_indices();
        }
        let mut b = Batcher::restore(10, 4, a.state()).unwrap();
        for _ in 0..6 {
            assert_eq!(a.next_indices(), b.next_indices());
        }
        let mut bad = a.state();
        bad.order[0] = bad.order[1];
        assert!(Batcher::restore(10, 4, bad)
            .unwrap_err()
            .to_string()
            .contains("not a permutation"));
        assert!(Batcher::restore(11, 4, a.state())
            .unwrap_err()
            .to_string()
            .contains("has 11"));
    }

    #[test]
    fn unshuffled_batches_are_in_file_order() {
        let mut b = Batcher::new(5, 2, false, Rng::new(0)).unwrap();
        let got: Vec<Vec<u32>> = (0..4).map(|_| b.next_indices().to_vec()).collect();
        assert_eq!(got, vec![vec![0, 1], vec![2, 3], vec![4, 0], vec![1, 2]]);
    }

    #[test]
    fn bad_batch_sizes_are_errors() {
        assert!(Batcher::new(5, 0, true, Rng::new(0))
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        let e = Batcher::new(5, 6, true, Rng::new(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than the training set (5 images)"), "{e}");
    }
}
