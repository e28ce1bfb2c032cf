//! Restoring the whole file in place: an atomic replace (stage, deal with what is there,
//! rename), or, when an app has the SQLite file open, SQLite's backup API into the open
//! database so the app does not keep writing to an unlinked file.

use std::fs;
use std::path::Path;
use std::time::Duration;

use rusqlite::backup::Backup;

use super::RestoreError;
use super::live::{Current, processes_using};
use super::sidecars;
use super::staging::{file_mode, stage};
use crate::compare;
use crate::db::sqlite::{BackupStop, backup_in_one_step};
use crate::db::{self, Census, DbKind};
use crate::store::SnapshotInfo;
use crate::store::files::sync_dir;

/// How the file was restored (shown to users), its census now, and a note on what was
/// kept aside.
pub(super) type FileRestore = (&'static str, Census, Option<String>);

/// Put the snapshot's whole image at `live`.
pub(super) fn restore_file(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
    current: &Current,
) -> Result<FileRestore, RestoreError> {
    match snapshot.kind {
        DbKind::Sqlite => restore_sqlite_file(snapshot, image, live, current),
        DbKind::DuckDb => restore_duckdb_file(snapshot, image, live, current),
    }
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
) -> Result<Option<String>, RestoreError> {
    let mode = file_mode(live);
    let staged = stage(image, live, mode)?;
    let prepared = (|| {
        let note = match current {
            Current::Snapshotted(_) => {
                sidecars::fold(snapshot, live)?;
                None
            }
            Current::Missing => sidecars::clear_orphans(snapshot, live)?,
            Current::MoveAside(why) => Some(sidecars::move_aside(snapshot, live, why)?),
        };
        // An app that opened the file while we prepared would keep writing to the old
        // file after the rename (or leave a WAL for the new one): stop here instead.
        let users = processes_using(live);
        if !users.is_empty() {
            return Err(RestoreError::OpenedDuring {
                path: snapshot.path.clone(),
                pids: users,
                kept: note,
            });
        }
        if let Err(source) = fs::rename(&staged, live) {
            return Err(RestoreError::PutInPlace {
                path: snapshot.path.clone(),
                kept: note,
                source,
            });
        }
        Ok(note)
    })();
    let note = match prepared {
        Ok(note) => note,
        Err(error) => {
            let _ = fs::remove_file(&staged);
            return Err(error);
        }
    };
    sync_dir(live.parent().unwrap_or(Path::new("."))).map_err(|source| {
        RestoreError::NotDurable {
            path: live.to_path_buf(),
            source,
        }
    })?;
    Ok(note)
}

fn restore_sqlite_file(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
    current: &Current,
) -> Result<FileRestore, RestoreError> {
    let users = if live.exists() {
        processes_using(live)
    } else {
        Vec::new()
    };
    if !users.is_empty() {
        if let Current::MoveAside(why) = current {
            return Err(RestoreError::OpenAndUnrestorable {
                path: snapshot.path.clone(),
                pids: users,
                why: why.clone(),
            });
        }
        return restore_into_open_sqlite(snapshot, image, live);
    }
    let note = replace_file(snapshot, image, live, current)?;
    let census = db::census_live(DbKind::Sqlite, live)?;
    confirm_matches(snapshot, &census)?;
    Ok(("atomic replace", census, note))
}

/// An app has the file open: renaming would leave it writing to an unlinked inode. Copy
/// the pages into the live file in one transaction instead.
fn restore_into_open_sqlite(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
) -> Result<FileRestore, RestoreError> {
    let sqlite_err = |error: rusqlite::Error| RestoreError::Sqlite {
        path: snapshot.path.clone(),
        error,
    };
    let source = db::sqlite::open_image(image)?;
    let mut target = rusqlite::Connection::open(live).map_err(sqlite_err)?;
    target
        .busy_timeout(Duration::from_secs(30))
        .map_err(sqlite_err)?;
    {
        let backup = Backup::new(&source, &mut target).map_err(sqlite_err)?;
        backup_in_one_step(&backup, Duration::from_secs(60)).map_err(|stop| match stop {
            BackupStop::Failed(error) => sqlite_err(error),
            BackupStop::Locked => RestoreError::StayedLocked {
                path: snapshot.path.clone(),
            },
        })?;
    }
    drop(target);
    let census = db::census_live(DbKind::Sqlite, live)?;
    // The app may already have added rows; it must not have fewer than the snapshot.
    if let Some((lost, _)) = compare::compare(&snapshot.census, Some(&census)) {
        return Err(RestoreError::ShortAfterBackup {
            path: snapshot.path.clone(),
            id: snapshot.id,
            short: lost.len(),
        });
    }
    Ok(("backup API into the open database", census, None))
}

fn restore_duckdb_file(
    snapshot: &SnapshotInfo,
    image: &Path,
    live: &Path,
    current: &Current,
) -> Result<FileRestore, RestoreError> {
    if live.exists()
        && let Some(holder) = db::duckdb::lock_holder(live)
    {
        return Err(RestoreError::DuckDbOpen {
            path: snapshot.path.clone(),
            pid: holder.pid,
            program: holder.program,
        });
    }
    let note = replace_file(snapshot, image, live, current)?;
    let census = db::census_live(DbKind::DuckDb, live)?;
    confirm_matches(snapshot, &census)?;
    Ok(("atomic replace", census, note))
}

fn confirm_matches(snapshot: &SnapshotInfo, census: &Census) -> Result<(), RestoreError> {
    if census.tables != snapshot.census.tables {
        return Err(RestoreError::Mismatch {
            path: snapshot.path.clone(),
            id: snapshot.id,
        });
    }
    Ok(())
}
