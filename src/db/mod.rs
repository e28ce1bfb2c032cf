//! Database files: recognising them by their header bytes, and the census (rows per table).

pub(crate) mod create_table;
pub(crate) mod duckdb;
pub(crate) mod sqlite;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The two database engines dbguard understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DbKind {
    Sqlite,
    #[serde(rename = "duckdb")]
    DuckDb,
}

impl DbKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DbKind::Sqlite => "sqlite",
            DbKind::DuckDb => "duckdb",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<DbKind> {
        match s {
            "sqlite" => Some(DbKind::Sqlite),
            "duckdb" => Some(DbKind::DuckDb),
            _ => None,
        }
    }

    /// Files that belong to a database and move with it.
    pub(crate) fn sidecar_suffixes(self) -> &'static [&'static str] {
        match self {
            DbKind::Sqlite => &[SQLITE_WAL, SQLITE_SHM, SQLITE_JOURNAL],
            DbKind::DuckDb => &[DUCKDB_WAL],
        }
    }

    /// The sidecar whose contents are part of the database (the write-ahead log).
    pub(crate) fn wal_suffix(self) -> &'static str {
        match self {
            DbKind::Sqlite => SQLITE_WAL,
            DbKind::DuckDb => DUCKDB_WAL,
        }
    }
}

/// SQLite's write-ahead log, `<db>-wal`.
pub(crate) const SQLITE_WAL: &str = "-wal";
/// SQLite's shared-memory index of the WAL, `<db>-shm`.
pub(crate) const SQLITE_SHM: &str = "-shm";
/// SQLite's rollback journal, `<db>-journal`.
pub(crate) const SQLITE_JOURNAL: &str = "-journal";
/// DuckDB's write-ahead log, `<db>.wal`.
pub(crate) const DUCKDB_WAL: &str = ".wal";
/// Where DuckDB >= 1.5 writes the commits made during a checkpoint, `<db>.wal.checkpoint`.
pub(crate) const DUCKDB_CHECKPOINT_WAL: &str = ".wal.checkpoint";

/// The sidecar of `path` with `suffix` (one of the constants above): `posts.db-wal`.
pub(crate) fn sidecar_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a private image and any sidecar either engine may have left next to it;
/// best effort, for cleaning up staging files.
pub(crate) fn remove_image_files(image: &Path) {
    let _ = std::fs::remove_file(image);
    for kind in [DbKind::Sqlite, DbKind::DuckDb] {
        for suffix in kind.sidecar_suffixes() {
            let _ = std::fs::remove_file(sidecar_path(image, suffix));
        }
    }
}

impl std::fmt::Display for DbKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DbKind::Sqlite => "SQLite",
            DbKind::DuckDb => "DuckDB",
        })
    }
}

/// What the first bytes of a file say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sniff {
    Database(DbKind),
    /// Not a database; the reason is shown to users who named the file explicitly.
    NotDatabase(&'static str),
}

pub(crate) const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
pub(crate) const DUCKDB_MAGIC: &[u8; 4] = b"DUCK";

/// Recognise a database by its header: SQLite's 16-byte magic string, or `DUCK` at
/// offset 8 for DuckDB. Names and extensions are never trusted.
pub(crate) fn sniff(path: &Path) -> io::Result<Sniff> {
    let mut file = File::open(path)?;
    let mut header = [0u8; 16];
    let mut filled = 0;
    while filled < header.len() {
        let n = file.read(&mut header[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(sniff_bytes(&header[..filled]))
}

pub(crate) fn sniff_bytes(header: &[u8]) -> Sniff {
    if header.is_empty() {
        return Sniff::NotDatabase("empty file");
    }
    if header.len() >= 16 && &header[..16] == SQLITE_MAGIC {
        return Sniff::Database(DbKind::Sqlite);
    }
    if header.len() >= 12 && &header[8..12] == DUCKDB_MAGIC {
        return Sniff::Database(DbKind::DuckDb);
    }
    if header.len() < 16 {
        return Sniff::NotDatabase("too short to be a database");
    }
    Sniff::NotDatabase("no SQLite or DuckDB header (encrypted, compressed or another format)")
}

/// Exact row counts per table plus a fingerprint of the schema, taken from one consistent
/// copy so that counts and bytes describe the same instant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Census {
    pub(crate) tables: BTreeMap<String, u64>,
    /// Hex sha256 of the normalised schema text.
    pub(crate) schema: String,
}

impl Census {
    pub(crate) fn total_rows(&self) -> u64 {
        self.tables.values().sum()
    }

    /// Fingerprint a list of schema statements (already in a stable order).
    pub(crate) fn fingerprint<'a>(statements: impl IntoIterator<Item = &'a str>) -> String {
        let mut hasher = Sha256::new();
        for statement in statements {
            let normalised: Vec<&str> = statement.split_whitespace().collect();
            hasher.update(normalised.join(" ").as_bytes());
            hasher.update(b"\n");
        }
        hex(&hasher.finalize())
    }
}

/// How a snapshot image was taken; shown to users so they know what they are restoring.
/// The catalog stores [`Consistency::label`] for people and [`Consistency::completeness`]
/// as typed columns for code (never parsed back out of the label).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Consistency {
    /// SQLite online backup API in one step: a transactionally consistent copy.
    OnlineBackup,
    /// SQLite pages read through SQLite inside one read transaction (`sqlite_dbpage`),
    /// checked and counted in that same transaction: one committed state.
    ReadTransaction,
    /// A writer had crashed mid-transaction: its hot journal was rolled back in a private
    /// copy (never in the user's files), leaving the last committed state.
    RolledBackHotJournal,
    /// DuckDB file and WAL copied under DuckDB's own lock, then checkpointed in the copy.
    LockedCopy,
    /// DuckDB WAL and main file copied while another process held the file read-write,
    /// between two reads of the checkpoint iteration that agreed; the copy replayed its
    /// WAL and was checkpointed. It holds every transaction committed before `instant`.
    LiveCopy {
        instant: DateTime<Utc>,
        retries: u32,
        pid: u32,
    },
    /// DuckDB main file only (no complete copy could be made while `pid` held the file):
    /// consistent as of the last checkpoint, missing what the WAL holds.
    Partial(Missing),
}

/// What a partial copy lacks: the commits in the WAL of the live file at the time.
/// (Deserialized from remote snapshot records: every field checked by its type.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Missing {
    /// Committed transactions in the WAL the copy lacks (None: not known).
    #[serde(default)]
    pub(crate) commits: Option<u64>,
    pub(crate) wal_bytes: u64,
    /// When the WAL was started (the last checkpoint), as far as the file system says.
    #[serde(
        serialize_with = "opt_rfc3339",
        deserialize_with = "opt_rfc3339_in",
        default
    )]
    pub(crate) since: Option<DateTime<Utc>>,
    /// The WAL's last write: the newest missing commit.
    #[serde(
        serialize_with = "opt_rfc3339",
        deserialize_with = "opt_rfc3339_in",
        default
    )]
    pub(crate) until: Option<DateTime<Utc>>,
    /// The process that held the file read-write.
    #[serde(default)]
    pub(crate) holder_pid: Option<u32>,
}

fn rfc3339(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn opt_rfc3339_in<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(&text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
}

fn opt_rfc3339<S: serde::Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serializer.serialize_str(&rfc3339(time)),
        None => serializer.serialize_none(),
    }
}

/// How labels start; `store::catalog::legacy` reads catalogs that only have the label.
pub(crate) const LIVE_PREFIX: &str = "live-copy as of ";
pub(crate) const PARTIAL_PREFIX: &str = "partial as of last checkpoint";

impl Consistency {
    /// The facts code decides on: whether every commit is in the copy, and what is not.
    pub(crate) fn completeness(&self) -> Completeness {
        match self {
            Consistency::LiveCopy {
                instant, retries, ..
            } => Completeness {
                partial: false,
                instant: Some(*instant),
                retries: Some(*retries),
                missing: None,
            },
            Consistency::Partial(missing) => Completeness {
                partial: true,
                instant: None,
                retries: None,
                missing: Some(missing.clone()),
            },
            Consistency::OnlineBackup
            | Consistency::ReadTransaction
            | Consistency::RolledBackHotJournal
            | Consistency::LockedCopy => Completeness::default(),
        }
    }

    pub(crate) fn label(&self) -> String {
        match self {
            Consistency::OnlineBackup => "online-backup".into(),
            Consistency::ReadTransaction => "read-transaction".into(),
            Consistency::RolledBackHotJournal => {
                "online-backup (hot journal rolled back in the copy)".into()
            }
            Consistency::LockedCopy => "locked-copy".into(),
            Consistency::LiveCopy {
                instant,
                retries,
                pid,
            } => format!(
                "{LIVE_PREFIX}{} (held by pid {pid}; {retries} retries; verified: WAL replayed and checkpointed, every column of every table read)",
                rfc3339(instant)
            ),
            Consistency::Partial(missing) => {
                let mut text = format!("{PARTIAL_PREFIX}: missing ");
                match missing.commits {
                    Some(commits) => text.push_str(&format!("{commits} commits")),
                    None => text.push_str("unknown commits"),
                }
                text.push_str(&format!(" ({} WAL bytes)", missing.wal_bytes));
                if let Some(since) = missing.since {
                    text.push_str(&format!(" made since {}", rfc3339(&since)));
                }
                if let Some(until) = missing.until {
                    text.push_str(&format!(" until {}", rfc3339(&until)));
                }
                if let Some(pid) = missing.holder_pid {
                    text.push_str(&format!(" (held by pid {pid})"));
                }
                text
            }
        }
    }
}

/// Whether a stored snapshot holds every committed transaction, and what it lacks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Completeness {
    pub(crate) partial: bool,
    /// The instant a live copy stands for (every commit before it is in the snapshot).
    #[serde(
        serialize_with = "opt_rfc3339",
        deserialize_with = "opt_rfc3339_in",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub(crate) instant: Option<DateTime<Utc>>,
    /// Copies that a checkpoint overlapped and that were made again.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) missing: Option<Missing>,
}

impl Completeness {
    /// "missing 12 commits (45.0 KiB of WAL) made since 19:02:11 until 19:40:00".
    pub(crate) fn describe_missing(&self) -> Option<String> {
        let missing = self.missing.as_ref()?;
        let mut text = match missing.commits {
            Some(n) => format!(
                "lacks {n} committed transaction{} ({} of WAL)",
                if n == 1 { "" } else { "s" },
                crate::text::bytes(missing.wal_bytes)
            ),
            None => format!(
                "lacks the changes in {} of WAL",
                crate::text::bytes(missing.wal_bytes)
            ),
        };
        match (missing.since, missing.until) {
            (Some(since), Some(until)) => text.push_str(&format!(
                " committed between {} and {}",
                local(since),
                local(until)
            )),
            (Some(since), None) => text.push_str(&format!(" committed since {}", local(since))),
            (None, Some(until)) => text.push_str(&format!(" committed until {}", local(until))),
            (None, None) => text.push_str(" committed since the last checkpoint"),
        }
        Some(text)
    }
}

fn local(time: DateTime<Utc>) -> String {
    time.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// How a copy was made, and anything the user should know about it (e.g. a lock holder).
#[derive(Debug)]
pub(crate) struct CopyReport {
    pub(crate) consistency: Consistency,
    pub(crate) warning: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a usable SQLite database: {reason}")]
    Sqlite { path: PathBuf, reason: String },
    #[error("{path} is not a usable DuckDB database: {reason}")]
    DuckDb { path: PathBuf, reason: String },
    #[error("{path} is held open for writing by process {pid}{}, and no verified copy could be made", holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    DuckDbLocked {
        path: PathBuf,
        pid: u32,
        holder: Option<String>,
    },
    #[error("{path} failed its integrity check: {detail}")]
    Integrity { path: PathBuf, detail: String },
    #[error("{path} was written by a newer {kind} than the one built into dbguard: {detail}")]
    NewerFormat {
        path: PathBuf,
        kind: DbKind,
        detail: String,
    },
}

/// Make a consistent copy of the live database `source` at `dest` (a private path).
pub(crate) fn copy(kind: DbKind, source: &Path, dest: &Path) -> Result<CopyReport, DbError> {
    match kind {
        DbKind::Sqlite => {
            let consistency = sqlite::copy(source, dest)?;
            let warning = (consistency == Consistency::RolledBackHotJournal).then(|| {
                format!(
                    "{} has a hot journal (a writer crashed mid-transaction): the snapshot holds the last committed state; the unfinished transaction was rolled back in the copy, your files are unchanged",
                    source.display()
                )
            });
            Ok(CopyReport {
                consistency,
                warning,
            })
        }
        DbKind::DuckDb => {
            let (consistency, warning) = duckdb::copy(source, dest)?;
            Ok(CopyReport {
                consistency,
                warning,
            })
        }
    }
}

/// Integrity check and census of a private copy made by [`copy`].
pub(crate) fn check_and_census(kind: DbKind, image: &Path) -> Result<Census, DbError> {
    match kind {
        DbKind::Sqlite => sqlite::check_and_census(image),
        DbKind::DuckDb => duckdb::check_and_census(image),
    }
}

/// Census a live database (read-only) without copying it.
pub(crate) fn census_live(kind: DbKind, path: &Path) -> Result<Census, DbError> {
    match kind {
        DbKind::Sqlite => sqlite::census_file(path),
        DbKind::DuckDb => duckdb::census_file(path),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Quote an SQL identifier (works for SQLite and DuckDB).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_headers() {
        let mut sqlite = SQLITE_MAGIC.to_vec();
        sqlite.extend_from_slice(&[0; 84]);
        assert_eq!(sniff_bytes(&sqlite), Sniff::Database(DbKind::Sqlite));
        let mut duck = vec![0u8; 8];
        duck.extend_from_slice(b"DUCK");
        duck.extend_from_slice(&[0; 8]);
        assert_eq!(sniff_bytes(&duck), Sniff::Database(DbKind::DuckDb));
        assert!(matches!(sniff_bytes(b""), Sniff::NotDatabase("empty file")));
        assert!(matches!(sniff_bytes(b"SQLite"), Sniff::NotDatabase(_)));
        assert!(matches!(sniff_bytes(&[0x8f; 64]), Sniff::NotDatabase(_)));
    }

    #[test]
    fn completeness_says_what_a_copy_lacks() {
        let instant = DateTime::parse_from_rfc3339("2026-12-01T19:50:01.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let live = Consistency::LiveCopy {
            instant,
            retries: 3,
            pid: 4242,
        }
        .completeness();
        assert!(!live.partial);
        assert_eq!(live.instant, Some(instant));
        assert_eq!(live.retries, Some(3));
        let missing = Missing {
            commits: Some(12),
            wal_bytes: 45678,
            since: Some(instant),
            until: None,
            holder_pid: Some(4242),
        };
        let partial = Consistency::Partial(missing.clone()).completeness();
        assert!(partial.partial);
        assert_eq!(partial.missing, Some(missing));
        assert_eq!(
            Consistency::OnlineBackup.completeness(),
            Completeness::default()
        );
        assert!(!Consistency::LockedCopy.completeness().partial);
    }

    #[test]
    fn fingerprint_ignores_whitespace_only() {
        let a = Census::fingerprint(["CREATE TABLE t(a,\n  b)"]);
        let b = Census::fingerprint(["CREATE  TABLE t(a, b)"]);
        let c = Census::fingerprint(["CREATE TABLE t(a, c)"]);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
