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
use crate::commands::Context;
use crate::compare::{self, Shrink};
use crate::db::{self, Census, DbKind, Sniff, quote_ident};
use crate::error::CommandError;
use crate::repo::RepoPath;
use crate::store::chunks::{sync_dir, temp_path};
use crate::store::{SnapshotInfo, SnapshotRequest, Store, StoreError};
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
    let relative = RepoPath::new(&snapshot.path).map_err(|_| escape())?;
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
        Target::To(dest) => to_path(snapshot, &image, &dest),
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

fn to_path(snapshot: &SnapshotInfo, image: &Path, dest: &Path) -> Result<Restored, CommandError> {
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
    place(image, &dest, 0o644)?;
    let census = db::census_live(snapshot.kind, &dest).map_err(db_error)?;
    Ok(Restored {
        path: dest,
        undo: None,
        census,
        method: "new file",
        note: None,
    })
}

/// Copy the verified image next to `dest` and rename it into place, durably.
fn place(image: &Path, dest: &Path, mode: u32) -> Result<(), CommandError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let staged = dir.join(format!(".{name}.dbguard-restore-{}", std::process::id()));
    let staged_result = (|| {
        // A rename is atomic only within one filesystem: try it, else copy.
        if fs::hard_link(image, &staged).is_err() {
            fs::copy(image, &staged)?;
        }
        fs::set_permissions(&staged, fs::Permissions::from_mode(mode))?;
        fs::File::open(&staged)?.sync_all()?;
        fs::rename(&staged, dest)?;
        sync_dir(dir)
    })();
    if let Err(error) = staged_result {
        let _ = fs::remove_file(&staged);
        return Err(io_error("write", dest, error));
    }
    Ok(())
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
    let (undo, note) = snapshot_current_state(ui, ctx, store, snapshot, &live)?;
    let (method, census) = if !tables.is_empty() {
        restore_tables(snapshot, image, &live, tables)?
    } else {
        match snapshot.kind {
            DbKind::Sqlite => restore_sqlite_file(snapshot, image, &live)?,
            DbKind::DuckDb => restore_duckdb_file(snapshot, image, &live)?,
        }
    };
    Ok(Restored {
        path: live,
        undo,
        census,
        method,
        note,
    })
}

/// Snapshot what is there now so the restore can be undone. A file that is no database
/// any more is moved aside instead of being overwritten.
fn snapshot_current_state(
    ui: &Ui,
    ctx: &Context,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    live: &Path,
) -> Result<(Option<i64>, Option<String>), CommandError> {
    if fs::symlink_metadata(live).is_err() {
        return Ok((None, None));
    }
    let relative = RepoPath::new(&snapshot.path).map_err(|_| CommandError::new("bad path"))?;
    match db::sniff(live) {
        Ok(Sniff::Database(kind)) if kind == snapshot.kind => {
            let operation = store
                .catalog
                .begin_operation(
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
                )
                .map_err(StoreError::from)?;
            let taken = store
                .snapshot(
                    &SnapshotRequest {
                        worktree: &ctx.repo.worktree,
                        path: relative.as_str(),
                        kind,
                        git_state: ctx.repo.git_state(&relative).as_str(),
                        operation_id: operation,
                        message: Some("state before restore"),
                    },
                    &|_| {},
                )
                .map_err(|e| {
                    CommandError::from(e).hint(
                        "dbguard snapshots the current file before restoring so the restore can be undone",
                    )
                })?;
            Ok((Some(taken.id), None))
        }
        _ => {
            let aside = live.with_file_name(format!(
                "{}.dbguard-moved-{}",
                live.file_name().unwrap_or_default().to_string_lossy(),
                clock::now().format("%Y%m%dT%H%M%S")
            ));
            fs::rename(live, &aside).map_err(|e| io_error("move aside", live, e))?;
            let note = format!(
                "{} was not a {} database; moved it to {}",
                snapshot.path,
                snapshot.kind,
                aside.display()
            );
            ui.warn(&note);
            Ok((None, Some(note)))
        }
    }
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

fn restore_sqlite_file(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
) -> Result<(&'static str, Census), CommandError> {
    let sqlite_err = |e: rusqlite::Error| {
        CommandError::new(format!("cannot restore {}: {e}", snapshot.path))
            .hint("the snapshot is intact; try again when no other process holds a write lock")
    };
    if live.exists() && !processes_using(live).is_empty() {
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
        return Ok(("backup API into the open database", census));
    }
    if live.exists() {
        // Fold any WAL into the old file and roll back a hot journal, so the sidecars we
        // remove next hold nothing; then they cannot be replayed onto the restored file.
        if let Ok(conn) = rusqlite::Connection::open(live) {
            let _ = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            });
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        }
    }
    let mode = file_mode(live);
    for suffix in DbKind::Sqlite.sidecar_suffixes() {
        let _ = fs::remove_file(sidecar(live, suffix));
    }
    place(image, live, mode)?;
    let census = db::census_live(DbKind::Sqlite, live).map_err(db_error)?;
    confirm_matches(snapshot, &census)?;
    Ok(("atomic replace", census))
}

fn restore_duckdb_file(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
) -> Result<(&'static str, Census), CommandError> {
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
            "stop process {} and run the restore again",
            holder.pid
        )));
    }
    let mode = file_mode(live);
    let _ = fs::remove_file(sidecar(live, ".wal"));
    place(image, live, mode)?;
    let census = db::census_live(DbKind::DuckDb, live).map_err(db_error)?;
    confirm_matches(snapshot, &census)?;
    Ok(("atomic replace", census))
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
        let question = format!(
            "Restore {} from #{} (taken before `{}`, {} rows)?",
            shrink.path,
            shrink.snapshot_id,
            shrink.taken_before,
            ui::count(shrink.rows_before())
        );
        match ui.confirm(&question, true) {
            Some(true) => match restore_by_id(ui, ctx, shrink.snapshot_id) {
                Ok(restored) => report(ui, &shrink.path, shrink.snapshot_id, &restored),
                Err(error) => ui.error(&error.message, &error.causes, &error.hints),
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
