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

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Set in the environment of a git the wrapper runs after snapshotting: hooks inside it
/// know the databases are already saved.
pub const GUARD_ENV: &str = "DBGUARD_GUARDED";

/// Pathspec magic variables that would change how our own `:(top,literal)` pathspecs
/// are read.
const PATHSPEC_ENV: [&str; 4] = [
    "GIT_LITERAL_PATHSPECS",
    "GIT_GLOB_PATHSPECS",
    "GIT_NOGLOB_PATHSPECS",
    "GIT_ICASE_PATHSPECS",
];

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git in {dir}: {source}")]
    Spawn {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`git {args}` failed in {dir}{}: {stderr}", code.map(|c| format!(" (exit {c})")).unwrap_or_default())]
    Failed {
        args: String,
        dir: PathBuf,
        code: Option<i32>,
        stderr: String,
    },
}

/// How dbguard starts git: the program and any environment every git it starts gets.
#[derive(Clone, Debug)]
pub struct GitRunner {
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
    pub fn with_env<K, V>(env: impl IntoIterator<Item = (K, V)>, remove: &[&str]) -> GitRunner
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
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
    pub fn query(&self, dir: &Path) -> Command {
        let mut command = self.base(dir);
        command
            .args(["-c", "core.fsmonitor=false"])
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
    pub fn internal_query(&self, dir: &Path) -> Command {
        let mut command = self.query(dir);
        for name in PATHSPEC_ENV {
            command.env_remove(name);
        }
        command
    }

    /// The user's git command line, run for them with inherited stdio. `guarded` marks
    /// it as already snapshotted for dbguard's hooks inside it.
    pub fn user(&self, dir: &Path, guarded: bool) -> Command {
        let mut command = self.base(dir);
        if guarded {
            command.env(GUARD_ENV, "1");
        }
        command
    }

    /// Run a query and return its stdout; a non-zero exit is an error carrying stderr.
    pub fn output<I, S>(&self, dir: &Path, args: I) -> Result<Vec<u8>, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        checked_output(self.query(dir), dir, args)
    }

    /// [`GitRunner::output`] of an [`GitRunner::internal_query`].
    pub fn internal_output<I, S>(&self, dir: &Path, args: I) -> Result<Vec<u8>, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        checked_output(self.internal_query(dir), dir, args)
    }
}

fn checked_output<I, S>(mut command: Command, dir: &Path, args: I) -> Result<Vec<u8>, GitError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let output = command
        .args(&args)
        .output()
        .map_err(|source| GitError::Spawn {
            dir: dir.to_owned(),
            source,
        })?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    Err(GitError::Failed {
        args: args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        dir: dir.to_owned(),
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// The exit code a shell would report for git: its own, or 128 + the signal that
/// killed it.
pub fn exit_code(status: ExitStatus) -> u8 {
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

    #[test]
    fn queries_never_reach_an_fsmonitor_hook() {
        // A repository whose fsmonitor hook would fail loudly if git called it.
        let dir = tempfile::tempdir().unwrap();
        let runner = GitRunner::with_env([("GIT_CONFIG_NOSYSTEM", "1")], &["GIT_DIR"]);
        runner.output(dir.path(), ["init", "-q"]).unwrap();
        let hook = dir.path().join("hook.sh");
        std::fs::write(&hook, "#!/bin/sh\necho called >> \"$0.log\"\nexit 1\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        runner
            .output(
                dir.path(),
                ["config", "core.fsmonitor", hook.to_str().unwrap()],
            )
            .unwrap();
        runner
            .output(dir.path(), ["status", "--porcelain"])
            .unwrap();
        assert!(
            !dir.path().join("hook.sh.log").exists(),
            "an inner git called the fsmonitor hook"
        );
        // The same status through a plain git does call it: the test can fail.
        runner
            .user(dir.path(), false)
            .args(["status", "--porcelain"])
            .output()
            .unwrap();
        assert!(dir.path().join("hook.sh.log").exists());
    }

    #[test]
    fn a_failed_query_reports_its_arguments_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let error = GitRunner::default()
            .output(dir.path(), ["rev-parse", "--no-such-option-here"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("git rev-parse --no-such-option-here"),
            "{error}"
        );
    }
}
