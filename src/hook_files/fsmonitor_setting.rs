//! dbguard's `core.fsmonitor` setting: name the `dbguard-fsmonitor` program in the
//! repository's config (with `core.fsmonitorHookVersion=2`: unset, git retries every
//! failed call as version 1), remember what it replaces so the hook chains to it and
//! uninstall puts it back exactly, and say what is configured now.

use std::path::{Path, PathBuf};

use crate::fsmonitor::{PREVIOUS_FILE, PROGRAM, Previous};

const KEY: &str = "core.fsmonitor";
const VERSION_KEY: &str = "core.fsmonitorHookVersion";

#[derive(Debug, thiserror::Error)]
pub(crate) enum FsmonitorError {
    #[error("cannot read or change the git config of {repo}: {source}")]
    Config {
        repo: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("cannot write {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What `core.fsmonitor` is, as dbguard sees it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Setting {
    /// Not set anywhere.
    Unset,
    /// dbguard's program; `chained` is the hook it runs after its own work.
    Dbguard {
        value: String,
        chained: Option<String>,
    },
    /// git's built-in daemon (`true`).
    BuiltinDaemon,
    /// Another program.
    Other(String),
}

/// What `install` did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Installed {
    Set {
        chained: Option<String>,
    },
    /// The built-in daemon was replaced: it has no backend on this git (Linux before 2.55).
    ReplacedDaemon,
    Unchanged,
    /// The built-in daemon works on this git and dbguard cannot chain to it.
    KeptDaemon,
}

fn config_error(repo: &git2::Repository) -> impl Fn(git2::Error) -> FsmonitorError + '_ {
    move |source| FsmonitorError::Config {
        repo: repo.path().to_path_buf(),
        source,
    }
}

/// The program to name: `dbguard-fsmonitor` next to the running dbguard.
pub(crate) fn program_next_to(exe: &Path) -> Option<PathBuf> {
    let program = exe.parent()?.join(PROGRAM);
    program.is_file().then_some(program)
}

/// The config value that makes git run `program`: the plain path when git would exec it
/// directly, single-quoted when it holds a character that makes git use `sh -c`.
pub(crate) fn config_value(program: &Path) -> String {
    let path = program.to_string_lossy();
    let plain = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+,@:".contains(c));
    if plain {
        path.into_owned()
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    }
}

fn is_dbguard_value(value: &str) -> bool {
    value
        .trim_matches('\'')
        .rsplit('/')
        .next()
        .is_some_and(|name| name == PROGRAM)
}

fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "yes" | "on" | "1"
    )
}

fn common_dir(repo: &git2::Repository) -> PathBuf {
    repo.commondir().to_path_buf()
}

/// The local (repository) value of `key`, if set there.
fn local_value(repo: &git2::Repository, key: &str) -> Result<Option<String>, FsmonitorError> {
    let config = repo.config().map_err(config_error(repo))?;
    let local = config
        .open_level(git2::ConfigLevel::Local)
        .map_err(config_error(repo))?;
    Ok(local.get_string(key).ok())
}

/// What `core.fsmonitor` is for this repository.
pub(crate) fn setting(repo: &git2::Repository) -> Result<Setting, FsmonitorError> {
    let config = repo.config().map_err(config_error(repo))?;
    let Ok(value) = config.get_string(KEY) else {
        return Ok(Setting::Unset);
    };
    Ok(if is_dbguard_value(&value) {
        let chained = Previous::read(&common_dir(repo))
            .and_then(|previous| previous.runnable().map(str::to_string));
        Setting::Dbguard { value, chained }
    } else if is_true(&value) {
        Setting::BuiltinDaemon
    } else if value.trim().is_empty() || !config.get_bool(KEY).unwrap_or(true) {
        Setting::Unset
    } else {
        Setting::Other(value)
    })
}

/// Name `program` in `core.fsmonitor`. `daemon_works`: the built-in daemon has a backend
/// on this git (then `true` is kept).
pub(crate) fn install(
    repo: &git2::Repository,
    program: &Path,
    daemon_works: bool,
) -> Result<Installed, FsmonitorError> {
    let value = config_value(program);
    let current = setting(repo)?;
    let mut local = repo
        .config()
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))
        .map_err(config_error(repo))?;
    let outcome = match &current {
        Setting::Dbguard {
            value: now,
            chained,
        } => {
            if *now == value && local_value(repo, VERSION_KEY)?.as_deref() == Some("2") {
                return Ok(Installed::Unchanged);
            }
            Installed::Set {
                chained: chained.clone(),
            }
        }
        Setting::BuiltinDaemon if daemon_works => return Ok(Installed::KeptDaemon),
        Setting::Unset => {
            // `core.fsmonitor=false` set here on purpose comes back on uninstall.
            match local_value(repo, KEY)? {
                Some(value) => write_previous(
                    repo,
                    &Previous {
                        local: true,
                        value,
                        hook_version: local_value(repo, VERSION_KEY)?,
                    },
                )?,
                None => remove_previous(repo)?,
            }
            Installed::Set { chained: None }
        }
        Setting::BuiltinDaemon | Setting::Other(_) => {
            let previous_value = repo
                .config()
                .and_then(|c| c.get_string(KEY))
                .map_err(config_error(repo))?;
            let previous = Previous {
                local: local_value(repo, KEY)?.is_some(),
                value: previous_value,
                hook_version: local_value(repo, VERSION_KEY)?,
            };
            write_previous(repo, &previous)?;
            match current {
                Setting::BuiltinDaemon => Installed::ReplacedDaemon,
                _ => Installed::Set {
                    chained: previous.runnable().map(str::to_string),
                },
            }
        }
    };
    local.set_str(KEY, &value).map_err(config_error(repo))?;
    local.set_i32(VERSION_KEY, 2).map_err(config_error(repo))?;
    Ok(outcome)
}

fn write_previous(repo: &git2::Repository, previous: &Previous) -> Result<(), FsmonitorError> {
    let path = common_dir(repo).join(PREVIOUS_FILE);
    previous
        .write(&common_dir(repo))
        .map_err(|source| FsmonitorError::State { path, source })
}

fn remove_previous(repo: &git2::Repository) -> Result<(), FsmonitorError> {
    let path = common_dir(repo).join(PREVIOUS_FILE);
    match std::fs::remove_file(&path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            Err(FsmonitorError::State { path, source })
        }
        _ => Ok(()),
    }
}

/// Put back what install replaced; `false` when dbguard's program was not configured.
/// The answer snapshots under each worktree's git dir are removed too.
pub(crate) fn uninstall(repo: &git2::Repository) -> Result<bool, FsmonitorError> {
    let Some(value) = local_value(repo, KEY)? else {
        return Ok(false);
    };
    if !is_dbguard_value(&value) {
        return Ok(false);
    }
    let mut local = repo
        .config()
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))
        .map_err(config_error(repo))?;
    let previous = Previous::read(&common_dir(repo)).filter(|p| p.local);
    match &previous {
        Some(previous) => {
            local
                .set_str(KEY, &previous.value)
                .map_err(config_error(repo))?;
            match &previous.hook_version {
                Some(version) => local.set_str(VERSION_KEY, version),
                None => local.remove(VERSION_KEY).or_else(ignore_missing),
            }
            .map_err(config_error(repo))?;
        }
        None => {
            local.remove(KEY).map_err(config_error(repo))?;
            local
                .remove(VERSION_KEY)
                .or_else(ignore_missing)
                .map_err(config_error(repo))?;
        }
    }
    remove_previous(repo)?;
    let _ = crate::fsmonitor::state::remove(repo.path());
    let _ = std::fs::remove_dir_all(repo.path().join(crate::fsmonitor::LEGACY_STATE_DIR));
    Ok(true)
}

fn ignore_missing(error: git2::Error) -> Result<(), git2::Error> {
    if error.code() == git2::ErrorCode::NotFound {
        Ok(())
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_git_would_split_is_quoted() {
        assert_eq!(
            config_value(Path::new("/usr/local/bin/dbguard-fsmonitor")),
            "/usr/local/bin/dbguard-fsmonitor"
        );
        assert_eq!(
            config_value(Path::new("/home/a b/it's/dbguard-fsmonitor")),
            r"'/home/a b/it'\''s/dbguard-fsmonitor'"
        );
        assert!(is_dbguard_value("'/home/a b/dbguard-fsmonitor'"));
        assert!(!is_dbguard_value(".git/hooks/query-watchman"));
    }
}
