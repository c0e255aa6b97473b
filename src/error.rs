//! The library's one error type.
//!
//! Every variant names the file (or the option) it is about and says what is wrong with it in
//! words a board owner can act on, on one line; where there is something to do, the message
//! ends with a `hint:`. The binary adds context and maps these to exit codes; the library never prints.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::limits::LimitKind;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug)]
pub enum Error {
    /// A data file that should exist does not (neither raw nor `.gz`).
    MissingData {
        /// The raw path that was looked for (the `.gz` twin was tried too).
        path: PathBuf,
    },
    /// The operating system refused to open or read a file.
    Io {
        /// The file being read.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// An IDX file whose bytes are not what its header promises.
    Idx {
        /// The file being parsed.
        path: PathBuf,
        /// What is wrong, e.g. "wrong magic number 0x00000801 (expected 0x00000803, images)".
        problem: String,
    },
    /// A file whose claims are consistent but go over one of the [`Limits`](crate::limits::Limits).
    Limit {
        /// The file.
        path: PathBuf,
        /// What the file claims, e.g. "holds 10956549 images".
        what: String,
        /// Which limit it goes over.
        kind: LimitKind,
        /// The limit's value (in images, pixels or bytes).
        limit: u64,
    },
    /// Two files or a file and the network that do not fit together (counts, sizes, labels),
    /// or a data directory that is not one.
    Dataset {
        /// The file (or directory) where the problem is found.
        path: PathBuf,
        /// What does not fit, naming `path` and any other file involved.
        problem: String,
    },
    /// An image given to `predict` that cannot be read as a 28×28 digit.
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong and, where possible, what to do about it.
        problem: String,
    },
    /// A model or checkpoint file that cannot be used as one.
    Model {
        /// The file being loaded.
        path: PathBuf,
        /// What is wrong, naming the tensor or metadata key.
        problem: String,
    },
    /// Writing a file failed; the previous file at that path, if any, is unchanged.
    Write {
        /// The file being written.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Training stopped because the loss or the weights stopped being finite numbers.
    Diverged {
        /// The iteration at which it was detected.
        iteration: usize,
        /// What was found (e.g. "the loss is NaN").
        what: String,
    },
    /// A file another mnist-mlp process is using (it holds the lock file beside it).
    Locked {
        /// The file in use.
        path: PathBuf,
        /// The lock file the other process holds.
        lock: PathBuf,
    },
    /// A model that is not finite, refused before anything is written.
    NotFinite {
        /// Which parameter is not finite, and its value.
        what: String,
    },
    /// A training or evaluation setting that cannot work (batch of 0, empty layer, ...).
    Config {
        /// What is wrong with the setting.
        problem: String,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn idx(path: &Path, problem: impl Into<String>) -> Self {
        Error::Idx {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    pub(crate) fn image(path: &Path, problem: impl Into<String>) -> Self {
        Error::Image {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    pub(crate) fn model(path: &Path, problem: impl Into<String>) -> Self {
        Error::Model {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    pub(crate) fn limit(path: &Path, what: impl Into<String>, kind: LimitKind, limit: u64) -> Self {
        Error::Limit {
            path: path.to_path_buf(),
            what: what.into(),
            kind,
            limit,
        }
    }

    pub(crate) fn config(problem: impl Into<String>) -> Self {
        Error::Config {
            problem: problem.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingData { path } => {
                let dir = path.parent().unwrap_or_else(|| Path::new("."));
                write!(
                    f,
                    "missing data file {} (also tried {}.gz); ",
                    path.display(),
                    path.display()
                )?;
                if dir == Path::new(crate::data::BUNDLED_DIR) {
                    // The default when data/mnist does not exist: the run is not in a clone.
                    write!(
                        f,
                        "hint: without --data, {} or else {} is read, relative to the current \
                         directory: run from a clone of the repository, or point --data at a \
                         directory holding the four IDX files",
                        crate::data::FETCHED_DIR,
                        crate::data::BUNDLED_DIR
                    )
                } else {
                    write!(
                        f,
                        "hint: download MNIST with `scripts/fetch-mnist.sh {}`, or point --data \
                         at a directory holding the four IDX files",
                        dir.display()
                    )
                }
            }
            Error::Io { path, source } => write!(f, "cannot read {}: {}", path.display(), source),
            Error::Idx { path, problem } => write!(f, "{}: {}", path.display(), problem),
            Error::Model { path, problem } | Error::Image { path, problem } => {
                write!(f, "{}: {}", path.display(), problem)
            }
            Error::Write { path, source } => {
                write!(
                    f,
                    "cannot write {}: {} (any previous file there is unchanged)",
                    path.display(),
                    source
                )
            }
            Error::Diverged { iteration, what } => write!(
                f,
                "training diverged at iteration {iteration}: {what}; \
                 hint: lower the learning rate (--lr); the last checkpoint, if any, is intact"
            ),
            Error::Limit {
                path,
                what,
                kind,
                limit,
            } => write!(
                f,
                "{}: {what}, over the limit of {}; hint: if the file is genuine, raise the limit \
                 with {}",
                path.display(),
                kind.describe(*limit),
                kind.flag()
            ),
            Error::Dataset { problem, .. } => f.write_str(problem),
            Error::Locked { path, lock } => write!(
                f,
                "{} is in use by another mnist-mlp process (it holds {}); wait for it to finish \
                 or use another file",
                path.display(),
                lock.display()
            ),
            Error::NotFinite { what } => {
                write!(f, "refusing to save a model that is not finite: {what}")
            }
            Error::Config { problem } => f.write_str(problem),
        }
    }
}

/// The operating system's error is part of each message (`Display`), so it is not also
/// returned as a `source`: a reporter walking the chain would print it twice.
impl std::error::Error for Error {}
