//! Layers as forward/backward pairs of free functions over flat slices.
//!
//! Dimension letters: `B` batch rows, `I` inputs of a layer, `O` its outputs. Every buffer is
//! row-major and its shape is written beside it. Weights are stored `(O, I)`, PyTorch's
//! `nn.Linear` layout, so a forward pass reads the weight transposed (by strides, no copy).
//! Backward functions overwrite their gradient outputs; they never accumulate.
//!
//! The element-wise loops are written for the auto-vectorizer (equal-length `zip`s and
//! `chunks_exact`, no indexing), which turns them into NEON on aarch64 and AVX on x86_64. The
//! forward pass's bias and ReLU run inside the product, tile by tile, on the thread that
//! computed the tile, and so does the backward pass's ReLU gradient; the bias gradient runs on
//! the calling thread: splitting it over the pool was measured to gain nothing at these sizes.

use crate::gemm::{run_pair, Epilogue, Operand, Product};

/// `y = x · wᵀ + b`, then `y = max(y, 0)` when `relu` (both applied inside the product).
///
/// `y` (B, O), `x` (B, I), `w` (O, I), `b` (O).
pub fn linear_forward(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: &[f32],
    (bsz, i, o): (usize, usize, usize),
    relu: bool,
) {
    let x_wt = Product::new((bsz, o, i), Operand::stored(x), Operand::transposed(w), y);
    x_wt.then(Epilogue::Bias { bias: b, relu }).run();
}

/// The input gradient a [`linear_backward`] call computes, if any.
pub enum InputGrad<'a> {
    /// None: the first layer's input gradient is never needed, and skipping it saves a product.
    Skip,
    /// `dx = dy · w`, `dx` (B, I).
    Plain(&'a mut [f32]),
    /// `dx = dy · w` passed back through the ReLU whose output is the layer's input `x`
    /// ([`gemm::relu_grad`](crate::gemm::relu_grad), applied inside the product, tile by
    /// tile), `dx` (B, I).
    ThroughRelu(&'a mut [f32]),
}

/// Gradients of [`linear_forward`] given `dy = ∂L/∂y`: `dw = dyᵀ · x`, `db = Σ_rows dy`, and
/// the input gradient `dx` that `dx` asks for.
///
/// `dw` (O, I), `db` (O), `dy` (B, O), `x` (B, I), `w` (O, I).
pub fn linear_backward(
    dx: InputGrad<'_>,
    dw: &mut [f32],
    db: &mut [f32],
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    (bsz, i, o): (usize, usize, usize),
) {
    // dw = dyᵀ · x: (O, I) from (B, O)ᵀ and (B, I).
    let dw_product = Product::new((o, i, bsz), Operand::transposed(dy), Operand::stored(x), dw);
    // dx = dy · w: (B, I) from (B, O) and (O, I).
    let dx_product = |dx| Product::new((bsz, i, o), Operand::stored(dy), Operand::stored(w), dx);
    // The two products are independent: one job of the pool for both.
    match dx {
        InputGrad::Skip => dw_product.run(),
        InputGrad::Plain(dx) => run_pair(dw_product, dx_product(dx)),
        InputGrad::ThroughRelu(dx) => {
            let through_relu = Epilogue::ReluGrad { mask: x };
            run_pair(dw_product, dx_product(dx).then(through_relu))
        }
    }
    db.fill(0.0);
    for row in dy.chunks_exact(o) {
        for (g, &d) in db.iter_mut().zip(row) {
            *g += d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::{bias_relu, relu_grad};
    use crate::rng::Rng;

    fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.normal() as f32).collect()
    }

    /// L = Σ y ⊙ r for a fixed random r, so ∂L/∂y = r: checks each gradient of a layer by
    /// central differences.
    #[test]
    fn linear_gradients_match_finite_differences() {
        let (bsz, i, o) = (3, 5, 4);
        let mut rng = Rng::new(11);
        // p = [x (B, I), w (O, I), b (O)]; L = Σ y ⊙ r for a fixed random r, so ∂L/∂y = r.
        let mut p = [
            random(bsz * i, &mut rng),
            random(o * i, &mut rng),
            random(o, &mut rng),
        ];
        let r = random(bsz * o, &mut rng);
        let loss = |p: &[Vec<f32>; 3]| {
            let mut y = vec![0.0; bsz * o];
            linear_forward(&mut y, &p[0], &p[1], &p[2], (bsz, i, o), false);
            y.iter().zip(&r).map(|(a, b)| f64::from(a * b)).sum::<f64>()
        };
        let mut grads = [vec![0.0; bsz * i], vec![0.0; o * i], vec![0.0; o]];
        {
            let [dx, dw, db] = &mut grads;
            linear_backward(InputGrad::Plain(dx), dw, db, &r, &p[0], &p[1], (bsz, i, o));
        }
        let h = 1e-2;
        for (which, analytic) in grads.iter().enumerate() {
            for (k, &g) in analytic.iter().enumerate() {
                let orig = p[which][k];
                p[which][k] = orig + h;
                let up = loss(&p);
                p[which][k] = orig - h;
                let down = loss(&p);
                p[which][k] = orig;
                let numeric = (up - down) / (2.0 * f64::from(h));
                assert!(
                    (numeric - f64::from(g)).abs() < 1e-3,
                    "param {which}[{k}]: {numeric} vs {g}"
                );
            }
        }
    }

    #[test]
    fn relu_gradient_matches_finite_differences() {
        let mut rng = Rng::new(12);
        let x = random(20, &mut rng);
        let r = random(20, &mut rng);
        let mut y = x.clone();
        bias_relu(&mut y, &[0.0; 20], true);
        let mut d = r.clone();
        relu_grad(&mut d, &y);
        let h = 1e-3;
        for k in 0..x.len() {
            let f = |v: f32| if v < 0.0 { 0.0 } else { v };
            let numeric = (f(x[k] + h) - f(x[k] - h)) / (2.0 * h) * r[k];
            if x[k].abs() > h {
                assert!((numeric - d[k]).abs() < 1e-3, "{k}: {numeric} vs {}", d[k]);
            }
        }
        assert!(y.iter().all(|&v| v >= 0.0));
        let mut nan = [f32::NAN, -1.0];
        bias_relu(&mut nan, &[0.0; 2], true);
        assert!(nan[0].is_nan() && nan[1] == 0.0);
    }
}
