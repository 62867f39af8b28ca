//! Expositions kept between scrapes while what they were written from is
//! unchanged, so that a repeated scrape is its upstream calls and a copy.
//!
//! Invalidation is exact, by construction: an entry keeps the aggregates it
//! was written from, the bytes workflow-run-service sent, and is served only
//! to a scrape that received the very same bytes (compared whole, not
//! hashed). Every scrape still authenticates and still asks
//! workflow-run-service; whatever would change what it writes changes those
//! bytes: a run or job reported, a workflow created or deleted, the runs in
//! progress or queued now (part of each page), an exemplar. The rest an
//! exposition depends on is the entry's key (organization, format) or fixed
//! for the process (namespace, cardinality settings). The one family that
//! differs on every scrape, `scrape_duration_seconds`, is not kept: it is
//! written after the kept part each time ([`crate::exposition::tail`]).
//!
//! Memory is bounded by `scrape_cache_mib`: entries least recently used go
//! first; an exposition whose text does not fit keeps only its gzip form
//! (what Prometheus asks for), and one that does not fit at all is not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::exposition::Format;
use crate::gzip;

/// What an entry is found by. The token's project limit is part of it only
/// so that scrapers of one organization with different views keep an entry
/// each instead of replacing each other's: the source's bytes already tell
/// their views apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) org: String,
    pub(crate) format: Format,
    pub(crate) projects: Option<Vec<String>>,
}

/// A kept exposition, without its tail.
#[derive(Debug)]
pub(crate) struct Kept {
    /// The aggregates it was written from, as workflow-run-service sent them.
    source: Bytes,
    /// The text, when it fit.
    pub(crate) text: Option<Bytes>,
    /// The text compressed, once a scrape asked for gzip.
    pub(crate) gzip: Option<gzip::Head>,
}

impl Kept {
    pub(crate) fn new(source: Bytes, text: Option<Bytes>, gzip: Option<gzip::Head>) -> Self {
        Kept { source, text, gzip }
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
        self.source.len()
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

    /// The entry for `key` if it was written from exactly `source`. One
    /// written from anything else is stale: it is dropped. The comparison
    /// (megabytes for a large organization) is made outside the lock.
    pub(crate) fn get(&self, key: &Key, source: &[u8]) -> Option<Arc<Kept>> {
        let kept = self.lock().map.get(key).map(|(kept, _)| kept.clone())?;
        let fresh = kept.source.as_ref() == source;
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        match entries.map.get_mut(key) {
            // Replaced meanwhile: leave the newer entry alone.
            Some((current, _)) if !Arc::ptr_eq(current, &kept) => {}
            Some((_, used)) if fresh => *used = now,
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

    fn kept(source: &str, text: &str) -> Kept {
        Kept::new(
            Bytes::copy_from_slice(source.as_bytes()),
            Some(Bytes::copy_from_slice(text.as_bytes())),
            None,
        )
    }

    #[test]
    fn an_entry_is_served_only_for_the_very_same_source() {
        let cache = ExpositionCache::new(1 << 20);
        cache.put(key("a"), kept("runs: 1", "up 1\n"));
        let hit = cache.get(&key("a"), b"runs: 1").expect("hit");
        assert_eq!(hit.text.as_deref(), Some(&b"up 1\n"[..]));
        // Another format or organization is another entry.
        let openmetrics = Key {
            format: Format::OpenMetrics,
            ..key("a")
        };
        assert!(cache.get(&openmetrics, b"runs: 1").is_none());
        assert!(cache.get(&key("b"), b"runs: 1").is_none());
        // One byte of difference: stale, and dropped.
        assert!(cache.get(&key("a"), b"runs: 2").is_none());
        assert_eq!(cache.held(), 0);
        assert!(cache.get(&key("a"), b"runs: 1").is_none());
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let cache = ExpositionCache::new(100);
        cache.put(key("a"), kept("aaaaaaaaaa", &"a".repeat(30)));
        cache.put(key("b"), kept("bbbbbbbbbb", &"b".repeat(30)));
        assert_eq!(cache.held(), 80);
        // a is used, so b is the oldest when c needs room.
        assert!(cache.get(&key("a"), b"aaaaaaaaaa").is_some());
        cache.put(key("c"), kept("cccccccccc", &"c".repeat(30)));
        assert!(cache.get(&key("b"), b"bbbbbbbbbb").is_none());
        assert!(cache.get(&key("a"), b"aaaaaaaaaa").is_some());
        assert!(cache.get(&key("c"), b"cccccccccc").is_some());
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
            Kept::new(Bytes::from_static(b"s"), None, Some(head)),
        );
        let earlier = cache.get(&key("a"), b"s").expect("kept");
        let both = Kept::new(
            Bytes::from_static(b"s"),
            Some(Bytes::from_static(b"up 1\n")),
            None,
        )
        .with_forms_of(Some(&earlier));
        cache.put(key("a"), both);
        let hit = cache.get(&key("a"), b"s").expect("kept");
        assert!(hit.text.is_some() && hit.gzip.is_some());
    }

    #[test]
    fn what_does_not_fit_keeps_its_gzip_form_or_nothing() {
        let cache = ExpositionCache::new(200);
        let text = "up 1\n".repeat(100);
        let head = gzip::head(text.as_bytes());
        let big = Kept::new(
            Bytes::from_static(b"source"),
            Some(Bytes::from(text)),
            Some(head),
        );
        cache.put(key("a"), big);
        let hit = cache.get(&key("a"), b"source").expect("kept compressed");
        assert!(hit.text.is_none() && hit.gzip.is_some());
        // Text alone that does not fit: nothing.
        cache.put(key("b"), kept("s", &"x".repeat(300)));
        assert!(cache.get(&key("b"), b"s").is_none());
        // A cache of nothing keeps nothing.
        let off = ExpositionCache::new(0);
        off.put(key("a"), kept("s", "t"));
        assert!(off.get(&key("a"), b"s").is_none());
    }
}
