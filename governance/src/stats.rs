//! Small statistics shared by the components: Welford's running moments and
//! the Student-t interval half-width, with a portable t quantile
//! (`student_t`).

use std::cell::RefCell;
use std::collections::BTreeMap;

mod student_t;

/// Running count, mean and sum of squared deviations of a stream.
///
/// Reference: Welford (1962), "Note on a method for calculating corrected
/// sums of squares and products"; docs/governance.md, "Domain learner".
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Welford {
    count: u64,
    mean: f64,
    m2: f64,
}

impl Welford {
    /// The moments of `values`.
    pub(crate) fn of<'a>(values: impl IntoIterator<Item = &'a f64>) -> Self {
        let mut welford = Welford::default();
        values.into_iter().for_each(|&value| welford.push(value));
        welford
    }

    /// Adds one value: n ← n + 1, δ = x − mean, mean ← mean + δ/n,
    /// M2 ← M2 + δ·(x − mean).
    #[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
    pub(crate) fn push(&mut self, value: f64) {
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn mean(&self) -> f64 {
        self.mean
    }

    /// Half-width of the two-sided `level` t-interval of the mean:
    /// t_{(1+level)/2, n−1} · s / √n with s² = M2/(n − 1). `None` below two
    /// values.
    ///
    /// Reference: Student (1908); the quantile is `student_t::quantile`,
    /// built on `libm` only (docs/governance.md, "Determinism").
    #[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
    pub(crate) fn t_half_width(&self, level: f64) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let std_dev = (self.m2 / (n - 1.0)).max(0.0).sqrt();
        Some(t_quantile(self.count - 1, (1.0 + level) / 2.0) * std_dev / n.sqrt())
    }
}

/// Degrees of freedom up to which quantiles are memoized (the integrative
/// layer's band never exceeds `ci_window − 1`).
const MEMO_DF_MAX: u64 = 4096;

thread_local! {
    /// Memo of `t_quantile`: a pure function, so the memo changes no result,
    /// only how often the iterative quantile runs. Keyed by (degrees of
    /// freedom, probability bits).
    static T_QUANTILES: RefCell<BTreeMap<(u64, u64), f64>> = const { RefCell::new(BTreeMap::new()) };
}

/// The `p` quantile of Student's t with `df` ≥ 1 degrees of freedom.
fn t_quantile(df: u64, p: f64) -> f64 {
    let compute = || student_t::quantile(df, p);
    if df > MEMO_DF_MAX {
        return compute();
    }
    T_QUANTILES.with(|memo| *memo.borrow_mut().entry((df, p.to_bits())).or_insert_with(compute))
}

/// Median of finite values (mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "the median of nothing");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_matches_the_two_pass_moments() {
        let welford = Welford::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!((welford.count(), welford.mean()), (8, 5.0));
        // s² = 32/7; t_{0.975, 7} = 2.364624…
        let expected = 2.364_624_251_6 * (32.0_f64 / 7.0).sqrt() / 8.0_f64.sqrt();
        let half_width = welford.t_half_width(0.95).expect("8 values");
        assert!((half_width - expected).abs() < 1e-8, "{half_width} vs {expected}");
        assert_eq!(Welford::of(&[1.0]).t_half_width(0.95), None);
    }

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
