//! Putting a snapshot back: whole file, some tables, or to another path. Restoring never
//! makes things worse: the current state is snapshotted first (so a restore can itself be
//! undone), the image is verified before the live file is touched, and the live file is
//! replaced atomically or, when an app has it open, through SQLite's backup API.
//!
//! The engine talks to nobody: it takes the repository and the store, reports progress
//! through [`ReadProgress`] and what the user should know through [`Restored`], and fails
//! with a [`RestoreError`]. The prompt after a shrink is `flow::offer`.

mod error;
mod live;
mod sidecars;
mod staging;
mod tables;
#[cfg(test)]
mod tests;
mod whole;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub(crate) use error::RestoreError;
use live::Current;

use crate::clock;
use crate::compare;
use crate::db::{self, Census};
use crate::git::{Repo, RepoPath};
use crate::hook_files::watch;
use crate::store::files::{sync_dir, temp_path};
use crate::store::{AfterLoss, NewSnapshot, SnapshotInfo, SnapshotRequest, Store, StoreError};

/// Where a restore writes.
pub(crate) enum Target {
    /// The snapshot's own path in this worktree.
    InPlace,
    /// Anywhere the user names; the live database is left alone.
    To(PathBuf),
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct Restored {
    pub(crate) path: PathBuf,
    /// Snapshot of the state before the restore (`restore --from` it to undo).
    pub(crate) undo: Option<i64>,
    /// The snapshot that records the restored state as the path's latest (the baseline
    /// later comparisons measure losses against).
    pub(crate) baseline: Option<i64>,
    pub(crate) census: Census,
    pub(crate) method: &'static str,
    pub(crate) note: Option<String>,
    /// What went wrong after the file was restored, for the caller to warn about (not
    /// part of the JSON report, which describes the restored file).
    #[serde(skip)]
    pub(crate) warnings: Vec<RestoreWarning>,
}

/// Something the user must hear about a restore that succeeded.
#[derive(Debug)]
pub(crate) enum RestoreWarning {
    /// The restored state of `path` could not be recorded as its latest snapshot, so later
    /// losses would be measured against an older one.
    BaselineNotRecorded { path: String, error: StoreError },
}

/// Where the engine reports how far reading the snapshot back from the store has got.
pub(crate) trait ReadProgress: Sync {
    /// `done` bytes of the image are written.
    fn read(&self, done: u64);
    /// The image is complete; what follows (checks, the swap) has no byte count.
    fn read_finished(&self);
}

/// Restore `snapshot` into `repo`'s worktree (or to `target`). Takes the store so it can
/// snapshot the current state first.
pub(crate) fn restore(
    repo: &Repo,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    tables: &[String],
    target: Target,
    progress: &dyn ReadProgress,
) -> Result<Restored, RestoreError> {
    // 1. Materialise and verify the image before anything else is touched.
    let image = temp_path(store.tmp_dir(), ".restore");
    let timer = crate::timing::start();
    let read = store.materialize(snapshot, &image, false, &|done| progress.read(done));
    timer.done("restore: image written");
    progress.read_finished();
    let result = match read {
        Ok(()) => verify_and_sync(snapshot, &image),
        Err(source) => Err(RestoreError::ReadBack {
            path: snapshot.path.clone(),
            source,
        }),
    };
    timer.done("restore: image checked, counted and synced");
    let census = match result {
        Ok(census) => census,
        Err(error) => {
            let _ = fs::remove_file(&image);
            return Err(error);
        }
    };
    let outcome = match target {
        Target::To(dest) => to_path(&repo.worktree, snapshot, &image, &dest, census),
        Target::InPlace => in_place(repo, store, snapshot, &image, tables),
    };
    let _ = fs::remove_file(&image);
    outcome
}

/// The materialised image must pass its integrity check and match the recorded census
/// (returned), and be on disk before anything renames it over a file: the fsync runs on
/// its own thread while the check and the census read the image from the page cache, so
/// the disk writes while the cores check.
fn verify_and_sync(snapshot: &SnapshotInfo, image: &Path) -> Result<Census, RestoreError> {
    std::thread::scope(|scope| {
        let synced = scope.spawn(|| fs::File::open(image)?.sync_all());
        let verified = verify_image(snapshot, image);
        let synced = synced
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the fsync thread crashed")));
        let census = verified?;
        synced.map_err(|source| RestoreError::Io {
            action: "write",
            path: image.to_path_buf(),
            source,
        })?;
        Ok(census)
    })
}

/// The materialised image must pass its integrity check and match the recorded census.
fn verify_image(snapshot: &SnapshotInfo, image: &Path) -> Result<Census, RestoreError> {
    let census = db::check_and_census(snapshot.kind, image).map_err(|source| {
        RestoreError::ImageDamaged {
            path: snapshot.path.clone(),
            source,
        }
    })?;
    if census.tables != snapshot.census.tables {
        return Err(RestoreError::ImageDiffers {
            id: snapshot.id,
            path: snapshot.path.clone(),
        });
    }
    Ok(census)
}

fn to_path(
    worktree: &Path,
    snapshot: &SnapshotInfo,
    image: &Path,
    dest: &Path,
    census: Census,
) -> Result<Restored, RestoreError> {
    let dest = if dest.is_dir() {
        dest.join(Path::new(&snapshot.path).file_name().unwrap_or_default())
    } else {
        dest.to_path_buf()
    };
    if fs::symlink_metadata(&dest).is_ok() {
        return Err(RestoreError::DestinationExists { path: dest });
    }
    staging::remove_stale_staging(&dest);
    // The copy gets the permissions of the database it is a copy of when that exists in
    // this worktree (a private database stays private). Otherwise it is a new file like
    // any other the user creates: 0644 less the umask. Not 0600: people restore `--to` to
    // hand the file to another program or user, and the umask is how they say otherwise.
    let mode = RepoPath::new(&snapshot.path)
        .ok()
        .and_then(|p| fs::metadata(p.in_worktree(worktree)).ok())
        .filter(|m| m.is_file())
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644 & !staging::process_umask());
    let staged = staging::stage(image, &dest, mode)?;
    if let Err(source) = fs::rename(&staged, &dest) {
        let _ = fs::remove_file(&staged);
        return Err(RestoreError::Io {
            action: "write",
            path: dest,
            source,
        });
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    sync_dir(dir).map_err(|source| RestoreError::NotDurable {
        path: dest.clone(),
        source,
    })?;
    // The file at `dest` is the image just checked and counted (the same inode, or a
    // copy of it that was synced before the rename): its census is the image's.
    Ok(Restored {
        path: dest,
        undo: None,
        baseline: None,
        census,
        method: "new file",
        note: None,
        warnings: Vec::new(),
    })
}

fn in_place(
    repo: &Repo,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    image: &Path,
    tables: &[String],
) -> Result<Restored, RestoreError> {
    let (relative, live) = live::live_path(&repo.worktree, snapshot)?;
    staging::remove_stale_staging(&live);
    let operation = store.begin_operation(
        "restore",
        &[
            "dbguard".into(),
            "restore".into(),
            snapshot.path.clone(),
            "--from".into(),
            snapshot.id.to_string(),
        ],
        repo.head().as_deref(),
        clock::now(),
    )?;
    let current = live::snapshot_current_state(repo, store, snapshot, &relative, &live, operation)?;
    let undo = match current {
        Current::Snapshotted(id) => Some(id),
        _ => None,
    };
    let (method, census, note) = if !tables.is_empty() {
        if let Current::MoveAside(why) = &current {
            return Err(RestoreError::TablesIntoUnrestorable {
                path: snapshot.path.clone(),
                id: snapshot.id,
                why: why.clone(),
            });
        }
        let (method, census) = tables::restore_tables(snapshot, image, &live, tables)?;
        (method, census, None)
    } else {
        whole::restore_file(snapshot, image, &live, &current)?
    };
    let (baseline, warnings) =
        match record_baseline(repo, store, snapshot, &relative, tables, operation) {
            Ok(id) => (Some(id), Vec::new()),
            Err(error) => (
                None,
                vec![RestoreWarning::BaselineNotRecorded {
                    path: snapshot.path.clone(),
                    error,
                }],
            ),
        };
    let _ = store.finish_operation(operation, repo.head().as_deref(), Some(0));
    Ok(Restored {
        path: live,
        undo,
        baseline,
        census,
        method,
        note,
        warnings,
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
    repo: &Repo,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    relative: &RepoPath,
    tables: &[String],
    operation: i64,
) -> Result<i64, StoreError> {
    let worktree = repo.worktree.to_string_lossy();
    let git_state = repo.git_state(relative);
    let recorded = if tables.is_empty() {
        store.insert_snapshot(
            &NewSnapshot {
                operation_id: operation,
                image_id: snapshot.image_id,
                worktree: &worktree,
                path: relative.as_str(),
                kind: snapshot.kind,
                created_at: clock::now(),
                consistency: &snapshot.consistency,
                completeness: &snapshot.completeness,
                git_state: git_state.as_str(),
                census: &snapshot.census,
                reused: false,
                message: Some(&compare::restored_from_message(snapshot.id)),
                // The restored state is the baseline again: a loss is no longer flagged.
                after_loss_of: None,
            },
            None,
            None,
        )
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
                    worktree: &repo.worktree,
                    path: relative.as_str(),
                    kind: snapshot.kind,
                    git_state: git_state.as_str(),
                    operation_id: operation,
                    message: Some(&message),
                    after_loss: AfterLoss::Accepted,
                },
                &|_| {},
            )
            .map(|taken| taken.id)
    };
    let _ = watch::remove(&repo.git.path().join(watch::WATCH_FILE));
    recorded
}
