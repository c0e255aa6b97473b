//! Helpers shared by the fuzz targets: a scratch file for the parsers that read a path, the
//! check every error must pass (a message that names the file), and an allocator that records
//! the largest single allocation, so a target can require that a parser never allocates more
//! than its real input justifies, whatever the header claims.
//!
//! The targets themselves are in `fuzz_targets/`; the seed corpus in `seeds/` is written by
//! `examples/gen_seeds.rs`. Run everything with `scripts/fuzz.sh [SECONDS]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The extra tensors `eval`, `predict` and `train --resume` accept in a model file (the CLI's
/// `MODEL_EXTRAS`, the checkpoint's training state).
pub const CHECKPOINT_EXTRAS: [&str; 3] = ["adam.m", "adam.v", "data.order"];

/// `name` inside a directory that lives as long as the fuzzing process. One path per name, so
/// each execution overwrites the previous input instead of filling the disk.
pub fn scratch(name: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        // /dev/shm when there is one: the file is rewritten at every execution.
        let shm = Path::new("/dev/shm");
        let builder = tempfile::Builder::new()
            .prefix("mnist-mlp-fuzz-")
            .tempdir_in(shm);
        builder
            .or_else(|_| tempfile::tempdir())
            .expect("a scratch directory")
    })
    .path()
    .join(name)
}

/// Writes `bytes` to the scratch file `name` and returns its path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, bytes).expect("write the scratch file");
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
