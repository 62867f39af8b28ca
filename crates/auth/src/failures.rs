//! Failed authentications, limited per client address, so that credentials
//! cannot be guessed at network speed.
//!
//! Each address has a bucket of `per_minute` failures that refills evenly over
//! a minute. While it is empty, every credential from that address is refused
//! before it is checked — a valid one too, or the limit would tell a guesser
//! when it had found one. IPv6 clients are grouped by /64, the block one host
//! usually gets. Successful authentications cost nothing.
//!
//! Memory is bounded: at most [`MAX_ADDRESSES`] buckets are kept; full ones are
//! forgotten first, and if that is not enough, new addresses are refused until
//! buckets refill (failing closed: flooding from that many addresses is an attack).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Most client addresses tracked at once.
pub const MAX_ADDRESSES: usize = 65_536;

/// The setting every authenticating service takes.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthFailureArgs {
    /// Failed authentications allowed per client address per minute (bursts
    /// up to that many); past it, the address gets RESOURCE_EXHAUSTED / HTTP
    /// 429 until its budget refills. 0 turns the limit off.
    #[arg(long, env = "RUNPLANE_AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u32,
}

/// A client address may not try another credential for this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed authentications from this address; retry in {}s", retry_after.as_secs().max(1))]
pub struct TooManyFailures {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed, refilled continuously.
    allowance: f64,
    updated: Instant,
}

/// Per-address failure budgets.
#[derive(Debug)]
pub struct FailureLimiter {
    /// 0: the limit is off (failures are still counted in the metric).
    per_minute: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl FailureLimiter {
    /// A limiter allowing `per_minute` failures per address; 0 turns it off.
    pub fn new(per_minute: u32) -> Self {
        // Registered now, so that the count reads 0 before the first failure.
        failures_total();
        FailureLimiter {
            per_minute: f64::from(per_minute),
            buckets: Mutex::new(HashMap::new()),
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

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let earned = now.duration_since(bucket.updated).as_secs_f64() * self.per_minute / 60.0;
        bucket.allowance = (bucket.allowance + earned).min(self.per_minute);
        bucket.updated = now;
    }

    fn wait_for_one(&self, bucket: &Bucket) -> Duration {
        Duration::from_secs_f64(((1.0 - bucket.allowance) * 60.0 / self.per_minute).max(0.0))
    }

    /// Whether `client` may present a credential now.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), TooManyFailures> {
        let Some(key) = client.filter(|_| !self.is_off()).map(key_of) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get_mut(&key) {
            self.refill(bucket, now);
            return if bucket.allowance >= 1.0 {
                Ok(())
            } else {
                Err(TooManyFailures {
                    retry_after: self.wait_for_one(bucket),
                })
            };
        }
        if buckets.len() >= MAX_ADDRESSES {
            self.forget_full(&mut buckets, now);
            if buckets.len() >= MAX_ADDRESSES {
                return Err(TooManyFailures {
                    retry_after: Duration::from_secs(60),
                });
            }
        }
        Ok(())
    }

    /// Spends one failure of `client`'s budget.
    pub fn record_failure(&self, client: Option<IpAddr>) {
        failures_total().inc();
        let Some(key) = client.filter(|_| !self.is_off()).map(key_of) else {
            return;
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(&key) && buckets.len() >= MAX_ADDRESSES {
            self.forget_full(&mut buckets, now);
            if buckets.len() >= MAX_ADDRESSES {
                return;
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            allowance: self.per_minute,
            updated: now,
        });
        self.refill(bucket, now);
        bucket.allowance = (bucket.allowance - 1.0).max(0.0);
    }

    /// Drops the buckets that have refilled: they hold no information.
    fn forget_full(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| {
            self.refill(bucket, now);
            bucket.allowance < self.per_minute
        });
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// Wrong credentials presented to this process, limited or not.
fn failures_total() -> &'static prometheus::IntCounter {
    static COUNTER: OnceLock<prometheus::IntCounter> = OnceLock::new();
    COUNTER.get_or_init(|| {
        runplane_telemetry::metrics::int_counter(
            "runplane_auth_failures_total",
            "Wrong credentials presented (counted towards the per-address limit).",
        )
    })
}

/// The address a budget belongs to: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by /64.
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

    #[test]
    fn an_address_is_refused_once_its_budget_is_spent_and_others_are_not() {
        let limiter = FailureLimiter::new(3);
        for _ in 0..3 {
            assert!(limiter.check(v4(1)).is_ok());
            limiter.record_failure(v4(1));
        }
        let refused = limiter.check(v4(1)).expect_err("budget spent");
        // One failure refills in 60 s / 3.
        assert!(refused.retry_after <= Duration::from_secs(20));
        assert!(refused.retry_after > Duration::from_secs(19));
        assert!(limiter.check(v4(2)).is_ok());
        // Unknown addresses (no connection info) are not limited.
        limiter.record_failure(None);
        assert!(limiter.check(None).is_ok());
    }

    #[test]
    fn a_limiter_that_is_off_limits_nothing_and_keeps_nothing() {
        let limiter = FailureLimiter::off();
        for _ in 0..100 {
            limiter.record_failure(v4(1));
        }
        assert!(limiter.check(v4(1)).is_ok());
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn budgets_refill_over_a_minute() {
        let limiter = FailureLimiter::new(60);
        for _ in 0..60 {
            limiter.record_failure(v4(1));
        }
        assert!(limiter.check(v4(1)).is_err());
        // Wind the bucket's clock back instead of sleeping.
        if let Ok(mut buckets) = limiter.buckets.lock() {
            for bucket in buckets.values_mut() {
                bucket.updated -= Duration::from_secs(2);
            }
        }
        assert!(limiter.check(v4(1)).is_ok(), "two failures' worth refilled");
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
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let limiter = FailureLimiter::new(5);
        for n in 0..(MAX_ADDRESSES as u32 + 1000) {
            limiter.record_failure(Some(IpAddr::V4(Ipv4Addr::from(n))));
        }
        assert_eq!(limiter.tracked(), MAX_ADDRESSES);
        // The table is full of live budgets: a new address fails closed.
        assert!(
            limiter
                .check(Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1))))
                .is_err()
        );
    }
}
