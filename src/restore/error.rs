//! `RestoreError`: every way a restore can refuse or fail, with the paths and the errors
//! behind it. The texts are what users read; the hints that go with them are added where
//! the error becomes a `CommandError` (`src/error.rs`).
//!
//! SQLite and DuckDB errors are carried as `error`, not as a `source`: their text is
//! already in the message, and SQLite's own chain (a bare "Error code 5") would add a line
//! that says nothing more.

use std::io;
use std::path::PathBuf;

use crate::db::DbError;
use crate::git::RepoPath;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    #[error("snapshot #{id} names the path {path:?}, which is outside this working tree")]
    OutsideWorktree { id: i64, path: String },
    #[error("snapshot #{id} names the path {path:?}, which is inside a .git directory")]
    InsideGitDir { id: i64, path: String },
    #[error("{path} is a symlink now")]
    Symlink { path: RepoPath },
    /// The snapshot could not be read back from the store (`path` is the snapshot's).
    #[error("{source}")]
    ReadBack { path: String, source: StoreError },
    /// The image read back fails its integrity check or cannot be opened.
    #[error("{source}")]
    ImageDamaged { path: String, source: DbError },
    /// The snapshot's definition of a table was refused (it was not run).
    #[error("snapshot #{id} defines table {table:?} in a way dbguard will not run")]
    Definition {
        table: String,
        id: i64,
        #[source]
        source: crate::db::create_table::CreateTableError,
    },
    #[error("snapshot #{id} does not read back as recorded (rows per table differ)")]
    ImageDiffers { id: i64, path: String },
    /// The current state could not be snapshotted first, so the restore could not be undone.
    #[error("{source}")]
    UndoSnapshot { source: StoreError },
    /// A file operation on the way failed; nothing live was changed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} already exists", path.display())]
    DestinationExists { path: PathBuf },
    /// The new file is in place but its directory could not be fsynced.
    #[error("restored {}, but cannot flush its directory: {source}", path.display())]
    NotDurable { path: PathBuf, source: io::Error },
    /// `--table` into a file that is not a database of the snapshot's kind (`why`).
    #[error("cannot restore tables into {path}: {why}")]
    TablesIntoUnrestorable { path: String, id: i64, why: String },
    /// The old file's WAL or rollback journal (`what`) could not be folded into it.
    #[error("cannot restore {path}: its {what} could not be folded into it first: {why}")]
    FoldFailed {
        path: String,
        what: &'static str,
        why: String,
    },
    /// A sidecar next to a missing database could neither be removed nor kept aside.
    #[error("cannot clear {}: {source}", path.display())]
    ClearSidecar { path: PathBuf, source: io::Error },
    #[error("cannot keep {path} aside as {}: {source}", aside.display())]
    KeepAside {
        path: String,
        aside: PathBuf,
        source: io::Error,
    },
    /// An app opened the file while the restore prepared; `kept` says what was kept aside.
    #[error("{path} was opened by process {} during the restore", pid_list(.pids))]
    OpenedDuring {
        path: String,
        pids: Vec<u32>,
        kept: Option<String>,
    },
    #[error("cannot put the restored copy in place of {path}: {source}")]
    PutInPlace {
        path: String,
        kept: Option<String>,
        source: io::Error,
    },
    /// Copying the image into the open SQLite database failed.
    #[error("cannot restore {path}: {error}")]
    Sqlite {
        path: String,
        error: rusqlite::Error,
    },
    #[error("{path} is open in process {} and {why}", pid_list(.pids))]
    OpenAndUnrestorable {
        path: String,
        pids: Vec<u32>,
        why: String,
    },
    #[error("{path} stayed locked by another process for 60 s")]
    StayedLocked { path: String },
    /// After a restore into the open database, `short` tables have fewer rows than the snapshot.
    #[error("{path} does not match snapshot #{id} after the restore ({short} tables short)")]
    ShortAfterBackup { path: String, id: i64, short: usize },
    #[error("{path} is open in process {pid}{}", program.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
    DuckDbOpen {
        path: String,
        pid: u32,
        program: Option<String>,
    },
    #[error("{path} does not match snapshot #{id} after the restore")]
    Mismatch { path: String, id: i64 },
    /// `tables` lists the snapshot's tables, for the hint.
    #[error("snapshot #{id} has no table {table:?}")]
    NoSuchTable {
        id: i64,
        table: String,
        tables: Vec<String>,
    },
    #[error("{path} does not exist")]
    TablesIntoMissing { path: String },
    #[error("table {table} does not match snapshot #{id} after the restore")]
    TableMismatch { table: String, id: i64 },
    #[error("cannot restore tables of {path}: {error}")]
    SqliteTables {
        path: String,
        error: rusqlite::Error,
    },
    #[error(
        "table {table} has different columns now ({}) than in snapshot #{id} ({})",
        live.join(", "),
        snapshot.join(", ")
    )]
    ColumnsChanged {
        table: String,
        id: i64,
        live: Vec<String>,
        snapshot: Vec<String>,
    },
    /// `reason` is the first line of DuckDB's message (the rest is its internals).
    #[error("cannot restore tables of {}: {reason}", path.display())]
    DuckDbTables { path: PathBuf, reason: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Process ids as people read them: `4242, 4243`.
fn pid_list(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
