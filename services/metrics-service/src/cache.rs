//! Expositions kept between scrapes while what they were written from is
//! unchanged, so that a repeated scrape is its upstream calls and a copy.
//!
//! Invalidation is exact: an entry keeps what it was
//! written from ([`Source`]: the aggregates as workflow-run-service sent
//! them, and what was true then, runs in progress and jobs queued) and is
//! served only to a scrape whose source is the very same (compared whole, not
//! hashed). Every scrape still authenticates and still asks
//! workflow-run-service. It tells that service the revision its entry's
//! aggregates were read at (`store::revisions` there): while that is current
//! they are not sent again, only what is true now, and the kept aggregates
//! are the source's; any write to them (a run or job counted, a workflow
//! created or deleted, an exemplar, a deployment) changes the revision in the
//! same transaction, so they are read again and compared. At least every
//! [`FULL_READ_EVERY`] they are read whole anyway: a write that did not
//! change the revision (an older workflow-run-service during a rolling
//! upgrade, a restored backup) shows within that. The rest an exposition depends on is the entry's key
//! (organization, format, the token's projects) or fixed for the process
//! (namespace, cardinality settings). The one family that differs on every
//! scrape, `scrape_duration_seconds`, is not kept: it is written after the
//! kept part each time ([`crate::exposition::tail`]).
//!
//! Memory is bounded by `scrape_cache_mib`: entries least recently used go
//! first; an exposition whose text does not fit keeps only its gzip form
//! (what Prometheus asks for), and one that does not fit at all is not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use bytes::Bytes;
use runplane_api::workflowrun::v1::WorkflowNow;

use crate::exposition::Format;
use crate::gzip;

/// How long a kept entry's aggregates are trusted by their revision alone.
pub(crate) const FULL_READ_EVERY: Duration = Duration::from_secs(60);

/// What an exposition is written from.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Source {
    /// The organization's aggregates, as workflow-run-service sent them.
    pub(crate) aggregates: Bytes,
    /// The workflows with runs in progress or jobs queued then.
    pub(crate) now: Vec<WorkflowNow>,
}

impl Source {
    fn same_as(&self, other: &Source) -> bool {
        // One buffer shared (aggregates not sent again): nothing to compare.
        let same_aggregates = self.aggregates.as_ptr() == other.aggregates.as_ptr()
            && self.aggregates.len() == other.aggregates.len()
            || self.aggregates == other.aggregates;
        same_aggregates && self.now == other.now
    }

    fn bytes(&self) -> usize {
        self.aggregates.len()
            + self
                .now
                .iter()
                .map(|n| std::mem::size_of::<WorkflowNow>() + n.workflow_id.len())
                .sum::<usize>()
    }
}

/// The revision an entry's aggregates were read at, and when they were last
/// read whole.
#[derive(Debug, Clone)]
pub(crate) struct Revision {
    pub(crate) value: String,
    pub(crate) read_at: Instant,
}

/// What an entry is found by. The token's project limit is part of it: a
/// scrape that reads by revision compares no aggregates, so the key is what
/// keeps one view of an organization from another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) org: String,
    pub(crate) format: Format,
    pub(crate) projects: Option<Vec<String>>,
}

/// A kept exposition, without its tail.
#[derive(Debug)]
pub(crate) struct Kept {
    /// What it was written from.
    pub(crate) source: Source,
    /// The revision of those aggregates.
    revision: Revision,
    /// The text, when it fit.
    pub(crate) text: Option<Bytes>,
    /// The text compressed, once a scrape asked for gzip.
    pub(crate) gzip: Option<gzip::Head>,
}

impl Kept {
    pub(crate) fn new(
        source: Source,
        revision: Revision,
        text: Option<Bytes>,
        gzip: Option<gzip::Head>,
    ) -> Self {
        Kept {
            source,
            revision,
            text,
            gzip,
        }
    }

    /// The revision its aggregates were read at.
    pub(crate) fn revision(&self) -> &Revision {
        &self.revision
    }

    /// The same, with the forms only `earlier` (written from the same
    /// source) has: a plain scrape does not lose what a gzip one kept.
    pub(crate) fn with_forms_of(mut self, earlier: Option<&Kept>) -> Self {
        if let Some(earlier) = earlier {
            self.text = self.text.or_else(|| earlier.text.clone());
            self.gzip = self.gzip.or_else(|| earlier.gzip.clone());
        }
        self
    }

    fn bytes(&self) -> usize {
        self.source.bytes()
            + self.text.as_ref().map_or(0, Bytes::len)
            + self.gzip.as_ref().map_or(0, |g| g.bytes.len())
    }
}

/// The kept expositions.
#[derive(Debug)]
pub(crate) struct ExpositionCache {
    budget: usize,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Key, (Arc<Kept>, u64)>,
    bytes: usize,
    /// Ticks on every use: an entry's tick says how recently it was used.
    clock: u64,
}

impl ExpositionCache {
    /// A cache of at most `budget` bytes (0: nothing is kept).
    pub(crate) fn new(budget: usize) -> Self {
        ExpositionCache {
            budget,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// The revision of the aggregates kept for `key`, while they may be
    /// trusted by it alone (read whole within [`FULL_READ_EVERY`]).
    pub(crate) fn known_revision(&self, key: &Key) -> Option<String> {
        let entries = self.lock();
        let (kept, _) = entries.map.get(key)?;
        let revision = &kept.revision;
        (!revision.value.is_empty() && revision.read_at.elapsed() < FULL_READ_EVERY)
            .then(|| revision.value.clone())
    }

    /// The aggregates kept for `key`, and their revision, if it is `revision`.
    pub(crate) fn aggregates_at(&self, key: &Key, revision: &str) -> Option<(Bytes, Revision)> {
        let entries = self.lock();
        let (kept, _) = entries.map.get(key)?;
        (kept.revision.value == revision)
            .then(|| (kept.source.aggregates.clone(), kept.revision.clone()))
    }

    /// The entry for `key` if it was written from exactly `source`, its
    /// revision now `revision` (aggregates read whole again and found the
    /// same). One written from anything else is stale: it is dropped. The
    /// comparison (megabytes for a large organization) is made outside the
    /// lock.
    pub(crate) fn get(
        &self,
        key: &Key,
        source: &Source,
        revision: Option<&Revision>,
    ) -> Option<Arc<Kept>> {
        let kept = self.lock().map.get(key).map(|(kept, _)| kept.clone())?;
        let fresh = kept.source.same_as(source);
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        match entries.map.get_mut(key) {
            // Replaced meanwhile: leave the newer entry alone.
            Some((current, _)) if !Arc::ptr_eq(current, &kept) => {}
            Some((current, used)) if fresh => {
                *used = now;
                if let Some(revision) = revision {
                    // Read whole and the same: trusted by this revision anew.
                    *current = Arc::new(Kept {
                        source: kept.source.clone(),
                        revision: revision.clone(),
                        text: kept.text.clone(),
                        gzip: kept.gzip.clone(),
                    });
                    return Some(current.clone());
                }
            }
            Some(_) => {
                entries.map.remove(key);
                entries.bytes -= kept.bytes();
            }
            None => {}
        }
        fresh.then_some(kept)
    }

    /// Keeps `kept` for `key` (replacing what was there), within the
    /// budget: without its text if only that way it fits, not at all if it
    /// does not; the least recently used entries make room.
    pub(crate) fn put(&self, key: Key, mut kept: Kept) {
        if kept.bytes() > self.budget {
            kept.text = None;
        }
        let size = kept.bytes();
        let mut entries = self.lock();
        if let Some((old, _)) = entries.map.remove(&key) {
            entries.bytes -= old.bytes();
        }
        if size > self.budget || kept.gzip.is_none() && kept.text.is_none() {
            return;
        }
        while entries.bytes + size > self.budget {
            let Some(oldest) = entries
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((old, _)) = entries.map.remove(&oldest) {
                entries.bytes -= old.bytes();
            }
        }
        entries.clock += 1;
        let now = entries.clock;
        entries.bytes += size;
        entries.map.insert(key, (Arc::new(kept), now));
    }

    /// Bytes held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic elsewhere cannot leave the map half-updated in a way that
        // matters more than losing the cache: keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(org: &str) -> Key {
        Key {
            org: org.into(),
            format: Format::Text,
            projects: None,
        }
    }

    fn src(aggregates: &[u8]) -> Source {
        Source {
            aggregates: Bytes::copy_from_slice(aggregates),
            now: Vec::new(),
        }
    }

    fn revision(value: &str) -> Revision {
        Revision {
            value: value.into(),
            read_at: Instant::now(),
        }
    }

    fn kept(source: &str, text: &str) -> Kept {
        Kept::new(
            src(source.as_bytes()),
            revision("1"),
            Some(Bytes::copy_from_slice(text.as_bytes())),
            None,
        )
    }

    #[test]
    fn an_entry_is_served_only_for_the_very_same_source() {
        let cache = ExpositionCache::new(1 << 20);
        cache.put(key("a"), kept("runs: 1", "up 1\n"));
        let hit = cache.get(&key("a"), &src(b"runs: 1"), None).expect("hit");
        assert_eq!(hit.text.as_deref(), Some(&b"up 1\n"[..]));
        // Another format or organization is another entry.
        let openmetrics = Key {
            format: Format::OpenMetrics,
            ..key("a")
        };
        assert!(cache.get(&openmetrics, &src(b"runs: 1"), None).is_none());
        assert!(cache.get(&key("b"), &src(b"runs: 1"), None).is_none());
        // One byte of difference: stale, and dropped.
        assert!(cache.get(&key("a"), &src(b"runs: 2"), None).is_none());
        assert_eq!(cache.held(), 0);
        assert!(cache.get(&key("a"), &src(b"runs: 1"), None).is_none());
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let cache = ExpositionCache::new(100);
        cache.put(key("a"), kept("aaaaaaaaaa", &"a".repeat(30)));
        cache.put(key("b"), kept("bbbbbbbbbb", &"b".repeat(30)));
        assert_eq!(cache.held(), 80);
        // a is used, so b is the oldest when c needs room.
        assert!(cache.get(&key("a"), &src(b"aaaaaaaaaa"), None).is_some());
        cache.put(key("c"), kept("cccccccccc", &"c".repeat(30)));
        assert!(cache.get(&key("b"), &src(b"bbbbbbbbbb"), None).is_none());
        assert!(cache.get(&key("a"), &src(b"aaaaaaaaaa"), None).is_some());
        assert!(cache.get(&key("c"), &src(b"cccccccccc"), None).is_some());
        assert!(cache.held() <= 100);
        // Replacing an entry frees what it held.
        cache.put(key("c"), kept("cc", "c"));
        assert_eq!(cache.held(), 43);
    }

    #[test]
    fn a_form_written_later_keeps_the_one_kept_before() {
        let cache = ExpositionCache::new(1 << 20);
        let head = gzip::head(b"up 1\n");
        cache.put(
            key("a"),
            Kept::new(src(b"s"), revision("1"), None, Some(head)),
        );
        let earlier = cache.get(&key("a"), &src(b"s"), None).expect("kept");
        let both = Kept::new(
            src(b"s"),
            revision("1"),
            Some(Bytes::from_static(b"up 1\n")),
            None,
        )
        .with_forms_of(Some(&earlier));
        cache.put(key("a"), both);
        let hit = cache.get(&key("a"), &src(b"s"), None).expect("kept");
        assert!(hit.text.is_some() && hit.gzip.is_some());
    }

    #[test]
    fn what_does_not_fit_keeps_its_gzip_form_or_nothing() {
        let cache = ExpositionCache::new(200);
        let text = "up 1\n".repeat(100);
        let head = gzip::head(text.as_bytes());
        let big = Kept::new(
            src(b"source"),
            revision("1"),
            Some(Bytes::from(text)),
            Some(head),
        );
        cache.put(key("a"), big);
        let hit = cache
            .get(&key("a"), &src(b"source"), None)
            .expect("kept compressed");
        assert!(hit.text.is_none() && hit.gzip.is_some());
        // Text alone that does not fit: nothing.
        cache.put(key("b"), kept("s", &"x".repeat(300)));
        assert!(cache.get(&key("b"), &src(b"s"), None).is_none());
        // A cache of nothing keeps nothing.
        let off = ExpositionCache::new(0);
        off.put(key("a"), kept("s", "t"));
        assert!(off.get(&key("a"), &src(b"s"), None).is_none());
    }

    #[test]
    fn a_revision_is_trusted_a_while_and_what_is_true_now_still_counts() {
        let cache = ExpositionCache::new(1 << 20);
        cache.put(key("a"), kept("runs: 1", "up 1\n"));
        assert_eq!(cache.known_revision(&key("a")).as_deref(), Some("1"));
        assert!(cache.known_revision(&key("b")).is_none());
        let (aggregates, _) = cache.aggregates_at(&key("a"), "1").expect("kept");
        assert!(cache.aggregates_at(&key("a"), "2").is_none());
        // The kept aggregates, and another run in progress now: stale.
        let now = Source {
            aggregates: aggregates.clone(),
            now: vec![WorkflowNow {
                workflow_id: "w".into(),
                runs_in_progress: 1,
                ..WorkflowNow::default()
            }],
        };
        assert!(cache.get(&key("a"), &now, None).is_none());
        // Read whole at a new revision and found the same: trusted by it.
        cache.put(key("a"), kept("runs: 1", "up 1\n"));
        let hit = cache.get(&key("a"), &src(b"runs: 1"), Some(&revision("7")));
        assert!(hit.is_some());
        assert_eq!(cache.known_revision(&key("a")).as_deref(), Some("7"));
        // Read whole long ago: not trusted by its revision alone (a machine
        // up for less than that cannot have such an instant).
        if let Some(read_at) = Instant::now().checked_sub(FULL_READ_EVERY) {
            let old = Revision {
                value: "8".into(),
                read_at,
            };
            let gzipped = Kept::new(src(b"runs: 1"), old, None, Some(gzip::head(b"x")));
            cache.put(key("a"), gzipped);
            assert!(cache.known_revision(&key("a")).is_none());
        }
    }
}
