//! Latency samples and their percentiles.

use std::time::Duration;

/// Latencies of one kind of operation.
#[derive(Debug, Default, Clone)]
pub(crate) struct Latencies(Vec<Duration>);

impl Latencies {
    pub(crate) fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub(crate) fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile (nearest rank), in milliseconds.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1].as_secs_f64() * 1000.0
    }

    pub(crate) fn p50(&self) -> f64 {
        self.quantile_ms(0.5)
    }

    pub(crate) fn p99(&self) -> f64 {
        self.quantile_ms(0.99)
    }
}

/// The same measurement repeated in batches, so that one noisy stretch of a
/// shared machine moves one batch's figures, not the result: each figure is
/// the median of the batches' figures.
#[derive(Debug, Default, Clone)]
pub(crate) struct Repeated(Vec<Latencies>);

impl Repeated {
    pub(crate) fn push(&mut self, batch: Latencies) {
        self.0.push(batch);
    }

    /// Median of the batches' p50s, in milliseconds.
    pub(crate) fn p50(&self) -> f64 {
        median(self.0.iter().map(Latencies::p50))
    }

    /// Median of the batches' p99s, in milliseconds.
    pub(crate) fn p99(&self) -> f64 {
        median(self.0.iter().map(Latencies::p99))
    }

    /// The lowest and highest batch p99, in milliseconds.
    pub(crate) fn p99_range(&self) -> (f64, f64) {
        self.0
            .iter()
            .map(Latencies::p99)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p), hi.max(p))
            })
    }

    pub(crate) fn batches(&self) -> usize {
        self.0.len()
    }

    /// Samples in all batches.
    pub(crate) fn len(&self) -> usize {
        self.0.iter().map(Latencies::len).sum()
    }
}

/// The median (the lower one of an even count); NaN when there is none.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_unstable_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n => values[(n - 1) / 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_figures_are_medians_of_the_batches() {
        let batch = |ms: &[u64]| {
            let mut l = Latencies::default();
            for ms in ms {
                l.push(Duration::from_millis(*ms));
            }
            l
        };
        let mut r = Repeated::default();
        r.push(batch(&[10, 20]));
        r.push(batch(&[11, 90]));
        r.push(batch(&[12, 25]));
        assert_eq!((r.p50(), r.p99()), (11.0, 25.0));
        assert_eq!(r.p99_range(), (20.0, 90.0));
        assert_eq!((r.batches(), r.len()), (3, 6));
        assert!(Repeated::default().p50().is_nan());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.push(Duration::from_millis(ms));
        }
        assert_eq!(l.p50(), 50.0);
        assert_eq!(l.p99(), 99.0);
        assert!(Latencies::default().p50().is_nan());
    }
}
