//! Post-training quantization of a float network: weights to symmetric int8 (per tensor or
//! per output row), biases to int32, and each layer's output range measured on calibration
//! images and mapped to asymmetric int8.
//!
//! The ranges are the plain minimum and maximum of each layer's output (after its ReLU) over
//! the calibration images, widened to include 0 so that 0 is exactly representable, as
//! TFLite's converter requires: `scale = (max - min) / 255`, `zero_point = round(-128 -
//! min / scale)`. Weights use `[-127, 127]` (TFLite's symmetric range), `scale = max|w| / 127`.

use super::model::{QLayer, QModel, WeightScales, INPUT_SCALE};
use crate::data::{to_unit_f32, Dataset};
use crate::error::{Error, Result};
use crate::layers::linear_forward;
use crate::model::{Arch, Mlp, EVAL_BATCH};

/// Calibration images used when none are asked for: enough to see each layer's range on
/// MNIST (more changes the scales by well under 1%), few enough to take a fraction of a
/// second on the board.
pub const DEFAULT_CALIBRATION: usize = 1000;

/// Quantizes `model`, measuring activation ranges on the first `n` images of `calibration`.
pub fn quantize(
    model: &Mlp,
    calibration: &Dataset,
    n: usize,
    scales: WeightScales,
) -> Result<QModel> {
    if n == 0 {
        return Err(Error::config("calibration needs at least one image"));
    }
    if let Some(i) = model.params().iter().position(|v| !v.is_finite()) {
        return Err(Error::config(format!(
            "cannot quantize a model that is not finite: parameter {i} is {}",
            model.params()[i]
        )));
    }
    let layout = model.layout();
    calibration.expect_pixels(layout.input())?;
    let n = n.min(calibration.len());
    let ranges = activation_ranges(model, calibration, n);
    let mut layers = Vec::with_capacity(layout.layers());
    let mut in_scale = INPUT_SCALE;
    for (l, &(lo, hi)) in ranges.iter().enumerate() {
        let (i, o) = layout.dims(l);
        let (w, b) = layout.split(model.params(), l);
        let (output_scale, output_zero_point) = activation_params(lo, hi);
        let weight_scale: Vec<f32> = match scales {
            WeightScales::PerTensor => vec![symmetric_scale(w)],
            WeightScales::PerChannel => w.chunks_exact(i).map(symmetric_scale).collect(),
        };
        let weight = w
            .chunks_exact(i)
            .enumerate()
            .flat_map(|(r, row)| {
                let s = weight_scale[if weight_scale.len() == 1 { 0 } else { r }];
                row.iter()
                    .map(move |&v| (f64::from(v) / f64::from(s)).round().clamp(-127.0, 127.0) as i8)
            })
            .collect();
        let bias = b
            .iter()
            .enumerate()
            .map(|(r, &v)| {
                let s = weight_scale[if weight_scale.len() == 1 { 0 } else { r }];
                let bias_scale = f64::from(in_scale) * f64::from(s);
                (f64::from(v) / bias_scale)
                    .round()
                    .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
            })
            .collect();
        layers.push(QLayer {
            inputs: i,
            outputs: o,
            weight,
            weight_scale,
            bias,
            output_scale,
            output_zero_point,
            relu: model.arch() == Arch::Relu && l + 1 < layout.layers(),
        });
        in_scale = output_scale;
    }
    QModel::new(model.arch(), scales, layers)
}

/// `max|w| / 127`, or 1 for an all-zero tensor (any scale represents it).
fn symmetric_scale(w: &[f32]) -> f32 {
    let m = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    if m > 0.0 {
        (f64::from(m) / 127.0) as f32
    } else {
        1.0
    }
}

/// Scale and zero point of int8 values covering `[lo, hi]` widened to include 0.
fn activation_params(lo: f32, hi: f32) -> (f32, i32) {
    let (lo, hi) = (f64::from(lo.min(0.0)), f64::from(hi.max(0.0)));
    // A layer that is constantly 0 still needs a positive scale.
    let range = (hi - lo).max(1e-6);
    let scale = (range / 255.0) as f32;
    let zp = (-128.0 - lo / f64::from(scale))
        .round()
        .clamp(-128.0, 127.0) as i32;
    (scale, zp)
}

/// The minimum and maximum of every layer's output over the first `n` images of `ds`.
fn activation_ranges(model: &Mlp, ds: &Dataset, n: usize) -> Vec<(f32, f32)> {
    let layout = model.layout();
    let sizes = layout.sizes();
    let rows = EVAL_BATCH.min(n);
    let mut acts: Vec<Vec<f32>> = sizes.iter().map(|&s| vec![0.0; rows * s]).collect();
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); layout.layers()];
    let images = ds.images();
    let last = layout.layers() - 1;
    let mut start = 0;
    while start < n {
        let bsz = rows.min(n - start);
        for (r, x) in acts[0].chunks_exact_mut(sizes[0]).take(bsz).enumerate() {
            to_unit_f32(x, images.image(start + r));
        }
        for (l, range) in ranges.iter_mut().enumerate() {
            let (i, o) = layout.dims(l);
            let (w, b) = layout.split(model.params(), l);
            let (lower, upper) = acts.split_at_mut(l + 1);
            let relu = model.arch() == Arch::Relu && l < last;
            let y = &mut upper[0][..bsz * o];
            linear_forward(y, &lower[l][..bsz * i], w, b, (bsz, i, o), relu);
            for &v in y.iter() {
                range.0 = range.0.min(v);
                range.1 = range.1.max(v);
            }
        }
        start += bsz;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_ranges_include_zero_and_map_it_exactly() {
        let (s, z) = activation_params(0.0, 2.55);
        assert!((s - 0.01).abs() < 1e-7 && z == -128);
        let (s, z) = activation_params(-1.28, 1.27);
        assert!((s - 0.01).abs() < 1e-7);
        assert_eq!(z, 0);
        let (s, z) = activation_params(0.5, 0.7); // widened to [0, 0.7]
        assert!((s - 0.7 / 255.0).abs() < 1e-7 && z == -128);
        let (s, _) = activation_params(0.0, 0.0);
        assert!(s > 0.0);
        assert_eq!(
            symmetric_scale(&[0.0, -2.54, 1.0]),
            (2.54f64 / 127.0) as f32
        );
        assert_eq!(symmetric_scale(&[0.0]), 1.0);
    }
}
