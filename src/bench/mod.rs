//! `mnist-mlp bench`: how fast this machine runs the model, measured by the program itself so
//! it works on a board without cargo.
//!
//! Reports GEMM GFLOP/s for each matrix product of a training step (forward, weight gradient,
//! input gradient of every layer), milliseconds per training step (median of repeated steps
//! after warm-up, with min and max), milliseconds to evaluate a 10,000-image test set (float32,
//! and int8 on the int8 engine after quantizing the same network), and
//! the share of the machine's peak, which it estimates with a short FMA probe of its own.
//! Data is synthetic (seeded random pixels): speed does not depend on the values, and the
//! benchmark needs no data set on the board.

use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::Instant;

use crate::data::{Dataset, CLASSES};
use crate::error::Result;
use crate::gemm::{Operand, Product, Trans};
use crate::idx::{Images, Labels};
use crate::model::{mnist_sizes, Arch, Mlp, INPUT};
use crate::rng::Rng;
use crate::train::{Length, TrainConfig, Trainer};

mod peak;

pub use peak::fma_peak_gflops;

/// Images in the synthetic training and test sets (MNIST's test-set size).
const IMAGES: usize = 10_000;
/// Steps run before timing, so caches, page tables and thread pools are warm.
const WARMUP_STEPS: usize = 5;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Architecture of the network.
    pub arch: Arch,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Mini-batch size.
    pub batch: usize,
    /// Timed training steps (and GEMM repetitions).
    pub steps: usize,
    /// GEMM threads in use (for the peak estimate).
    pub threads: usize,
}

/// Median, min and max of repeated timings, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Median.
    pub median: f64,
    /// Fastest.
    pub min: f64,
    /// Slowest.
    pub max: f64,
}

impl Stats {
    fn of(mut ms: Vec<f64>) -> Stats {
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        Stats {
            median,
            min: ms[0],
            max: ms[n - 1],
        }
    }
}

/// One matrix product of a training step.
#[derive(Clone, Debug)]
pub struct GemmBench {
    /// What it computes, e.g. `fwd 1` (forward of layer 1), `dW 2`, `dX 3`.
    pub name: String,
    /// `m × k × n` of `C (m, n) = A (m, k) · B (k, n)`.
    pub mkn: (usize, usize, usize),
    /// Time per call.
    pub ms: Stats,
    /// Time per call of the portable fallback (matrixmultiply) on the same product, measured
    /// in the same run for comparison.
    pub fallback_ms: Stats,
}

impl GemmBench {
    /// Billions of floating-point operations per second at the median time.
    pub fn gflops(&self) -> f64 {
        let (m, k, n) = self.mkn;
        2.0 * (m * k * n) as f64 / (self.ms.median * 1e6)
    }

    /// GFLOP/s of the fallback at its median time.
    pub fn fallback_gflops(&self) -> f64 {
        let (m, k, n) = self.mkn;
        2.0 * (m * k * n) as f64 / (self.fallback_ms.median * 1e6)
    }
}

/// Everything `bench` measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// The configuration measured.
    pub config: BenchConfig,
    /// Each product of one training step.
    pub gemms: Vec<GemmBench>,
    /// One training step (forward, loss, backward, Adam).
    pub step: Stats,
    /// GFLOP in the matrix products of one step.
    pub step_gflop: f64,
    /// Classifying the 10,000-image test set.
    pub eval: Stats,
    /// The same with the network quantized to int8 (per-tensor scales), on the int8 engine
    /// (one thread).
    pub eval_int8: Stats,
    /// Estimated peak GFLOP/s of one core (FMA probe), and of the threads in use.
    pub peak_core: f64,
}

impl BenchReport {
    /// Peak of all threads in use.
    pub fn peak(&self) -> f64 {
        self.peak_core * self.config.threads as f64
    }

    /// The report as one JSON object, for scripts.
    pub fn to_json(&self) -> String {
        let stats = |s: &Stats| {
            format!(
                "{{\"median\":{:.4},\"min\":{:.4},\"max\":{:.4}}}",
                s.median, s.min, s.max
            )
        };
        let mut g = String::new();
        for (i, b) in self.gemms.iter().enumerate() {
            let (m, k, n) = b.mkn;
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                g,
                "{sep}{{\"name\":\"{}\",\"m\":{m},\"k\":{k},\"n\":{n},\"ms\":{},\"gflops\":{:.2},\
                 \"fallback_ms\":{},\"fallback_gflops\":{:.2}}}",
                b.name,
                stats(&b.ms),
                b.gflops(),
                stats(&b.fallback_ms),
                b.fallback_gflops()
            );
        }
        format!(
            "{{\"arch\":\"{}\",\"batch\":{},\"threads\":{},\"kernel\":\"{}\",\"peak_gflops_per_core\":{:.1},\
             \"gemms\":[{g}],\"step_ms\":{},\"step_gflop\":{:.4},\"eval_ms\":{},\"eval_int8_ms\":{}}}",
            self.config.arch.name(),
            self.config.batch,
            self.config.threads,
            crate::gemm::kernel_name(),
            self.peak_core,
            stats(&self.step),
            self.step_gflop,
            stats(&self.eval),
            stats(&self.eval_int8)
        )
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "{} network {:?}, batch {}, {} thread(s)",
            c.arch.name(),
            mnist_sizes(&c.hidden),
            c.batch,
            c.threads
        )?;
        writeln!(
            f,
            "peak (FMA probe, estimate): {:.1} GFLOP/s per core, {:.1} for {} thread(s)",
            self.peak_core,
            self.peak(),
            c.threads
        )?;
        writeln!(
            f,
            "GEMM kernel: {}; \"fallback\" is matrixmultiply on the same product\n",
            crate::gemm::kernel_name()
        )?;
        writeln!(
            f,
            "{:<8} {:>16} {:>10} {:>9} {:>7} {:>11} {:>9}",
            "product", "m×k×n", "ms", "GFLOP/s", "% peak", "fallback ms", "GFLOP/s"
        )?;
        for b in &self.gemms {
            let (m, k, n) = b.mkn;
            writeln!(
                f,
                "{:<8} {:>16} {:>10.4} {:>9.1} {:>6.0}% {:>11.4} {:>9.1}",
                b.name,
                format!("{m}×{k}×{n}"),
                b.ms.median,
                b.gflops(),
                100.0 * b.gflops() / self.peak(),
                b.fallback_ms.median,
                b.fallback_gflops()
            )?;
        }
        let gemm_ms: f64 = self.gemms.iter().map(|b| b.ms.median).sum();
        let fallback_ms: f64 = self.gemms.iter().map(|b| b.fallback_ms.median).sum();
        writeln!(
            f,
            "{:<8} {:>16} {:>10.4} {:>9.1} {:>7} {:>11.4} {:>9.1}",
            "all",
            "",
            gemm_ms,
            self.step_gflop / gemm_ms * 1e3,
            "",
            fallback_ms,
            self.step_gflop / fallback_ms * 1e3
        )?;
        let s = &self.step;
        writeln!(
            f,
            "\ntraining step: {:.3} ms median (min {:.3}, max {:.3}) over {} steps; {:.1} GFLOP/s, {:.0}% of peak",
            s.median,
            s.min,
            s.max,
            c.steps,
            self.step_gflop / s.median * 1e3,
            100.0 * self.step_gflop / s.median * 1e3 / self.peak()
        )?;
        let e = &self.eval;
        writeln!(
            f,
            "evaluate {IMAGES} images: {:.1} ms median (min {:.1}, max {:.1})",
            e.median, e.min, e.max
        )?;
        let q = &self.eval_int8;
        write!(
            f,
            "evaluate {IMAGES} images, int8 (1 thread): {:.1} ms median (min {:.1}, max {:.1})",
            q.median, q.min, q.max
        )
    }
}

/// A data set of `n` seeded random images and labels, held in memory.
fn synthetic(n: usize, rng: &mut Rng) -> Result<Dataset> {
    let mut images = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    images.extend((0..n * INPUT).map(|_| rng.below(256) as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&(n as u32).to_be_bytes());
    labels.extend((0..n).map(|_| rng.below(CLASSES as u64) as u8));
    let name = Path::new("(synthetic)");
    Dataset::new(
        Images::from_vec(name, images)?,
        Labels::from_vec(name, labels)?,
    )
}

fn time_ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

/// The products of one training step, as (name, m, k, n, transposes).
fn step_products(
    sizes: &[usize],
    batch: usize,
) -> Vec<(String, usize, usize, usize, Trans, Trans)> {
    let mut v = Vec::new();
    for l in 0..sizes.len() - 1 {
        let (i, o) = (sizes[l], sizes[l + 1]);
        v.push((format!("fwd {}", l + 1), batch, i, o, Trans::No, Trans::Yes));
        v.push((format!("dW {}", l + 1), o, batch, i, Trans::Yes, Trans::No));
        if l > 0 {
            v.push((format!("dX {}", l + 1), batch, o, i, Trans::No, Trans::No));
        }
    }
    v
}

/// Runs every measurement.
pub fn measure(cfg: &BenchConfig) -> Result<BenchReport> {
    let mut rng = Rng::new(1);
    let sizes = mnist_sizes(&cfg.hidden);
    let reps = cfg.steps.max(1);
    let gemms: Vec<GemmBench> = step_products(&sizes, cfg.batch)
        .into_iter()
        .map(|product| gemm_bench(product, reps, &mut rng))
        .collect();
    let step_gflop = gemms
        .iter()
        .map(|g| 2.0 * (g.mkn.0 * g.mkn.1 * g.mkn.2) as f64)
        .sum::<f64>()
        / 1e9;

    let data = synthetic(IMAGES, &mut rng)?;
    let train_cfg = TrainConfig {
        arch: cfg.arch,
        hidden: cfg.hidden.clone(),
        length: Length::Iterations(WARMUP_STEPS + reps),
        batch: cfg.batch,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&train_cfg, &data)?;
    for _ in 0..WARMUP_STEPS {
        trainer.step(&data)?;
    }
    let mut step_ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        trainer.step(&data)?;
        step_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (eval, eval_int8) = evaluation_times(trainer.model(), &data)?;
    Ok(BenchReport {
        config: cfg.clone(),
        eval_int8,
        gemms,
        step: Stats::of(step_ms),
        step_gflop,
        eval,
        peak_core: peak::fma_peak_gflops(),
    })
}

/// One product of a step, `reps` times on the crate's GEMM and on the fallback, in turns.
fn gemm_bench(
    (name, m, k, n, ta, tb): (String, usize, usize, usize, Trans, Trans),
    reps: usize,
    rng: &mut Rng,
) -> GemmBench {
    let a: Vec<f32> = (0..m * k).map(|_| rng.uniform() as f32).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.uniform() as f32).collect();
    let mut c = vec![0.0; m * n];
    let (a, b) = (Operand::new(&a, ta), Operand::new(&b, tb));
    for _ in 0..3 {
        Product::new((m, n, k), a, b, &mut c).run();
    }
    // The two take turns, so a change in the machine's load hits both alike.
    let (mut ms, mut fallback_ms) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        ms.push(time_ms(|| Product::new((m, n, k), a, b, &mut c).run()));
        fallback_ms.push(time_ms(|| {
            Product::new((m, n, k), a, b, &mut c).run_fallback()
        }));
    }
    GemmBench {
        name,
        mkn: (m, k, n),
        ms: Stats::of(ms),
        fallback_ms: Stats::of(fallback_ms),
    }
}

/// Times of classifying `data` with `model` in float32, and with its int8 quantization
/// (per-tensor scales, the default calibration): three runs each, after a warm-up.
fn evaluation_times(model: &Mlp, data: &Dataset) -> Result<(Stats, Stats)> {
    model.evaluate(data)?; // warm-up
    let eval_ms = (0..3)
        .map(|_| time_ms(|| drop(model.evaluate(data))))
        .collect();
    let q = crate::quant::calibrate::quantize(
        model,
        data,
        crate::quant::calibrate::DEFAULT_CALIBRATION,
        crate::quant::WeightScales::PerTensor,
    )?;
    q.classify(data)?; // warm-up
    let eval_int8_ms = (0..3).map(|_| time_ms(|| drop(q.classify(data)))).collect();
    Ok((Stats::of(eval_ms), Stats::of(eval_int8_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_of_a_step_match_the_flop_count() {
        let p = step_products(&mnist_sizes(&[512, 256, 128]), 128);
        assert_eq!(
            p.len(),
            11,
            "4 forward, 4 weight gradients, 3 input gradients"
        );
        let mflop: f64 = p
            .iter()
            .map(|(_, m, k, n, ..)| 2.0 * (m * k * n) as f64)
            .sum::<f64>()
            / 1e6;
        assert!(
            (mflop - 332.3).abs() < 0.5,
            "{mflop} MFLOP; the issue counts 332"
        );
    }

    #[test]
    fn a_tiny_bench_runs_and_reports() {
        let cfg = BenchConfig {
            arch: Arch::Relu,
            hidden: vec![16],
            batch: 8,
            steps: 3,
            threads: 1,
        };
        let r = measure(&cfg).unwrap();
        assert_eq!(r.gemms.len(), 5);
        assert!(r.step.min <= r.step.median && r.step.median <= r.step.max);
        assert!(r.peak_core > 0.0);
        let text = r.to_string();
        assert!(text.contains("training step:") && text.contains("evaluate 10000 images"));
        assert!(text.contains("int8 (1 thread)"), "{text}");
        assert!(r.to_json().starts_with("{\"arch\":\"relu\""));
        assert_eq!(
            Stats::of(vec![3.0, 1.0, 2.0, 10.0]),
            Stats {
                median: 2.5,
                min: 1.0,
                max: 10.0
            }
        );
    }
}
