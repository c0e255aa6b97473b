//! `cargo bench`: the GEMM wrapper on every product of a training step, one training step, and
//! inference on 10,000 images, for both architectures; the same measurements as
//! `mnist-mlp bench` (see src/bench.rs), so numbers from the PC and from the board compare.
//!
//! `MATMUL_NUM_THREADS=N cargo bench` sets the GEMM threads (default: one per core, at most 4).

use mnist_mlp::bench::{measure, BenchConfig};
use mnist_mlp::model::{Arch, DEFAULT_HIDDEN};

fn main() {
    // `cargo bench -- --bench` passes flags meant for libtest; there are none to honour here.
    let threads = std::env::var("MATMUL_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4)
        });
    mnist_mlp::gemm::set_threads(threads);
    for arch in [Arch::Seed, Arch::Relu] {
        let cfg = BenchConfig {
            arch,
            hidden: DEFAULT_HIDDEN.to_vec(),
            batch: 128,
            steps: 200,
            threads,
        };
        match measure(&cfg) {
            Ok(report) => println!("{report}\n"),
            Err(e) => {
                eprintln!("bench failed: {e}");
                std::process::exit(1);
            }
        }
    }
}
