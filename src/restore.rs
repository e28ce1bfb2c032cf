//! Putting a snapshot back: whole file, some tables, or to another path. Restoring never
//! makes things worse: the current state is snapshotted first (so a restore can itself be
//! undone), the image is verified before the live file is touched, and the live file is
//! replaced atomically or, when an app has it open, through SQLite's backup API.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};

use crate::clock;
use crate::compare::{self, Shrink};
use crate::db::{self, Census, DbKind, Sniff, quote_ident};
use crate::error::CommandError;
use crate::flow::Context;
use crate::hooks::watch;
use crate::repo::{RepoError, RepoPath};
use crate::scan::{restore_staging_name, restore_staging_pid};
use crate::store::chunks::{sync_dir, temp_path};
use crate::store::{NewSnapshot, SnapshotInfo, SnapshotRequest, Store, StoreError};
use crate::ui::{self, Ui};

/// Where a restore writes.
pub enum Target {
    /// The snapshot's own path in this worktree.
    InPlace,
    /// Anywhere the user names; the live database is left alone.
    To(PathBuf),
}

#[derive(Debug, serde::Serialize)]
pub struct Restored {
    pub path: PathBuf,
    /// Snapshot of the state before the restore (`restore --from` it to undo).
    pub undo: Option<i64>,
    /// The snapshot that records the restored state as the path's latest (the baseline
    /// later comparisons measure losses against).
    pub baseline: Option<i64>,
    pub census: Census,
    pub method: &'static str,
    pub note: Option<String>,
}

fn db_error(error: db::DbError) -> CommandError {
    error.into()
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> CommandError {
    CommandError::new(format!("cannot {what} {}: {error}", path.display()))
        .hint("check permissions and free disk space; the live database was not changed")
}

/// The live path of a snapshot in this worktree, refusing catalog entries that would
/// write outside it (whatever the catalog says).
pub fn live_path(ctx: &Context, snapshot: &SnapshotInfo) -> Result<PathBuf, CommandError> {
    let escape = || {
        CommandError::new(format!(
            "snapshot #{} names the path {:?}, which is outside this working tree",
            snapshot.id, snapshot.path
        ))
        .hint("restore it elsewhere with --to <path>")
    };
    let relative = RepoPath::new(&snapshot.path).map_err(|error| match error {
        RepoError::GitDir(_) => CommandError::new(format!(
            "snapshot #{} names the path {:?}, which is inside a .git directory",
            snapshot.id, snapshot.path
        ))
        .hint("dbguard never writes into git's own files; restore it elsewhere with --to <path>"),
        _ => escape(),
    })?;
    let live = relative.in_worktree(&ctx.repo.worktree);
    // Every existing ancestor must resolve inside the worktree (no symlinked directories).
    let mut ancestor = live.parent();
    while let Some(dir) = ancestor {
        if dir.exists() {
            let real = dir
                .canonicalize()
                .map_err(|e| io_error("resolve", dir, e))?;
            if !real.starts_with(&ctx.repo.worktree) {
                return Err(escape());
            }
            break;
        }
        ancestor = dir.parent();
    }
    if fs::symlink_metadata(&live).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(CommandError::new(format!("{} is a symlink now", relative))
            .hint("remove the symlink or restore with --to <path>"));
    }
    Ok(live)
}

/// Processes other than this one that have `path` (or its sidecars) open, from /proc.
pub fn processes_using(path: &Path) -> Vec<u32> {
    let Ok(target) = path.canonicalize() else {
        return Vec::new();
    };
    let own = std::process::id();
    let mut pids = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .any(|open| open == target)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Restore `snapshot`. Takes the store so it can snapshot the current state first.
pub fn restore(
    ui: &Ui,
    ctx: &Context,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    tables: &[String],
    target: Target,
) -> Result<Restored, CommandError> {
    // 1. Materialise and verify the image before anything else is touched.
    let image = temp_path(store.tmp_dir(), ".restore");
    let result = (|| {
        let bar = ui.progress(snapshot.size, &format!("read #{}", snapshot.id));
        store.materialize(snapshot, &image, true, &|done| bar.set_position(done))?;
        bar.finish_and_clear();
        Ok::<_, CommandError>(())
    })()
    .and_then(|()| verify_image(snapshot, &image));
    if let Err(error) = result {
        let _ = fs::remove_file(&image);
        return Err(error.hint(format!(
            "the live database was not changed; an older snapshot may be intact (`dbguard log {}`)",
            snapshot.path
        )));
    }
    let outcome = match target {
        Target::To(dest) => to_path(ctx, snapshot, &image, &dest),
        Target::InPlace => in_place(ui, ctx, store, snapshot, &image, tables),
    };
    let _ = fs::remove_file(&image);
    outcome
}

/// The materialised image must pass its integrity check and match the recorded census.
fn verify_image(snapshot: &SnapshotInfo, image: &Path) -> Result<(), CommandError> {
    let census = db::check_and_census(snapshot.kind, image).map_err(db_error)?;
    if census.tables != snapshot.census.tables {
        return Err(CommandError::new(format!(
            "snapshot #{} does not read back as recorded (rows per table differ)",
            snapshot.id
        )));
    }
    Ok(())
}

fn to_path(
    ctx: &Context,
    snapshot: &SnapshotInfo,
    image: &Path,
    dest: &Path,
) -> Result<Restored, CommandError> {
    let dest = if dest.is_dir() {
        dest.join(Path::new(&snapshot.path).file_name().unwrap_or_default())
    } else {
        dest.to_path_buf()
    };
    if fs::symlink_metadata(&dest).is_ok() {
        return Err(
            CommandError::new(format!("{} already exists", dest.display()))
                .hint("name a new file, or remove that one first"),
        );
    }
    remove_stale_staging(&dest);
    // The copy gets the permissions of the database it is a copy of when that exists in
    // this worktree (a private database stays private). Otherwise it is a new file like
    // any other the user creates: 0644 less the umask. Not 0600: people restore `--to` to
    // hand the file to another program or user, and the umask is how they say otherwise.
    let mode = RepoPath::new(&snapshot.path)
        .ok()
        .and_then(|p| fs::metadata(p.in_worktree(&ctx.repo.worktree)).ok())
        .filter(|m| m.is_file())
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644 & !process_umask());
    let staged = stage(image, &dest, mode)?;
    if let Err(error) = fs::rename(&staged, &dest) {
        let _ = fs::remove_file(&staged);
        return Err(io_error("write", &dest, error));
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    sync_dir(dir).map_err(|e| not_durable(&dest, e))?;
    let census = db::census_live(snapshot.kind, &dest).map_err(db_error)?;
    Ok(Restored {
        path: dest,
        undo: None,
        baseline: None,
        census,
        method: "new file",
        note: None,
    })
}

/// The process umask, from `/proc/self/status` (reading it through umask(2) would mean
/// setting it, for every thread). 022, the usual default, when it cannot be read.
fn process_umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:"))
                .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// The rename happened but the directory could not be flushed: say exactly that.
fn not_durable(dest: &Path, error: std::io::Error) -> CommandError {
    CommandError::new(format!(
        "restored {}, but cannot flush its directory: {error}",
        dest.display()
    ))
    .hint("the restored file is in place; until the directory is flushed, a power loss could bring back the previous one")
}

/// Remove staging files that killed restores left next to `dest`
/// (`.<name>.dbguard-restore-<pid>` whose process is gone).
fn remove_stale_staging(dest: &Path) {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(pid) = restore_staging_pid(file_name) else {
            continue;
        };
        // A live pid may be another restore staging right now: leave its file alone.
        if file_name == restore_staging_name(name, pid)
            && pid != own
            && !Path::new("/proc").join(pid.to_string()).exists()
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Put a complete, fsynced copy of the verified image next to `dest`, under the staging
/// name, and return that path. Nothing at `dest` or its sidecars is touched: a failure
/// here (a full disk above all) leaves the live database exactly as it was.
fn stage(image: &Path, dest: &Path, mode: u32) -> Result<PathBuf, CommandError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let staged = dir.join(restore_staging_name(&name, std::process::id()));
    let _ = fs::remove_file(&staged);
    let result = (|| {
        // Within one filesystem a hard link costs nothing; across filesystems (a store on
        // another disk) the image is copied, which is where a full disk shows up.
        if fs::hard_link(image, &staged).is_err() {
            fs::copy(image, &staged)?;
        }
        fs::set_permissions(&staged, fs::Permissions::from_mode(mode))?;
        fs::File::open(&staged)?.sync_all()
    })();
    if let Err(error) = result {
        let _ = fs::remove_file(&staged);
        return Err(io_error("write", dest, error));
    }
    Ok(staged)
}

/// What an in-place restore found at the live path.
enum Current {
    /// No file there.
    Missing,
    /// A database of the snapshot's kind, snapshotted as this id first (the undo).
    Snapshotted(i64),
    /// A file that cannot be snapshotted because it is not such a database or is damaged:
    /// kept by moving it (and its sidecars) aside right before the restored file replaces
    /// it. The text says why, for the note.
    MoveAside(String),
}

fn in_place(
    ui: &Ui,
    ctx: &Context,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    image: &Path,
    tables: &[String],
) -> Result<Restored, CommandError> {
    let live = live_path(ctx, snapshot)?;
    let relative = RepoPath::new(&snapshot.path).map_err(|e| CommandError::new(e.to_string()))?;
    remove_stale_staging(&live);
    let operation = store.begin_operation(
        "restore",
        &[
            "dbguard".into(),
            "restore".into(),
            snapshot.path.clone(),
            "--from".into(),
            snapshot.id.to_string(),
        ],
        ctx.repo.head().as_deref(),
        clock::now(),
    )?;
    let current = snapshot_current_state(ctx, store, snapshot, &relative, &live, operation)?;
    let undo = match current {
        Current::Snapshotted(id) => Some(id),
        _ => None,
    };
    let (method, census, note) = if !tables.is_empty() {
        if let Current::MoveAside(why) = &current {
            return Err(CommandError::new(format!(
                "cannot restore tables into {}: {why}",
                snapshot.path
            ))
            .hint(format!(
                "restore the whole database (without --table): dbguard restore {} --from {}",
                shell_quote(&snapshot.path),
                snapshot.id
            )));
        }
        let (method, census) = restore_tables(snapshot, image, &live, tables)?;
        (method, census, None)
    } else {
        match snapshot.kind {
            DbKind::Sqlite => restore_sqlite_file(snapshot, image, &live, &current)?,
            DbKind::DuckDb => restore_duckdb_file(snapshot, image, &live, &current)?,
        }
    };
    let baseline = record_baseline(ui, ctx, store, snapshot, &relative, tables, operation);
    let _ = store.finish_operation(operation, ctx.repo.head().as_deref(), Some(0));
    Ok(Restored {
        path: live,
        undo,
        baseline,
        census,
        method,
        note,
    })
}

/// Make the restored state the baseline that later comparisons (the post-* hooks, `diff`,
/// a plain `git checkout` after this) measure losses against: the newest snapshot of the
/// path. A whole-file restore put exactly the snapshot's image there, so a catalog row
/// pointing to that image records it without new bytes; a table restore made a state no
/// image holds, so it is snapshotted. No stat signature is recorded: the file was written
/// a moment ago, too recently to vouch that a later write would change its timestamps, so
/// the hooks compare it until a later snapshot finds it settled. The hooks' watch file is
/// removed for the same reason (the catalog it lists changed anyway).
fn record_baseline(
    ui: &Ui,
    ctx: &Context,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    relative: &RepoPath,
    tables: &[String],
    operation: i64,
) -> Option<i64> {
    let worktree = ctx.repo.worktree.to_string_lossy();
    let git_state = ctx.repo.git_state(relative);
    let recorded = if tables.is_empty() {
        store
            .insert_snapshot(
                &NewSnapshot {
                    operation_id: operation,
                    image_id: snapshot.image_id,
                    worktree: &worktree,
                    path: relative.as_str(),
                    kind: snapshot.kind,
                    created_at: clock::now(),
                    consistency: &snapshot.consistency,
                    git_state: git_state.as_str(),
                    census: &snapshot.census,
                    reused: false,
                    message: Some(&compare::restored_from_message(snapshot.id)),
                },
                None,
                None,
            )
            .map_err(CommandError::from)
    } else {
        let message = format!(
            "after restoring {} from #{}",
            if tables.len() == 1 {
                format!("table {}", tables[0])
            } else {
                format!("tables {}", tables.join(", "))
            },
            snapshot.id
        );
        store
            .snapshot(
                &SnapshotRequest {
                    worktree: &ctx.repo.worktree,
                    path: relative.as_str(),
                    kind: snapshot.kind,
                    git_state: git_state.as_str(),
                    operation_id: operation,
                    message: Some(&message),
                },
                &|_| {},
            )
            .map(|taken| taken.id)
            .map_err(CommandError::from)
    };
    let _ = watch::remove(&ctx.repo.git.path().join(watch::WATCH_FILE));
    match recorded {
        Ok(id) => Some(id),
        Err(error) => {
            ui.warn(&format!(
                "{} is restored, but the restored state could not be recorded as its latest snapshot ({}); take one with `dbguard snapshot {}` so later losses are measured against it",
                snapshot.path,
                error.message(),
                shell_quote(&snapshot.path)
            ));
            None
        }
    }
}

/// Snapshot what is there now so the restore can be undone. A file that is no database of
/// the snapshot's kind, or a damaged one that cannot be snapshotted, is kept by moving it
/// aside later instead (see [`Current::MoveAside`]); any other failure (a full store, a
/// lock) refuses the restore, before anything was changed.
fn snapshot_current_state(
    ctx: &Context,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    relative: &RepoPath,
    live: &Path,
    operation: i64,
) -> Result<Current, CommandError> {
    if fs::symlink_metadata(live).is_err() {
        return Ok(Current::Missing);
    }
    match db::sniff(live) {
        Ok(Sniff::Database(kind)) if kind == snapshot.kind => {
            let taken = store.snapshot(
                &SnapshotRequest {
                    worktree: &ctx.repo.worktree,
                    path: relative.as_str(),
                    kind,
                    git_state: ctx.repo.git_state(relative).as_str(),
                    operation_id: operation,
                    message: Some("state before restore"),
                },
                &|_| {},
            );
            match taken {
                Ok(taken) => Ok(Current::Snapshotted(taken.id)),
                Err(StoreError::Db(error)) if is_damage(&error) => Ok(Current::MoveAside(
                    format!("it cannot be snapshotted ({error})"),
                )),
                Err(error) => Err(CommandError::from(error).hint(
                    "dbguard snapshots the current file before restoring so the restore can be undone; nothing was changed",
                )),
            }
        }
        Ok(Sniff::Database(kind)) => Ok(Current::MoveAside(format!("it is a {kind} database now"))),
        Ok(Sniff::NotDatabase(reason)) => Ok(Current::MoveAside(format!(
            "it is not a {} database ({reason})",
            snapshot.kind
        ))),
        Err(error) => Err(io_error("read", live, error)),
    }
}

/// Whether a snapshot failed because of what the file holds (damage), as opposed to
/// where it lives (a full or locked store, permissions, a lock holder).
fn is_damage(error: &db::DbError) -> bool {
    match error {
        db::DbError::Integrity { .. } => true,
        db::DbError::Sqlite { reason, .. } => {
            let reason = reason.to_ascii_lowercase();
            ["malformed", "not a database", "corrupt"]
                .iter()
                .any(|sign| reason.contains(sign))
        }
        db::DbError::DuckDb { reason, .. } => {
            let reason = reason.to_ascii_lowercase();
            ["corrupt", "checksum", "malformed", "not a valid duckdb"]
                .iter()
                .any(|sign| reason.contains(sign))
        }
        _ => false,
    }
}

/// Process ids as people read them: `4242, 4243`.
fn pid_list(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn file_mode(path: &Path) -> u32 {
    fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644)
}

/// Length of a file, 0 when it does not exist.
fn length(path: &Path) -> std::io::Result<u64> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Whether a rollback journal could still hold pages to roll back: SQLite ignores one
/// that is empty or whose header was zeroed (PERSIST mode).
fn journal_may_be_hot(journal: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut file = match fs::File::open(journal) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut header = [0u8; 8];
    let mut filled = 0;
    while filled < header.len() {
        match file.read(&mut header[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(header[..filled].iter().any(|b| *b != 0))
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The refusal when the old file's sidecars could not be folded in: the WAL or journal
/// is kept, so the database still reads as before.
fn fold_failed(snapshot: &SnapshotInfo, what: &str, why: impl std::fmt::Display) -> CommandError {
    CommandError::new(format!(
        "cannot restore {}: its {what} could not be folded into it first: {why}",
        snapshot.path
    ))
    .hint(format!(
        "nothing was restored and nothing was lost: {} still holds its previous data, its {what} kept; try again when no other process uses it and the disk has room",
        snapshot.path
    ))
}

/// Fold the live SQLite file's WAL into it (checkpoint TRUNCATE) and roll back a hot
/// journal, then check that no sidecar holds anything and remove them. Only then may the
/// restored file take its place: an old WAL or journal next to a new main file would be
/// applied to it and corrupt it. On failure the sidecars stay as they are.
fn fold_sqlite_sidecars(snapshot: &SnapshotInfo, live: &Path) -> Result<(), CommandError> {
    let wal = sidecar(live, "-wal");
    let journal = sidecar(live, "-journal");
    let io = |what: &str, path: &Path, e: std::io::Error| {
        fold_failed(snapshot, what, format!("{}: {e}", path.display()))
    };
    let wal_bytes = length(&wal).map_err(|e| io("write-ahead log", &wal, e))?;
    let hot = journal_may_be_hot(&journal).map_err(|e| io("rollback journal", &journal, e))?;
    if wal_bytes > 0 || hot {
        let what = if hot {
            "rollback journal"
        } else {
            "write-ahead log"
        };
        let fail = |e: rusqlite::Error| fold_failed(snapshot, what, e);
        let conn = rusqlite::Connection::open_with_flags(
            live,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(fail)?;
        // Reading rolls back a hot journal (SQLite does that on the first read).
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(fail)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(fail)?;
        if mode.eq_ignore_ascii_case("wal") {
            let (busy, log, done): (i64, i64, i64) = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(fail)?;
            if busy != 0 || log != done {
                return Err(fold_failed(
                    snapshot,
                    "write-ahead log",
                    format!("another connection kept it busy ({done} of {log} pages copied)"),
                ));
            }
        }
        conn.close().map_err(|(_, e)| fail(e))?;
    }
    // Verify rather than trust: whatever is left must hold nothing.
    let left = length(&wal).map_err(|e| io("write-ahead log", &wal, e))?;
    if left > 0 {
        return Err(fold_failed(
            snapshot,
            "write-ahead log",
            format!("{left} bytes are still in {}", wal.display()),
        ));
    }
    if journal_may_be_hot(&journal).map_err(|e| io("rollback journal", &journal, e))? {
        return Err(fold_failed(
            snapshot,
            "rollback journal",
            format!("{} still holds pages to roll back", journal.display()),
        ));
    }
    for suffix in DbKind::Sqlite.sidecar_suffixes() {
        let path = sidecar(live, suffix);
        remove_if_present(&path).map_err(|e| io("sidecar files", &path, e))?;
    }
    Ok(())
}

/// Fold the live DuckDB file's WAL into it (CHECKPOINT in a read-write open, which DuckDB
/// makes crash-safe), check that nothing is left in `.wal` / `.wal.checkpoint`, and
/// remove them. A WAL that holds commits the main file lacks is never deleted.
fn fold_duckdb_sidecars(snapshot: &SnapshotInfo, live: &Path) -> Result<(), CommandError> {
    let sidecars = [sidecar(live, ".wal"), sidecar(live, ".wal.checkpoint")];
    let io = |path: &Path, e: std::io::Error| {
        fold_failed(
            snapshot,
            "write-ahead log",
            format!("{}: {e}", path.display()),
        )
    };
    let mut pending = 0;
    for path in &sidecars {
        pending += length(path).map_err(|e| io(path, e))?;
    }
    if pending > 0 {
        let fail = |e: duckdb::Error| {
            fold_failed(
                snapshot,
                "write-ahead log",
                e.to_string().lines().next().unwrap_or_default().to_string(),
            )
        };
        let conn = duckdb::Connection::open(live).map_err(fail)?;
        conn.execute_batch("CHECKPOINT").map_err(fail)?;
        conn.close().map_err(|(_, e)| fail(e))?;
    }
    for path in &sidecars {
        let left = length(path).map_err(|e| io(path, e))?;
        if left > 0 {
            return Err(fold_failed(
                snapshot,
                "write-ahead log",
                format!("{left} bytes are still in {}", path.display()),
            ));
        }
    }
    for path in &sidecars {
        remove_if_present(path).map_err(|e| io(path, e))?;
    }
    Ok(())
}

/// A free name next to `live` for keeping what was there: `<name>.dbguard-moved-<time>`.
fn aside_path(live: &Path) -> PathBuf {
    let base = format!(
        "{}.dbguard-moved-{}",
        live.file_name().unwrap_or_default().to_string_lossy(),
        clock::now().format("%Y%m%dT%H%M%S")
    );
    let mut aside = live.with_file_name(&base);
    let mut n = 2;
    while fs::symlink_metadata(&aside).is_ok() {
        aside = live.with_file_name(format!("{base}-{n}"));
        n += 1;
    }
    aside
}

/// Keep the file at `live` (and its sidecars, renamed alongside so they still pair with
/// it) under a new name, right before the restored file takes its place. The main file is
/// hard-linked aside, not moved, so the live path holds the old file until the rename
/// replaces it. Returns the note that tells the user where it went.
fn move_aside(snapshot: &SnapshotInfo, live: &Path, why: &str) -> Result<String, CommandError> {
    let aside = aside_path(live);
    let kept = |e: std::io::Error| {
        CommandError::new(format!(
            "cannot keep {} aside as {}: {e}",
            snapshot.path,
            aside.display()
        ))
        .hint(
            "nothing was restored; free disk space or fix permissions, then run the restore again",
        )
    };
    if fs::hard_link(live, &aside).is_err()
        && let Err(error) = fs::copy(live, &aside)
    {
        let _ = fs::remove_file(&aside);
        return Err(kept(error));
    }
    let mut moved = Vec::new();
    for suffix in snapshot.kind.sidecar_suffixes() {
        let from = sidecar(live, suffix);
        if fs::symlink_metadata(&from).is_ok() {
            fs::rename(&from, sidecar(&aside, suffix)).map_err(kept)?;
            moved.push(suffix.to_string());
        }
    }
    let with = if moved.is_empty() {
        String::new()
    } else {
        format!(" (with its {})", moved.join(", "))
    };
    Ok(format!(
        "{} was not restorable in place as it was: {why}; kept it as {}{with}",
        snapshot.path,
        aside.display()
    ))
}

/// Sidecars left next to a database file that is gone belong to nothing; one holding data
/// is kept aside (it would be applied to the restored file), empty ones are removed.
fn clear_orphan_sidecars(
    snapshot: &SnapshotInfo,
    live: &Path,
) -> Result<Option<String>, CommandError> {
    let mut kept = Vec::new();
    let fail = |path: &Path, e: std::io::Error| {
        CommandError::new(format!("cannot clear {}: {e}", path.display()))
            .hint("nothing was restored; remove or move that file, then run the restore again")
    };
    let mut aside = None;
    for suffix in snapshot.kind.sidecar_suffixes() {
        let path = sidecar(live, suffix);
        if length(&path).map_err(|e| fail(&path, e))? > 0 {
            let base = aside.get_or_insert_with(|| aside_path(live)).clone();
            let to = sidecar(&base, suffix);
            fs::rename(&path, &to).map_err(|e| fail(&path, e))?;
            kept.push(to.display().to_string());
        } else {
            remove_if_present(&path).map_err(|e| fail(&path, e))?;
        }
    }
    Ok((!kept.is_empty()).then(|| {
        format!(
            "{} was missing but had sidecar files left; kept them as {}",
            snapshot.path,
            kept.join(", ")
        )
    }))
}

/// Replace the live file by the restored one: stage the complete image next to it first
/// (a failure then changes nothing), then deal with what is there (fold its WAL, or keep
/// it aside), then rename. A kill -9 between any two steps leaves the old state or the new
/// one at the live path, and never a sidecar of the old file next to the new one.
fn replace_file(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
    current: &Current,
) -> Result<Option<String>, CommandError> {
    let mode = file_mode(live);
    let staged = stage(image, live, mode)?;
    let prepared = (|| {
        let note = match current {
            Current::Snapshotted(_) => {
                match snapshot.kind {
                    DbKind::Sqlite => fold_sqlite_sidecars(snapshot, live)?,
                    DbKind::DuckDb => fold_duckdb_sidecars(snapshot, live)?,
                }
                None
            }
            Current::Missing => clear_orphan_sidecars(snapshot, live)?,
            Current::MoveAside(why) => Some(move_aside(snapshot, live, why)?),
        };
        // What was kept aside, for any refusal from here on.
        let kept = note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        // An app that opened the file while we prepared would keep writing to the old
        // file after the rename (or leave a WAL for the new one): stop here instead.
        let users = processes_using(live);
        if !users.is_empty() {
            return Err(CommandError::new(format!(
                "{} was opened by process {} during the restore",
                snapshot.path,
                pid_list(&users)
            ))
            .hint(format!(
                "nothing was restored{kept}; stop that process, then run the restore again"
            )));
        }
        fs::rename(&staged, live).map_err(|e| {
            CommandError::new(format!(
                "cannot put the restored copy in place of {}: {e}",
                snapshot.path
            ))
            .hint(format!(
                "nothing was restored{kept}; the previous file is still at {}",
                snapshot.path
            ))
        })?;
        Ok(note)
    })();
    let note = match prepared {
        Ok(note) => note,
        Err(error) => {
            let _ = fs::remove_file(&staged);
            return Err(error);
        }
    };
    sync_dir(live.parent().unwrap_or(Path::new("."))).map_err(|e| not_durable(live, e))?;
    Ok(note)
}

type FileRestore = (&'static str, Census, Option<String>);

fn restore_sqlite_file(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
    current: &Current,
) -> Result<FileRestore, CommandError> {
    let sqlite_err = |e: rusqlite::Error| {
        CommandError::new(format!("cannot restore {}: {e}", snapshot.path))
            .hint("the snapshot is intact; try again when no other process holds a write lock")
    };
    let users = if live.exists() {
        processes_using(live)
    } else {
        Vec::new()
    };
    if !users.is_empty() {
        if let Current::MoveAside(why) = current {
            return Err(CommandError::new(format!(
                "{} is open in process {} and {why}",
                snapshot.path,
                pid_list(&users)
            ))
            .hint("nothing was changed; stop that process, then run the restore again"));
        }
        // An app has the file open: renaming would leave it writing to an unlinked inode.
        // Copy the pages into the live file in one transaction instead.
        let source = db::sqlite::open_image(image).map_err(db_error)?;
        let mut target = rusqlite::Connection::open(live).map_err(sqlite_err)?;
        target
            .busy_timeout(Duration::from_secs(30))
            .map_err(sqlite_err)?;
        {
            let backup = Backup::new(&source, &mut target).map_err(sqlite_err)?;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                match backup.step(-1).map_err(sqlite_err)? {
                    StepResult::Done => break,
                    StepResult::Busy | StepResult::Locked
                        if std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    StepResult::Busy | StepResult::Locked => {
                        return Err(CommandError::new(format!(
                            "{} stayed locked by another process for 60 s",
                            snapshot.path
                        ))
                        .hint("stop the app writing to it, then run the restore again"));
                    }
                    _ => continue,
                }
            }
        }
        drop(target);
        let census = db::census_live(DbKind::Sqlite, live).map_err(db_error)?;
        // The app may already have added rows; it must not have fewer than the snapshot.
        if let Some((lost, _)) = compare::compare(&snapshot.census, Some(&census)) {
            return Err(CommandError::new(format!(
                "{} does not match snapshot #{} after the restore ({} tables short)",
                snapshot.path,
                snapshot.id,
                lost.len()
            )));
        }
        return Ok(("backup API into the open database", census, None));
    }
    let note = replace_file(snapshot, image, live, current)?;
    let census = db::census_live(DbKind::Sqlite, live).map_err(db_error)?;
    confirm_matches(snapshot, &census)?;
    Ok(("atomic replace", census, note))
}

fn restore_duckdb_file(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
    current: &Current,
) -> Result<FileRestore, CommandError> {
    if live.exists()
        && let Some(holder) = db::duckdb::lock_holder(live)
    {
        return Err(CommandError::new(format!(
            "{} is open in process {}{}",
            snapshot.path,
            holder.pid,
            holder
                .program
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ))
        .hint(format!(
            "nothing was changed; stop process {} and run the restore again",
            holder.pid
        )));
    }
    let note = replace_file(snapshot, image, live, current)?;
    let census = db::census_live(DbKind::DuckDb, live).map_err(db_error)?;
    confirm_matches(snapshot, &census)?;
    Ok(("atomic replace", census, note))
}

fn confirm_matches(snapshot: &SnapshotInfo, census: &Census) -> Result<(), CommandError> {
    if census.tables != snapshot.census.tables {
        return Err(CommandError::new(format!(
            "{} does not match snapshot #{} after the restore",
            snapshot.path, snapshot.id
        ))
        .hint(
            "another process may have written to it meanwhile; `dbguard diff` shows the difference",
        ));
    }
    Ok(())
}

/// Replace the rows of some tables from the snapshot, in one transaction.
fn restore_tables(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
    tables: &[String],
) -> Result<(&'static str, Census), CommandError> {
    for table in tables {
        if !snapshot.census.tables.contains_key(table) {
            return Err(CommandError::new(format!(
                "snapshot #{} has no table {table:?}",
                snapshot.id
            ))
            .hint(format!(
                "its tables are: {}",
                snapshot
                    .census
                    .tables
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if !live.exists() {
        return Err(
            CommandError::new(format!("{} does not exist", snapshot.path))
                .hint("restore the whole database (without --table) first"),
        );
    }
    match snapshot.kind {
        DbKind::Sqlite => restore_sqlite_tables(snapshot, image, live, tables)?,
        DbKind::DuckDb => restore_duckdb_tables(image, live, tables)?,
    }
    let census = db::census_live(snapshot.kind, live).map_err(db_error)?;
    for table in tables {
        if census.tables.get(table) != snapshot.census.tables.get(table) {
            return Err(CommandError::new(format!(
                "table {table} does not match snapshot #{} after the restore",
                snapshot.id
            )));
        }
    }
    Ok(("tables replaced in one transaction", census))
}

fn restore_sqlite_tables(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
    tables: &[String],
) -> Result<(), CommandError> {
    let fail = |e: rusqlite::Error| {
        CommandError::new(format!("cannot restore tables of {}: {e}", snapshot.path))
            .hint("nothing was changed (the table restore runs in one transaction)")
    };
    let mut conn = rusqlite::Connection::open_with_flags(
        live,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(fail)?;
    conn.execute(
        "ATTACH DATABASE ?1 AS dbguard_snapshot",
        [db::sqlite::uri(image, "immutable=1")],
    )
    .map_err(fail)?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(fail)?;
    for table in tables {
        let quoted = quote_ident(table);
        let columns = |schema: &str| -> Result<Vec<String>, CommandError> {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info(?1, '{schema}')"
                ))
                .map_err(fail)?;
            let names = stmt
                .query_map([table], |r| r.get::<_, String>(0))
                .map_err(fail)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            Ok(names)
        };
        let live_columns = columns("main")?;
        let snapshot_columns = columns("dbguard_snapshot")?;
        if live_columns.is_empty() {
            let sql: String = tx
                .query_row(
                    "SELECT sql FROM dbguard_snapshot.sqlite_schema WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .map_err(fail)?;
            tx.execute_batch(&sql).map_err(fail)?;
        } else if live_columns != snapshot_columns {
            return Err(CommandError::new(format!(
                "table {table} has different columns now ({}) than in snapshot #{} ({})",
                live_columns.join(", "),
                snapshot.id,
                snapshot_columns.join(", ")
            ))
            .hint("restore the whole database, or restore the snapshot elsewhere with --to and copy what you need"));
        }
        tx.execute(&format!("DELETE FROM main.{quoted}"), [])
            .map_err(fail)?;
        tx.execute(
            &format!("INSERT INTO main.{quoted} SELECT * FROM dbguard_snapshot.{quoted}"),
            [],
        )
        .map_err(fail)?;
    }
    tx.commit().map_err(fail)?;
    conn.execute("DETACH DATABASE dbguard_snapshot", [])
        .map_err(fail)?;
    Ok(())
}

fn restore_duckdb_tables(image: &Path, live: &Path, tables: &[String]) -> Result<(), CommandError> {
    let fail = |e: duckdb::Error| {
        CommandError::new(format!(
            "cannot restore tables of {}: {}",
            live.display(),
            e.to_string().lines().next().unwrap_or_default()
        ))
        .hint("nothing was changed (the table restore runs in one transaction); is another process holding the file?")
    };
    let conn = duckdb::Connection::open(live).map_err(fail)?;
    let image_text = image.to_string_lossy().replace('\'', "''");
    conn.execute_batch(&format!(
        "ATTACH '{image_text}' AS dbguard_snapshot (READ_ONLY)"
    ))
    .map_err(fail)?;
    let mut statements = String::from("BEGIN TRANSACTION;");
    for table in tables {
        let (schema, name) = table.split_once('.').unwrap_or(("main", table));
        let qualified = format!("{}.{}", quote_ident(schema), quote_ident(name));
        statements.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {qualified} AS SELECT * FROM dbguard_snapshot.{qualified} LIMIT 0;
             DELETE FROM {qualified};
             INSERT INTO {qualified} SELECT * FROM dbguard_snapshot.{qualified};"
        ));
    }
    statements.push_str("COMMIT;");
    if let Err(error) = conn.execute_batch(&statements) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(fail(error));
    }
    conn.execute_batch("DETACH dbguard_snapshot")
        .map_err(fail)?;
    Ok(())
}

/// The question the guard and the hooks ask after a shrink, and what happens next.
/// Never asks without a terminal: prints the exact command instead.
pub fn offer(ui: &Ui, ctx: &Context, shrinks: &[Shrink]) {
    for shrink in shrinks {
        for line in compare::render(ui, shrink) {
            ui.status(&line);
        }
        let command = format!(
            "dbguard restore {} --from {}",
            shell_quote(&shrink.path),
            shrink.snapshot_id
        );
        let origin = match shrink.restored_from {
            Some(from) => format!("the state restored from #{from}"),
            None => format!("taken before `{}`", shrink.taken_before),
        };
        let question = format!(
            "Restore {} from #{} ({origin}, {} rows)?",
            shrink.path,
            shrink.snapshot_id,
            ui::count(shrink.rows_before())
        );
        match ui.confirm(&question, true) {
            Some(true) => match restore_by_id(ui, ctx, shrink.snapshot_id) {
                Ok(restored) => report(ui, &shrink.path, shrink.snapshot_id, &restored),
                Err(error) => error.report(ui),
            },
            Some(false) => ui.status(&format!("not restored; later: {command}")),
            None => ui.status(&format!("to restore it: {command}")),
        }
    }
}

fn restore_by_id(ui: &Ui, ctx: &Context, id: i64) -> Result<Restored, CommandError> {
    let mut store = ctx.store()?;
    let snapshot = Context::find_snapshot(&store, &id.to_string())?;
    restore(ui, ctx, &mut store, &snapshot, &[], Target::InPlace)
}

/// Tell the user what was restored and how to undo it.
pub fn report(ui: &Ui, path: &str, from: i64, restored: &Restored) {
    if let Some(note) = &restored.note {
        ui.warn(note);
    }
    ui.status(&format!(
        "restored {path} from #{from}: {} rows ({})",
        ui::count(restored.census.total_rows()),
        restored.method
    ));
    if let Some(undo) = restored.undo {
        ui.status(&format!(
            "undo with: dbguard restore {} --from {undo}",
            shell_quote(path)
        ));
    }
}

/// Quote a path for the shell when it needs it.
pub fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
