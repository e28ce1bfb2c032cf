//! The live side of an in-place restore: where the snapshot's file lives in this worktree
//! (never outside it), who has it open, and what is there now, snapshotted first so the
//! restore can be undone.

use std::fs;
use std::path::{Path, PathBuf};

use super::RestoreError;
use crate::db::{self, Sniff};
use crate::git::{Repo, RepoError, RepoPath};
use crate::store::{AfterLoss, SnapshotInfo, SnapshotRequest, Store, StoreError};

/// The live path of a snapshot in this worktree, refusing catalog entries that would
/// write outside it (whatever the catalog says).
pub(super) fn live_path(
    worktree: &Path,
    snapshot: &SnapshotInfo,
) -> Result<(RepoPath, PathBuf), RestoreError> {
    let escape = || RestoreError::OutsideWorktree {
        id: snapshot.id,
        path: snapshot.path.clone(),
    };
    let relative = RepoPath::new(&snapshot.path).map_err(|error| match error {
        RepoError::GitDir(_) => RestoreError::InsideGitDir {
            id: snapshot.id,
            path: snapshot.path.clone(),
        },
        _ => escape(),
    })?;
    let live = relative.in_worktree(worktree);
    // Every existing ancestor must resolve inside the worktree (no symlinked directories).
    let mut ancestor = live.parent();
    while let Some(dir) = ancestor {
        if dir.exists() {
            let real = dir.canonicalize().map_err(|source| RestoreError::Io {
                action: "resolve",
                path: dir.to_path_buf(),
                source,
            })?;
            if !real.starts_with(worktree) {
                return Err(escape());
            }
            break;
        }
        ancestor = dir.parent();
    }
    if fs::symlink_metadata(&live).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(RestoreError::Symlink { path: relative });
    }
    Ok((relative, live))
}

/// Processes other than this one that have `path` (or its sidecars) open, from /proc.
pub(super) fn processes_using(path: &Path) -> Vec<u32> {
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

/// What an in-place restore found at the live path.
pub(super) enum Current {
    /// No file there.
    Missing,
    /// A database of the snapshot's kind, snapshotted as this id first (the undo).
    Snapshotted(i64),
    /// A file that cannot be snapshotted because it is not such a database or is damaged:
    /// kept by moving it (and its sidecars) aside right before the restored file replaces
    /// it. The text says why, for the note.
    MoveAside(String),
}

/// Snapshot what is there now so the restore can be undone. A file that is no database of
/// the snapshot's kind, or a damaged one that cannot be snapshotted, is kept by moving it
/// aside later instead (see [`Current::MoveAside`]); any other failure (a full store, a
/// lock) refuses the restore, before anything was changed.
pub(super) fn snapshot_current_state(
    repo: &Repo,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    relative: &RepoPath,
    live: &Path,
    operation: i64,
) -> Result<Current, RestoreError> {
    if fs::symlink_metadata(live).is_err() {
        return Ok(Current::Missing);
    }
    match db::sniff(live) {
        Ok(Sniff::Database(kind)) if kind == snapshot.kind => {
            let taken = store.snapshot(
                &SnapshotRequest {
                    worktree: &repo.worktree,
                    path: relative.as_str(),
                    kind,
                    git_state: repo.git_state(relative).as_str(),
                    operation_id: operation,
                    message: Some("state before restore"),
                    after_loss: AfterLoss::AsBefore,
                },
                &|_| {},
            );
            match taken {
                Ok(taken) => Ok(Current::Snapshotted(taken.id)),
                Err(StoreError::Db(error)) if is_damage(&error) => Ok(Current::MoveAside(format!(
                    "it cannot be snapshotted ({error})"
                ))),
                Err(source) => Err(RestoreError::UndoSnapshot { source }),
            }
        }
        Ok(Sniff::Database(kind)) => Ok(Current::MoveAside(format!("it is a {kind} database now"))),
        Ok(Sniff::NotDatabase(reason)) => Ok(Current::MoveAside(format!(
            "it is not a {} database ({reason})",
            snapshot.kind
        ))),
        Err(source) => Err(RestoreError::Io {
            action: "read",
            path: live.to_path_buf(),
            source,
        }),
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
