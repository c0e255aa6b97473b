//! Writing files so that a crash, a full disk or a power cut never leaves a half-written one.
//!
//! [`write_atomic`] (and [`write_atomic_with`], for content streamed out) writes to a temporary
//! file in the target's directory, fsyncs it, renames it over the target and fsyncs the
//! directory: at every instant the path holds either the old complete file or the new complete
//! one. On failure the temporary file is removed and the old file is untouched.
//! The non-default cargo feature `unsafe-writes` swaps that writer for one that writes in
//! place and never fsyncs: a test-only control for `scripts/power-cut.sh`, which must see it
//! lose files. It is never part of a release build.
//! [`check_writable`] tells, before a long run starts, whether that write can succeed at all.
//! [`same_file`] tells whether two paths name one file. [`FileLock`] keeps two runs from
//! writing the same file, [`read_bounded`] reads a small input file without trusting its size,
//! [`open_input`] opens one without hanging on a FIFO, and [`sniff`] names what a file given in
//! the wrong place is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Replaces `path` with `bytes`, atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| fs::write(tmp, bytes))
}

/// Replaces `path` with what `write` writes to the temporary file it is given (creating it),
/// atomically and durably: for content streamed out piece by piece rather than held whole.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> io::Result<()>) -> Result<()> {
    #[cfg(not(feature = "unsafe-writes"))]
    let result = write_durably(path, write);
    #[cfg(feature = "unsafe-writes")]
    let result = unsafe_writes::write_in_place(path, write);
    result.map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Temporary file, fsync, rename, fsync of the directory; the temporary file is removed if
/// anything fails.
#[cfg_attr(feature = "unsafe-writes", allow(dead_code))]
fn write_durably(path: &Path, write: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = write_then_rename(path, &tmp, write);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Why [`read_bounded`] refused a file; each caller words it for its kind of file.
#[derive(Debug)]
pub enum ReadError {
    /// No such file.
    NotFound,
    /// A directory (`dir`) or another non-regular file.
    NotRegular {
        /// Whether it is a directory.
        dir: bool,
    },
    /// Larger than allowed (`bytes` is its size, or the bytes read before stopping).
    TooLarge {
        /// The size seen.
        bytes: u64,
    },
    /// The operating system refused.
    Io(io::Error),
}

/// Opens `path` for reading without blocking: opening a FIFO for reading would otherwise wait
/// for a writer forever. Reads from a regular file are not affected by the flag; callers check
/// the file type (with `metadata`) before reading anything.
pub fn open_input(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// The whole content of the regular file `path`, refused if larger than `max` bytes. Reads
/// at most `max + 1` bytes whatever the file claims, so a file that grows meanwhile cannot
/// make it allocate more.
pub fn read_bounded(path: &Path, max: u64) -> std::result::Result<Vec<u8>, ReadError> {
    let file = open_input(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ReadError::NotFound,
        _ => ReadError::Io(e),
    })?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular { dir: meta.is_dir() });
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge { bytes: meta.len() });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    io::Read::take(file, max + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge {
            bytes: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// What the first bytes of a file say it is, for errors about a file given in the wrong place
/// ("this is a PNG image, not a safetensors model file"); `None` when nothing is recognised.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    match head {
        [0x89, b'P', b'N', b'G', ..] => Some("a PNG image"),
        [b'P', b'2' | b'5', c, ..] if c.is_ascii_whitespace() => Some("a PGM image"),
        [0x1f, 0x8b, ..] => Some("a gzip file"),
        [0, 0, 0x08, 0x03, ..] => Some("an IDX images file"),
        [0, 0, 0x08, 0x01, ..] => Some("an IDX labels file"),
        [0, 0, 0x08..=0x0e, _, ..] => Some("an IDX file"),
        // safetensors: a little-endian u64 header length, then the JSON header.
        [_, _, _, _, _, _, _, _, b'{', ..] => Some("a safetensors file"),
        _ => None,
    }
}

/// Checks, before any work is done, that `path` can be written: its directory exists and is
/// writable, and `path` is not a directory. With `only_regular` (files replaced by
/// [`write_atomic`]), an existing `path` must be a regular file too; otherwise (a file written
/// in place, like a CSV log) a device or FIFO is accepted. The error is the one the write
/// itself would give, hours later.
pub fn check_writable(path: &Path, only_regular: bool) -> Result<()> {
    let fail = |source: io::Error| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(fail(io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            ))))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(fail(io::Error::other(format!(
                "directory {} does not exist",
                dir.display()
            ))))
        }
        Err(e) => return Err(fail(e)),
    }
    let existing = match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(fail(io::Error::other("is a directory"))),
        Ok(m) if only_regular && !m.is_file() => {
            return Err(fail(io::Error::other("not a regular file")))
        }
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(fail(e)),
    };
    // A file written in place needs itself writable if it exists. A replaced file needs its
    // temporary file created in the directory: create it now, so that a directory that says
    // it is writable and is not (/proc, a read-only mount) is found before the run.
    if existing && !only_regular {
        return access_w(path).map_err(fail);
    }
    let probe = temp_path(path);
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => fs::remove_file(&probe).map_err(fail),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(io::Error::new(
            e.kind(),
            format!("cannot create a file in directory {} ({e})", dir.display()),
        ))),
    }
}

/// Whether `a` and `b` name the same file: the same inode when both exist (so a hard link or
/// a symlink to the file counts), else the same name in the same resolved directory (two
/// spellings of a file not yet written). A path that cannot be examined names no other file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        (Err(_), Err(_)) => resolved(a).is_some_and(|r| resolved(b) == Some(r)),
        _ => false,
    }
}

/// `path` with its directory made absolute and free of symlinks, if that directory exists.
fn resolved(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(fs::canonicalize(dir).ok()?.join(path.file_name()?))
}

/// `access(path, W_OK)`: whether this process may write `path` (root may write anything).
fn access_w(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An exclusive advisory lock (`flock`) on `PATH.lock`, held until dropped: a second process
/// asking for the same lock is refused at once instead of both writing `PATH`. The lock dies
/// with the process (even on SIGKILL), so a stale `.lock` file never blocks anyone.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock for `path`, or says who holds it.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = PathBuf::from(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::Write {
                path: lock_path.clone(),
                source,
            })?;
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor we own for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return Err(if err.kind() == io::ErrorKind::WouldBlock {
                Error::Locked {
                    path: path.to_path_buf(),
                    lock: lock_path.to_path_buf(),
                }
            } else {
                Error::Write {
                    path: lock_path,
                    source: err,
                }
            });
        }
        remove_stale_temps(path);
        Ok(FileLock { _file: file })
    }
}

/// Removes the temporary files of earlier writers of `path` that were killed mid-write
/// (`.NAME.tmp-PID`). Only safe while holding the [`FileLock`] for `path`: then no live
/// process is writing one.
fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match fs::remove_file(entry.path()) {
                Ok(()) => log::info!(
                    "removed {} left by a writer that was killed",
                    entry.path().display()
                ),
                Err(e) => log::warn!("cannot remove stale {}: {e}", entry.path().display()),
            }
        }
    }
}

/// `.NAME.tmp-PID` beside `path`: same directory (so rename is atomic), hidden, per process.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg_attr(feature = "unsafe-writes", allow(dead_code))]
fn write_then_rename(
    path: &Path,
    tmp: &Path,
    write: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    // Only ever replace a regular file: renaming over /dev/full or a directory would destroy it.
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(io::Error::other("is a directory")),
        Ok(m) if !m.is_file() => return Err(io::Error::other("not a regular file")),
        _ => {}
    }
    write(tmp)?;
    // fsync through a new descriptor: it flushes the file's data whichever descriptor wrote it.
    File::open(tmp)?.sync_all()?;
    fs::rename(tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The writer `scripts/power-cut.sh --unsafe` cuts the power under, to show that its checks see
/// a lost file. Built only with the `unsafe-writes` feature, never for a release.
#[cfg(feature = "unsafe-writes")]
mod unsafe_writes {
    use std::fs::{self, OpenOptions};
    use std::io::{self, Write};
    use std::path::Path;

    /// Writes `path` in place with no fsync of the file or its directory.
    /// `MNIST_MLP_UNSAFE_WRITES` chooses how:
    /// - `truncate` (the default): `write` creates `path` itself, truncating it first, as a
    ///   plain `File::create` does;
    /// - `overwrite`: the new bytes are written over the old ones from offset 0 without
    ///   truncating first (the length is set afterwards), which escapes ext4's
    ///   replace-via-truncate heuristic (`auto_da_alloc`).
    pub fn write_in_place(
        path: &Path,
        write: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<()> {
        let mode = std::env::var("MNIST_MLP_UNSAFE_WRITES").unwrap_or_default();
        match mode.as_str() {
            "" | "truncate" => write(path),
            "overwrite" => {
                // Render the content beside the target, never flushed: unlinked before the
                // kernel writes it back, it never reaches the disk.
                let tmp = super::temp_path(path);
                let rendered = write(&tmp).and_then(|()| fs::read(&tmp));
                let _ = fs::remove_file(&tmp);
                let bytes = rendered?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)?;
                f.write_all(&bytes)?;
                f.set_len(bytes.len() as u64)
            }
            other => Err(io::Error::other(format!(
                "MNIST_MLP_UNSAFE_WRITES must be truncate or overwrite, not {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn same_file_sees_through_links_and_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("a"), b"x").unwrap();
        fs::write(d.join("b"), b"x").unwrap();
        fs::hard_link(d.join("a"), d.join("hard")).unwrap();
        std::os::unix::fs::symlink(d.join("a"), d.join("soft")).unwrap();
        assert!(same_file(&d.join("a"), &d.join("sub/../a")));
        assert!(same_file(&d.join("a"), &d.join("hard")));
        assert!(same_file(&d.join("soft"), &d.join("a")));
        assert!(!same_file(&d.join("a"), &d.join("b")));
        // Not written yet: the same name in the same directory, however spelled.
        assert!(same_file(&d.join("new"), &d.join("sub/../new")));
        assert!(!same_file(&d.join("new"), &d.join("sub/new")));
        assert!(!same_file(&d.join("new"), &d.join("a")));
        assert!(!same_file(&d.join("no/such"), &d.join("no/such")));
    }

    #[test]
    fn bounded_reads_refuse_what_they_should() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_bounded(&p, 10).unwrap(), b"0123456789");
        assert!(matches!(
            read_bounded(&p, 9),
            Err(ReadError::TooLarge { bytes: 10 })
        ));
        assert!(matches!(
            read_bounded(dir.path(), 9),
            Err(ReadError::NotRegular { dir: true })
        ));
        assert!(matches!(
            read_bounded(Path::new("/dev/null"), 9),
            Err(ReadError::NotRegular { dir: false })
        ));
        assert!(matches!(
            read_bounded(&dir.path().join("none"), 9),
            Err(ReadError::NotFound)
        ));
    }

    #[test]
    fn writability_is_checked_before_the_work() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("m");
        check_writable(&ok, true).unwrap();
        fs::write(&ok, b"x").unwrap();
        check_writable(&ok, true).unwrap();
        let msg = |p: &Path, regular| check_writable(p, regular).unwrap_err().to_string();
        assert!(msg(dir.path(), true).contains("is a directory"));
        assert!(msg(&dir.path().join("no/m"), true).contains("no does not exist"));
        assert!(msg(&ok.join("m"), true).contains("/m is not a directory"));
        assert!(msg(Path::new("/dev/null"), true).contains("not a regular file"));
        check_writable(Path::new("/dev/null"), false).unwrap();
    }

    #[test]
    fn sniff_names_the_formats_we_meet() {
        assert_eq!(sniff(b"\x89PNG\r\n"), Some("a PNG image"));
        assert_eq!(sniff(b"P5\n28 28"), Some("a PGM image"));
        assert_eq!(sniff(&[0, 0, 8, 3, 0]), Some("an IDX images file"));
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Some("a gzip file"));
        assert_eq!(
            sniff(b"\x10\0\0\0\0\0\0\0{\"a\""),
            Some("a safetensors file")
        );
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn opening_a_fifo_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_bounded(&p, 9),
            Err(ReadError::NotRegular { dir: false })
        ));
    }

    #[test]
    fn a_second_lock_on_the_same_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ckpt");
        let first = FileLock::acquire(&p).unwrap();
        let e = FileLock::acquire(&p).unwrap_err().to_string();
        assert!(
            e.contains("in use by another mnist-mlp process") && e.contains("ckpt.lock"),
            "{e}"
        );
        drop(first);
        FileLock::acquire(&p).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub");
        fs::create_dir(&p).unwrap();
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(
            e.contains("cannot write") && e.contains("is a directory"),
            "{e}"
        );
        let missing = dir.path().join("no/such/dir/m");
        assert!(write_atomic(&missing, b"x").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
