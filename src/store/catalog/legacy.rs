//! Completeness of snapshots recorded before schema 8, which kept it only inside the
//! consistency label: read once from that text, when the catalog migrates (or when an
//! older catalog is opened read-only, or an older remote record is fetched). New
//! snapshots store [`Completeness`] in typed columns and never come through here.

use chrono::{DateTime, Utc};

use crate::db::{Completeness, LIVE_PREFIX, Missing, PARTIAL_PREFIX};

/// The label dbguard before live copies wrote for a main-file-only copy: also partial.
const OLD_PARTIAL_PREFIX: &str = "as-of-last-checkpoint";

/// What a label written by an older dbguard says about the copy's completeness. Text it
/// does not know reads as complete: every older label but the two partial forms was.
pub(crate) fn completeness_of_label(label: &str) -> Completeness {
    if label.starts_with(LIVE_PREFIX) {
        return Completeness {
            partial: false,
            instant: time_after(label, LIVE_PREFIX),
            retries: number_after(label, "; ").and_then(|n| u32::try_from(n).ok()),
            missing: None,
        };
    }
    let old = label.starts_with(OLD_PARTIAL_PREFIX);
    if !label.starts_with(PARTIAL_PREFIX) && !old {
        return Completeness::default();
    }
    let wal_bytes = number_after(label, "(")
        .or_else(|| number_after(label, "missing "))
        .unwrap_or(0);
    Completeness {
        partial: true,
        instant: None,
        retries: None,
        missing: Some(Missing {
            // The old label said "missing N WAL bytes": N is bytes, not commits.
            commits: if old {
                None
            } else {
                number_after(label, "missing ")
            },
            wal_bytes,
            since: time_after(label, " since "),
            until: time_after(label, " until "),
            holder_pid: number_after(label, "pid ").and_then(|n| u32::try_from(n).ok()),
        }),
    }
}

/// The first unsigned number right after `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn time_after(text: &str, key: &str) -> Option<DateTime<Utc>> {
    let at = text.find(key)? + key.len();
    let word = text[at..].split([' ', ')', ';']).next()?;
    DateTime::parse_from_rfc3339(word)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Consistency;

    /// Labels as today's `Consistency::label` writes them read back to the same facts the
    /// typed columns hold: the migration of a schema-7 catalog loses nothing.
    #[test]
    fn labels_read_back_to_what_the_copy_recorded() {
        let instant = DateTime::parse_from_rfc3339("2026-12-01T19:50:01.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let missing = Missing {
            commits: Some(12),
            wal_bytes: 45678,
            since: Some(instant),
            until: Some(instant),
            holder_pid: Some(4242),
        };
        for consistency in [
            Consistency::LiveCopy {
                instant,
                retries: 3,
                pid: 4242,
            },
            Consistency::Partial(missing),
            Consistency::Partial(Missing::default()),
            Consistency::OnlineBackup,
            Consistency::ReadTransaction,
            Consistency::RolledBackHotJournal,
            Consistency::LockedCopy,
        ] {
            assert_eq!(
                completeness_of_label(&consistency.label()),
                consistency.completeness(),
                "{consistency:?}"
            );
        }
    }

    #[test]
    fn labels_before_live_copies_are_partial_in_bytes() {
        let old = completeness_of_label("as-of-last-checkpoint (missing 900 WAL bytes)");
        assert!(old.partial);
        let missing = old.missing.unwrap();
        assert_eq!(missing.wal_bytes, 900);
        assert_eq!(missing.commits, None);
        assert!(!completeness_of_label("online-backup").partial);
        assert!(!completeness_of_label("anything else").partial);
    }
}
