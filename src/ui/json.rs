//! The one `--json` schema. Every command's machine-readable output is built from the
//! structs here, so the same thing has the same name and type everywhere (the rules are
//! in the README's "JSON output" section; `docs/json-schema.json` describes every
//! command's output and `tests/it/json_schema.rs` checks each command against it):
//!
//! - `id` is the id of the object it is in (a snapshot, or the `operation`); any other
//!   object names the snapshot it refers to `snapshot_id` or `<role>_snapshot_id`, and a
//!   list of them `snapshot_ids`.
//! - `path` is a database's path relative to the top of the working tree, `/`-separated;
//!   other file system locations are absolute and end in `_file`, `_files` or `_dir`.
//! - times are RFC 3339 UTC strings with milliseconds; a snapshot's time is `taken_at`.
//! - sizes in bytes end in `_bytes`; row counts are `rows` or `rows_<when>`.
//! - things keyed by a name (tables, environment variables) are objects keyed by that
//!   name: a census is `tables: {name: rows}`.
//! - every snapshot object carries `partial`, `missing`, `instant` and `retries`.
//! - a field with no value is `null`, never left out: every field is always there.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::{self, Census, DbKind};
use crate::store::OperationInfo;
use crate::store::SnapshotInfo;
use crate::ui::Ui;

/// Print `value` as the command's JSON document on stdout.
pub(crate) fn print<T: Serialize>(ui: &Ui, value: &T) {
    ui.out_json(&serde_json::to_string_pretty(value).unwrap_or_default());
}

/// A time as every JSON field shows one.
pub(crate) fn time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Rows per table, by table name.
pub(crate) type Tables = BTreeMap<String, u64>;

/// Whether a snapshot holds every committed transaction (flattened into each snapshot).
#[derive(Debug, Serialize)]
pub(crate) struct Completeness {
    pub(crate) partial: bool,
    /// What a partial snapshot lacks; `null` for a complete one.
    pub(crate) missing: Option<db::Missing>,
    /// The instant a live copy stands for; `null` for other copies.
    pub(crate) instant: Option<String>,
    /// Copies a checkpoint overlapped and that were made again (live copies).
    pub(crate) retries: Option<u32>,
}

impl From<&db::Completeness> for Completeness {
    fn from(c: &db::Completeness) -> Completeness {
        Completeness {
            partial: c.partial,
            missing: c.missing.clone(),
            instant: c.instant.as_ref().map(time),
            retries: c.retries,
        }
    }
}

/// One snapshot in full: `log` (each entry) and `show`.
#[derive(Debug, Serialize)]
pub(crate) struct Snapshot<'a> {
    pub(crate) id: i64,
    pub(crate) path: &'a str,
    pub(crate) worktree: &'a str,
    pub(crate) kind: DbKind,
    pub(crate) taken_at: String,
    pub(crate) size_bytes: u64,
    pub(crate) rows: u64,
    pub(crate) tables: &'a Tables,
    pub(crate) schema_digest: &'a str,
    pub(crate) image_digest: &'a str,
    pub(crate) git_state: &'a str,
    pub(crate) consistency: &'a str,
    #[serde(flatten)]
    pub(crate) completeness: Completeness,
    pub(crate) reused: bool,
    pub(crate) message: Option<&'a str>,
    pub(crate) operation: &'a OperationInfo,
    /// Later operations that found the database unchanged and refer to this snapshot
    /// instead of taking a new one, oldest first.
    pub(crate) unchanged: Vec<Unchanged<'a>>,
}

/// One later operation that found a snapshot's database unchanged.
#[derive(Debug, Serialize)]
pub(crate) struct Unchanged<'a> {
    pub(crate) seen_at: String,
    pub(crate) git_state: &'a str,
    /// False when the stat cache vouched for the file without opening it.
    pub(crate) reopened: bool,
    pub(crate) message: Option<&'a str>,
    pub(crate) operation: &'a OperationInfo,
}

impl<'a> From<&'a SnapshotInfo> for Snapshot<'a> {
    fn from(s: &'a SnapshotInfo) -> Snapshot<'a> {
        Snapshot {
            id: s.id,
            path: &s.path,
            worktree: &s.worktree,
            kind: s.kind,
            taken_at: time(&s.created_at),
            size_bytes: s.size,
            rows: s.census.total_rows(),
            tables: &s.census.tables,
            schema_digest: &s.census.schema,
            image_digest: &s.image_digest,
            git_state: &s.git_state,
            consistency: &s.consistency,
            completeness: Completeness::from(&s.completeness),
            reused: s.reused,
            message: s.message.as_deref(),
            operation: &s.operation,
            unchanged: s
                .unchanged
                .iter()
                .map(|r| Unchanged {
                    seen_at: time(&r.created_at),
                    git_state: &r.git_state,
                    reopened: r.reopened,
                    message: r.message.as_deref(),
                    operation: &r.operation,
                })
                .collect(),
        }
    }
}

/// A snapshot in brief: `status`'s `last_snapshot`, `prune`'s `removed` and `kept`.
#[derive(Debug, Serialize)]
pub(crate) struct SnapshotBrief {
    pub(crate) id: i64,
    pub(crate) path: String,
    pub(crate) taken_at: String,
    pub(crate) rows: u64,
    #[serde(flatten)]
    pub(crate) completeness: Completeness,
}

impl From<&SnapshotInfo> for SnapshotBrief {
    fn from(s: &SnapshotInfo) -> SnapshotBrief {
        SnapshotBrief {
            id: s.id,
            path: s.path.clone(),
            taken_at: time(&s.created_at),
            rows: s.census.total_rows(),
            completeness: Completeness::from(&s.completeness),
        }
    }
}

/// One database's result in `snapshot`: the snapshot taken, or why none was.
#[derive(Debug, Serialize)]
pub(crate) struct Taken {
    pub(crate) path: String,
    pub(crate) kind: DbKind,
    pub(crate) git_state: crate::git::GitState,
    pub(crate) id: Option<i64>,
    pub(crate) rows: Option<u64>,
    pub(crate) tables: Option<Tables>,
    pub(crate) size_bytes: Option<u64>,
    /// Bytes this snapshot added to the store (0: every chunk was already there).
    pub(crate) stored_bytes: Option<u64>,
    pub(crate) reused: bool,
    /// The database was unchanged since its latest snapshot: `id` is that snapshot and
    /// no new one was recorded.
    pub(crate) unchanged: bool,
    pub(crate) consistency: Option<String>,
    #[serde(flatten)]
    pub(crate) completeness: Completeness,
    pub(crate) error: Option<String>,
}

/// One database in `status`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusRow {
    pub(crate) path: String,
    pub(crate) kind: DbKind,
    /// `null` only for a database that is no longer in the worktree as one.
    pub(crate) git_state: Option<crate::git::GitState>,
    /// `null` only for a file that is gone.
    pub(crate) size_bytes: Option<u64>,
    pub(crate) rows_now: Option<u64>,
    /// Why the file could not be counted now (held open, unreadable).
    pub(crate) busy: Option<String>,
    pub(crate) last_snapshot: Option<SnapshotBrief>,
    /// `ok`, `shrank`, `vanished` or `unreadable`, against the last snapshot.
    pub(crate) state: &'static str,
    /// What was lost and how to get it back; `null` when `state` is `ok`.
    pub(crate) loss: Option<Loss>,
}

/// What a database lost since its last snapshot (`status`).
#[derive(Debug, Serialize)]
pub(crate) struct Loss {
    pub(crate) snapshot_id: i64,
    pub(crate) rows_then: u64,
    /// `null` when the file is gone or unreadable.
    pub(crate) rows_now: Option<u64>,
    /// The tables that lost rows or vanished.
    pub(crate) tables: BTreeMap<String, TableLoss>,
    /// Why an unreadable file cannot be read.
    pub(crate) reason: Option<String>,
    /// The command that puts the snapshot back, to run from the current directory.
    pub(crate) restore_command: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct TableLoss {
    pub(crate) rows_then: u64,
    /// `null`: the table is gone.
    pub(crate) rows_now: Option<u64>,
}

/// One database compared in `diff`.
#[derive(Debug, Serialize)]
pub(crate) struct Diff {
    pub(crate) path: String,
    pub(crate) before_snapshot_id: i64,
    /// `null`: the after side is the database file now.
    pub(crate) after_snapshot_id: Option<i64>,
    /// False when the after side is the file now and it is gone.
    pub(crate) after_exists: bool,
    pub(crate) schema_changed: bool,
    pub(crate) tables: BTreeMap<String, TableDiff>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TableDiff {
    /// `null`: the table does not exist on that side.
    pub(crate) rows_before: Option<u64>,
    pub(crate) rows_after: Option<u64>,
}

/// `verify`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct Verify<'a> {
    pub(crate) images: usize,
    pub(crate) chunks: usize,
    pub(crate) checked_bytes: u64,
    pub(crate) unreferenced_chunks: usize,
    pub(crate) problems: &'a [crate::store::Problem],
    pub(crate) damage: Vec<Damage<'a>>,
    /// Snapshots that cannot be restored, oldest first.
    pub(crate) broken: &'a [crate::store::SnapshotRef],
    /// Snapshots whose every chunk is intact, oldest first.
    pub(crate) restorable: &'a [crate::store::SnapshotRef],
    pub(crate) stat_cache_cleared: usize,
    pub(crate) read_only: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Damage<'a> {
    pub(crate) problem: &'a crate::store::Problem,
    /// The snapshots that cannot be restored because of it.
    pub(crate) snapshot_ids: &'a [i64],
}

impl<'a> From<&'a crate::store::VerifyReport> for Verify<'a> {
    fn from(r: &'a crate::store::VerifyReport) -> Verify<'a> {
        Verify {
            images: r.images,
            chunks: r.chunks,
            checked_bytes: r.bytes,
            unreferenced_chunks: r.unreferenced,
            problems: &r.problems,
            damage: r
                .damage
                .iter()
                .map(|d| Damage {
                    problem: &d.problem,
                    snapshot_ids: &d.snapshots,
                })
                .collect(),
            broken: &r.broken,
            restorable: &r.restorable,
            stat_cache_cleared: r.stat_cache_cleared,
            read_only: r.read_only,
        }
    }
}

/// `prune`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct Prune {
    pub(crate) dry_run: bool,
    pub(crate) removed: Vec<SnapshotBrief>,
    pub(crate) kept: Vec<Kept>,
    pub(crate) chunks_removed: usize,
    pub(crate) freed_bytes: u64,
    /// With `--remote`: what the remote's copy of this store lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) remote: Option<RemotePrune>,
}

/// `prune --remote`: deleted on the remote (or would be, with `--dry-run`).
#[derive(Debug, Serialize)]
pub(crate) struct RemotePrune {
    pub(crate) remote: String,
    pub(crate) url: String,
    pub(crate) snapshot_ids: Vec<i64>,
    pub(crate) packs_deleted: usize,
    pub(crate) freed_bytes: u64,
    pub(crate) packs_kept_until_pushed: usize,
}

impl RemotePrune {
    pub(crate) fn new(
        remote: &crate::remote::RemoteSpec,
        r: &crate::store::replica::RemotePruneReport,
    ) -> RemotePrune {
        RemotePrune {
            remote: remote.name.clone(),
            url: remote.url.to_string(),
            snapshot_ids: r.snapshots.clone(),
            packs_deleted: r.packs,
            freed_bytes: r.bytes,
            packs_kept_until_pushed: r.kept_until_pushed,
        }
    }
}

/// `push`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct Push {
    pub(crate) remote: String,
    pub(crate) url: String,
    pub(crate) store_id: String,
    /// Snapshots whose records this push wrote.
    pub(crate) pushed: Vec<i64>,
    pub(crate) already_there: usize,
    pub(crate) packs_sent: usize,
    pub(crate) packs_already_there: usize,
    /// Packs another store's space on the remote held: copied there, not sent.
    pub(crate) packs_copied_on_remote: usize,
    pub(crate) bytes_sent: u64,
    /// Not pushed: a pack of theirs was pruned while pushing (the next push sends them).
    pub(crate) left_out: Vec<i64>,
    /// Not pushed: stored in the format before packs.
    pub(crate) legacy: Vec<i64>,
    /// Fetched from a remote: there already, under the store that took them.
    pub(crate) fetched: usize,
}

impl Push {
    pub(crate) fn new(
        remote: &crate::remote::RemoteSpec,
        r: &crate::store::replica::PushReport,
    ) -> Push {
        Push {
            remote: remote.name.clone(),
            url: remote.url.to_string(),
            store_id: r.store_id.clone(),
            pushed: r.pushed.clone(),
            already_there: r.already,
            packs_sent: r.packs_sent,
            packs_already_there: r.packs_already,
            packs_copied_on_remote: r.packs_copied,
            bytes_sent: r.bytes_sent,
            left_out: r.left_out.clone(),
            legacy: r.legacy.clone(),
            fetched: r.fetched,
        }
    }
}

/// `fetch`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct Fetch {
    pub(crate) remote: String,
    pub(crate) url: String,
    pub(crate) fetched: Vec<crate::store::replica::FetchedSnapshot>,
    pub(crate) already_here: usize,
    pub(crate) incomplete: Vec<Incomplete>,
    pub(crate) packs_fetched: usize,
    pub(crate) bytes_fetched: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Incomplete {
    /// `<store id>/<snapshot id>` on the remote.
    pub(crate) origin: String,
    pub(crate) reason: String,
}

impl Fetch {
    pub(crate) fn new(
        remote: &crate::remote::RemoteSpec,
        r: &crate::store::replica::FetchReport,
    ) -> Fetch {
        Fetch {
            remote: remote.name.clone(),
            url: remote.url.to_string(),
            fetched: r.imported.clone(),
            already_here: r.already,
            incomplete: r
                .incomplete
                .iter()
                .map(|(origin, reason)| Incomplete {
                    origin: origin.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            packs_fetched: r.packs_fetched,
            bytes_fetched: r.bytes_fetched,
        }
    }
}

/// `verify --remote`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct RemoteVerify<'a> {
    pub(crate) remote: String,
    pub(crate) url: String,
    pub(crate) stores: usize,
    pub(crate) snapshots: usize,
    pub(crate) packs: usize,
    pub(crate) checked_bytes: u64,
    pub(crate) unindexed_packs: usize,
    pub(crate) problems: &'a [String],
    /// `<store id>/<snapshot id>` of every snapshot that cannot be fetched whole.
    pub(crate) broken: &'a [String],
}

#[derive(Debug, Serialize)]
pub(crate) struct Kept {
    #[serde(flatten)]
    pub(crate) snapshot: SnapshotBrief,
    /// Every retention rule that keeps it.
    pub(crate) reasons: Vec<String>,
}

/// One exported snapshot (`export`).
#[derive(Debug, Serialize)]
pub(crate) struct Exported {
    pub(crate) snapshot_id: i64,
    pub(crate) path: String,
    pub(crate) export_dir: PathBuf,
    pub(crate) tables: BTreeMap<String, ExportedTable>,
    /// Tables not exported, with the reason.
    pub(crate) skipped: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ExportedTable {
    pub(crate) rows: u64,
    pub(crate) files: Vec<PathBuf>,
}

/// `import-table`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct Imported {
    pub(crate) source_file: PathBuf,
    pub(crate) database_file: PathBuf,
    /// The database's path in its working tree; `null` outside one.
    pub(crate) path: Option<String>,
    pub(crate) table: String,
    pub(crate) rows: u64,
    /// The snapshot taken before the import (`restore --from` it to undo); `null` when
    /// nothing was snapshotted (a new file, or outside a working tree).
    pub(crate) undo_snapshot_id: Option<i64>,
}

/// `restore`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct Restored<'a> {
    pub(crate) snapshot_id: i64,
    pub(crate) path: &'a str,
    /// The file written: the live database, or the `--to` file.
    pub(crate) written_file: &'a std::path::Path,
    /// Snapshot of the state before the restore (`restore --from` it to undo).
    pub(crate) undo_snapshot_id: Option<i64>,
    /// The snapshot that records the restored state as the path's latest.
    pub(crate) baseline_snapshot_id: Option<i64>,
    pub(crate) rows: u64,
    pub(crate) tables: &'a Tables,
    pub(crate) schema_digest: &'a str,
    pub(crate) method: &'static str,
    pub(crate) note: Option<&'a str>,
}

impl<'a> Restored<'a> {
    pub(crate) fn new(
        snapshot: &'a SnapshotInfo,
        restored: &'a crate::restore::Restored,
    ) -> Restored<'a> {
        let census: &Census = &restored.census;
        Restored {
            snapshot_id: snapshot.id,
            path: &snapshot.path,
            written_file: &restored.path,
            undo_snapshot_id: restored.undo,
            baseline_snapshot_id: restored.baseline,
            rows: census.total_rows(),
            tables: &census.tables,
            schema_digest: &census.schema,
            method: restored.method,
            note: restored.note.as_deref(),
        }
    }
}

/// `config`'s report: each setting as `{value, source}`, and the dbguard environment
/// variables set, by name.
#[derive(Debug, Serialize)]
pub(crate) struct Config<'a> {
    #[serde(flatten)]
    pub(crate) settings: &'a crate::config::Settings,
    pub(crate) environment: BTreeMap<&'static str, String>,
}
