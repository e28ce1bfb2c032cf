//! The one clock: honours `DBGUARD_NOW` (RFC 3339) so tests and demos are deterministic.

use chrono::{DateTime, Utc};

pub(crate) fn now() -> DateTime<Utc> {
    crate::env::fixed_now()
        .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or_else(Utc::now)
}
