//! Fixed-point arithmetic exactly as TensorFlow Lite's reference kernels compute it: the
//! requantization of an int32 accumulator by a Q0.31 multiplier and a power-of-two shift
//! (`QuantizeMultiplier`, `SaturatingRoundingDoublingHighMul`, `RoundingDivideByPOT`,
//! `MultiplyByQuantizedMultiplier`) and the few gemmlowp `FixedPoint` functions its int8
//! softmax uses (`exp_on_negative_values`, `one_over_one_plus_x_for_x_in_0_1`).
//!
//! Written from the published definitions (TFLite's `kernels/internal/common.h` and
//! `quantization_util.cc`, gemmlowp's `fixedpoint.h`), in the double-rounding variant LiteRT's
//! pip wheels are built with (no `TFLITE_SINGLE_ROUNDING`). Every function is on `i32`/`i64`
//! with the C++ semantics spelt out: `/` truncates toward zero in both languages, `>>` on a
//! signed integer is arithmetic in both. Nothing here allocates or panics on any input.

/// The `(multiplier, shift)` pair that represents the real number `m` as `multiplier · 2^shift
/// / 2^31`, with `multiplier` in `[2^30, 2^31)` (TFLite's `QuantizeMultiplier`): `frexp`, then
/// the fraction rounded half away from zero to 31 bits. Zero (and anything too small to
/// represent, shift below -31) gives `(0, 0)`.
pub fn quantize_multiplier(m: f64) -> (i32, i32) {
    if m == 0.0 || !m.is_finite() {
        return (0, 0);
    }
    let (q, mut shift) = frexp(m);
    let mut fixed = (q * (1u64 << 31) as f64).round() as i64;
    if fixed == 1 << 31 {
        fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    // The single-rounding multiply takes shifts up to 30: saturate larger ones.
    if shift > 30 {
        return (i32::MAX, 30);
    }
    (fixed as i32, shift)
}

/// `x = q · 2^e` with `0.5 <= |q| < 1` (C's `frexp`) for a finite non-zero `x`.
fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale into the normal range first.
        let (q, e) = frexp(x * f64::from_bits(0x4350_0000_0000_0000)); // 2^54
        return (q, e - 54);
    }
    let q = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (q, exp - 1022)
}

/// The high 32 bits of `2·a·b`, rounded to nearest (ties away from zero), saturated at the one
/// overflowing case `a = b = i32::MIN` (gemmlowp's `SaturatingRoundingDoublingHighMul`).
#[inline]
pub fn srdhm(a: i32, b: i32) -> i32 {
    if a == b && a == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `x / 2^exponent` rounded to nearest, ties away from zero (`RoundingDivideByPOT`);
/// `exponent` in `0..=31`.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// `x · multiplier · 2^shift / 2^31` rounded to nearest, ties up, in one 64-bit step: TFLite's
/// `MultiplyByQuantizedMultiplier` as LiteRT's wheels build it (`TFLITE_SINGLE_ROUNDING`;
/// the two-step variant, a doubling high multiply then a rounding shift, differs from it by
/// one in about 1 output in 5,000 and was measured against LiteRT 2.3 to be the wrong one).
/// `shift` is in `-31..=30`, as [`quantize_multiplier`] gives it.
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let total_shift = 31 - shift;
    let round = 1i64 << (total_shift - 1);
    let result = (i64::from(x) * i64::from(multiplier) + round) >> total_shift;
    result.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// gemmlowp's `SaturatingRoundingMultiplyByPOT<exponent>` on a raw value: a saturating left
/// shift for a positive `exponent`, a rounding right shift for a negative one.
#[inline]
fn saturating_rounding_multiply_by_pot(x: i32, exponent: i32) -> i32 {
    match exponent {
        0 => x,
        e if e > 0 => {
            let threshold = (1i32 << (31 - e)) - 1;
            if x > threshold {
                i32::MAX
            } else if x < -threshold {
                i32::MIN
            } else {
                x << e
            }
        }
        e => rounding_divide_by_pot(x, -e),
    }
}

/// gemmlowp's `Rescale`: a raw fixed-point value with `from` integer bits re-expressed with
/// `to` integer bits.
#[inline]
pub fn rescale(x: i32, from: i32, to: i32) -> i32 {
    saturating_rounding_multiply_by_pot(x, from - to)
}

/// `exp(a)` for `a` in `[-1/4, 0)`, both Q0.31 (gemmlowp's
/// `exp_on_interval_between_negative_one_quarter_and_0_excl`): a Taylor expansion around -1/8.
fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    const EXP_MINUS_ONE_EIGHTH: i32 = 1_895_147_668; // exp(-1/8) in Q0.31
    const ONE_THIRD: i32 = 715_827_883; // 1/3 in Q0.31
    let x = a.wrapping_add(1 << 28); // a + 1/8
    let x2 = srdhm(x, x);
    let x3 = srdhm(x2, x);
    let x4 = srdhm(x2, x2);
    let x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2);
    let poly = saturating_rounding_multiply_by_pot(
        srdhm(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2),
        -1,
    );
    EXP_MINUS_ONE_EIGHTH.wrapping_add(srdhm(EXP_MINUS_ONE_EIGHTH, x.wrapping_add(poly)))
}

/// `exp(a)` for `a <= 0` given with `integer_bits` integer bits, as Q0.31 (gemmlowp's
/// `exp_on_negative_values`): the exponential of `a mod 1/4` times the constants `exp(-2^k)`
/// selected by the bits of the rest.
pub fn exp_on_negative_values(a: i32, integer_bits: i32) -> i32 {
    let fractional_bits = 31 - integer_bits;
    let one_quarter = 1i32 << (fractional_bits - 2);
    let mask = one_quarter - 1;
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(rescale(
        a_mod_quarter_minus_one_quarter,
        integer_bits,
        0,
    ));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    // exp(-2^k) in Q0.31 for k = -2..=4.
    const BARREL: [(i32, i32); 7] = [
        (-2, 1_672_461_947),
        (-1, 1_302_514_674),
        (0, 790_015_084),
        (1, 290_630_308),
        (2, 39_332_535),
        (3, 720_401),
        (4, 242),
    ];
    for (exponent, multiplier) in BARREL {
        if integer_bits > exponent {
            let bit = fractional_bits + exponent;
            if remainder & (1 << bit) != 0 {
                result = srdhm(result, multiplier);
            }
        }
    }
    if integer_bits > 5 {
        let clamp = -(1i32 << (36 - integer_bits)); // -32
        if a < clamp {
            result = 0;
        }
    }
    if a == 0 {
        result = i32::MAX;
    }
    result
}

/// gemmlowp's `RoundingHalfSum`: `(a + b) / 2` rounded away from zero.
fn rounding_half_sum(a: i32, b: i32) -> i32 {
    let sum = i64::from(a) + i64::from(b);
    let sign = if sum >= 0 { 1 } else { -1 };
    ((sum + sign) / 2) as i32
}

/// `1 / (1 + x)` for `x` in `[0, 1)`, Q0.31 in and out (gemmlowp's
/// `one_over_one_plus_x_for_x_in_0_1`): three Newton-Raphson steps in Q2.29.
fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    const FORTY_EIGHT_OVER_SEVENTEEN: i32 = 1_515_870_810; // Q2.29
    const MINUS_THIRTY_TWO_OVER_SEVENTEEN: i32 = -1_010_580_540; // Q2.29
    const ONE_Q2_29: i32 = 1 << 29;
    let half_denominator = rounding_half_sum(a, i32::MAX);
    let mut x = FORTY_EIGHT_OVER_SEVENTEEN
        .wrapping_add(srdhm(half_denominator, MINUS_THIRTY_TWO_OVER_SEVENTEEN));
    for _ in 0..3 {
        let half_denominator_times_x = srdhm(half_denominator, x);
        let one_minus = ONE_Q2_29.wrapping_sub(half_denominator_times_x);
        x = x.wrapping_add(rescale(srdhm(x, one_minus), 4, 2));
    }
    // x / 2, then from Q1.30 to Q0.31.
    rescale(x, 1, 0)
}

/// TFLite's `GetReciprocal`: `1 / x` for a positive `x` with `integer_bits` integer bits, as
/// a Q0.31 value and the number of bits `x` had above 1.0 (the result is to be shifted right
/// by that many).
pub fn reciprocal(x: i32, integer_bits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros() as i32;
    let num_bits_over_unit = integer_bits - headroom_plus_one;
    let shifted_sum_minus_one =
        ((x as u32).wrapping_shl(headroom_plus_one as u32)).wrapping_sub(1 << 31) as i32;
    (
        one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one),
        num_bits_over_unit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q31(x: i32) -> f64 {
        f64::from(x) / 2f64.powi(31)
    }

    #[test]
    fn multipliers_decompose_like_frexp() {
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.75), (3 << 29, 0));
        // 1 - 2^-40 rounds up to 2^31, which is halved with the shift bumped.
        assert_eq!(quantize_multiplier(1.0 - 2f64.powi(-40)), (1 << 30, 1));
        assert_eq!(quantize_multiplier(1e-12), (0, 0));
        for m in [0.0013_f64, 0.3, 0.999, 3.7, 1234.5] {
            let (q, s) = quantize_multiplier(m);
            assert!((q31(q) * 2f64.powi(s) - m).abs() <= m * 1e-9, "{m}");
        }
    }

    #[test]
    fn rounding_shifts_round_half_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
        assert_eq!(srdhm(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(srdhm(1 << 30, 1 << 30), 1 << 29);
        assert_eq!(multiply_by_quantized_multiplier(1000, 1 << 30, -1), 250);
        assert_eq!(multiply_by_quantized_multiplier(-1000, 1 << 30, 2), -2000);
        // Ties go up (toward +infinity), not away from zero.
        assert_eq!(multiply_by_quantized_multiplier(5, 1 << 30, -1), 1); // 1.25
        assert_eq!(multiply_by_quantized_multiplier(6, 1 << 30, -1), 2); // 1.5
        assert_eq!(multiply_by_quantized_multiplier(-6, 1 << 30, -1), -1); // -1.5
    }

    #[test]
    fn exp_and_reciprocal_are_accurate() {
        for i in 0..200 {
            let x = -f64::from(i) * 0.08; // down to -16
            let raw = (x * f64::from(1 << 26)).round() as i32; // Q5.26
            let got = q31(exp_on_negative_values(raw, 5));
            assert!((got - x.exp()).abs() < 1e-6, "exp({x}) = {got}");
        }
        for v in [1.0f64, 1.5, 2.0, 3.3, 10.0, 100.0] {
            let raw = (v * f64::from(1 << 19)).round() as i32; // Q12.19
            let (r, bits) = reciprocal(raw, 12);
            let got = q31(r) / 2f64.powi(bits);
            assert!((got - 1.0 / v).abs() < 1e-6 / v, "1/{v} = {got}");
        }
    }
}
