//! Helpers shared by the fuzz targets: a scratch file for the parsers that read a path, the
//! check every error must pass (a message that names the file), and an allocator that records
//! the largest single allocation, so a target can require that a parser never allocates more
//! than its real input justifies, whatever the header claims.
//!
//! The targets themselves are in `fuzz_targets/`; the seed corpus in `seeds/` is written by
//! `examples/gen_seeds.rs`. Run everything with `scripts/fuzz.sh [SECONDS]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The extra tensors `eval`, `predict` and `train --resume` accept in a model file (the
/// checkpoint's training state).
pub const CHECKPOINT_EXTRAS: [&str; 3] = mnist_mlp::checkpoint::EXTRAS;

/// Prefix of the scratch directories; the process id follows it.
const SCRATCH_PREFIX: &str = "mnist-mlp-fuzz-";

/// `name` inside this process's scratch directory (`/dev/shm` when there is one: the file is
/// rewritten at every execution). One path per name, so each execution overwrites the previous
/// input instead of filling the disk. A fuzzing process ends by `exit` and drops no statics,
/// so the directory is named after the process id and those of processes that are gone are
/// removed when the next one starts.
pub fn scratch(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let proc = Path::new("/proc");
        if proc.join("self").exists() {
            for entry in fs::read_dir(&base).into_iter().flatten().flatten() {
                let file_name = entry.file_name();
                let file_name = file_name.to_string_lossy();
                if let Some(pid) = file_name.strip_prefix(SCRATCH_PREFIX) {
                    if !proc.join(pid).exists() {
                        let _ = fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        let dir = base.join(format!("{SCRATCH_PREFIX}{}", std::process::id()));
        fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    })
    .join(name)
}

/// Writes `bytes` to the scratch file `name` and returns its path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch(name);
    fs::write(&path, bytes).expect("write the scratch file");
    path
}

/// An error must say something, and say which file it is about.
pub fn check_error(err: &mnist_mlp::Error, path: &Path) {
    let msg = err.to_string();
    assert!(!msg.trim().is_empty(), "empty error message: {err:?}");
    let name = path.display().to_string();
    assert!(msg.contains(&name), "error does not name {name}: {msg}");
}

/// The system allocator, noting the size of the largest block asked for.
pub struct PeakAlloc;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// Runs `f`, and fails if it asked for any single block larger than `limit` bytes: the
/// target's bound for what its real input can justify (a parser that trusts a header's size
/// claim allocates far more than this on a small input).
pub fn bounded_alloc<R>(limit: usize, what: &str, f: impl FnOnce() -> R) -> R {
    LARGEST.store(0, Ordering::Relaxed);
    let r = f();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= limit,
        "{what} allocated a block of {largest} bytes; this input justifies at most {limit}"
    );
    r
}
