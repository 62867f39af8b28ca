//! Cumulative run-duration histograms, stored per (workflow, status, runner).
//!
//! Each stored histogram keeps the bucket bounds it was created with: changing
//! the configured buckets applies to new series only, so an existing series
//! never changes its `le` set (which would break `rate()` and
//! `histogram_quantile()` over it).

/// Chainloop's default buckets, in seconds.
pub const DEFAULT_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 600.0, 900.0, 1200.0,
];

/// A cumulative histogram: `counts[i]` is the number of observations `<= bounds[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

/// Stored text that does not decode (a corrupted row).
#[derive(Debug, thiserror::Error)]
#[error("corrupt histogram row: {0}")]
pub struct CorruptHistogram(pub(crate) String);

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn empty(bounds: &[f64]) -> Self {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, seconds: f64) {
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// Reads a stored histogram.
    pub fn decode(
        bounds: &str,
        counts: &str,
        count: i64,
        sum: f64,
    ) -> Result<Self, CorruptHistogram> {
        Self::with_bounds(parse_bounds(bounds)?, counts, count, sum)
    }

    /// Reads a stored histogram whose bounds are parsed already.
    fn with_bounds(
        bounds: Vec<f64>,
        counts: &str,
        count: i64,
        sum: f64,
    ) -> Result<Self, CorruptHistogram> {
        let parsed = split(counts)
            .map(str::parse::<u64>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CorruptHistogram(format!("counts {counts:?}: {e}")))?;
        if bounds.len() != parsed.len() {
            return Err(CorruptHistogram(format!(
                "{} bounds but {} counts",
                bounds.len(),
                parsed.len()
            )));
        }
        Ok(Histogram {
            bounds,
            counts: parsed,
            count: u64::try_from(count).unwrap_or(0),
            sum,
        })
    }

    /// The stored form of the bounds.
    pub fn encode_bounds(&self) -> String {
        join(self.bounds.iter().map(f64::to_string))
    }

    /// The stored form of the counts.
    pub fn encode_counts(&self) -> String {
        join(self.counts.iter().map(u64::to_string))
    }
}

fn parse_bounds(bounds: &str) -> Result<Vec<f64>, CorruptHistogram> {
    split(bounds)
        .map(str::parse::<f64>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CorruptHistogram(format!("bounds {bounds:?}: {e}")))
}

/// Reads many stored histograms, parsing each distinct list of bounds once:
/// the histograms of a scrape's page nearly all share one list, and parsing
/// its floats again for each of thousands of histograms was a visible part of
/// the page's cost.
#[derive(Debug, Default)]
pub struct HistogramReader {
    /// The last list of bounds read, as stored and parsed.
    last: Option<(String, Vec<f64>)>,
}

impl HistogramReader {
    /// [`Histogram::decode`].
    pub fn decode(
        &mut self,
        bounds: &str,
        counts: &str,
        count: i64,
        sum: f64,
    ) -> Result<Histogram, CorruptHistogram> {
        let parsed = match &self.last {
            Some((text, parsed)) if text == bounds => parsed.clone(),
            _ => {
                let parsed = parse_bounds(bounds)?;
                self.last = Some((bounds.to_owned(), parsed.clone()));
                parsed
            }
        };
        Histogram::with_bounds(parsed, counts, count, sum)
    }
}

fn split(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').filter(|s| !s.is_empty())
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}

/// Checks configured bucket bounds: at least one, finite, positive, strictly ascending.
pub fn validate_buckets(bounds: &[f64]) -> Result<(), String> {
    if bounds.is_empty() {
        return Err("run_duration_buckets must list at least one bound".into());
    }
    if bounds.iter().any(|b| !b.is_finite() || *b <= 0.0) {
        return Err("run_duration_buckets must be positive, finite numbers of seconds".into());
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err("run_duration_buckets must be strictly ascending".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_are_cumulative_and_round_trip() {
        let mut h = Histogram::empty(&[10.0, 30.0, 60.0]);
        for v in [5.0, 10.0, 25.0, 61.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, [2, 3, 3]);
        assert_eq!(h.count, 4);
        assert_eq!(h.sum, 101.0);
        let back =
            Histogram::decode(&h.encode_bounds(), &h.encode_counts(), 4, 101.0).expect("decode");
        assert_eq!(back, h);
        assert!(Histogram::decode("1,2", "1", 1, 0.0).is_err());
        assert!(Histogram::decode("x", "1", 1, 0.0).is_err());

        // The reader gives the same answers, whatever the order of the lists.
        let mut reader = HistogramReader::default();
        for (bounds, counts) in [
            ("10,30,60", "2,3,3"),
            ("10,30,60", "0,1,1"),
            ("1,2", "1,1"),
            ("10,30,60", "2,3,3"),
        ] {
            assert_eq!(
                reader.decode(bounds, counts, 4, 1.5).expect("decode"),
                Histogram::decode(bounds, counts, 4, 1.5).expect("decode")
            );
        }
        assert!(reader.decode("1,2", "1", 1, 0.0).is_err());
        assert!(reader.decode("x", "1", 1, 0.0).is_err());
    }

    #[test]
    fn bucket_configuration_is_checked() {
        assert!(validate_buckets(DEFAULT_BUCKETS).is_ok());
        assert!(validate_buckets(&[0.5, 1.0]).is_ok());
        assert!(validate_buckets(&[]).is_err());
        assert!(validate_buckets(&[10.0, 10.0]).is_err());
        assert!(validate_buckets(&[30.0, 10.0]).is_err());
        assert!(validate_buckets(&[-1.0]).is_err());
        assert!(validate_buckets(&[f64::INFINITY]).is_err());
    }
}
