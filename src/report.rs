//! The tutorial's output lines, formatted as its Python `print` calls wrote them.
//!
//! `print("Iteration", str(i), "\t| Loss =", str(loss), "\t| Accuracy =", str(acc))` joins its
//! arguments with spaces, hence the space before each tab. Loss and batch accuracy are printed
//! with at most 6 significant digits (`%g`, trailing zeros dropped); the test accuracy in its
//! shortest round-trip form. Whole numbers keep the `.0` Python's `str` gives them (`1.0`, not
//! `1`); a value merely rounded to a whole number by `%g` does not (`123457`).

use std::fmt;

/// One progress line: loss and accuracy of the current mini-batch after the update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogLine {
    /// 0-based iteration.
    pub iteration: usize,
    /// Mean softmax cross-entropy over the batch.
    pub loss: f32,
    /// Fraction of the batch classified right.
    pub accuracy: f32,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Iteration {} \t| Loss = {} \t| Accuracy = {}",
            self.iteration,
            format_g6(self.loss),
            format_g6(self.accuracy)
        )
    }
}

/// The final line: accuracy over a whole test set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestAccuracy {
    /// Examples classified right.
    pub correct: usize,
    /// Examples in the set.
    pub total: usize,
}

impl TestAccuracy {
    /// `correct / total` as `f32` (what TensorFlow's `reduce_mean` returns).
    pub fn value(&self) -> f32 {
        self.correct as f32 / self.total as f32
    }
}

impl fmt::Display for TestAccuracy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Accuracy on test set: {}",
            python_float(self.value().to_string())
        )
    }
}

/// How a model classified a labelled set: `counts[true][predicted]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    /// Examples of each true class (row) given each predicted class (column).
    pub counts: [[usize; crate::data::CLASSES]; crate::data::CLASSES],
}

impl Confusion {
    /// Counts `predicted` against `labels`, pairwise (labels are below [`crate::data::CLASSES`],
    /// as a [`crate::data::Dataset`] guarantees).
    pub fn new(predicted: &[u8], labels: &[u8]) -> Self {
        let mut counts = [[0; crate::data::CLASSES]; crate::data::CLASSES];
        for (&p, &t) in predicted.iter().zip(labels) {
            counts[usize::from(t)][usize::from(p)] += 1;
        }
        Confusion { counts }
    }

    /// The diagonal over the whole: the test accuracy.
    pub fn accuracy(&self) -> TestAccuracy {
        TestAccuracy {
            correct: (0..self.counts.len()).map(|c| self.counts[c][c]).sum(),
            total: self.counts.iter().flatten().sum(),
        }
    }

    /// For each class: (right, examples of that class).
    pub fn per_class(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .map(|(c, row)| (row[c], row.iter().sum()))
    }
}

/// `x` as C's `%g` with 6 significant digits (Python's `'%g' % x`), plus `.0` when `x` is a
/// whole number.
pub fn format_g6(x: f32) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if x == 0.0 {
        return python_float(if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        });
    }
    // Round to 6 significant digits first: the exponent after rounding decides the style.
    let sci = format!("{:.5e}", f64::from(x));
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    if (-4..6).contains(&exp) {
        let decimals = (5 - exp).max(0) as usize;
        let fixed = strip_zeros(format!("{:.*}", decimals, f64::from(x)));
        if x.fract() == 0.0 {
            python_float(fixed)
        } else {
            fixed
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!(
            "{}e{}{:02}",
            strip_zeros(mantissa.to_string()),
            sign,
            exp.abs()
        )
    }
}

fn strip_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn python_float(s: String) -> String {
    if s.contains(['.', 'e', 'n', 'i']) {
        s
    } else {
        s + ".0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_g_like_python() {
        // Expected values from Python: '%g' % x (plus '.0' where Python's str adds it).
        let cases: [(f32, &str); 12] = [
            (3.670_786_6, "3.67079"),
            (0.140_625, "0.140625"),
            (0.843_75, "0.84375"),
            (0.492_122_3, "0.492122"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (12.5, "12.5"),
            (999_999.5, "1e+06"),
            (123_456.7, "123457"),
            (0.000_123_456_7, "0.000123457"),
            (0.000_012_345, "1.2345e-05"),
            (2.5e10, "2.5e+10"),
        ];
        for (x, want) in cases {
            assert_eq!(format_g6(x), want, "{x}");
        }
        assert_eq!(format_g6(f32::NAN), "nan");
        assert_eq!(format_g6(0.0), "0.0");
    }

    #[test]
    fn lines_have_the_tutorial_layout() {
        let line = LogLine {
            iteration: 100,
            loss: 0.492_122,
            accuracy: 0.843_75,
        };
        assert_eq!(
            line.to_string(),
            "Iteration 100 \t| Loss = 0.492122 \t| Accuracy = 0.84375"
        );
        let acc = TestAccuracy {
            correct: 9206,
            total: 10000,
        };
        assert_eq!(acc.to_string(), "Accuracy on test set: 0.9206");
        assert_eq!(
            TestAccuracy {
                correct: 7,
                total: 7
            }
            .to_string(),
            "Accuracy on test set: 1.0"
        );
    }
}
