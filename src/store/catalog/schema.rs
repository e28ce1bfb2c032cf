//! The catalog's schema and its migrations: every older catalog is brought to
//! [`SCHEMA_VERSION`] in one transaction when a writer opens it.

use rusqlite::{Connection, params};

use super::records::{parse_ts, ts};
use super::{legacy, replica};
use crate::db::{Completeness, Missing};
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

pub(super) const SCHEMA: &str = "
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
pub(super) fn argv_json(argv: &[String]) -> String {
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
pub(super) const COMPLETENESS_COLUMNS: [&str; 8] = [
    "partial",
    "copy_instant",
    "copy_retries",
    "missing_commits",
    "missing_wal_bytes",
    "missing_since",
    "missing_until",
    "holder_pid",
];
pub(super) const COMPLETENESS_SET: &str = "partial = ?1, copy_instant = ?2, copy_retries = ?3, \
     missing_commits = ?4, missing_wal_bytes = ?5, missing_since = ?6, missing_until = ?7, \
     holder_pid = ?8";

/// [`COMPLETENESS_COLUMNS`]' values, then `last` (the row's id or the next column).
pub(super) fn completeness_params(
    c: &Completeness,
    last: i64,
) -> [Box<dyn rusqlite::ToSql + '_>; 9] {
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
pub(super) fn completeness_at(
    row: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<Completeness> {
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

/// Bring a catalog of schema `version` (0: new) to [`SCHEMA_VERSION`], in one transaction.
pub(super) fn migrate(conn: &Connection, version: i64) -> rusqlite::Result<()> {
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
    conn.execute_batch(&batch)?;
    let mut migrated = Ok(());
    if (1..6).contains(&version) {
        migrated = migrated.and_then(|()| redact_recorded_argv(conn));
    }
    if (1..8).contains(&version) {
        migrated = migrated.and_then(|()| type_completeness(conn));
    }
    let committed = migrated.and_then(|()| conn.execute_batch("COMMIT"));
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    committed
}
