//! Execution-quality statistics: estimates with 95 % confidence intervals, and paired
//! comparisons of two scenario batches (the same seeds, so the same plans and markets, under two
//! strategies), as `docs/benchmarks.md` prints them.
//!
//! Invariants: the normal and order-statistic intervals contain their estimate (a bootstrap's
//! percentile interval need not); an empty sample or no resample gives NaN, never a panic; the
//! bootstrap is seeded, so the same samples give the same interval on every machine.

use std::collections::BTreeMap;

/// The normal quantile of a two-sided 95 % interval.
const Z95: f64 = 1.959_964;

/// An estimate and its 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// The interval's lower end.
    pub low: f64,
    /// The interval's upper end.
    pub high: f64,
}

impl Estimate {
    const NAN: Estimate = Estimate { value: f64::NAN, low: f64::NAN, high: f64::NAN };

    /// The interval lies wholly below zero.
    pub fn below_zero(&self) -> bool {
        self.high < 0.0
    }
}

#[allow(clippy::cast_precision_loss)]
fn len(values: &[f64]) -> f64 {
    values.len() as f64
}

/// The mean, with the normal interval `mean ± 1.96 · sd / √n`.
pub fn mean(values: &[f64]) -> Estimate {
    if values.is_empty() {
        return Estimate::NAN;
    }
    let n = len(values);
    let m = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return Estimate { value: m, low: m, high: m };
    }
    let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0);
    let half = Z95 * (var / n).sqrt();
    Estimate { value: m, low: m - half, high: m + half }
}

/// The `p`th percentile (nearest rank), with the distribution-free interval between the order
/// statistics at ranks `n·p ∓ 1.96·√(n·p·(1−p))`.
pub fn percentile(values: &[f64], p: f64) -> Estimate {
    if values.is_empty() {
        return Estimate::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = len(&sorted);
    let at = |rank: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = (rank.ceil().max(1.0) as usize).min(sorted.len()) - 1;
        sorted[i]
    };
    let spread = Z95 * (n * p * (1.0 - p)).sqrt();
    Estimate { value: at(n * p), low: at(n * p - spread), high: at(n * p + spread + 1.0) }
}

/// The values of `a` and `b` under the keys both hold, in key order.
fn pairs<K: Ord>(a: &BTreeMap<K, f64>, b: &BTreeMap<K, f64>) -> (Vec<f64>, Vec<f64>) {
    a.iter().filter_map(|(k, x)| b.get(k).map(|y| (*x, *y))).unzip()
}

/// The mean of `a − b` over the keys both hold (a paired difference).
pub fn paired_difference<K: Ord>(a: &BTreeMap<K, f64>, b: &BTreeMap<K, f64>) -> Estimate {
    let (left, right) = pairs(a, b);
    let differences: Vec<f64> = left.iter().zip(&right).map(|(l, r)| l - r).collect();
    mean(&differences)
}

/// The ratio of the means of `a` and `b` over the keys both hold, with the delta method's
/// interval (which accounts for their correlation).
pub fn paired_ratio<K: Ord>(a: &BTreeMap<K, f64>, b: &BTreeMap<K, f64>) -> Estimate {
    let (x, y) = pairs(a, b);
    ratio_of_means(&x, &y)
}

/// `Σx / Σy` of paired observations (requests over orders, run by run), with the delta method's
/// interval.
pub fn ratio_of_means(x: &[f64], y: &[f64]) -> Estimate {
    if x.len() != y.len() || x.len() < 2 {
        return Estimate::NAN;
    }
    let n = len(x);
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    if my == 0.0 {
        return Estimate::NAN;
    }
    let r = mx / my;
    // Var(r) ≈ Var(x − r·y) / (n · my²).
    let resid: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - r * b).collect();
    let mr = resid.iter().sum::<f64>() / n;
    let var = resid.iter().map(|v| (v - mr) * (v - mr)).sum::<f64>() / (n - 1.0);
    let half = Z95 * (var / n).sqrt() / my.abs();
    Estimate { value: r, low: r - half, high: r + half }
}

/// The difference of the `p`th percentiles of `a` and `b` over the keys both hold, with a
/// seeded paired bootstrap's percentile interval (`resamples` resamples of the pairs).
pub fn paired_percentile_difference<K: Ord>(
    a: &BTreeMap<K, f64>,
    b: &BTreeMap<K, f64>,
    p: f64,
    resamples: usize,
) -> Estimate {
    let (left, right) = pairs(a, b);
    if left.is_empty() || resamples == 0 {
        return Estimate::NAN;
    }
    let value = percentile(&left, p).value - percentile(&right, p).value;
    let mut rng = tranche_sim::Rng::new(0x9e37_79b9);
    let count = left.len() as u64;
    let mut differences = Vec::with_capacity(resamples);
    let (mut drawn_left, mut drawn_right) = (vec![0.0; left.len()], vec![0.0; right.len()]);
    for _ in 0..resamples {
        for slot in 0..left.len() {
            let pick = usize::try_from(rng.below(count)).unwrap_or(0);
            drawn_left[slot] = left[pick];
            drawn_right[slot] = right[pick];
        }
        differences.push(percentile(&drawn_left, p).value - percentile(&drawn_right, p).value);
    }
    differences.sort_by(f64::total_cmp);
    let at = |q: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let index = ((len(&differences) * q) as usize).min(differences.len() - 1);
        differences[index]
    };
    Estimate { value, low: at(0.025), high: at(0.975) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_mean_and_its_interval() {
        let e = mean(&[1.0, 2.0, 3.0, 4.0]);
        // sd = √(5/3); half = 1.96 · sd / 2.
        assert!(close(e.value, 2.5));
        assert!(close(e.high - e.value, Z95 * (5.0f64 / 3.0).sqrt() / 2.0));
        assert!(mean(&[]).value.is_nan());
        assert_eq!(mean(&[7.0]), Estimate { value: 7.0, low: 7.0, high: 7.0 });
    }

    #[test]
    fn percentiles_by_rank_with_order_statistic_intervals() {
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        let e = percentile(&values, 0.95);
        assert!(close(e.value, 950.0));
        // ±1.96·√(47.5) ≈ 13.5 ranks.
        assert!(e.low >= 935.0 && e.low < 950.0 && e.high > 950.0 && e.high <= 965.0, "{e:?}");
    }

    #[test]
    fn paired_comparisons_use_the_common_keys_only() {
        let a: BTreeMap<u32, f64> = [(1, 5.0), (2, 7.0), (3, 9.0), (9, 100.0)].into();
        let b: BTreeMap<u32, f64> = [(1, 4.0), (2, 5.0), (3, 6.0), (8, -100.0)].into();
        let d = paired_difference(&a, &b);
        assert!(close(d.value, 2.0), "{d:?}");
        assert!(d.low < 2.0 && d.high > 2.0);
        let r = paired_ratio(&a, &b);
        assert!(close(r.value, 21.0 / 15.0), "{r:?}");
        assert!(r.low <= r.value && r.value <= r.high);
    }

    #[test]
    fn a_shifted_sample_has_a_percentile_difference_interval_away_from_zero() {
        // Noisy pairs: b is a shifted by 10 and scrambled by a deterministic noise.
        let a: BTreeMap<u32, f64> = (0..2000).map(|i| (i, f64::from(i % 100))).collect();
        let b: BTreeMap<u32, f64> = a.iter().map(|(k, v)| (*k, v + 10.0 + f64::from((k * 37) % 11) - 5.0)).collect();
        let e = paired_percentile_difference(&a, &b, 0.95, 200);
        assert!((e.value + 10.0).abs() <= 5.0, "{e:?}");
        assert!(e.below_zero() && e.high - e.low > 0.0, "an interval of some width below zero: {e:?}");
        // The same samples give the same interval; none from no resample.
        assert_eq!(e, paired_percentile_difference(&a, &b, 0.95, 200));
        assert!(paired_percentile_difference(&a, &b, 0.95, 0).value.is_nan());
        // Pairs that differ by nothing: an interval around zero.
        let same = paired_percentile_difference(&a, &a, 0.95, 200);
        assert!(same.low <= 0.0 && same.high >= 0.0, "{same:?}");
    }
}
