//! The one clock: honours `DBGUARD_NOW` (RFC 3339) so tests and demos are deterministic.

use chrono::{DateTime, Utc};

pub fn now() -> DateTime<Utc> {
    std::env::var("DBGUARD_NOW")
        .ok()
        .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or_else(Utc::now)
}
