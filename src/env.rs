//! Every environment variable dbguard reads, read here and nowhere else, so that
//! `dbguard config` can list the ones in effect. (Git's own variables that dbguard
//! interprets, `GIT_CONFIG_PARAMETERS` and friends, are read by `config`.)

use std::ffi::OsString;

/// One variable: its name and what setting it does.
pub(crate) struct Variable {
    pub(crate) name: &'static str,
    pub(crate) effect: &'static str,
}

pub(crate) const SKIP: &str = "DBGUARD_SKIP";
pub(crate) const NO_PROMPT: &str = "DBGUARD_NO_PROMPT";
pub(crate) const CI: &str = "CI";
pub(crate) const NOW: &str = "DBGUARD_NOW";
pub(crate) const TIMING: &str = "DBGUARD_TIMING";
pub(crate) const CRONTAB: &str = "DBGUARD_CRONTAB";
pub(crate) const STORE: &str = "DBGUARD_STORE";
pub(crate) const NO_COLOR: &str = "NO_COLOR";
pub(crate) use crate::git::GUARD_ENV as GUARDED;
pub(crate) const FSMONITOR_WATCHER: &str = "DBGUARD_FSMONITOR_WATCHER";
pub(crate) const FSMONITOR_IDLE: &str = "DBGUARD_FSMONITOR_IDLE";
pub(crate) const FSMONITOR_SCAN_TOKEN: &str = "DBGUARD_FSMONITOR_SCAN_TOKEN";

/// The variables, in the order `dbguard config` lists them.
pub(crate) const VARIABLES: &[Variable] = &[
    Variable {
        name: SKIP,
        effect: "=1: run git without snapshots, like --no-snapshot",
    },
    Variable {
        name: NO_PROMPT,
        effect: "never prompt (restore offers are printed, not asked)",
    },
    Variable {
        name: CI,
        effect: "never prompt, as DBGUARD_NO_PROMPT",
    },
    Variable {
        name: NO_COLOR,
        effect: "no colour in --color=auto",
    },
    Variable {
        name: NOW,
        effect: "the clock (RFC 3339), for tests and demos",
    },
    Variable {
        name: TIMING,
        effect: "print the phases of each snapshot",
    },
    Variable {
        name: CRONTAB,
        effect: "the crontab program `schedule` runs",
    },
    Variable {
        name: STORE,
        effect: "the store of a directory outside git, like --store (ignored inside a repository)",
    },
    Variable {
        name: FSMONITOR_WATCHER,
        effect: "=0: the fsmonitor hook starts no file watcher and walks the worktree",
    },
    Variable {
        name: FSMONITOR_IDLE,
        effect: "seconds without a git command before the file watcher exits (default 1800)",
    },
    Variable {
        name: FSMONITOR_SCAN_TOKEN,
        effect: "set by the fsmonitor hook for the dbguard it starts: the file watcher's token taken before its scan",
    },
    Variable {
        name: GUARDED,
        effect: "set by dbguard for the git it runs (its own process, so a value left in an environment is ignored): hooks inside know the snapshot is taken",
    },
];

fn get(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

fn text(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The watcher token the fsmonitor hook took before starting `hook fsmonitor-guard`.
pub(crate) fn fsmonitor_scan_token() -> Option<String> {
    text(FSMONITOR_SCAN_TOKEN)
}

/// `DBGUARD_SKIP=1`: the user overrides the guard for this command.
/// Tests only (debug builds): make the command panic, to check what a user sees when
/// dbguard has a bug. A release build never reads it.
pub(crate) fn test_panic() -> bool {
    cfg!(debug_assertions) && std::env::var_os("DBGUARD_TEST_PANIC").is_some()
}

pub(crate) fn skip_snapshots() -> bool {
    get(SKIP).is_some_and(|v| v == "1")
}

/// Prompts are off (`DBGUARD_NO_PROMPT` or `CI` set).
pub(crate) fn prompts_disabled() -> bool {
    get(NO_PROMPT).is_some() || get(CI).is_some()
}

/// `NO_COLOR` set to anything but the empty string.
pub(crate) fn no_color() -> bool {
    get(NO_COLOR).is_some_and(|v| !v.is_empty())
}

/// `TERM=dumb` (a terminal that shows escape codes literally).
pub(crate) fn dumb_terminal() -> bool {
    text("TERM").is_some_and(|t| t == "dumb")
}

/// The fixed clock, when `DBGUARD_NOW` is set.
pub(crate) fn fixed_now() -> Option<String> {
    text(NOW)
}

pub(crate) fn timing() -> bool {
    get(TIMING).is_some()
}

/// The crontab program (`DBGUARD_CRONTAB`, default `crontab`).
pub(crate) fn crontab_program() -> String {
    text(CRONTAB)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "crontab".to_string())
}

/// `DBGUARD_STORE`: the store for a directory outside git, when set and not empty.
pub(crate) fn store_dir() -> Option<std::path::PathBuf> {
    get(STORE).filter(|v| !v.is_empty()).map(Into::into)
}

/// The per-user data directory (`$XDG_DATA_HOME`, else `$HOME/.local/share`), where
/// directories outside git keep their stores by default; `None` without either.
pub(crate) fn user_data_dir() -> Option<std::path::PathBuf> {
    let absolute = |v: OsString| Some(std::path::PathBuf::from(v)).filter(|p| p.is_absolute());
    get("XDG_DATA_HOME").and_then(absolute).or_else(|| {
        get("HOME")
            .and_then(absolute)
            .map(|home| home.join(".local/share"))
    })
}

/// This process runs inside a git that dbguard's guard started: the marker names a
/// live dbguard among this process's ancestors (a value left in an environment does not
/// count, see [`crate::fsmonitor::process::guarded_by_ancestor`]).
pub(crate) fn guarded() -> bool {
    get(GUARDED).is_some_and(|marker| crate::fsmonitor::process::guarded_by_ancestor(&marker))
}

/// The variables set in this environment, with their values, for `dbguard config`.
pub(crate) fn in_effect() -> Vec<(&'static Variable, String)> {
    VARIABLES
        .iter()
        .filter_map(|v| get(v.name).map(|value| (v, value.to_string_lossy().into_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fsmonitor_program_reads_the_same_variables() {
        assert_eq!(crate::fsmonitor::GUARDED_VARIABLE, super::GUARDED);
        assert_eq!(crate::fsmonitor::SKIP_VARIABLE, super::SKIP);
        assert_eq!(
            crate::fsmonitor::watcher::WATCHER_VARIABLE,
            super::FSMONITOR_WATCHER
        );
        assert_eq!(
            crate::fsmonitor::watcher::IDLE_VARIABLE,
            super::FSMONITOR_IDLE
        );
        assert_eq!(
            crate::fsmonitor::known_databases::TOKEN_VARIABLE,
            super::FSMONITOR_SCAN_TOKEN
        );
    }

    #[test]
    fn the_fsmonitor_program_recognises_databases_as_the_scanner_does() {
        use crate::fsmonitor::known_databases as fast;
        assert_eq!(fast::SQLITE_MAGIC, crate::db::SQLITE_MAGIC);
        assert_eq!(fast::DUCKDB_MAGIC, crate::db::DUCKDB_MAGIC);
        assert_eq!(fast::MIN_DATABASE_SIZE, crate::scan::MIN_DATABASE_SIZE);
    }
}
