//! Database files: recognising them by their header bytes, and the census (rows per table).

pub mod duckdb;
pub mod sqlite;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The two database engines dbguard understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    Sqlite,
    #[serde(rename = "duckdb")]
    DuckDb,
}

impl DbKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DbKind::Sqlite => "sqlite",
            DbKind::DuckDb => "duckdb",
        }
    }

    pub fn parse(s: &str) -> Option<DbKind> {
        match s {
            "sqlite" => Some(DbKind::Sqlite),
            "duckdb" => Some(DbKind::DuckDb),
            _ => None,
        }
    }

    /// Files that belong to a database and move with it.
    pub fn sidecar_suffixes(self) -> &'static [&'static str] {
        match self {
            DbKind::Sqlite => &["-wal", "-shm", "-journal"],
            DbKind::DuckDb => &[".wal"],
        }
    }

    /// The sidecar whose contents are part of the database (the write-ahead log).
    pub fn wal_suffix(self) -> &'static str {
        match self {
            DbKind::Sqlite => "-wal",
            DbKind::DuckDb => ".wal",
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
pub enum Sniff {
    Database(DbKind),
    /// Not a database; the reason is shown to users who named the file explicitly.
    NotDatabase(&'static str),
}

pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
pub const DUCKDB_MAGIC: &[u8; 4] = b"DUCK";

/// Recognise a database by its header: SQLite's 16-byte magic string, or `DUCK` at
/// offset 8 for DuckDB. Names and extensions are never trusted.
pub fn sniff(path: &Path) -> io::Result<Sniff> {
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

pub fn sniff_bytes(header: &[u8]) -> Sniff {
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
pub struct Census {
    pub tables: BTreeMap<String, u64>,
    /// Hex sha256 of the normalised schema text.
    pub schema: String,
}

impl Census {
    pub fn total_rows(&self) -> u64 {
        self.tables.values().sum()
    }

    /// Fingerprint a list of schema statements (already in a stable order).
    pub fn fingerprint<'a>(statements: impl IntoIterator<Item = &'a str>) -> String {
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// SQLite online backup API in one step: a transactionally consistent copy.
    OnlineBackup,
    /// A writer had crashed mid-transaction: its hot journal was rolled back in a private
    /// copy (never in the user's files), leaving the last committed state.
    RolledBackHotJournal,
    /// DuckDB file and WAL copied under DuckDB's own lock, then checkpointed in the copy.
    LockedCopy,
    /// DuckDB main file only, copied while another process held it: consistent as of the
    /// last checkpoint, missing `wal_bytes` bytes of later changes.
    AsOfLastCheckpoint { wal_bytes: u64 },
}

impl Consistency {
    pub fn label(&self) -> String {
        match self {
            Consistency::OnlineBackup => "online-backup".into(),
            Consistency::RolledBackHotJournal => {
                "online-backup (hot journal rolled back in the copy)".into()
            }
            Consistency::LockedCopy => "locked-copy".into(),
            Consistency::AsOfLastCheckpoint { wal_bytes } => {
                format!("as-of-last-checkpoint (missing {wal_bytes} WAL bytes)")
            }
        }
    }
}

/// How a copy was made, and anything the user should know about it (e.g. a lock holder).
#[derive(Debug)]
pub struct CopyReport {
    pub consistency: Consistency,
    pub warning: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
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
pub fn copy(kind: DbKind, source: &Path, dest: &Path) -> Result<CopyReport, DbError> {
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
pub fn check_and_census(kind: DbKind, image: &Path) -> Result<Census, DbError> {
    match kind {
        DbKind::Sqlite => sqlite::check_and_census(image),
        // Opening the copy and counting every table is DuckDB's verification.
        DbKind::DuckDb => duckdb::census_file(image),
    }
}

/// Census a live database (read-only) without copying it.
pub fn census_live(kind: DbKind, path: &Path) -> Result<Census, DbError> {
    match kind {
        DbKind::Sqlite => sqlite::census_file(path),
        DbKind::DuckDb => duckdb::census_file(path),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Quote an SQL identifier (works for SQLite and DuckDB).
pub fn quote_ident(name: &str) -> String {
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
    fn fingerprint_ignores_whitespace_only() {
        let a = Census::fingerprint(["CREATE TABLE t(a,\n  b)"]);
        let b = Census::fingerprint(["CREATE  TABLE t(a, b)"]);
        let c = Census::fingerprint(["CREATE TABLE t(a, c)"]);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
