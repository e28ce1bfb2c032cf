//! The one place that starts git processes, and how each kind of git is started.
//!
//! Two kinds, modelled on git-branchless's `GitRunInfo`:
//! - [`GitRunner::query`]: git that dbguard starts for itself and whose output it parses
//!   or whose effect it needs (rev-parse, diff-tree, ls-files, `rm --cached` for
//!   `untrack`). Fixed C locale (parsers read English), optional locks off (a query
//!   must not take `index.lock`, which git holds while it runs the fsmonitor hook), no
//!   credential prompts, stdin closed (stdin belongs to the git that runs our hooks), no
//!   external diff program, and `core.fsmonitor=false` so an inner git never calls
//!   dbguard's fsmonitor hook again (that recursion has no end).
//! - [`GitRunner::user`]: the user's own git command, run for them by the wrapper: their
//!   locale, terminal and stdio, marked with [`GUARD_ENV`] so dbguard's hooks inside it
//!   know the snapshot was already taken.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// Set in the environment of a git the wrapper runs after snapshotting, to the wrapper's
/// own `<pid>-<start ticks>`: hooks inside it know the databases are already saved.
pub(crate) const GUARD_ENV: &str = "DBGUARD_GUARDED";

/// The options that keep a git from calling the fsmonitor hook (dbguard's own, once
/// installed: an inner git would call it again, without end). [`GitRunner::query`] puts
/// them first; a caller that passes the user's own `-c` options puts them again after.
pub(crate) const FSMONITOR_OFF: [&str; 2] = ["-c", "core.fsmonitor=false"];

/// Pathspec magic variables that would change how our own `:(top,literal)` pathspecs
/// are read.
const PATHSPEC_ENV: [&str; 4] = [
    "GIT_LITERAL_PATHSPECS",
    "GIT_GLOB_PATHSPECS",
    "GIT_NOGLOB_PATHSPECS",
    "GIT_ICASE_PATHSPECS",
];

/// How dbguard starts git: the program and any environment every git it starts gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GitRunner {
    program: OsString,
    /// Set (`Some`) or removed (`None`) in every git this runner starts.
    env: Vec<(OsString, Option<OsString>)>,
}

impl Default for GitRunner {
    fn default() -> GitRunner {
        GitRunner {
            program: OsString::from("git"),
            env: Vec::new(),
        }
    }
}

impl GitRunner {
    /// A runner whose git processes also get `env` and lose the variables named in
    /// `remove` (tests: a hermetic HOME and config, without touching this process's
    /// environment).
    #[cfg(test)]
    pub(crate) fn with_env<K, V>(
        env: impl IntoIterator<Item = (K, V)>,
        remove: &[&str],
    ) -> GitRunner
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let set = env
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        let removed = remove.iter().map(|name| (OsString::from(name), None));
        GitRunner {
            program: OsString::from("git"),
            env: set.chain(removed).collect(),
        }
    }

    fn base(&self, dir: &Path) -> Command {
        let mut command = Command::new(&self.program);
        command.current_dir(dir);
        for (name, value) in &self.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
    }

    /// A git that dbguard runs for itself (see the module doc for what is fixed).
    pub(crate) fn query(&self, dir: &Path) -> Command {
        let mut command = self.base(dir);
        command
            .args(FSMONITOR_OFF)
            .stdin(Stdio::null())
            .env("LC_ALL", "C")
            .env("LANGUAGE", "C")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_EXTERNAL_DIFF");
        command
    }

    /// [`GitRunner::query`] for dbguard's own pathspecs: the user's pathspec-magic
    /// variables are dropped so `:(top,literal)` means what it says.
    pub(crate) fn internal_query(&self, dir: &Path) -> Command {
        let mut command = self.query(dir);
        for name in PATHSPEC_ENV {
            command.env_remove(name);
        }
        command
    }

    /// The user's git command line, run for them with inherited stdio. `guarded` marks
    /// it as already snapshotted for dbguard's hooks inside it.
    pub(crate) fn user(&self, dir: &Path, guarded: bool) -> Command {
        let mut command = self.base(dir);
        // The marker names this process: hooks honour it only while it is their
        // ancestor, so a copy that leaks into a later environment guards nothing.
        match guarded.then(crate::fsmonitor::process::guard_marker_for_children) {
            Some(Some(marker)) => command.env(GUARD_ENV, marker),
            _ => command.env_remove(GUARD_ENV),
        };
        command
    }
}

/// The exit code a shell would report for git: its own, or 128 + the signal that
/// killed it.
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(signal)) => (128 + signal).clamp(0, 255) as u8,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn succeeds(mut command: Command, args: &[&str]) {
        let status = command.args(args).status().unwrap();
        assert!(status.success(), "git {args:?} failed");
    }

    #[test]
    fn queries_never_reach_an_fsmonitor_hook() {
        // A repository whose fsmonitor hook logs every call.
        let dir = tempfile::tempdir().unwrap();
        let runner = GitRunner::with_env([("GIT_CONFIG_NOSYSTEM", "1")], &["GIT_DIR"]);
        succeeds(runner.query(dir.path()), &["init", "-q"]);
        let hook = dir.path().join("hook.sh");
        std::fs::write(&hook, "#!/bin/sh\necho called >> \"$0.log\"\nexit 1\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hook = hook.to_str().unwrap();
        succeeds(
            runner.query(dir.path()),
            &["config", "core.fsmonitor", hook],
        );
        succeeds(runner.query(dir.path()), &["status", "--porcelain"]);
        assert!(
            !dir.path().join("hook.sh.log").exists(),
            "an inner git called the fsmonitor hook"
        );
        // The same status through the user's git does call it: the test can fail.
        let _ = runner
            .user(dir.path(), false)
            .args(["status", "--porcelain"])
            .output()
            .unwrap();
        assert!(dir.path().join("hook.sh.log").exists());
    }

    #[test]
    fn the_user_git_is_marked_only_when_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let runner = GitRunner::default();
        let marked = |guarded: bool| {
            runner
                .user(dir.path(), guarded)
                .get_envs()
                .any(|(name, value)| name == GUARD_ENV && value.is_some())
        };
        assert!(marked(true));
        assert!(!marked(false));
    }
}
