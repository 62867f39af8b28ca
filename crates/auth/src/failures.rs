//! Failed authentications, limited per failing credential.
//!
//! What the limit is for: a wrong, revoked or expired credential retried in a
//! loop — a Prometheus job left with an old token, a CI runner with a revoked
//! one — is answered from memory once it has failed `per_minute` times,
//! instead of costing a lookup (a call to token-service, a database query)
//! every time, and its client is told when to try again (429 /
//! RESOURCE_EXHAUSTED with `Retry-After`). A source that presents many
//! *distinct* failing credentials (a spray) is told to back off too: past its
//! budget, its failures are answered 429 rather than 401.
//!
//! What it is not: a defence against guessing. Tokens carry 256 random bits,
//! and no rate of guessing finds one. So nothing is ever refused because
//! *other* credentials failed: a valid credential has no failures to spend,
//! whatever address it comes from (one central Prometheus, a NAT, the
//! services' own calls to each other), and a source past its budget still has
//! its valid credentials checked and accepted. A forged client-address header
//! can at most earn its sender 429s.
//!
//! Each budget holds `per_minute` and refills evenly over a minute. Sources are
//! IP addresses, IPv6 grouped by /64 (the block one host usually gets).
//! Memory is bounded: at most [`MAX_TRACKED`] credentials and as many
//! sources; refilled budgets are forgotten first, and if that is not enough a
//! new one is not tracked (it is looked up as usual: failing open costs
//! lookups, never a caller).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::secret::SecretHash;

/// Most credentials, and most sources, tracked at once.
pub const MAX_TRACKED: usize = 65_536;

/// The setting every authenticating service takes.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthFailureArgs {
    /// Failed authentications allowed per credential per minute (bursts up to
    /// that many); past it, that credential gets RESOURCE_EXHAUSTED / HTTP 429
    /// until its budget refills, and so does any further failure of a source
    /// that presented that many distinct failing credentials. Valid
    /// credentials are never refused. 0 turns the limit off.
    #[arg(long, env = "RUNPLANE_AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u32,
}

/// A credential (or a spraying source) may not try again for this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed authentications; retry in {}s", retry_after.as_secs().max(1))]
pub struct TooManyFailures {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed, refilled continuously.
    allowance: f64,
    updated: Instant,
}

/// Budgets of failures, each refilled over a minute, by key.
#[derive(Debug)]
struct Budgets<K> {
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Budgets<K> {
    fn new() -> Self {
        Budgets {
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` must wait for one failure's worth, if it has none left.
    fn exhausted(&self, key: &K, per_minute: f64) -> Option<Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.get_mut(key)?;
        refill(bucket, now, per_minute);
        (bucket.allowance < 1.0).then(|| wait_for_one(bucket, per_minute))
    }

    /// Spends one failure of `key`'s budget: whether its budget was full (the
    /// first failure in a while), and, if it was already spent before this
    /// failure, how long `key` must wait. `None` when `key` could not be
    /// tracked.
    fn spend(&self, key: &K, per_minute: f64) -> Option<(bool, Option<Duration>)> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= MAX_TRACKED {
            // Refilled budgets hold no information.
            buckets.retain(|_, bucket| {
                refill(bucket, now, per_minute);
                bucket.allowance < per_minute
            });
            if buckets.len() >= MAX_TRACKED {
                return None;
            }
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            allowance: per_minute,
            updated: now,
        });
        refill(bucket, now, per_minute);
        let was_full = bucket.allowance >= per_minute;
        let over = (bucket.allowance < 1.0).then(|| wait_for_one(bucket, per_minute));
        bucket.allowance = (bucket.allowance - 1.0).max(0.0);
        Some((was_full, over))
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

fn refill(bucket: &mut Bucket, now: Instant, per_minute: f64) {
    let earned = now.duration_since(bucket.updated).as_secs_f64() * per_minute / 60.0;
    bucket.allowance = (bucket.allowance + earned).min(per_minute);
    bucket.updated = now;
}

fn wait_for_one(bucket: &Bucket, per_minute: f64) -> Duration {
    Duration::from_secs_f64(((1.0 - bucket.allowance) * 60.0 / per_minute).max(0.0))
}

/// Failure budgets per credential and per source.
#[derive(Debug)]
pub struct FailureLimiter {
    /// 0: the limit is off (failures are still counted in the metric).
    per_minute: f64,
    credentials: Budgets<String>,
    sources: Budgets<IpAddr>,
}

impl FailureLimiter {
    /// A limiter allowing `per_minute` failures per credential (and distinct
    /// failing credentials per source); 0 turns it off.
    pub fn new(per_minute: u32) -> Self {
        // Registered now, so that the count reads 0 before the first failure.
        failures_total();
        FailureLimiter {
            per_minute: f64::from(per_minute),
            credentials: Budgets::new(),
            sources: Budgets::new(),
        }
    }

    /// A limiter that limits nothing.
    pub fn off() -> Self {
        Self::new(0)
    }

    /// The process's limiter, as configured.
    pub fn from_args(args: &AuthFailureArgs) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::new(args.auth_failures_per_minute))
    }

    fn is_off(&self) -> bool {
        self.per_minute <= 0.0
    }

    /// Whether `credential` may be checked now: refused only when it has
    /// itself failed its budget's worth.
    pub fn check(&self, credential: &SecretHash) -> Result<(), TooManyFailures> {
        if self.is_off() {
            return Ok(());
        }
        match self.credentials.exhausted(&credential.0, self.per_minute) {
            Some(retry_after) => Err(TooManyFailures { retry_after }),
            None => Ok(()),
        }
    }

    /// Records that `credential`, presented by `source`, failed: it is
    /// refused from its budget's next failure on ([`FailureLimiter::check`]).
    /// `Err` when this failure is to be answered "too many" rather than
    /// "invalid": the source has presented more distinct failing credentials
    /// than its budget allows.
    pub fn record_failure(
        &self,
        credential: &SecretHash,
        source: Option<IpAddr>,
    ) -> Result<(), TooManyFailures> {
        failures_total().inc();
        if self.is_off() {
            return Ok(());
        }
        let Some((first_in_a_while, _)) = self.credentials.spend(&credential.0, self.per_minute)
        else {
            return Ok(());
        };
        // A source is charged once per distinct failing credential.
        let over = match source.map(key_of) {
            Some(source) if first_in_a_while => self
                .sources
                .spend(&source, self.per_minute)
                .and_then(|(_, over)| over),
            _ => None,
        };
        match over {
            Some(retry_after) => Err(TooManyFailures { retry_after }),
            None => Ok(()),
        }
    }
}

/// Wrong credentials presented to this process, limited or not.
fn failures_total() -> &'static prometheus::IntCounter {
    static COUNTER: OnceLock<prometheus::IntCounter> = OnceLock::new();
    COUNTER.get_or_init(|| {
        runplane_telemetry::metrics::int_counter(
            "runplane_auth_failures_total",
            "Wrong credentials presented (each counts towards its own limit).",
        )
    })
}

/// The source a budget belongs to: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by /64.
fn key_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    fn credential(n: u32) -> SecretHash {
        SecretHash::of(&format!("credential-{n}"))
    }

    #[test]
    fn a_credential_is_refused_once_its_budget_is_spent_and_no_other_is() {
        let limiter = FailureLimiter::new(3);
        let stale = credential(1);
        for _ in 0..3 {
            assert!(limiter.check(&stale).is_ok());
            assert!(limiter.record_failure(&stale, v4(1)).is_ok());
        }
        // Spent: refused before it is checked again.
        let refused = limiter.check(&stale).expect_err("budget spent");
        // One failure refills in 60 s / 3.
        assert!(refused.retry_after <= Duration::from_secs(20));
        assert!(refused.retry_after > Duration::from_secs(19));
        // Any other credential, from the same address, is checked as usual.
        assert!(limiter.check(&credential(2)).is_ok());
    }

    #[test]
    fn a_source_spraying_distinct_credentials_gets_too_many_but_is_still_checked() {
        let limiter = FailureLimiter::new(3);
        for n in 1..=3 {
            assert!(limiter.record_failure(&credential(n), v4(1)).is_ok());
        }
        assert!(limiter.record_failure(&credential(4), v4(1)).is_err());
        assert!(limiter.record_failure(&credential(5), v4(1)).is_err());
        // The source's credentials are still checked: a valid one passes.
        assert!(limiter.check(&credential(9)).is_ok());
        // Another source is unaffected; so are failures without a known source.
        assert!(limiter.record_failure(&credential(6), v4(2)).is_ok());
        assert!(limiter.record_failure(&credential(7), None).is_ok());
    }

    #[test]
    fn repeating_one_credential_charges_its_source_once() {
        let limiter = FailureLimiter::new(3);
        let stale = credential(1);
        for _ in 0..3 {
            assert!(limiter.record_failure(&stale, v4(1)).is_ok());
        }
        // The source spent one of its three distinct failures.
        assert!(limiter.record_failure(&credential(2), v4(1)).is_ok());
        assert!(limiter.record_failure(&credential(3), v4(1)).is_ok());
        assert!(limiter.record_failure(&credential(4), v4(1)).is_err());
    }

    #[test]
    fn a_limiter_that_is_off_limits_nothing_and_keeps_nothing() {
        let limiter = FailureLimiter::off();
        for n in 0..100 {
            assert!(limiter.record_failure(&credential(n), v4(1)).is_ok());
        }
        assert!(limiter.check(&credential(1)).is_ok());
        assert_eq!(limiter.credentials.tracked(), 0);
        assert_eq!(limiter.sources.tracked(), 0);
    }

    #[test]
    fn budgets_refill_over_a_minute() {
        let limiter = FailureLimiter::new(60);
        let stale = credential(1);
        for _ in 0..60 {
            let _ = limiter.record_failure(&stale, None);
        }
        assert!(limiter.check(&stale).is_err());
        // Wind the bucket's clock back instead of sleeping.
        if let Ok(mut buckets) = limiter.credentials.buckets.lock() {
            for bucket in buckets.values_mut() {
                bucket.updated -= Duration::from_secs(2);
            }
        }
        assert!(
            limiter.check(&stale).is_ok(),
            "two failures' worth refilled"
        );
    }

    #[test]
    fn ipv6_hosts_share_their_slash_64_and_mapped_ipv4_is_ipv4() {
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: Ipv6Addr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(key_of(IpAddr::V6(a)), key_of(IpAddr::V6(b)));
        assert_ne!(key_of(IpAddr::V6(a)), key_of(IpAddr::V6(c)));
        let mapped = Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped();
        assert_eq!(
            key_of(IpAddr::V6(mapped)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
        );
    }

    #[test]
    fn memory_stays_bounded_and_an_untracked_credential_is_still_checked() {
        let limiter = FailureLimiter::new(5);
        for n in 0..(MAX_TRACKED as u32 + 1000) {
            let _ = limiter.record_failure(&credential(n), None);
        }
        assert_eq!(limiter.credentials.tracked(), MAX_TRACKED);
        // Full of live budgets: a new failing credential is not tracked, and
        // nothing new is refused.
        let fresh = credential(u32::MAX);
        assert!(limiter.record_failure(&fresh, None).is_ok());
        assert!(limiter.check(&fresh).is_ok());
    }
}
