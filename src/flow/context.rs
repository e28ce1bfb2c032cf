//! `Context`: what every command inside a repository loads first (the repository, its
//! settings, the store location), and the command line the catalog records.

use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::error::CommandError;
use crate::git::{Repo, RepoError};
use crate::scan::Scanner;
use crate::store::{SnapshotInfo, Store, parse_snapshot_id};

/// What every command inside a repository needs.
pub(crate) struct Context {
    pub(crate) cwd: PathBuf,
    pub(crate) repo: Repo,
    pub(crate) settings: Settings,
}

impl Context {
    pub(crate) fn load(cwd: &Path) -> Result<Context, CommandError> {
        let repo = Repo::discover(cwd)?;
        let settings = Settings::load(&repo)?;
        Ok(Context {
            cwd: cwd.to_path_buf(),
            repo,
            settings,
        })
    }

    /// The context for a command that is about to let git write the worktree. `Ok(None)`
    /// only where there is no worktree to protect (not a repository, or a bare one); any
    /// other failure (an invalid setting, an unreadable repository) is an error, so that
    /// the caller refuses instead of running git unguarded.
    pub(crate) fn load_to_protect(cwd: &Path) -> Result<Option<Context>, CommandError> {
        let repo = match Repo::discover(cwd) {
            Ok(repo) => repo,
            Err(RepoError::NotARepo(_) | RepoError::Bare(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let settings = Settings::load(&repo)?;
        Ok(Some(Context {
            cwd: cwd.to_path_buf(),
            repo,
            settings,
        }))
    }

    pub(crate) fn scanner(&self) -> Scanner<'_> {
        Scanner {
            repo: &self.repo,
            exclude_dirs: &self.settings.exclude.value,
            store_dir: &self.settings.store.value,
        }
    }

    /// Open the store for writing (creates it on first use).
    pub(crate) fn store(&self) -> Result<Store, CommandError> {
        Ok(Store::open(&self.settings.store.value)?)
    }

    /// Open the store if it exists, for reading (read-only when it cannot be written);
    /// reading commands say "no snapshots yet" otherwise.
    pub(crate) fn existing_store(&self) -> Result<Option<Store>, CommandError> {
        Ok(Store::open_existing(&self.settings.store.value)?)
    }

    /// Open the store if it exists, for a command that changes it (prune, restore in
    /// place): a read-only store is refused with a message that says so.
    pub(crate) fn existing_store_for_writing(&self) -> Result<Option<Store>, CommandError> {
        Ok(Store::open_existing_for_writing(
            &self.settings.store.value,
        )?)
    }

    pub(crate) fn worktree_key(&self) -> String {
        self.repo.worktree.to_string_lossy().into_owned()
    }

    /// Find a snapshot by the id a user typed (`14` or `#14`).
    pub(crate) fn find_snapshot(store: &Store, id: &str) -> Result<SnapshotInfo, CommandError> {
        let number = parse_snapshot_id(id).ok_or_else(|| {
            CommandError::new(format!("{id:?} is not a snapshot id"))
                .hint("snapshot ids are numbers such as 14 or #14; `dbguard log` lists them")
        })?;
        store.find_snapshot(number)?.ok_or_else(|| {
            CommandError::new(format!("snapshot #{number} does not exist"))
                .hint("`dbguard log` lists the snapshots in this repository")
        })
    }
}

/// This process's command line as the catalog records it: `dbguard snapshot -m …`.
pub(crate) fn command_line() -> Vec<String> {
    // args_os: a file name that is not UTF-8 must not make dbguard panic.
    std::iter::once("dbguard".to_string())
        .chain(
            std::env::args_os()
                .skip(1)
                .map(|arg| arg.to_string_lossy().into_owned()),
        )
        .collect()
}
