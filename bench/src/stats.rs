//! Small statistics over measured samples: medians, maxima, ratios.
//!
//! Pure functions on plain numbers; no clocks and no I/O, so they are unit-tested exactly.

/// The median of `values` (mean of the middle two for an even count); `None` when empty or when a
/// value is NaN.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    if v.is_empty() || v.iter().any(|x| x.is_nan()) {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

/// The largest value; `None` when empty.
pub fn max(values: &[f64]) -> Option<f64> {
    values.iter().copied().reduce(f64::max)
}

/// `a / b`, or `None` when `b` is not a positive number.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn max_and_ratio() {
        assert_eq!(max(&[1.0, 9.0, 3.0]), Some(9.0));
        assert_eq!(max(&[]), None);
        assert_eq!(ratio(9.0, 10.0), Some(0.9));
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
