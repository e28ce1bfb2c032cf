//! The catalog: a SQLite database (WAL) recording operations, images, snapshots, their
//! census and the stat cache, and where the bytes are (packs, frames). Packs hold bytes;
//! the catalog says what they mean.

mod legacy;
mod packs;
mod replica;
pub(crate) use legacy::completeness_of_label;
pub(crate) use packs::{ImageLayout, ImageRecord, NewImage, PackRecord, Repacked};
pub(crate) use replica::{Import, ImportedSnapshot};

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::db::sqlite::uri;
use crate::db::{Census, Completeness, DbKind, Missing, SQLITE_SHM, SQLITE_WAL, sidecar_path};
use crate::git::redact::redact_argv;

/// 2: `stat_cache.chunks_ctime_ns` (the newest chunk ctime of the image when the entry was
/// recorded; a chunk changed since then is not trusted without reading it).
/// 3: `operation_refs`: an operation that found a database unchanged since its latest
/// snapshot refers to that snapshot instead of adding an identical one.
/// 4: pack files. `images.block_size`/`manifest` (NULL for legacy chunk-list images),
/// `packs`, `frames`, `damaged_blocks`, `image_packs`.
/// 5: remotes. `store_meta` (the store's random id, its namespace on a remote) and
/// `snapshots.origin` (`<store id>/<snapshot id>` of a snapshot fetched from a remote).
/// 6: no secrets in `operations.argv` (see `crate::git::redact`): recorded command lines
/// are redacted, and the snapshots whose records on remotes still hold the old text are
/// listed in `store_meta` (`redacted_snapshots`) for the next push to rewrite.
/// 7: `snapshots.after_loss_of`: a state recorded right after git lost rows, which is
/// never the baseline `status` compares with.
/// 8: a snapshot's completeness in typed columns (`partial`, `copy_instant`,
/// `copy_retries`, `missing_*`, `holder_pid`), filled for older snapshots from their
/// consistency label once (`legacy`); the label stays, for people.
pub(crate) const SCHEMA_VERSION: i64 = 8;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,            -- snapshot | guard | hook | restore | schedule | install
    argv TEXT NOT NULL,            -- JSON array of the command line, for people reading the log
    head_before TEXT,
    head_after TEXT,
    exit_code INTEGER
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,   -- sha256 over the chunk (or block) hashes and the size
    size INTEGER NOT NULL,
    block_size INTEGER,            -- NULL: a legacy image, its chunks in image_chunks
    manifest BLOB                  -- its block numbers in order, as runs (store/blocks.rs)
);
CREATE TABLE IF NOT EXISTS image_chunks (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (image_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS image_chunks_hash ON image_chunks(hash);
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY,
    operation_id INTEGER NOT NULL REFERENCES operations(id),
    image_id INTEGER NOT NULL REFERENCES images(id),
    worktree TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    consistency TEXT NOT NULL,
    git_state TEXT NOT NULL,
    schema_hash TEXT NOT NULL,
    reused INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    origin TEXT,                   -- NULL: taken here; else fetched: <store id>/<snapshot id>
    after_loss_of INTEGER,         -- NULL: a baseline; else git had just lost rows of this snapshot
    partial INTEGER NOT NULL DEFAULT 0, -- 1: lacks commits the live file's WAL held
    copy_instant TEXT,             -- live copy: every commit before this instant is in it
    copy_retries INTEGER,          -- live copy: copies a checkpoint overlapped, made again
    missing_commits INTEGER,       -- partial: commits it lacks (NULL: not known)
    missing_wal_bytes INTEGER,     -- partial: the WAL bytes it lacks
    missing_since TEXT,            -- partial: when that WAL was started
    missing_until TEXT,            -- partial: the WAL's last write
    holder_pid INTEGER             -- partial: the process that held the file read-write
);
CREATE INDEX IF NOT EXISTS snapshots_path ON snapshots(worktree, path, id);
CREATE TABLE IF NOT EXISTS snapshot_tables (
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    rows INTEGER NOT NULL,
    PRIMARY KEY (snapshot_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stat_cache (
    worktree TEXT NOT NULL,
    path TEXT NOT NULL,
    signature TEXT NOT NULL,
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    chunks_ctime_ns INTEGER,
    PRIMARY KEY (worktree, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS operation_refs (
    id INTEGER PRIMARY KEY,
    operation_id INTEGER NOT NULL REFERENCES operations(id),
    -- The snapshot that already holds the state the operation found.
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    git_state TEXT NOT NULL,
    reopened INTEGER NOT NULL,     -- 0: the stat cache vouched; 1: read again, same image
    message TEXT
);
CREATE INDEX IF NOT EXISTS operation_refs_snapshot ON operation_refs(snapshot_id, id);
CREATE TABLE IF NOT EXISTS packs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,     -- sha256 of the file: packs/<name>.pack
    size INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL      -- the file's ctime when it was last known intact
);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    pack_id INTEGER NOT NULL REFERENCES packs(id),
    pack_offset INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    plain_len INTEGER NOT NULL,
    block_size INTEGER NOT NULL,
    members BLOB NOT NULL,         -- the block number in each slot, as runs (0: unused)
    hashes BLOB NOT NULL           -- sha256 of each slot's bytes, 32 bytes each
);
CREATE TABLE IF NOT EXISTS store_meta (
    key TEXT PRIMARY KEY,          -- store_id: random, names this store's space on remotes
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS damaged_blocks (block INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS image_packs (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    pack_id INTEGER NOT NULL REFERENCES packs(id),
    PRIMARY KEY (image_id, pack_id)
) WITHOUT ROWID;
";

/// An operation's command line as the catalog stores it: JSON, secrets redacted.
fn argv_json(argv: &[String]) -> String {
    serde_json::to_string(&redact_argv(argv)).unwrap_or_else(|_| "[]".into())
}

/// Migration to schema 6, inside its transaction: redact every recorded command line,
/// and list the snapshots taken here whose operation changed, so that the next push
/// replaces their records on remotes (written before, with the secrets).
fn redact_recorded_argv(conn: &Connection) -> rusqlite::Result<()> {
    let recorded: Vec<(i64, String)> = {
        let mut query = conn.prepare("SELECT id, argv FROM operations")?;
        query
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    let mut changed = Vec::new();
    for (id, text) in recorded {
        let argv: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
        let redacted = argv_json(&argv);
        if redacted != text {
            conn.execute(
                "UPDATE operations SET argv = ?1 WHERE id = ?2",
                params![redacted, id],
            )?;
            changed.push(id);
        }
    }
    let mut snapshots = Vec::new();
    {
        let mut query = conn.prepare(
            "SELECT id FROM snapshots WHERE operation_id = ?1 AND origin IS NULL ORDER BY id",
        )?;
        for operation in changed {
            for id in query.query_map([operation], |r| r.get::<_, i64>(0))? {
                snapshots.push(id?);
            }
        }
    }
    if !snapshots.is_empty() {
        snapshots.sort_unstable();
        conn.execute(
            "INSERT OR REPLACE INTO store_meta(key, value) VALUES ('redacted_snapshots', ?1)",
            [serde_json::to_string(&snapshots).unwrap_or_else(|_| "[]".into())],
        )?;
    }
    Ok(())
}

/// Schema changes from each older version to the next, applied in order. New tables
/// (2 → 3: `operation_refs`) come from `SCHEMA`'s `CREATE … IF NOT EXISTS`, which every
/// migration runs first; existing snapshots stay as they are.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "ALTER TABLE stat_cache ADD COLUMN chunks_ctime_ns INTEGER;",
    ),
    (
        3,
        "ALTER TABLE images ADD COLUMN block_size INTEGER; \
         ALTER TABLE images ADD COLUMN manifest BLOB;",
    ),
    (4, "ALTER TABLE snapshots ADD COLUMN origin TEXT;"),
    (6, "ALTER TABLE snapshots ADD COLUMN after_loss_of INTEGER;"),
    (
        7,
        "ALTER TABLE snapshots ADD COLUMN partial INTEGER NOT NULL DEFAULT 0; \
         ALTER TABLE snapshots ADD COLUMN copy_instant TEXT; \
         ALTER TABLE snapshots ADD COLUMN copy_retries INTEGER; \
         ALTER TABLE snapshots ADD COLUMN missing_commits INTEGER; \
         ALTER TABLE snapshots ADD COLUMN missing_wal_bytes INTEGER; \
         ALTER TABLE snapshots ADD COLUMN missing_since TEXT; \
         ALTER TABLE snapshots ADD COLUMN missing_until TEXT; \
         ALTER TABLE snapshots ADD COLUMN holder_pid INTEGER;",
    ),
];

/// Migration to schema 8, inside its transaction: each older snapshot's completeness,
/// read once from its consistency label into the typed columns.
fn type_completeness(conn: &Connection) -> rusqlite::Result<()> {
    let labels: Vec<(i64, String)> = {
        let mut query = conn.prepare("SELECT id, consistency FROM snapshots")?;
        query
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    for (id, label) in labels {
        let completeness = legacy::completeness_of_label(&label);
        if completeness != Completeness::default() {
            conn.execute(
                &format!("UPDATE snapshots SET {COMPLETENESS_SET} WHERE id = ?9"),
                rusqlite::params_from_iter(completeness_params(&completeness, id)),
            )?;
        }
    }
    Ok(())
}

/// The completeness columns, in the order [`completeness_params`] gives them and
/// [`completeness_at`] reads them.
const COMPLETENESS_COLUMNS: [&str; 8] = [
    "partial",
    "copy_instant",
    "copy_retries",
    "missing_commits",
    "missing_wal_bytes",
    "missing_since",
    "missing_until",
    "holder_pid",
];
const COMPLETENESS_SET: &str = "partial = ?1, copy_instant = ?2, copy_retries = ?3, \
     missing_commits = ?4, missing_wal_bytes = ?5, missing_since = ?6, missing_until = ?7, \
     holder_pid = ?8";

/// [`COMPLETENESS_COLUMNS`]' values, then `last` (the row's id or the next column).
fn completeness_params(c: &Completeness, last: i64) -> [Box<dyn rusqlite::ToSql + '_>; 9] {
    let missing = c.missing.as_ref();
    [
        Box::new(c.partial),
        Box::new(c.instant.as_ref().map(ts)),
        Box::new(c.retries),
        Box::new(missing.and_then(|m| m.commits).map(|n| n as i64)),
        Box::new(missing.map(|m| m.wal_bytes as i64)),
        Box::new(missing.and_then(|m| m.since.as_ref().map(ts))),
        Box::new(missing.and_then(|m| m.until.as_ref().map(ts))),
        Box::new(missing.and_then(|m| m.holder_pid)),
        Box::new(last),
    ]
}

/// The completeness columns of a row, starting at column `first` (see
/// [`COMPLETENESS_COLUMNS`]).
fn completeness_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Completeness> {
    let time = |text: Option<String>| text.map(|t| parse_ts(&t));
    let partial: bool = row.get(first)?;
    let missing = partial.then(|| -> rusqlite::Result<Missing> {
        Ok(Missing {
            commits: row
                .get::<_, Option<i64>>(first + 3)?
                .map(|n| n.max(0) as u64),
            wal_bytes: row.get::<_, Option<i64>>(first + 4)?.unwrap_or(0).max(0) as u64,
            since: time(row.get(first + 5)?),
            until: time(row.get(first + 6)?),
            holder_pid: row.get(first + 7)?,
        })
    });
    Ok(Completeness {
        partial,
        instant: time(row.get(first + 1)?),
        retries: row.get(first + 2)?,
        missing: missing.transpose()?,
    })
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CatalogError {
    #[error("the snapshot catalog {path} cannot be used: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the snapshot catalog {path} was written by a newer dbguard (schema {found}, this one knows {SCHEMA_VERSION})"
    )]
    TooNew { path: String, found: i64 },
    #[error("the snapshot catalog {path} is read-only")]
    ReadOnly { path: String },
}

impl CatalogError {
    /// Whether SQLite refused because the catalog or its directory cannot be written.
    pub(crate) fn is_read_only(&self) -> bool {
        match self {
            CatalogError::ReadOnly { .. } => true,
            CatalogError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ReadOnly)
            ),
            CatalogError::TooNew { .. } => false,
        }
    }

    /// Whether SQLite failed because the disk is full.
    pub(crate) fn is_disk_full(&self) -> bool {
        matches!(self, CatalogError::Sqlite { source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull))
    }
}

/// What the stat cache remembers of a path: the snapshot to reuse and, when known, the
/// newest ctime among that image's chunk files at the time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatCacheHit {
    pub(crate) snapshot_id: i64,
    pub(crate) chunks_ctime_ns: Option<i64>,
}

/// One snapshot reduced to what `verify` needs to say which ones a damaged image breaks.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SnapshotRef {
    pub(crate) id: i64,
    pub(crate) worktree: String,
    pub(crate) path: String,
    #[serde(skip)]
    pub(crate) image_id: i64,
}

/// One snapshot as users see it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SnapshotInfo {
    pub(crate) id: i64,
    pub(crate) path: String,
    pub(crate) worktree: String,
    pub(crate) kind: DbKind,
    #[serde(serialize_with = "rfc3339")]
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) size: u64,
    /// How it was taken, for people.
    pub(crate) consistency: String,
    /// Whether it holds every commit, for code (and `--json`).
    #[serde(skip)]
    pub(crate) completeness: Completeness,
    pub(crate) git_state: String,
    pub(crate) reused: bool,
    pub(crate) message: Option<String>,
    pub(crate) operation: OperationInfo,
    pub(crate) census: Census,
    #[serde(skip)]
    pub(crate) image_id: i64,
    pub(crate) image_digest: String,
    /// Later operations that found the database unchanged and refer to this snapshot
    /// instead of adding an identical one, oldest first.
    pub(crate) unchanged: Vec<OperationRef>,
    /// `<store id>/<snapshot id>` of a snapshot fetched from another store; `None`: taken
    /// here. A fetched snapshot is never this clone's baseline.
    #[serde(skip)]
    pub(crate) origin: Option<String>,
    /// The snapshot whose rows git had just lost when this state was recorded (and the
    /// loss was not restored): such a state is never a baseline. See [`AfterLoss`].
    #[serde(skip)]
    pub(crate) after_loss_of: Option<i64>,
}

/// How a new snapshot stands towards a loss git caused: whether `status` may compare
/// the database with it, or must keep comparing with the state before the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterLoss {
    /// Recorded right after git lost rows of snapshot #N, and not restored.
    Of(i64),
    /// As the path's latest local snapshot says: a state after a loss stays one (its
    /// later snapshots too) until it is restored or the user accepts it.
    AsBefore,
    /// The user accepts this state (`dbguard snapshot PATH`, a table restore).
    Accepted,
}

impl SnapshotInfo {
    /// The last time this state was recorded as the database's current one: the newest
    /// operation that found it unchanged, else when the snapshot was taken.
    pub(crate) fn last_seen(&self) -> DateTime<Utc> {
        self.unchanged
            .last()
            .map_or(self.created_at, |r| r.created_at.max(self.created_at))
    }
}

/// An operation that found a database unchanged since a snapshot and refers to it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OperationRef {
    #[serde(serialize_with = "rfc3339")]
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) git_state: String,
    /// False when the stat cache vouched for the file without opening it.
    pub(crate) reopened: bool,
    pub(crate) message: Option<String>,
    pub(crate) operation: OperationInfo,
}

/// What the catalog needs to record that an operation found a database unchanged.
pub(crate) struct NewRef<'a> {
    pub(crate) operation_id: i64,
    pub(crate) snapshot_id: i64,
    pub(crate) worktree: &'a str,
    pub(crate) path: &'a str,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) git_state: &'a str,
    pub(crate) reopened: bool,
    pub(crate) message: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OperationInfo {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) argv: Vec<String>,
    pub(crate) head_before: Option<String>,
    pub(crate) head_after: Option<String>,
    pub(crate) exit_code: Option<i32>,
}

impl OperationInfo {
    /// "git pull --force" or "dbguard snapshot": how the log names what happened. A git
    /// command is shown whole (its options decide what it overwrote); a dbguard command
    /// by its subcommand, without `-C <dir>`, `--json` and the like.
    pub(crate) fn describe(&self) -> String {
        match self.argv.first().map(String::as_str) {
            None => self.kind.clone(),
            Some("dbguard") => match dbguard_subcommand(&self.argv[1..]) {
                Some(subcommand) => format!("dbguard {subcommand}"),
                None => "dbguard".into(),
            },
            Some(_) => self.argv.join(" "),
        }
    }
}

/// The subcommand of a recorded `dbguard …` command line: its first word that is not an
/// option or the directory of `-C`.
fn dbguard_subcommand(args: &[String]) -> Option<&str> {
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "-C" || word == "--color" {
            words.next();
        } else if !word.starts_with('-') {
            return Some(word);
        }
    }
    None
}

/// What the catalog needs to record a new snapshot.
pub(crate) struct NewSnapshot<'a> {
    pub(crate) operation_id: i64,
    pub(crate) image_id: i64,
    pub(crate) worktree: &'a str,
    pub(crate) path: &'a str,
    pub(crate) kind: DbKind,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) consistency: &'a str,
    pub(crate) completeness: &'a Completeness,
    pub(crate) git_state: &'a str,
    pub(crate) census: &'a Census,
    pub(crate) reused: bool,
    pub(crate) message: Option<&'a str>,
    /// See [`SnapshotInfo::after_loss_of`].
    pub(crate) after_loss_of: Option<i64>,
}

/// One snapshot's row and its rows per table (a snapshot taken here, or fetched from a
/// remote: `origin` is then `<store id>/<snapshot id>` there), inside `tx`.
pub(super) fn insert_snapshot_row(
    tx: &rusqlite::Transaction<'_>,
    snapshot: &NewSnapshot<'_>,
    image_id: i64,
    origin: Option<&str>,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO snapshots(operation_id, image_id, worktree, path, kind, created_at, \
         consistency, git_state, schema_hash, reused, message, origin, after_loss_of) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            snapshot.operation_id,
            image_id,
            snapshot.worktree,
            snapshot.path,
            snapshot.kind.as_str(),
            ts(&snapshot.created_at),
            snapshot.consistency,
            snapshot.git_state,
            snapshot.census.schema,
            snapshot.reused,
            snapshot.message,
            origin,
            snapshot.after_loss_of,
        ],
    )?;
    let snapshot_id = tx.last_insert_rowid();
    // The columns' defaults say "complete"; anything else is written next to them.
    if *snapshot.completeness != Completeness::default() {
        tx.execute(
            &format!("UPDATE snapshots SET {COMPLETENESS_SET} WHERE id = ?9"),
            rusqlite::params_from_iter(completeness_params(snapshot.completeness, snapshot_id)),
        )?;
    }
    let mut insert =
        tx.prepare("INSERT INTO snapshot_tables(snapshot_id, name, rows) VALUES (?1, ?2, ?3)")?;
    for (name, rows) in &snapshot.census.tables {
        insert.execute(params![snapshot_id, name, *rows as i64])?;
    }
    Ok(snapshot_id)
}

pub(crate) struct Catalog {
    conn: Connection,
    path: String,
    read_only: bool,
    /// The schema version: older than [`SCHEMA_VERSION`] only for a catalog opened
    /// read-only, which is never migrated (schema 3 added `operation_refs`, 4 packs).
    version: i64,
}

/// Inside a snapshot's or reference's transaction: cache the live file's stat signature
/// as vouching for `snapshot_id` (`Some`), or forget any cached one (`None`: the file was
/// racy or changed while it was copied).
fn record_stat_cache(
    tx: &rusqlite::Transaction<'_>,
    worktree: &str,
    path: &str,
    snapshot_id: i64,
    stat_cache: Option<(&str, Option<i64>)>,
) -> rusqlite::Result<usize> {
    match stat_cache {
        Some((signature, chunks_ctime_ns)) => tx.execute(
            "INSERT OR REPLACE INTO stat_cache(worktree, path, signature, snapshot_id, \
             chunks_ctime_ns) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![worktree, path, signature, snapshot_id, chunks_ctime_ns],
        ),
        None => tx.execute(
            "DELETE FROM stat_cache WHERE worktree = ?1 AND path = ?2",
            params![worktree, path],
        ),
    }
}

pub(crate) fn ts(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// serde helper: timestamps as RFC 3339 text in JSON output.
pub(crate) fn rfc3339<S: serde::Serializer>(
    time: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&ts(time))
}

fn parse_ts(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// The query behind [`SnapshotInfo`], for a catalog of schema `version` (an older one,
/// opened read-only, lacks the newer columns: NULL stands in for them).
fn snapshot_select(version: i64) -> String {
    let origin = if version >= 5 { "s.origin" } else { "NULL" };
    let after_loss_of = if version >= 7 {
        "s.after_loss_of"
    } else {
        "NULL"
    };
    // Before 8, `row_to_info` reads completeness from the label (`legacy`).
    let completeness = COMPLETENESS_COLUMNS
        .map(|column| match version >= 8 {
            true => format!("s.{column}"),
            false => "NULL".to_string(),
        })
        .join(", ");
    format!(
        "SELECT s.id, s.path, s.worktree, s.kind, s.created_at, i.size, s.consistency, \
         s.git_state, s.reused, s.message, s.schema_hash, i.id, i.digest, \
         o.id, o.kind, o.argv, o.head_before, o.head_after, o.exit_code, {origin}, {after_loss_of}, \
         {completeness} \
         FROM snapshots s JOIN images i ON i.id = s.image_id JOIN operations o ON o.id = s.operation_id"
    )
}

impl Catalog {
    pub(crate) fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let display = path.display().to_string();
        let fail = |source| CatalogError::Sqlite {
            path: display.clone(),
            source,
        };
        // SQLite gives the -wal and -shm files the mode of the database file: make that
        // private before SQLite creates them (mkdir/open modes, never the umask, which
        // git's children inherit).
        let private = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path);
        match private {
            Ok(file) => {
                let narrow = file
                    .metadata()
                    .is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
                if narrow {
                    let _ = file.set_permissions(fs::Permissions::from_mode(0o600));
                }
            }
            Err(e) if crate::store::files::is_read_only(&e) => {
                return Err(CatalogError::ReadOnly { path: display });
            }
            // SQLite's own open says what is wrong.
            Err(_) => {}
        }
        for suffix in [SQLITE_WAL, SQLITE_SHM] {
            let sidecar = sidecar_path(path, suffix);
            if fs::metadata(&sidecar).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                let _ = fs::set_permissions(&sidecar, fs::Permissions::from_mode(0o600));
            }
        }
        let conn = Connection::open(path).map_err(fail)?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(CatalogError::ReadOnly { path: display });
        }
        conn.busy_timeout(std::time::Duration::from_secs(60))
            .map_err(fail)?;
        conn.execute_batch(
            // 16 KiB pages for a new catalog: a frame's record (its chunks' hashes) is about
            // 2 KiB, and 4 KiB pages hold only one of them (half the catalog empty). An
            // existing catalog keeps its page size (SQLite ignores the pragma then).
            "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
             PRAGMA foreign_keys=ON;",
        )
        .map_err(fail)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(CatalogError::TooNew {
                path: display,
                found: version,
            });
        }
        if version < SCHEMA_VERSION {
            // A new catalog gets the whole schema; an older one each migration since its
            // version, all in one transaction.
            let mut batch = format!("BEGIN IMMEDIATE; {SCHEMA}");
            if version > 0 {
                for (from, sql) in MIGRATIONS {
                    if *from >= version {
                        batch.push_str(sql);
                    }
                }
            }
            // Every catalog reaching schema 5 gets its store id here, once (hex only).
            batch.push_str(&format!(
                " INSERT OR IGNORE INTO store_meta(key, value) VALUES ('store_id', '{}');",
                replica::new_store_id()
            ));
            batch.push_str(&format!(" PRAGMA user_version={SCHEMA_VERSION};"));
            conn.execute_batch(&batch).map_err(fail)?;
            let mut migrated = Ok(());
            if (1..6).contains(&version) {
                migrated = migrated.and_then(|()| redact_recorded_argv(&conn));
            }
            if (1..8).contains(&version) {
                migrated = migrated.and_then(|()| type_completeness(&conn));
            }
            match migrated.and_then(|()| conn.execute_batch("COMMIT")) {
                Ok(()) => {}
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(fail(e));
                }
            }
        }
        Ok(Catalog {
            conn,
            path: display,
            read_only: false,
            version: SCHEMA_VERSION,
        })
    }

    /// Open the catalog of a store that cannot be written (a read-only mount, or a store
    /// that is not ours): nothing is created, migrated or locked. SQLite reads a WAL
    /// database read-only only while its -wal and -shm exist; with `immutable=1` it
    /// would ignore the -wal, and with it the last commits of a writer that was killed.
    /// So: read-only in place when SQLite can; else, when a -wal holds commits, from a
    /// copy of the catalog and its -wal in `scratch`; else (no -wal) immutable.
    pub(crate) fn open_read_only(path: &Path, scratch: &Path) -> Result<Catalog, CatalogError> {
        let display = path.display().to_string();
        let fail = |source| CatalogError::Sqlite {
            path: display.clone(),
            source,
        };
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let usable = |conn: Connection| -> Result<(Connection, i64), rusqlite::Error> {
            conn.busy_timeout(std::time::Duration::from_secs(60))?;
            // Opening is lazy: read the schema to find out whether SQLite can read it.
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })?;
            let version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            Ok((conn, version))
        };
        let wal = sidecar_path(path, SQLITE_WAL);
        let opened = Connection::open_with_flags(uri(path, "mode=ro"), flags).and_then(usable);
        let (conn, version) = match opened {
            Ok(opened) => opened,
            Err(_) if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) => {
                let copy = scratch.join("catalog.db");
                let copy_wal = sidecar_path(&copy, SQLITE_WAL);
                let copied = fs::copy(path, &copy).and_then(|_| fs::copy(&wal, &copy_wal));
                if let Err(e) = copied {
                    return Err(fail(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                        Some(format!(
                            "cannot copy it to {} to read it: {e}",
                            scratch.display()
                        )),
                    )));
                }
                Connection::open(&copy)
                    .and_then(|conn| {
                        conn.execute_batch("PRAGMA query_only=ON")?;
                        Ok(conn)
                    })
                    .and_then(usable)
                    .map_err(fail)?
            }
            Err(_) => Connection::open_with_flags(uri(path, "immutable=1"), flags)
                .and_then(usable)
                .map_err(fail)?,
        };
        if version > SCHEMA_VERSION {
            return Err(CatalogError::TooNew {
                path: display,
                found: version,
            });
        }
        Ok(Catalog {
            conn,
            path: display,
            read_only: true,
            version,
        })
    }

    /// Refuse a write up front on a read-only catalog (SQLite's own message would say
    /// "attempt to write a readonly database", which names no way out).
    fn writable(&self) -> Result<(), CatalogError> {
        if self.read_only {
            return Err(CatalogError::ReadOnly {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Rewrite the catalog without its free pages when they are more than a quarter of
    /// it (prune deleted many records): SQLite keeps a file's size otherwise.
    pub(crate) fn compact(&self) -> Result<(), CatalogError> {
        self.writable()?;
        let pages: i64 = self
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(self.fail())?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .map_err(self.fail())?;
        if free * 4 > pages {
            self.conn.execute_batch("VACUUM").map_err(self.fail())?;
        }
        Ok(())
    }

    /// Fold the WAL back into the catalog and empty it, so that the store is complete in
    /// catalog.db alone (a store later mounted read-only, copied or backed up file by
    /// file loses nothing). Best effort: a busy reader only delays it.
    pub(crate) fn checkpoint(&self) {
        if !self.read_only {
            // TRUNCATE waits for readers through the busy handler: not for long.
            let _ = self
                .conn
                .busy_timeout(std::time::Duration::from_millis(200));
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }

    /// Read one state of the catalog until [`Catalog::end_read`] (a read transaction):
    /// a reader that looks at several tables while writers go on (verify, a push plan)
    /// sees each snapshot written meanwhile whole or not at all.
    pub(crate) fn begin_read(&self) -> Result<(), CatalogError> {
        self.conn
            .execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
            .map_err(self.fail())
    }

    /// End [`Catalog::begin_read`]'s transaction (before writing).
    pub(crate) fn end_read(&self) -> Result<(), CatalogError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("COMMIT").map_err(self.fail())
    }

    fn fail(&self) -> impl Fn(rusqlite::Error) -> CatalogError + '_ {
        move |source| CatalogError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// [`Catalog::fail`] for use while a transaction borrows the connection.
    fn fail_owned(&self) -> impl Fn(rusqlite::Error) -> CatalogError + use<> {
        let path = self.path.clone();
        move |source| CatalogError::Sqlite {
            path: path.clone(),
            source,
        }
    }

    /// Record an operation; secrets in its command line never reach the catalog.
    pub(crate) fn begin_operation(
        &self,
        kind: &str,
        argv: &[String],
        head_before: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64, CatalogError> {
        self.writable()?;
        self.conn
            .execute(
                "INSERT INTO operations(created_at, kind, argv, head_before) VALUES (?1, ?2, ?3, ?4)",
                params![
                    ts(&now),
                    kind,
                    argv_json(argv),
                    head_before
                ],
            )
            .map_err(self.fail())?;
        Ok(self.conn.last_insert_rowid())
    }

    pub(crate) fn finish_operation(
        &self,
        id: i64,
        head_after: Option<&str>,
        exit_code: Option<i32>,
    ) -> Result<(), CatalogError> {
        self.writable()?;
        self.conn
            .execute(
                "UPDATE operations SET head_after = ?2, exit_code = ?3 WHERE id = ?1",
                params![id, head_after, exit_code],
            )
            .map_err(self.fail())?;
        Ok(())
    }

    /// Record an image and its chunk list (or find the identical one already recorded),
    /// and the snapshot that refers to it, in one transaction. `stat_cache` is the live
    /// file's stat signature and the newest ctime among the image's chunk files: the stat
    /// cache reuses the image only while no chunk file was written after that (`None`
    /// for the ctime makes the next snapshot read the file once).
    pub(crate) fn insert_snapshot(
        &mut self,
        snapshot: &NewSnapshot<'_>,
        image: Option<&NewImage<'_>>,
        stat_cache: Option<(&str, Option<i64>)>,
    ) -> Result<i64, CatalogError> {
        self.writable()?;
        let fail = self.fail_owned();
        let tx = self.conn.transaction().map_err(&fail)?;
        let image_id = match image {
            None => snapshot.image_id,
            Some(image) => Catalog::insert_image(&tx, image).map_err(&fail)?,
        };
        let snapshot_id = insert_snapshot_row(&tx, snapshot, image_id, None).map_err(&fail)?;
        record_stat_cache(
            &tx,
            snapshot.worktree,
            snapshot.path,
            snapshot_id,
            stat_cache,
        )
        .map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        Ok(snapshot_id)
    }

    /// Record that an operation found a database unchanged since `snapshot_id`, and the
    /// live file's stat signature as in [`Catalog::insert_snapshot`], in one transaction.
    pub(crate) fn insert_ref(
        &mut self,
        r: &NewRef<'_>,
        stat_cache: Option<(&str, Option<i64>)>,
    ) -> Result<(), CatalogError> {
        self.writable()?;
        let fail = self.fail_owned();
        let tx = self.conn.transaction().map_err(&fail)?;
        tx.execute(
            "INSERT INTO operation_refs(operation_id, snapshot_id, created_at, git_state, \
             reopened, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                r.operation_id,
                r.snapshot_id,
                ts(&r.created_at),
                r.git_state,
                r.reopened,
                r.message
            ],
        )
        .map_err(&fail)?;
        record_stat_cache(&tx, r.worktree, r.path, r.snapshot_id, stat_cache).map_err(&fail)?;
        tx.commit().map_err(&fail)
    }

    /// The snapshot whose stat signature is cached for this path, if the signature matches.
    pub(crate) fn stat_cache_hit(
        &self,
        worktree: &str,
        path: &str,
        signature: &str,
    ) -> Result<Option<StatCacheHit>, CatalogError> {
        self.conn
            .query_row(
                "SELECT snapshot_id, chunks_ctime_ns FROM stat_cache \
                 WHERE worktree = ?1 AND path = ?2 AND signature = ?3",
                params![worktree, path, signature],
                |r| {
                    Ok(StatCacheHit {
                        snapshot_id: r.get(0)?,
                        chunks_ctime_ns: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(self.fail())
    }

    /// Stop watching a path's stat signature (its snapshots stay): used once a vanished
    /// database has been reported, so that it is not reported again on every checkout.
    pub(crate) fn forget_stat_cache(&self, worktree: &str, path: &str) -> Result<(), CatalogError> {
        self.writable()?;
        self.conn
            .execute(
                "DELETE FROM stat_cache WHERE worktree = ?1 AND path = ?2",
                params![worktree, path],
            )
            .map_err(self.fail())?;
        Ok(())
    }

    /// Every path with a cached stat signature in this worktree, with its kind.
    pub(crate) fn stat_cache_entries(
        &self,
        worktree: &str,
    ) -> Result<Vec<(String, DbKind, String)>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.path, s.kind, c.signature FROM stat_cache c \
                 JOIN snapshots s ON s.id = c.snapshot_id WHERE c.worktree = ?1 ORDER BY c.path",
            )
            .map_err(self.fail())?;
        let entries = stmt
            .query_map([worktree], |r| {
                let kind: String = r.get(1)?;
                Ok((
                    r.get(0)?,
                    DbKind::parse(&kind).unwrap_or(DbKind::Sqlite),
                    r.get(2)?,
                ))
            })
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(entries)
    }

    /// Paths in this worktree that have at least one snapshot.
    pub(crate) fn snapshotted_paths(&self, worktree: &str) -> Result<Vec<String>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT path FROM snapshots WHERE worktree = ?1 ORDER BY path")
            .map_err(self.fail())?;
        let paths = stmt
            .query_map([worktree], |r| r.get(0))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(paths)
    }

    /// The operation whose columns (`o.id, o.kind, o.argv, o.head_before, o.head_after,
    /// o.exit_code`) start at column `first` of `row`.
    fn operation_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<OperationInfo> {
        let argv: String = row.get(first + 2)?;
        Ok(OperationInfo {
            id: row.get(first)?,
            kind: row.get(first + 1)?,
            // Redacted again on the way out: a catalog opened read-only is not migrated.
            argv: redact_argv(&serde_json::from_str::<Vec<String>>(&argv).unwrap_or_default()),
            head_before: row.get(first + 3)?,
            head_after: row.get(first + 4)?,
            exit_code: row.get(first + 5)?,
        })
    }

    fn row_to_info(row: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotInfo> {
        let consistency: String = row.get(6)?;
        // NULL `partial`: a catalog older than schema 8 opened read-only, not migrated.
        let completeness = match row.get::<_, Option<bool>>(21)? {
            Some(_) => completeness_at(row, 21)?,
            None => legacy::completeness_of_label(&consistency),
        };
        Ok(SnapshotInfo {
            id: row.get(0)?,
            path: row.get(1)?,
            worktree: row.get(2)?,
            kind: DbKind::parse(&row.get::<_, String>(3)?).unwrap_or(DbKind::Sqlite),
            created_at: parse_ts(&row.get::<_, String>(4)?),
            size: row.get::<_, i64>(5)? as u64,
            consistency,
            completeness,
            git_state: row.get(7)?,
            reused: row.get(8)?,
            message: row.get(9)?,
            census: Census {
                tables: BTreeMap::new(),
                schema: row.get(10)?,
            },
            image_id: row.get(11)?,
            image_digest: row.get(12)?,
            operation: Self::operation_at(row, 13)?,
            unchanged: Vec::new(),
            origin: row.get(19)?,
            after_loss_of: row.get(20)?,
        })
    }

    fn query_snapshots(
        &self,
        filter: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<SnapshotInfo>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(&format!("{} {filter}", snapshot_select(self.version)))
            .map_err(self.fail())?;
        let mut snapshots: Vec<SnapshotInfo> = stmt
            .query_map(params, Self::row_to_info)
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        let mut tables = self
            .conn
            .prepare("SELECT name, rows FROM snapshot_tables WHERE snapshot_id = ?1 ORDER BY name")
            .map_err(self.fail())?;
        for snapshot in &mut snapshots {
            let rows = tables
                .query_map([snapshot.id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(self.fail())?;
            for row in rows {
                let (name, count) = row.map_err(self.fail())?;
                snapshot.census.tables.insert(name, count.max(0) as u64);
            }
        }
        if self.version >= 3 {
            let mut refs = self
                .conn
                .prepare(
                    "SELECT r.created_at, r.git_state, r.reopened, r.message, o.id, o.kind, o.argv, \
                     o.head_before, o.head_after, o.exit_code FROM operation_refs r \
                     JOIN operations o ON o.id = r.operation_id WHERE r.snapshot_id = ?1 ORDER BY r.id",
                )
                .map_err(self.fail())?;
            for snapshot in &mut snapshots {
                snapshot.unchanged = refs
                    .query_map([snapshot.id], |r| {
                        Ok(OperationRef {
                            created_at: parse_ts(&r.get::<_, String>(0)?),
                            git_state: r.get(1)?,
                            reopened: r.get(2)?,
                            message: r.get(3)?,
                            operation: Self::operation_at(r, 4)?,
                        })
                    })
                    .map_err(self.fail())?
                    .collect::<Result<_, _>>()
                    .map_err(self.fail())?;
            }
        }
        Ok(snapshots)
    }

    pub(crate) fn snapshot(&self, id: i64) -> Result<Option<SnapshotInfo>, CatalogError> {
        Ok(self
            .query_snapshots("WHERE s.id = ?1", &[&id])?
            .into_iter()
            .next())
    }

    /// Snapshots newest first, optionally for one worktree path.
    pub(crate) fn snapshots(
        &self,
        worktree: Option<&str>,
        path: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<SnapshotInfo>, CatalogError> {
        let limit = limit.map(|l| l as i64).unwrap_or(-1);
        self.query_snapshots(
            "WHERE (?1 IS NULL OR s.worktree = ?1) AND (?2 IS NULL OR s.path = ?2) \
             ORDER BY s.id DESC LIMIT ?3",
            &[&worktree, &path, &limit],
        )
    }

    /// The newest snapshot of a path taken by this store: what a new snapshot is
    /// compared with (unchanged since it?) and what the hooks measure a loss against. A
    /// snapshot fetched from another clone never stands for this clone's file.
    pub(crate) fn latest(
        &self,
        worktree: &str,
        path: &str,
    ) -> Result<Option<SnapshotInfo>, CatalogError> {
        self.newest_local(worktree, path, "")
    }

    /// The newest snapshot of a path taken here that is a baseline: not recorded right
    /// after a loss (see [`AfterLoss`]). What `status` compares the file with, so that a
    /// loss stays flagged until it is restored or accepted.
    pub(crate) fn baseline(
        &self,
        worktree: &str,
        path: &str,
    ) -> Result<Option<SnapshotInfo>, CatalogError> {
        let condition = if self.version >= 7 {
            "AND s.after_loss_of IS NULL"
        } else {
            ""
        };
        self.newest_local(worktree, path, condition)
    }

    fn newest_local(
        &self,
        worktree: &str,
        path: &str,
        condition: &str,
    ) -> Result<Option<SnapshotInfo>, CatalogError> {
        let local = if self.version >= 5 {
            "AND s.origin IS NULL"
        } else {
            ""
        };
        Ok(self
            .query_snapshots(
                &format!(
                    "WHERE s.worktree = ?1 AND s.path = ?2 {local} {condition} \
                     ORDER BY s.id DESC LIMIT 1"
                ),
                &[&worktree, &path],
            )?
            .into_iter()
            .next())
    }

    /// Ordered chunk hashes of an image.
    pub(crate) fn image_chunks(&self, image_id: i64) -> Result<Vec<String>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT hash FROM image_chunks WHERE image_id = ?1 ORDER BY seq")
            .map_err(self.fail())?;
        let hashes = stmt
            .query_map([image_id], |r| r.get(0))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(hashes)
    }

    /// (image id, digest, size) of every image.
    pub(crate) fn images(&self) -> Result<Vec<(i64, String, u64)>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, digest, size FROM images ORDER BY id")
            .map_err(self.fail())?;
        let images = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(images)
    }

    /// Every chunk hash some image refers to.
    pub(crate) fn referenced_chunks(
        &self,
    ) -> Result<std::collections::HashSet<String>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT hash FROM image_chunks")
            .map_err(self.fail())?;
        let hashes = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(hashes)
    }

    /// The plain bytes of every distinct chunk some image refers to (what
    /// [`super::Store::verify`] reads, each chunk once): `chunk_size` each, less for the
    /// last chunk of an image.
    pub(crate) fn distinct_chunk_bytes(&self, chunk_size: u64) -> Result<u64, CatalogError> {
        self.conn
            .query_row(
                "SELECT coalesce(sum(len), 0) FROM (SELECT max(min(?1, i.size - c.seq * ?1)) AS len \
                 FROM image_chunks AS c JOIN images AS i ON i.id = c.image_id GROUP BY c.hash)",
                [chunk_size as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(self.fail())
    }

    /// Delete snapshots, then images no snapshot refers to any more.
    pub(crate) fn delete_snapshots(&mut self, ids: &[i64]) -> Result<(), CatalogError> {
        self.writable()?;
        let fail = self.fail_owned();
        let tx = self.conn.transaction().map_err(&fail)?;
        for id in ids {
            tx.execute("DELETE FROM snapshots WHERE id = ?1", [id])
                .map_err(&fail)?;
        }
        tx.execute(
            "DELETE FROM images WHERE id NOT IN (SELECT image_id FROM snapshots)",
            [],
        )
        .map_err(&fail)?;
        // The snapshots' references went with them (ON DELETE CASCADE); an operation
        // that neither took nor refers to a snapshot any more goes too (prune lists them).
        tx.execute(
            "DELETE FROM operations WHERE id NOT IN (SELECT operation_id FROM snapshots) \
             AND id NOT IN (SELECT operation_id FROM operation_refs) \
             AND id NOT IN (SELECT max(id) FROM operations)",
            [],
        )
        .map_err(&fail)?;
        tx.commit().map_err(&fail)
    }

    /// Stop trusting the stat cache for paths whose cached snapshot uses one of these
    /// images (they are damaged): the next snapshot reads the file again, which also
    /// rewrites the damaged chunks from the live bytes. Returns how many entries went.
    pub(crate) fn forget_stat_cache_of_images(
        &self,
        image_ids: &[i64],
    ) -> Result<usize, CatalogError> {
        self.writable()?;
        let mut forgotten = 0;
        for image_id in image_ids {
            forgotten += self
                .conn
                .execute(
                    "DELETE FROM stat_cache WHERE snapshot_id IN \
                     (SELECT id FROM snapshots WHERE image_id = ?1)",
                    [image_id],
                )
                .map_err(self.fail())?;
        }
        Ok(forgotten)
    }

    /// Every snapshot with its image, oldest first.
    pub(crate) fn snapshot_refs(&self) -> Result<Vec<SnapshotRef>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, worktree, path, image_id FROM snapshots ORDER BY id")
            .map_err(self.fail())?;
        let refs = stmt
            .query_map([], |r| {
                Ok(SnapshotRef {
                    id: r.get(0)?,
                    worktree: r.get(1)?,
                    path: r.get(2)?,
                    image_id: r.get(3)?,
                })
            })
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(refs)
    }

    /// SQLite's own integrity check of the catalog file.
    pub(crate) fn integrity_problems(&self) -> Result<Vec<String>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(self.fail())?;
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(lines.into_iter().filter(|l| l != "ok").collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema of version 2 (dbguard before `operation_refs`), as it created catalogs.
    fn v2_schema() -> String {
        let (v2, refs) = SCHEMA
            .split_once("CREATE TABLE IF NOT EXISTS operation_refs")
            .unwrap();
        assert!(refs.contains("snapshot_id"));
        let without_blocks = v2.replace(
            "    size INTEGER NOT NULL,\n    block_size INTEGER,            -- NULL: a legacy image, its chunks in image_chunks\n    manifest BLOB                  -- its block numbers in order, as runs (store/blocks.rs)\n",
            "    size INTEGER NOT NULL\n",
        );
        assert_ne!(without_blocks, v2, "schema 4's image columns are stripped");
        // Every snapshot column after `message` came later (origin: schema 5).
        let (head, tail) = without_blocks.split_once("    message TEXT,\n").unwrap();
        let (_, after) = tail
            .split_once("\n);\nCREATE INDEX IF NOT EXISTS snapshots_path")
            .unwrap();
        let without_origin =
            format!("{head}    message TEXT\n);\nCREATE INDEX IF NOT EXISTS snapshots_path{after}");
        assert_ne!(
            without_origin, without_blocks,
            "schema 5's origin is stripped"
        );
        without_origin
    }

    #[test]
    fn a_version_2_catalog_stays_readable_and_a_writer_adds_references() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        {
            let conn = Connection::open(&path).unwrap();
            // What dbguard wrote before schema 3: a snapshot, and a second identical one
            // the stat cache reused.
            conn.execute_batch(&format!(
                "PRAGMA journal_mode=WAL; {} PRAGMA user_version=2;
                 INSERT INTO operations(created_at, kind, argv)
                     VALUES ('2026-01-01T00:00:00Z', 'install', '[\"dbguard\",\"install\"]'),
                            ('2026-01-02T00:00:00Z', 'install', '[\"dbguard\",\"install\"]');
                 INSERT INTO images(digest, size) VALUES ('d', 0);
                 INSERT INTO snapshots(operation_id, image_id, worktree, path, kind, created_at,
                     consistency, git_state, schema_hash, reused)
                     VALUES (1, 1, '/w', 'a.db', 'sqlite', '2026-01-01T00:00:00Z',
                     'online-backup', 'tracked', 's', 0),
                            (2, 1, '/w', 'a.db', 'sqlite', '2026-01-02T00:00:00Z',
                     'online-backup', 'tracked', 's', 1);
                 INSERT INTO snapshot_tables VALUES (1, 'posts', 7), (2, 'posts', 7);
                 INSERT INTO stat_cache(worktree, path, signature, snapshot_id, chunks_ctime_ns)
                     VALUES ('/w', 'a.db', 'sig', 2, 5);",
                v2_schema()
            ))
            .unwrap();
        }
        // A reader (a read-only store) neither migrates nor needs the new table.
        let scratch = tempfile::tempdir().unwrap();
        let read_only = Catalog::open_read_only(&path, scratch.path()).unwrap();
        let listed = read_only.snapshots(None, None, None).unwrap();
        assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![2, 1]);
        assert!(listed.iter().all(|s| s.unchanged.is_empty()));
        drop(read_only);

        let mut catalog = Catalog::open(&path).unwrap();
        let version: i64 = catalog
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // The old snapshots are untouched, the stat cache still points at #2.
        let latest = catalog.latest("/w", "a.db").unwrap().unwrap();
        assert_eq!((latest.id, latest.census.total_rows()), (2, 7));
        assert_eq!(
            catalog
                .stat_cache_hit("/w", "a.db", "sig")
                .unwrap()
                .unwrap()
                .snapshot_id,
            2
        );
        // A later operation that finds a.db unchanged refers to #2.
        let now = parse_ts("2026-01-03T00:00:00Z");
        let operation = catalog
            .begin_operation("export", &["dbguard".into(), "export".into()], None, now)
            .unwrap();
        catalog
            .insert_ref(
                &NewRef {
                    operation_id: operation,
                    snapshot_id: 2,
                    worktree: "/w",
                    path: "a.db",
                    created_at: now,
                    git_state: "tracked",
                    reopened: false,
                    message: None,
                },
                Some(("sig", Some(5))),
            )
            .unwrap();
        let latest = catalog.latest("/w", "a.db").unwrap().unwrap();
        assert_eq!(latest.id, 2);
        assert_eq!(latest.unchanged.len(), 1);
        assert_eq!(latest.unchanged[0].operation.describe(), "dbguard export");
        assert_eq!(latest.last_seen(), now);
        // Pruning the snapshot takes its references along, and the operation with them
        // unless it is the newest one.
        catalog.delete_snapshots(&[1]).unwrap();
        assert_eq!(catalog.snapshots(None, None, None).unwrap().len(), 1);
        catalog.delete_snapshots(&[2]).unwrap();
        let refs: i64 = catalog
            .conn
            .query_row("SELECT count(*) FROM operation_refs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(refs, 0);
    }

    #[test]
    fn a_version_1_catalog_stays_readable_and_is_migrated_by_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let v1 = v2_schema().replace("    chunks_ctime_ns INTEGER,\n", "");
        assert_ne!(v1, v2_schema());
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "PRAGMA journal_mode=WAL; {v1} PRAGMA user_version=1;
                 INSERT INTO operations(created_at, kind, argv)
                     VALUES ('2026-01-01T00:00:00Z', 'snapshot', '[]');
                 INSERT INTO images(digest, size) VALUES ('d', 0);
                 INSERT INTO snapshots(operation_id, image_id, worktree, path, kind, created_at,
                     consistency, git_state, schema_hash)
                     VALUES (1, 1, '/w', 'a.db', 'sqlite', '2026-01-01T00:00:00Z',
                     'online-backup', 'tracked', 's');
                 INSERT INTO stat_cache(worktree, path, signature, snapshot_id)
                     VALUES ('/w', 'a.db', 'sig', 1);"
            ))
            .unwrap();
        }
        // Reading needs no migration (and could not write one).
        let scratch = tempfile::tempdir().unwrap();
        let read_only = Catalog::open_read_only(&path, scratch.path()).unwrap();
        assert_eq!(read_only.snapshots(None, None, None).unwrap().len(), 1);
        assert!(matches!(
            read_only.begin_operation("snapshot", &[], None, Utc::now()),
            Err(CatalogError::ReadOnly { .. })
        ));
        drop(read_only);
        let catalog = Catalog::open(&path).unwrap();
        let version: i64 = catalog
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let hit = catalog
            .stat_cache_hit("/w", "a.db", "sig")
            .unwrap()
            .unwrap();
        assert_eq!(hit.snapshot_id, 1);
        // An entry from before the migration has no chunk ctime: it is not trusted.
        assert_eq!(hit.chunks_ctime_ns, None);
        assert_eq!(catalog.snapshots(None, None, None).unwrap().len(), 1);
    }
}
