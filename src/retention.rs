//! Retention policy (keep-last/hourly/daily/weekly/monthly/within) as a pure function, after restic's `forget`.
//!
//! [`apply`] decides which snapshots to keep and which to remove; it never touches the
//! store. The rules, per database path and per store that took the snapshot (every path
//! is its own group, and snapshots fetched from another clone's store form groups of
//! their own, so that they never crowd out this clone's snapshots of the same path):
//!
//! * Snapshots of a path are ordered newest first (`created_at` descending, ties broken by
//!   the higher `id` first, so the result never depends on input order).
//! * `keep_last: N` keeps the N newest snapshots.
//! * `keep_hourly/daily/weekly/monthly: N` keeps the newest snapshot in each of the N most
//!   recent UTC hours / days / ISO weeks / months that have a snapshot.
//! * `keep_within: D` keeps every snapshot whose `created_at` is after `now - D`
//!   (restic measures from the newest snapshot instead of from `now`; we use `now`).
//! * A snapshot kept by any rule is kept; its reasons list every rule that kept it.
//! * **The newest snapshot of every path is always kept** (of every group: this clone's
//!   own newest, and each other store's), whatever the policy.
//! * **An empty policy keeps everything.** A policy is empty when no rule is set; as in
//!   restic, a count of `0` or a zero/negative duration counts as "not set". Nothing is
//!   ever deleted because a setting was left out.
//!
//! Snapshots dated in the future (clock skew) are ordinary snapshots: they sort first and
//! are always "within".

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

/// Which snapshots to keep. `Default` is the empty policy (keeps everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) keep_last: Option<u32>,
    pub(crate) keep_hourly: Option<u32>,
    pub(crate) keep_daily: Option<u32>,
    pub(crate) keep_weekly: Option<u32>,
    pub(crate) keep_monthly: Option<u32>,
    pub(crate) keep_within: Option<Duration>,
}

impl Policy {
    /// True when no rule is set (counts of 0 and durations <= 0 count as unset).
    /// [`apply`] keeps every snapshot under an empty policy.
    pub(crate) fn is_empty(&self) -> bool {
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
        ];
        counts.iter().all(|c| c.unwrap_or(0) == 0)
            && self.keep_within.is_none_or(|d| d <= Duration::zero())
    }
}

/// One snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) id: i64,
    /// The database's worktree-relative path: the grouping key.
    pub(crate) path: String,
    /// The store that took it when fetched from another one (its id); `None`: this
    /// store. Part of the grouping key.
    pub(crate) origin: Option<String>,
    /// When the snapshot's state was last recorded: a snapshot that later operations
    /// found unchanged counts from the newest of them (it stands for those snapshots).
    pub(crate) created_at: DateTime<Utc>,
}

/// Why a snapshot is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Reason {
    /// The newest snapshot of its path: always kept.
    Newest,
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Within,
    /// The policy is empty, so everything is kept.
    NoPolicy,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Newest => "newest of its path",
            Reason::Last => "last",
            Reason::Hourly => "hourly",
            Reason::Daily => "daily",
            Reason::Weekly => "weekly",
            Reason::Monthly => "monthly",
            Reason::Within => "within",
            Reason::NoPolicy => "no retention policy set",
        })
    }
}

/// The outcome of [`apply`]. Both lists are ordered by path (ascending), then newest first.
/// Every input id appears exactly once, in `keep` or in `remove`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Kept snapshot ids with every reason that kept them (sorted, never empty).
    pub(crate) keep: Vec<(i64, Vec<Reason>)>,
    pub(crate) remove: Vec<i64>,
}

/// Applies `policy` to `snapshots` as of `now`. Pure: no clock, no I/O.
pub(crate) fn apply(policy: &Policy, snapshots: &[Candidate], now: DateTime<Utc>) -> Decision {
    let mut groups: BTreeMap<(&str, Option<&str>), Vec<&Candidate>> = BTreeMap::new();
    for s in snapshots {
        groups
            .entry((s.path.as_str(), s.origin.as_deref()))
            .or_default()
            .push(s);
    }

    let empty = policy.is_empty();
    let within_cutoff = policy
        .keep_within
        .filter(|d| *d > Duration::zero())
        .map(|d| {
            now.checked_sub_signed(d)
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        });

    let mut decision = Decision::default();
    for group in groups.values_mut() {
        group.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));

        let mut buckets = [
            Bucketer::new(Reason::Last, policy.keep_last),
            Bucketer::new(Reason::Hourly, policy.keep_hourly),
            Bucketer::new(Reason::Daily, policy.keep_daily),
            Bucketer::new(Reason::Weekly, policy.keep_weekly),
            Bucketer::new(Reason::Monthly, policy.keep_monthly),
        ];

        for (index, snap) in group.iter().enumerate() {
            let mut reasons = Vec::new();
            if index == 0 {
                reasons.push(Reason::Newest);
            }
            for b in &mut buckets {
                if b.take(index, snap.created_at) {
                    reasons.push(b.reason);
                }
            }
            if within_cutoff.is_some_and(|cutoff| snap.created_at > cutoff) {
                reasons.push(Reason::Within);
            }
            if empty {
                reasons.push(Reason::NoPolicy);
            }
            if reasons.is_empty() {
                decision.remove.push(snap.id);
            } else {
                decision.keep.push((snap.id, reasons));
            }
        }
    }
    decision
}

/// One counting rule: keeps the first snapshot of each new bucket while its count lasts.
struct Bucketer {
    reason: Reason,
    remaining: u32,
    last: Option<(i32, u32, u32)>,
}

impl Bucketer {
    fn new(reason: Reason, count: Option<u32>) -> Self {
        Bucketer {
            reason,
            remaining: count.unwrap_or(0),
            last: None,
        }
    }

    /// Snapshots arrive newest first; equal buckets are therefore adjacent.
    fn take(&mut self, index: usize, t: DateTime<Utc>) -> bool {
        if self.remaining == 0 {
            return false;
        }
        let key = match self.reason {
            // Every snapshot is its own bucket.
            Reason::Last => (0, 0, u32::try_from(index).unwrap_or(u32::MAX)),
            Reason::Hourly => (t.year(), t.ordinal(), t.hour()),
            Reason::Daily => (t.year(), t.ordinal(), 0),
            Reason::Weekly => {
                let w = t.iso_week();
                (w.year(), w.week(), 0)
            }
            Reason::Monthly => (t.year(), t.month(), 0),
            _ => unreachable!("not a counting rule"),
        };
        if self.last == Some(key) {
            return false;
        }
        self.last = Some(key);
        self.remaining -= 1;
        true
    }
}

/// Error from [`parse_duration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason} (expected e.g. \"8h\", \"30d\", \"2w\", \"1y2m3d4h\")"
)]
pub(crate) struct DurationError {
    pub(crate) input: String,
    pub(crate) reason: &'static str,
}

/// Parses a restic-style duration: one or more `<number><unit>` pairs, units
/// `h` (hours), `d` (days), `w` (weeks), `m` (months = 30 days), `y` (years = 365 days).
/// Months and years are fixed lengths because a [`Duration`] has no calendar.
/// Examples: `"8h"`, `"30d"`, `"2w"`, `"1y2m3d4h"`. Surrounding whitespace is ignored.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: s.to_string(),
        reason,
    };
    let text = s.trim();
    if text.is_empty() {
        return Err(err("empty"));
    }
    let mut total_hours: i64 = 0;
    let mut number: Option<i64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(i64::from(digit)))
                .ok_or_else(|| err("number too large"))?;
            number = Some(n);
            continue;
        }
        let hours_per_unit = match c {
            'h' => 1,
            'd' => 24,
            'w' => 7 * 24,
            'm' => 30 * 24,
            'y' => 365 * 24,
            _ => return Err(err("unknown unit (use h, d, w, m or y)")),
        };
        let n = number.take().ok_or_else(|| err("unit without a number"))?;
        total_hours = n
            .checked_mul(hours_per_unit)
            .and_then(|h| total_hours.checked_add(h))
            .ok_or_else(|| err("too large"))?;
    }
    if number.is_some() {
        return Err(err("number without a unit"));
    }
    // chrono panics above i64::MAX milliseconds; keep well inside.
    Duration::try_hours(total_hours).ok_or_else(|| err("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn c(id: i64, path: &str, at: &str) -> Candidate {
        Candidate {
            id,
            path: path.into(),
            origin: None,
            created_at: t(at),
        }
    }

    fn kept(d: &Decision) -> Vec<i64> {
        d.keep.iter().map(|(id, _)| *id).collect()
    }

    fn reasons(d: &Decision, id: i64) -> Vec<Reason> {
        d.keep
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    }

    const NOW: &str = "2024-03-15T12:00:00Z";

    #[test]
    fn table() {
        let a = "a.db";
        // Newest first: 6 (12:10 same hour as 5), 5 (12:05), 4 (yesterday), 3 (two days ago),
        // 2 (last month), 1 (last year).
        let snaps = vec![
            c(1, a, "2023-03-01T08:00:00Z"),
            c(2, a, "2024-02-10T08:00:00Z"),
            c(3, a, "2024-03-13T09:00:00Z"),
            c(4, a, "2024-03-14T11:30:00Z"),
            c(5, a, "2024-03-15T11:05:00Z"),
            c(6, a, "2024-03-15T11:10:00Z"),
        ];
        struct Case {
            name: &'static str,
            policy: Policy,
            keep: &'static [i64],
        }
        let cases = [
            Case {
                name: "empty policy keeps everything",
                policy: Policy::default(),
                keep: &[6, 5, 4, 3, 2, 1],
            },
            Case {
                name: "all-zero policy is empty",
                policy: Policy {
                    keep_last: Some(0),
                    keep_daily: Some(0),
                    keep_within: Some(Duration::zero()),
                    ..Policy::default()
                },
                keep: &[6, 5, 4, 3, 2, 1],
            },
            Case {
                name: "keep-last 1",
                policy: Policy {
                    keep_last: Some(1),
                    ..Policy::default()
                },
                keep: &[6],
            },
            Case {
                name: "keep-last 3",
                policy: Policy {
                    keep_last: Some(3),
                    ..Policy::default()
                },
                keep: &[6, 5, 4],
            },
            Case {
                name: "keep-last more than there are",
                policy: Policy {
                    keep_last: Some(100),
                    ..Policy::default()
                },
                keep: &[6, 5, 4, 3, 2, 1],
            },
            Case {
                name: "hourly: one per hour, same hour keeps only the newest",
                policy: Policy {
                    keep_hourly: Some(2),
                    ..Policy::default()
                },
                keep: &[6, 4],
            },
            Case {
                name: "daily 3",
                policy: Policy {
                    keep_daily: Some(3),
                    ..Policy::default()
                },
                keep: &[6, 4, 3],
            },
            Case {
                name: "weekly 2 (ISO week 11 holds 6,5,4,3; week 6 holds 2)",
                policy: Policy {
                    keep_weekly: Some(2),
                    ..Policy::default()
                },
                keep: &[6, 2],
            },
            Case {
                name: "monthly 12",
                policy: Policy {
                    keep_monthly: Some(12),
                    ..Policy::default()
                },
                keep: &[6, 2, 1],
            },
            Case {
                name: "within 2d from now",
                policy: Policy {
                    keep_within: Some(Duration::days(2)),
                    ..Policy::default()
                },
                keep: &[6, 5, 4],
            },
            Case {
                name: "within too short still keeps the newest",
                policy: Policy {
                    keep_within: Some(Duration::minutes(1)),
                    ..Policy::default()
                },
                keep: &[6],
            },
            Case {
                name: "rules combine (union)",
                policy: Policy {
                    keep_last: Some(2),
                    keep_monthly: Some(2),
                    ..Policy::default()
                },
                keep: &[6, 5, 2],
            },
        ];
        for case in cases {
            let d = apply(&case.policy, &snaps, t(NOW));
            assert_eq!(kept(&d), case.keep, "{}", case.name);
            let mut all: Vec<i64> = kept(&d).into_iter().chain(d.remove.clone()).collect();
            all.sort();
            assert_eq!(all, vec![1, 2, 3, 4, 5, 6], "{}: partition", case.name);
        }
    }

    #[test]
    fn reasons_are_listed() {
        let snaps = [
            c(1, "a", "2024-03-15T10:00:00Z"),
            c(2, "a", "2024-03-15T11:00:00Z"),
        ];
        let p = Policy {
            keep_last: Some(1),
            keep_hourly: Some(5),
            keep_within: Some(Duration::hours(1)),
            ..Policy::default()
        };
        let d = apply(&p, &snaps, t(NOW));
        assert_eq!(
            reasons(&d, 2),
            vec![Reason::Newest, Reason::Last, Reason::Hourly]
        );
        assert_eq!(reasons(&d, 1), vec![Reason::Hourly]);
        assert!(d.remove.is_empty());

        let d = apply(&Policy::default(), &snaps, t(NOW));
        assert_eq!(reasons(&d, 2), vec![Reason::Newest, Reason::NoPolicy]);
        assert_eq!(reasons(&d, 1), vec![Reason::NoPolicy]);
    }

    #[test]
    fn ties_are_broken_by_id_and_independent_of_input_order() {
        let p = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let at = "2024-03-15T11:00:00Z";
        let mut snaps = vec![c(7, "a", at), c(9, "a", at), c(8, "a", at)];
        let d1 = apply(&p, &snaps, t(NOW));
        snaps.reverse();
        let d2 = apply(&p, &snaps, t(NOW));
        assert_eq!(d1, d2);
        assert_eq!(kept(&d1), vec![9]);
        assert_eq!(d1.remove, vec![8, 7]);

        // Equal timestamps share one hourly bucket.
        let p = Policy {
            keep_hourly: Some(10),
            ..Policy::default()
        };
        assert_eq!(kept(&apply(&p, &snaps, t(NOW))), vec![9]);
    }

    #[test]
    fn future_timestamps_are_ordinary_snapshots() {
        let snaps = [
            c(1, "a", "2024-03-15T11:00:00Z"),
            c(2, "a", "2030-01-01T00:00:00Z"),
        ];
        let p = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let d = apply(&p, &snaps, t(NOW));
        assert_eq!(kept(&d), vec![2]);
        assert_eq!(d.remove, vec![1]);

        let p = Policy {
            keep_within: Some(Duration::hours(2)),
            ..Policy::default()
        };
        assert_eq!(kept(&apply(&p, &snaps, t(NOW))), vec![2, 1]);
    }

    #[test]
    fn empty_input() {
        let d = apply(
            &Policy {
                keep_last: Some(1),
                ..Policy::default()
            },
            &[],
            t(NOW),
        );
        assert_eq!(d, Decision::default());
        assert_eq!(apply(&Policy::default(), &[], t(NOW)), Decision::default());
    }

    #[test]
    fn each_path_is_its_own_group() {
        let snaps = [
            c(1, "b.db", "2024-03-15T08:00:00Z"),
            c(2, "a.db", "2024-03-15T09:00:00Z"),
            c(3, "a.db", "2024-03-15T10:00:00Z"),
            c(4, "b.db", "2020-01-01T00:00:00Z"),
            c(5, "c.duckdb", "2019-01-01T00:00:00Z"),
        ];
        let p = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let d = apply(&p, &snaps, t(NOW));
        // Ordered by path, newest first; the old c.duckdb snapshot is its path's newest.
        assert_eq!(kept(&d), vec![3, 1, 5]);
        assert_eq!(d.remove, vec![2, 4]);

        let p = Policy {
            keep_daily: Some(1),
            ..Policy::default()
        };
        let d = apply(&p, &snaps, t(NOW));
        assert_eq!(kept(&d), vec![3, 1, 5]);
    }

    /// Tiny deterministic PRNG (xorshift64*), so the property check needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn opt(&mut self, max: u32) -> Option<u32> {
            match self.below(3) {
                0 => None,
                _ => Some(self.below(u64::from(max) + 1) as u32),
            }
        }
    }

    #[test]
    fn fetched_snapshots_are_kept_apart_from_this_stores_own() {
        // This clone took #1 a week ago; another clone's three newer snapshots of the same
        // path were fetched. keep-last 1 keeps the newest of each store: this clone's #1
        // is never crowded out by them.
        let now = t("2024-03-15T12:00:00Z");
        let mut own = c(1, "posts.db", "2024-03-08T12:00:00Z");
        own.origin = None;
        let fetched: Vec<Candidate> = (2..=4)
            .map(|id| Candidate {
                origin: Some("other-store".into()),
                ..c(id, "posts.db", &format!("2024-03-1{id}T12:00:00Z"))
            })
            .collect();
        let mut all = vec![own];
        all.extend(fetched);
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let d = apply(&policy, &all, now);
        assert_eq!(kept(&d), vec![1, 4]);
        assert_eq!(d.remove, vec![3, 2]);
        assert!(reasons(&d, 1).contains(&Reason::Newest));
    }

    #[test]
    fn property_newest_per_path_always_kept_and_partition() {
        let now = Utc.with_ymd_and_hms(2024, 3, 15, 12, 0, 0).unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..2000 {
            let policy = Policy {
                keep_last: rng.opt(3),
                keep_hourly: rng.opt(3),
                keep_daily: rng.opt(3),
                keep_weekly: rng.opt(2),
                keep_monthly: rng.opt(2),
                keep_within: match rng.below(3) {
                    0 => None,
                    _ => Some(Duration::minutes(rng.below(60 * 24 * 40) as i64 - 60)),
                },
            };
            let n = rng.below(25) as usize;
            let snaps: Vec<Candidate> = (0..n)
                .map(|i| Candidate {
                    id: i as i64 + 1,
                    path: format!("db{}", rng.below(4)),
                    origin: None,
                    // From ~60 days ago to ~2 days in the future, with many collisions.
                    created_at: now
                        + Duration::minutes(rng.below(62 * 24 * 6) as i64 * 10 - 60 * 24 * 60),
                })
                .collect();
            let d = apply(&policy, &snaps, now);

            // Partition: every id exactly once.
            let mut ids: Vec<i64> = kept(&d).into_iter().chain(d.remove.clone()).collect();
            ids.sort();
            assert_eq!(ids, (1..=n as i64).collect::<Vec<_>>(), "round {round}");
            assert!(d.keep.iter().all(|(_, r)| !r.is_empty()));

            // The newest of every path is kept, with reason Newest.
            let mut newest: BTreeMap<&str, &Candidate> = BTreeMap::new();
            for s in &snaps {
                let e = newest.entry(s.path.as_str()).or_insert(s);
                if (s.created_at, s.id) > (e.created_at, e.id) {
                    *e = s;
                }
            }
            for s in newest.values() {
                assert!(
                    reasons(&d, s.id).contains(&Reason::Newest),
                    "round {round}: newest {} of {} not kept: {policy:?}",
                    s.id,
                    s.path
                );
            }

            // An empty policy removes nothing; keep-last N keeps at least min(N, len) per path.
            if policy.is_empty() {
                assert!(d.remove.is_empty(), "round {round}");
            }
            if let Some(n) = policy.keep_last {
                for path in newest.keys() {
                    let total = snaps.iter().filter(|s| s.path == *path).count();
                    let k = snaps
                        .iter()
                        .filter(|s| s.path == *path && kept(&d).contains(&s.id))
                        .count();
                    assert!(k >= total.min(n as usize), "round {round}");
                }
            }
        }
    }

    #[test]
    fn durations() {
        let ok = [
            ("8h", Duration::hours(8)),
            ("30d", Duration::days(30)),
            ("2w", Duration::weeks(2)),
            ("1m", Duration::days(30)),
            ("1y", Duration::days(365)),
            (
                "1y2m3d4h",
                Duration::days(365 + 60 + 3) + Duration::hours(4),
            ),
            (" 0d ", Duration::zero()),
            ("1d1d", Duration::days(2)),
        ];
        for (s, want) in ok {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for bad in [
            "",
            "  ",
            "5",
            "d",
            "5x",
            "1d 2h",
            "-1d",
            "1.5d",
            "99999999999999999999h",
            "9999999999999999y",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.to_string().contains("invalid duration"), "{bad}: {e}");
        }
    }
}
