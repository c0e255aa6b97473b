//! Heap allocations during training, counted by a global allocator wrapper on every thread.
//!
//! After the first iteration, training allocates nothing: batches, activations, gradients,
//! Adam's moments and the GEMM's packing buffers are all kept, and the thread pool is started.
//! Two threads, so the pool's workers are part of what is counted. This test is its own `main`
//! (`harness = false`): no test-harness thread shares the process and its counter.
//!
//! Only where no kernel of the crate's own runs (the matrixmultiply fallback) does a step
//! allocate, once per matrix product: that count is pinned instead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mnist_mlp::data::{Dataset, Split};
use mnist_mlp::gemm;
use mnist_mlp::train::{Length, TrainConfig, Trainer};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

fn count() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

mod common;

fn main() {
    gemm::set_threads(2);
    // 1000 images: an epoch is 7.8 batches of 128, so the measured steps cross an epoch
    // boundary (and its reshuffle).
    let dir = common::subset(&common::mnist_10k(), 1000, 100);
    let train = Dataset::open(dir.path(), Split::Train).unwrap();
    for arch in [mnist_mlp::model::Arch::Seed, mnist_mlp::model::Arch::Relu] {
        let cfg = TrainConfig {
            arch,
            length: Length::Iterations(100),
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(&cfg, &train).unwrap();
        // The first iteration (step and metrics pass) may allocate: lazy statics, thread pools.
        trainer.step(&train).unwrap();
        trainer.batch_metrics();
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        COUNTING.store(true, Ordering::SeqCst);
        let steps = 10;
        for _ in 0..steps {
            trainer.step(&train).unwrap();
            trainer.batch_metrics();
        }
        COUNTING.store(false, Ordering::SeqCst);
        let per_step = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / steps as f64;
        // Fallback only: one buffer per product, L forward + L weight gradients + L − 1 input
        // gradients, and L more for the metrics pass.
        let layers = trainer.model().layout().layers();
        let expected = if gemm::has_native_kernel() {
            0
        } else {
            (layers + layers + (layers - 1)) + layers
        };
        println!(
            "{arch:?}: {per_step} allocations per step + metrics pass (kernel {}, expected {expected})",
            gemm::kernel_name()
        );
        assert_eq!(per_step, expected as f64, "allocations per step, {arch:?}");
    }
    println!("test result: ok");
}
