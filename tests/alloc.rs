//! Heap allocations during training, counted by a global allocator wrapper.
//!
//! The training loop's own code allocates nothing after the first iteration: batches,
//! activations, gradients and Adam's moments are all preallocated. matrixmultiply 0.3,
//! however, allocates one packing buffer per `sgemm` call, so a step of an `L`-layer network
//! costs exactly one allocation per matrix product: `L` forward, `L` weight gradients, `L − 1`
//! input gradients, plus `L` for the metrics pass. This test pins that number, so any
//! allocation this crate adds to the loop makes it fail. (A GEMM with reusable packing
//! buffers, issue 6, will bring it to zero.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use mnist_mlp::data::{Dataset, Split};
use mnist_mlp::gemm;
use mnist_mlp::train::{Length, TrainConfig, Trainer};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only the test's own thread is counted: the test harness allocates on its threads too
    /// (e.g. its "running for over 60 seconds" notice under emulation). With one GEMM thread,
    /// all of training runs on this thread. Const-initialised, so reading it never allocates.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.with(Cell::get) {
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

#[test]
fn training_steps_allocate_only_inside_matrixmultiply() {
    gemm::set_threads(1);
    COUNTED.with(|c| c.set(true));
    // 1000 images: an epoch is 7.8 batches of 128, so the measured steps cross an epoch
    // boundary (and its reshuffle).
    let dir = common::subset(&common::shared_data("mnist-10k"), 1000, 100);
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
        let steps = 10;
        for _ in 0..steps {
            trainer.step(&train).unwrap();
            trainer.batch_metrics();
        }
        let per_step = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / steps as f64;
        let layers = trainer.model().layout().layers();
        let products = (layers + layers + (layers - 1)) + layers;
        eprintln!(
            "{arch:?}: {per_step} allocations per step + metrics, {products} matrix products"
        );
        assert_eq!(per_step, products as f64);
    }
}
