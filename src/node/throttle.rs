//! Warnings that repeat: at most one log line a second per reason and remote address, with
//! the count of what was left out since the last one. A flood of refused connections must not
//! become a flood of log lines; the metrics still count every occurrence.
//!
//! A throttle belongs to the listener or limiter that owns it; nothing is shared between two
//! nodes in one process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often one reason from one address may be logged.
const EVERY: Duration = Duration::from_secs(1);

/// Addresses remembered at most; past this, entries older than [`EVERY`] are forgotten, and
/// if none is, everything is (a flood from many addresses then logs at most this many lines
/// a second).
const REMEMBERED: usize = 4096;

/// Lines one reason may log in one second, over all addresses: a flood from many addresses
/// (a botnet, a rotating IPv6 prefix) is bounded too.
const PER_REASON: u32 = 10;

#[derive(Debug)]
struct Seen {
    logged_at: Instant,
    suppressed: u64,
}

/// One second's lines of one reason, over all addresses.
#[derive(Debug)]
struct Budget {
    second: Instant,
    logged: u32,
}

/// Decides which repeated warnings are logged.
#[derive(Debug, Default)]
pub struct Throttle {
    seen: Mutex<HashMap<(&'static str, Option<IpAddr>), Seen>>,
    budgets: Mutex<HashMap<&'static str, Budget>>,
}

/// The address a warning is counted under: IPv6 by its /64, where one host has many.
pub fn source(address: IpAddr) -> IpAddr {
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

impl Throttle {
    /// A throttle that has logged nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a warning for `reason` from `address` is logged now: `Some(n)` with the number
    /// of the same warnings left out since the last logged one, or `None` to leave it out.
    pub fn admit(&self, reason: &'static str, address: Option<IpAddr>) -> Option<u64> {
        self.admit_at(reason, address, Instant::now())
    }

    fn admit_at(&self, reason: &'static str, address: Option<IpAddr>, now: Instant) -> Option<u64> {
        let address = address.map(source);
        // A poisoned lock only means a panic while counting; the counts stay usable.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        let budget = budgets.entry(reason).or_insert(Budget {
            second: now,
            logged: 0,
        });
        if now.duration_since(budget.second) >= EVERY {
            *budget = Budget {
                second: now,
                logged: 0,
            };
        }
        let spent = budget.logged >= PER_REASON;
        if let Some(s) = seen.get_mut(&(reason, address)) {
            if spent || now.duration_since(s.logged_at) < EVERY {
                s.suppressed += 1;
                return None;
            }
            let mut suppressed = s.suppressed;
            *s = Seen {
                logged_at: now,
                suppressed: 0,
            };
            budget.logged += 1;
            // Lines left out over the reason's budget, from addresses it had no room for.
            if address.is_some()
                && let Some(over) = seen.get_mut(&(reason, None))
            {
                suppressed += std::mem::take(&mut over.suppressed);
            }
            return Some(suppressed);
        }
        if spent {
            // Counted under the reason alone, and reported with its next line.
            seen.entry((reason, None))
                .or_insert(Seen {
                    logged_at: now,
                    suppressed: 0,
                })
                .suppressed += 1;
            return None;
        }
        budget.logged += 1;
        // Lines left out over the reason's budget, from addresses it had no room for.
        let over = match address {
            Some(_) => seen
                .get_mut(&(reason, None))
                .map_or(0, |over| std::mem::take(&mut over.suppressed)),
            None => 0,
        };
        if seen.len() >= REMEMBERED {
            seen.retain(|_, s| now.duration_since(s.logged_at) < EVERY);
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(
            (reason, address),
            Seen {
                logged_at: now,
                suppressed: 0,
            },
        );
        Some(over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_per_reason_and_address_with_the_count_left_out() {
        let throttle = Throttle::new();
        let start = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(throttle.admit_at("timeout", Some(a), start), Some(0));
        for i in 1..=5 {
            let at = start + Duration::from_millis(100 * i);
            assert_eq!(throttle.admit_at("timeout", Some(a), at), None);
        }
        // Another address and another reason are counted apart.
        assert_eq!(throttle.admit_at("timeout", Some(b), start), Some(0));
        assert_eq!(throttle.admit_at("unknown_ca", Some(a), start), Some(0));
        let later = start + Duration::from_millis(1_100);
        assert_eq!(throttle.admit_at("timeout", Some(a), later), Some(5));
        assert_eq!(throttle.admit_at("timeout", Some(a), later), None);
    }

    #[test]
    fn many_addresses_log_a_bounded_number_of_lines_and_keep_the_memory_bounded() {
        let throttle = Throttle::new();
        let start = Instant::now();
        let mut logged = 0;
        for i in 0..(REMEMBERED as u32 * 3) {
            let address = IpAddr::from(i.to_be_bytes());
            let at = start + Duration::from_micros(u64::from(i));
            logged += u32::from(throttle.admit_at("timeout", Some(address), at).is_some());
        }
        assert_eq!(logged, PER_REASON, "lines in the first second");
        // The next line reports what the budget left out, from every address.
        let later = start + Duration::from_secs(2);
        let reported = throttle.admit_at("timeout", Some(IpAddr::from([192, 0, 2, 1])), later);
        assert!(reported.is_some_and(|n| n > 0), "{reported:?}");
        let held = throttle.seen.lock().unwrap().len();
        assert!(held <= REMEMBERED, "{held} addresses remembered");
    }

    #[test]
    fn an_ipv6_prefix_counts_as_one_address() {
        let throttle = Throttle::new();
        let start = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(throttle.admit_at("timeout", Some(a), start), Some(0));
        assert_eq!(throttle.admit_at("timeout", Some(b), start), None);
        assert_eq!(source(b), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    }
}
