//! `Context`: what every command loads first (the repository, or a directory outside git
//! seen through a private git directory; its settings; the store location), and the
//! command line the catalog records. The one place that decides between the two.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, Setting, Settings};
use crate::error::CommandError;
use crate::flow::outside_git;
use crate::git::{Repo, RepoError};
use crate::scan::Scanner;
use crate::store::files::create_private_dir;
use crate::store::{SnapshotInfo, Store, parse_snapshot_id};
use crate::ui::Ui;

/// In the git dir: the invalid settings a hook last warned about, so that it says them once.
const SETTINGS_WARNED_FILE: &str = "dbguard-settings-warned";

/// What a command works in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// A git working tree: the store in its git directory, hooks possible.
    Repository,
    /// A directory outside git: a store of its own (`--store`, `DBGUARD_STORE` or the
    /// per-user default), no hooks.
    Directory,
}

/// What every command needs.
pub(crate) struct Context {
    pub(crate) cwd: PathBuf,
    pub(crate) repo: Repo,
    pub(crate) settings: Settings,
    pub(crate) place: Place,
}

impl Context {
    /// The repository around `cwd`, else `cwd` as a directory outside git. `store` is
    /// `--store`, which only a directory outside git takes: a repository's store is
    /// where its hooks write, set with `git config dbguard.store`.
    pub(crate) fn load(cwd: &Path, store: Option<&Path>) -> Result<Context, CommandError> {
        let repo = match Repo::discover(cwd) {
            Ok(repo) => repo,
            Err(RepoError::NotARepo(_)) => return Context::load_directory(cwd, store),
            Err(error) => return Err(error.into()),
        };
        if store.is_some() {
            return Err(CommandError::new(format!(
                "--store is for directories outside git, and {} is in the git repository {}",
                cwd.display(),
                repo.worktree.display()
            ))
            .hint("a repository's store is set with `git config dbguard.store DIR`"));
        }
        let settings = Settings::load(&repo)?;
        Ok(Context {
            cwd: cwd.to_path_buf(),
            repo,
            settings,
            place: Place::Repository,
        })
    }

    /// `dir`, not inside any repository, with the store [`outside_git::store_root`] picks.
    fn load_directory(dir: &Path, store: Option<&Path>) -> Result<Context, CommandError> {
        let canonical = dir.canonicalize().map_err(|e| {
            CommandError::new(format!("cannot use the directory {}: {e}", dir.display()))
                .hint("name an existing directory with -C DIR")
        })?;
        if !canonical.is_dir() {
            return Err(
                CommandError::new(format!("{} is not a directory", dir.display()))
                    .hint("run dbguard in the directory that holds the databases, or pass -C DIR"),
            );
        }
        let (root, source) = outside_git::store_root(&canonical, store)?;
        if !root.exists() {
            create_private_dir(&root).map_err(|e| {
                CommandError::new(format!("cannot create the store {}: {e}", root.display()))
                    .hint("name a writable store with --store DIR")
            })?;
        }
        let repo = Repo::for_directory(&root.join(outside_git::PRIVATE_GIT_DIR), &canonical)?;
        let mut settings = Settings::load(&repo)?;
        settings.store = Setting {
            value: root,
            source,
        };
        Ok(Context {
            cwd: dir.to_path_buf(),
            repo,
            settings,
            place: Place::Directory,
        })
    }

    /// Refuse a git-only command (install, uninstall, untrack) outside git.
    pub(crate) fn require_repository(&self, command: &str) -> Result<(), CommandError> {
        match self.place {
            Place::Repository => Ok(()),
            Place::Directory => Err(CommandError::new(format!(
                "`dbguard {command}` needs a git repository, and {} is not inside one",
                self.repo.worktree.display()
            ))
            .hint(
                "outside git, `dbguard snapshot` and `dbguard schedule` protect the directory (README \"Without git\")",
            )),
        }
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
            place: Place::Repository,
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

    /// The context for a hook, which cannot stop git: an invalid setting (a typo in the
    /// shared `.dbguard.toml`, which can arrive with a pull) must not turn the guard off,
    /// so it is left at its default and said once — once per problem, not at every git
    /// command of the day. `Ok(None)`: no worktree to protect.
    pub(crate) fn load_for_hook(ui: &Ui, cwd: &Path) -> Result<Option<Context>, CommandError> {
        let repo = match Repo::discover(cwd) {
            Ok(repo) => repo,
            Err(RepoError::NotARepo(_) | RepoError::Bare(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let (settings, invalid) = Settings::load_with_defaults_for_invalid(&repo);
        let ctx = Context {
            cwd: cwd.to_path_buf(),
            repo,
            settings,
            place: Place::Repository,
        };
        ctx.say_invalid_settings_once(ui, &invalid);
        Ok(Some(ctx))
    }

    /// Warn about `invalid` unless the same problems were said before in this worktree;
    /// the record is dropped once the settings are valid again.
    fn say_invalid_settings_once(&self, ui: &Ui, invalid: &[ConfigError]) {
        let record = self.repo.git.path().join(SETTINGS_WARNED_FILE);
        if invalid.is_empty() {
            if record.exists() {
                let _ = std::fs::remove_file(&record);
            }
            return;
        }
        let text: String = invalid.iter().map(|e| format!("{e}\n")).collect();
        if std::fs::read_to_string(&record).is_ok_and(|said| said == text) {
            return;
        }
        for error in invalid {
            ui.warn(&format!(
                "{error}; snapshotting with its default instead (git goes on)"
            ));
        }
        ui.hint(
            "fix the setting, or remove it to use the default; `dbguard config` checks them \
             (`dbguard git …` refuses to run until it is fixed)",
        );
        // Not recorded, the warning comes again at the next command: better than never.
        let _ = std::fs::write(&record, text);
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
