//! The old file's sidecars (WAL, rollback journal, DuckDB's `.wal`) before the restored
//! file takes its place: folded into the old file, kept aside with a file that cannot be
//! restored in place, or cleared when their database is gone. An old WAL or journal next
//! to a new main file would be applied to it and corrupt it.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::RestoreError;
use crate::clock;
use crate::db::{
    DUCKDB_CHECKPOINT_WAL, DUCKDB_WAL, DbKind, SQLITE_JOURNAL, SQLITE_WAL, sidecar_path as sidecar,
};
use crate::store::SnapshotInfo;

/// Length of a file, 0 when it does not exist.
fn length(path: &Path) -> std::io::Result<u64> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Whether a rollback journal could still hold pages to roll back: SQLite ignores one
/// that is empty or whose header was zeroed (PERSIST mode).
fn journal_may_be_hot(journal: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut file = match fs::File::open(journal) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
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
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The refusal when the old file's sidecars could not be folded in: the WAL or journal
/// is kept, so the database still reads as before.
fn fold_failed(
    snapshot: &SnapshotInfo,
    what: &'static str,
    why: impl std::fmt::Display,
) -> RestoreError {
    RestoreError::FoldFailed {
        path: snapshot.path.clone(),
        what,
        why: why.to_string(),
    }
}

/// Fold the live file's sidecars into it and remove them (see the two kinds below).
pub(super) fn fold(snapshot: &SnapshotInfo, live: &Path) -> Result<(), RestoreError> {
    match snapshot.kind {
        DbKind::Sqlite => fold_sqlite(snapshot, live),
        DbKind::DuckDb => fold_duckdb(snapshot, live),
    }
}

/// Fold the live SQLite file's WAL into it (checkpoint TRUNCATE) and roll back a hot
/// journal, then check that no sidecar holds anything and remove them. Only then may the
/// restored file take its place. On failure the sidecars stay as they are.
fn fold_sqlite(snapshot: &SnapshotInfo, live: &Path) -> Result<(), RestoreError> {
    let wal = sidecar(live, SQLITE_WAL);
    let journal = sidecar(live, SQLITE_JOURNAL);
    let io = |what: &'static str, path: &Path, e: std::io::Error| {
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
fn fold_duckdb(snapshot: &SnapshotInfo, live: &Path) -> Result<(), RestoreError> {
    let sidecars = [
        sidecar(live, DUCKDB_WAL),
        sidecar(live, DUCKDB_CHECKPOINT_WAL),
    ];
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
pub(super) fn move_aside(
    snapshot: &SnapshotInfo,
    live: &Path,
    why: &str,
) -> Result<String, RestoreError> {
    let aside = aside_path(live);
    let kept = |source: std::io::Error| RestoreError::KeepAside {
        path: snapshot.path.clone(),
        aside: aside.clone(),
        source,
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
pub(super) fn clear_orphans(
    snapshot: &SnapshotInfo,
    live: &Path,
) -> Result<Option<String>, RestoreError> {
    let mut kept = Vec::new();
    let fail = |path: &Path, source: std::io::Error| RestoreError::ClearSidecar {
        path: path.to_path_buf(),
        source,
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
