//! Adam over one flat parameter buffer, as TensorFlow 1's `AdamOptimizer` computes it.
//!
//! `m ← m + (g − m)(1 − β1)`, `v ← v + (g² − v)(1 − β2)`,
//! `θ ← θ − lr_t · m / (√v + ε)` with `lr_t = lr · √(1 − β2ᵗ) / (1 − β1ᵗ)`:
//! the bias correction is folded into the step size and ε is added to the uncorrected `√v`
//! ("epsilon hat" in the Adam paper), exactly TensorFlow's `ApplyAdam` kernel, except that a
//! moment below the normal range is flushed to 0 (see `flush`). One loop over all parameters,
//! which the compiler vectorizes (`fsqrt`/`fdiv` on `.4s` lanes with NEON), split in chunks over
//! the thread pool.

use crate::pool::{self, SharedMut};

/// Parameters per unit of work when the update is split over threads (64 KiB of each buffer).
const CHUNK: usize = 1 << 14;

/// Adam's state: hyper-parameters, step count and the two moment buffers.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to `√v` to keep the step finite.
    pub eps: f32,
    /// Steps taken so far.
    pub t: u64,
    /// First moment, one per parameter.
    pub m: Vec<f32>,
    /// Second moment, one per parameter.
    pub v: Vec<f32>,
}

impl Adam {
    /// TensorFlow's defaults (β1 0.9, β2 0.999, ε 1e-8) for `n` parameters.
    pub fn new(n: usize, lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 0,
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// The bias-corrected step size of step `t` (1-based).
    pub fn step_size(&self, t: u64) -> f32 {
        let t = t.min(i32::MAX as u64) as i32;
        let (b1, b2) = (f64::from(self.beta1), f64::from(self.beta2));
        (f64::from(self.lr) * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t))) as f32
    }

    /// One update of `params` with `grads` (same length as the moments).
    pub fn step(&mut self, params: &mut [f32], grads: &[f32]) {
        assert_eq!(params.len(), self.m.len());
        assert_eq!(grads.len(), self.m.len());
        self.t += 1;
        let lr_t = self.step_size(self.t);
        let (c1, c2, eps) = (1.0 - self.beta1, 1.0 - self.beta2, self.eps);
        let (params, ms, vs) = (
            SharedMut::new(params),
            SharedMut::new(&mut self.m),
            SharedMut::new(&mut self.v),
        );
        // Last chunk first: the first layer's weights, which the next forward pass reads
        // first, are then the last written, and still in cache when it starts.
        let n = grads.len();
        let units = n.div_ceil(CHUNK);
        pool::run(units, &|u| {
            let u = units - 1 - u;
            let r = u * CHUNK..n.min((u + 1) * CHUNK);
            // SAFETY: the chunks of one job are disjoint ranges.
            let (p, m, v) = unsafe {
                (
                    params.part(r.clone()),
                    ms.part(r.clone()),
                    vs.part(r.clone()),
                )
            };
            update(p, &grads[r], m, v, Hyper { c1, c2, lr_t, eps });
        });
    }
}

/// The constants of one update: `1 − β1`, `1 − β2`, the step size and ε.
#[derive(Clone, Copy)]
struct Hyper {
    c1: f32,
    c2: f32,
    lr_t: f32,
    eps: f32,
}

/// Adam's update of one chunk, in the widest vectors this CPU has. Square root and division
/// are exactly rounded at any width and nothing is fused, so every path gives the same bits.
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: Hyper) {
    #[cfg(all(target_arch = "x86_64", mnist_mlp_avx512))]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature the function is compiled for was just detected.
            return unsafe { update_avx512(p, g, m, v, h) };
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { update_avx2(p, g, m, v, h) };
        }
    }
    update_loop(p, g, m, v, h)
}

#[cfg(all(target_arch = "x86_64", mnist_mlp_avx512))]
#[clippy::msrv = "1.89"] // built only by 1.89+ (see build.rs)
#[target_feature(enable = "avx512f")]
unsafe fn update_avx512(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: Hyper) {
    update_loop(p, g, m, v, h)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: Hyper) {
    update_loop(p, g, m, v, h)
}

/// The update as the equations read; inlined into each of the dispatch targets above, where the
/// compiler vectorizes it for that target's width (NEON `.4s` on aarch64).
#[inline(always)]
fn update_loop(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: Hyper) {
    let Hyper { c1, c2, lr_t, eps } = h;
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
        *m = flush(*m + (g - *m) * c1);
        *v = flush(*v + (g * g - *v) * c2);
        *p -= lr_t * *m / (v.sqrt() + eps);
    }
}

/// `x`, or 0 if it is subnormal. The moments of a parameter whose gradient has become 0 (a
/// dead ReLU unit) decay geometrically through the subnormal range, where x86 vector
/// arithmetic takes microcode assists (a ReLU network has thousands of subnormal first moments
/// after 1000 steps). The step such a moment would make is below 1e-30, far under the
/// rounding of a trained weight (a weight of 1e-3 rounds at 1e-10), so no weight changes.
#[inline(always)]
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_steps_match_values_computed_by_hand() {
        let mut adam = Adam::new(2, 0.1);
        let mut p = [1.0f32, -2.0];
        // Step 1, g = (0.5, −4): m = (0.05, −0.4), v = (0.00025, 0.016),
        // lr_1 = 0.1·√0.001/0.1 = 0.0316228, Δ = lr_1·m/(√v + ε) = (0.1, −0.1) up to ε:
        // Adam's first step is lr · sign(g).
        adam.step(&mut p, &[0.5, -4.0]);
        assert!((p[0] - 0.900_000_06).abs() < 1e-6, "{}", p[0]);
        assert!((p[1] - -1.9).abs() < 1e-6, "{}", p[1]);
        // (1 − β2 is 0.00099999 in f32, as in TensorFlow: the moments carry f32 rounding.)
        assert!((adam.m[0] - 0.05).abs() < 1e-6 && (adam.v[1] - 0.016).abs() < 1e-6);
        // Step 2, g = (0.5, 0): m = (0.095, −0.36), v = (0.00049975, 0.015984),
        // lr_2 = 0.1·√(1 − 0.999²)/(1 − 0.9²) = 0.0235317;
        // Δ0 = lr_2·0.095/√0.00049975 = 0.0999999, Δ1 = −lr_2·0.36/√0.015984 = −0.0670058.
        adam.step(&mut p, &[0.5, 0.0]);
        assert!((p[0] - 0.800_000_1).abs() < 2e-6, "{}", p[0]);
        assert!((p[1] - -1.832_994_2).abs() < 2e-6, "{}", p[1]);
        assert_eq!(adam.t, 2);
    }

    /// Adam's update one parameter at a time, flush included, as the equations read.
    fn reference_step(adam: &Adam, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let lr_t = adam.step_size(adam.t);
        let (c1, c2) = (1.0 - adam.beta1, 1.0 - adam.beta2);
        for i in 0..p.len() {
            m[i] = flush(m[i] + (g[i] - m[i]) * c1);
            v[i] = flush(v[i] + (g[i] * g[i] - v[i]) * c2);
            p[i] -= lr_t * m[i] / (v[i].sqrt() + adam.eps);
        }
    }

    /// Past one chunk: two whole chunks and a partial third, each parameter updated once per
    /// step with its own gradient, bit for bit as one loop over all of them would.
    #[test]
    fn every_chunk_is_updated_like_one_loop_over_all_parameters() {
        let n = 2 * CHUNK + 1000;
        let mut rng = crate::rng::Rng::new(5);
        let mut adam = Adam::new(n, 1e-2);
        let mut p: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let (mut p_ref, mut m_ref, mut v_ref) = (p.clone(), vec![0.0f32; n], vec![0.0f32; n]);
        for step in 0..3 {
            let g: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            adam.step(&mut p, &g);
            reference_step(&adam, &mut p_ref, &g, &mut m_ref, &mut v_ref);
            for (name, got, want) in [
                ("p", &p, &p_ref),
                ("m", &adam.m, &m_ref),
                ("v", &adam.v, &v_ref),
            ] {
                if let Some(i) = (0..n).find(|&i| got[i].to_bits() != want[i].to_bits()) {
                    panic!(
                        "step {step}: {name}[{i}] (chunk {}) is {} but should be {}",
                        i / CHUNK,
                        got[i],
                        want[i]
                    );
                }
            }
        }
    }

    /// The flush takes exactly the subnormals: the smallest normal float stays as it is.
    #[test]
    fn flush_zeroes_subnormals_and_keeps_the_smallest_normal() {
        let largest_subnormal = f32::from_bits(0x007f_ffff);
        for x in [f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1.0, -2.5e-20] {
            assert_eq!(flush(x).to_bits(), x.to_bits(), "{x:e} is normal");
        }
        for x in [
            largest_subnormal,
            -largest_subnormal,
            f32::from_bits(1),
            0.0,
        ] {
            assert_eq!(flush(x), 0.0, "{x:e} is subnormal");
        }
    }

    /// A unit that stops learning: one step with gradients, then 2000 with none. Its first
    /// moment decays by 0.9 a step through the subnormal range (from step ~830); flushed, it
    /// ends exactly 0, and the weights are bit for bit those of the update without flushing.
    #[test]
    fn moments_of_a_stopped_unit_flush_to_zero_without_moving_any_weight() {
        let gs = [1.0f32, -3e-3, 2e-5, 0.7, -1e-2, 5.0, 1e-4, -0.25, 3e-2];
        let n = gs.len();
        let mut adam = Adam::new(n, 1e-4);
        let mut p: Vec<f32> = (0..n).map(|i| 0.1 * i as f32 - 0.3).collect();
        let (mut p_ref, mut m_ref, mut v_ref) = (p.clone(), vec![0.0f32; n], vec![0.0f32; n]);
        let mut subnormal_ref = 0;
        for step in 0..2001 {
            let g: Vec<f32> = if step == 0 { gs.to_vec() } else { vec![0.0; n] };
            adam.step(&mut p, &g);
            // The same update, unflushed.
            let lr_t = adam.step_size(adam.t);
            let (c1, c2) = (1.0 - adam.beta1, 1.0 - adam.beta2);
            for i in 0..n {
                m_ref[i] += (g[i] - m_ref[i]) * c1;
                v_ref[i] += (g[i] * g[i] - v_ref[i]) * c2;
                p_ref[i] -= lr_t * m_ref[i] / (v_ref[i].sqrt() + adam.eps);
            }
            subnormal_ref += m_ref.iter().filter(|m| m.is_subnormal()).count();
            assert!(
                adam.m.iter().chain(&adam.v).all(|x| !x.is_subnormal()),
                "step {step}"
            );
        }
        assert!(subnormal_ref > 100, "the reference never went subnormal");
        assert!(adam.m.iter().all(|&m| m == 0.0), "{:?}", adam.m);
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&p), bits(&p_ref));
    }
}
