//! Writing files so that a crash, a full disk or a power cut never leaves a half-written one.
//!
//! [`write_atomic`] writes to a temporary file in the target's directory, fsyncs it, renames it
//! over the target and fsyncs the directory: at every instant the path holds either the old
//! complete file or the new complete one. On failure the temporary file is removed and the
//! old file is untouched.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Replaces `path` with `bytes`, atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = write_then_rename(path, &tmp, bytes);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `.NAME.tmp-PID` beside `path`: same directory (so rename is atomic), hidden, per process.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn write_then_rename(path: &Path, tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    // Only ever replace a regular file: renaming over /dev/full or a directory would destroy it.
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(io::Error::other("is a directory")),
        Ok(m) if !m.is_file() => return Err(io::Error::other("not a regular file")),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
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
