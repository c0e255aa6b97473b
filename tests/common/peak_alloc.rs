//! A global allocator that notes, per thread, the largest block asked for: lets a test require
//! that a parser allocates no more than its input's real length justifies, whatever a header
//! claims. Included (`#[path]`) only by the test binaries that install it; `tests/alloc.rs`
//! has its own counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

/// The system allocator plus a per-thread maximum (tests run in parallel threads; each
/// measures only its own).
pub struct PeakAlloc;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

/// Runs `f`; `Err` naming `path` if it asked for a single block larger than `limit` bytes.
pub fn bounded<R>(limit: usize, path: &Path, f: impl FnOnce() -> R) -> Result<R, String> {
    LARGEST.with(|l| l.set(0));
    let r = f();
    let largest = LARGEST.with(Cell::get);
    if largest > limit {
        return Err(format!(
            "{}: allocated a block of {largest} bytes; its length justifies at most {limit}",
            path.display()
        ));
    }
    Ok(r)
}
