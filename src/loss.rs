//! Softmax cross-entropy averaged over the batch, its gradient, and batch accuracy.
//!
//! `L = (1/B) Σ_b [ log Σ_c exp(z_bc) − z_b,y_b ]`, computed with the row maximum subtracted
//! so that logits of any magnitude give a finite loss; `∂L/∂z = (softmax(z) − onehot(y)) / B`.
//! Accuracy counts rows whose first largest logit is the label (TensorFlow's `argmax`).

/// Loss and gradient of a batch. `dz` (B, C) receives `∂L/∂z`; `z` (B, C) are the logits and
/// `labels` (B) the classes. Returns the mean loss and the number of rows classified right.
pub fn softmax_cross_entropy(
    dz: &mut [f32],
    z: &[f32],
    labels: &[u8],
    classes: usize,
) -> (f32, usize) {
    assert_eq!(z.len(), labels.len() * classes);
    assert_eq!(dz.len(), z.len());
    let inv_b = 1.0 / labels.len() as f32;
    let mut loss = 0.0f32;
    let mut correct = 0;
    for ((row, drow), &label) in z
        .chunks_exact(classes)
        .zip(dz.chunks_exact_mut(classes))
        .zip(labels)
    {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0f32;
        for (d, &v) in drow.iter_mut().zip(row) {
            let e = (v - max).exp();
            *d = e;
            sum += e;
        }
        let label = usize::from(label);
        loss += max + sum.ln() - row[label];
        let scale = inv_b / sum;
        for d in drow.iter_mut() {
            *d *= scale;
        }
        drow[label] -= inv_b;
        correct += usize::from(argmax(row) == label);
    }
    (loss * inv_b, correct)
}

/// Index of the first largest value (0 for an empty or all-NaN row).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// `softmax(z)` of one row of logits, computed stably.
pub fn softmax(z: &[f32]) -> Vec<f32> {
    let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let e: Vec<f32> = z.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// Rows of `z` (B, C) whose argmax equals the label.
pub fn count_correct(z: &[f32], labels: &[u8], classes: usize) -> usize {
    z.chunks_exact(classes)
        .zip(labels)
        .filter(|(row, &l)| argmax(row) == usize::from(l))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss_only(z: &[f32], labels: &[u8], c: usize) -> f64 {
        let mut dz = vec![0.0; z.len()];
        f64::from(softmax_cross_entropy(&mut dz, z, labels, c).0)
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let c = 4;
        let mut z = vec![
            0.3, -1.2, 2.0, 0.1, 1.5, 1.4, -0.7, 0.0, -2.0, 0.5, 0.25, 3.0,
        ];
        let labels = [2, 0, 1];
        let mut dz = vec![0.0; z.len()];
        let (loss, correct) = softmax_cross_entropy(&mut dz, &z, &labels, c);
        assert_eq!(correct, 2);
        assert!(loss > 0.0);
        let h = 1e-2;
        for k in 0..z.len() {
            let orig = z[k];
            z[k] = orig + h;
            let up = loss_only(&z, &labels, c);
            z[k] = orig - h;
            let down = loss_only(&z, &labels, c);
            z[k] = orig;
            let numeric = (up - down) / (2.0 * f64::from(h));
            assert!(
                (numeric - f64::from(dz[k])).abs() < 1e-3,
                "{k}: {numeric} vs {}",
                dz[k]
            );
        }
        // Each row of the gradient sums to zero: softmax sums to one, so does the one-hot.
        for row in dz.chunks_exact(c) {
            assert!(row.iter().sum::<f32>().abs() < 1e-6);
        }
    }

    #[test]
    fn huge_logits_stay_finite() {
        let z = [1e4, -1e4, 0.0, -1e4, 1e4, 5.0];
        let mut dz = [0.0; 6];
        let (loss, correct) = softmax_cross_entropy(&mut dz, &z, &[1, 1], 3);
        assert!(loss.is_finite(), "{loss}");
        // Row 0 puts all mass on class 0 but the label is 1: loss 2e4 / 2 rows; row 1 is ~0.
        assert!((loss - 1e4).abs() < 1.0, "{loss}");
        assert!(dz.iter().all(|d| d.is_finite()));
        assert_eq!(correct, 1);
    }

    #[test]
    fn known_value_uniform_logits() {
        let z = [0.0; 10];
        let mut dz = [0.0; 10];
        let (loss, _) = softmax_cross_entropy(&mut dz, &z, &[3], 10);
        assert!((loss - 10f32.ln()).abs() < 1e-6);
        assert!((dz[3] - (0.1 - 1.0)).abs() < 1e-6 && (dz[0] - 0.1).abs() < 1e-6);
    }

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(count_correct(&[0.0, 1.0, 1.0, 0.0], &[1, 1], 2), 1);
    }

    #[test]
    fn count_correct_counts_every_row_whose_argmax_is_the_label() {
        // (4, 3): rows pick classes 2, 0, 1, 2; the labels match rows 0, 1 and 3.
        let z = [
            0.1, 0.2, 0.9, //
            5.0, -1.0, 0.0, //
            0.0, 0.5, 0.25, //
            -3.0, -2.0, -1.0,
        ];
        assert_eq!(count_correct(&z, &[2, 0, 2, 2], 3), 3);
        assert_eq!(count_correct(&z, &[2, 0, 1, 2], 3), 4);
        assert_eq!(count_correct(&z, &[0, 1, 0, 0], 3), 0);
    }

    /// `exp(z_c) / Σ exp(z)` against f64 on a row of mixed signs: one probability per logit,
    /// in the logits' order, summing to 1.
    #[test]
    fn softmax_is_exp_over_the_sum_of_exps() {
        let z = [1.0f32, 2.0, -0.5, 0.0, -3.0];
        let p = softmax(&z);
        assert_eq!(p.len(), z.len());
        let sum: f64 = z.iter().map(|&v| f64::from(v).exp()).sum();
        for (c, (&p, &v)) in p.iter().zip(&z).enumerate() {
            let want = f64::from(v).exp() / sum;
            assert!(
                (f64::from(p) - want).abs() < 1e-6,
                "class {c}: {p} vs {want}"
            );
        }
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    /// Logits far past `exp`'s range (e^100 overflows f32) give the probabilities of their
    /// differences: the row maximum is subtracted first.
    #[test]
    fn softmax_of_huge_logits_is_that_of_their_differences() {
        let p = softmax(&[100.0, 101.0, 90.0]);
        let q = softmax(&[0.0, 1.0, -10.0]);
        assert!(p.iter().all(|v| v.is_finite()), "{p:?}");
        for (a, b) in p.iter().zip(&q) {
            assert!((a - b).abs() < 1e-6, "{p:?} vs {q:?}");
        }
        // 1 / (1 + e + e^-10) and e / (1 + e + e^-10).
        assert!(
            (q[0] - 0.268_938).abs() < 1e-5 && (q[1] - 0.731_050).abs() < 1e-5,
            "{q:?}"
        );
    }
}
