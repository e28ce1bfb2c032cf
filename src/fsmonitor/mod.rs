//! The `core.fsmonitor` hook (`dbguard-fsmonitor 2 <token>`): git runs it whenever it
//! reads the index, which every worktree-writing command does before it writes. So this
//! is where plain `git reset --hard`, `clean`, `checkout`, `stash`, … get their snapshot.
//!
//! One call: (1) when the git command above may write the worktree, and this operation
//! has not been decided yet, run `dbguard hook fsmonitor-guard` (planner + snapshot)
//! and wait for it, unless what the hook knows ([`known_databases`]) proves that git
//! cannot touch a database: there is none, or a branch switch changes none of their
//! paths ([`branch_switch`]);
//! (2) answer git's query: the previous hook's answer when one was
//! chained, else [`answer`]'s exact one. Facts behind each choice: `docs/fsmonitor.md`.
//!
//! Rules this module keeps (each one measured): never read stdin (it is git's, e.g. the
//! pathspec of stash's `update-index --stdin`); stdout carries only the answer; every
//! failure answers "everything may have changed" (`/`, never an empty list, which would
//! let git overwrite modified files) with one `dbguard:` line on stderr; exit 0.
//!
//! It links neither SQLite, DuckDB nor libgit2 (DuckDB's static initialisers alone cost
//! milliseconds): `src/bin/dbguard-fsmonitor.rs` compiles this module on its own, so it
//! uses nothing outside it and the standard library. A `git status` pays for a small
//! program's start and one lstat per worktree path, nothing more.

pub(crate) mod answer;
pub(crate) mod branch_switch;
pub(crate) mod chain;
pub(crate) mod classify;
pub(crate) mod client;
pub(crate) mod known_databases;
pub(crate) mod process;
pub(crate) mod replaced;
pub(crate) mod state;
pub(crate) mod watch;
pub(crate) mod watcher;

use std::ffi::OsString;
use std::fs;
use std::io::{self, IsTerminal as _, Write as _};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use answer::{Answer, Snapshots};
use classify::Class;
use process::GitChain;

/// The environment variables this program reads; `crate::env` documents them (a lib
/// test checks that the names agree).
pub(crate) const GUARDED_VARIABLE: &str = "DBGUARD_GUARDED";
pub(crate) const SKIP_VARIABLE: &str = "DBGUARD_SKIP";

/// Where earlier builds kept the per-worktree state, inside the git dir (now
/// [`state::state_dir`]); `uninstall` still removes it.
pub(crate) const LEGACY_STATE_DIR: &str = "dbguard-fsmonitor";

/// In the common git dir: the `core.fsmonitor` value dbguard replaced, to chain to and
/// to put back on uninstall.
pub(crate) const PREVIOUS_FILE: &str = "dbguard-fsmonitor-previous";

/// The program `dbguard install` names in `core.fsmonitor`.
pub(crate) const PROGRAM: &str = "dbguard-fsmonitor";

/// The marker that the git command `key` names has been decided (snapshotted, or found
/// to put nothing at risk); it holds the operation id, `0` for none.
fn operation_marker(state_dir: &Path, key: &str) -> PathBuf {
    state_dir.join("ops").join(key)
}

/// Record that the operation `key` is decided, and forget markers of gits that ended.
pub(crate) fn mark_decided(git_dir: &Path, key: &str, operation_id: i64) -> io::Result<()> {
    let state_dir = state::state_dir(git_dir)?;
    let marker = operation_marker(&state_dir, key);
    let dir = marker.parent().unwrap_or(&state_dir);
    fs::create_dir_all(dir)?;
    if let Ok(listing) = fs::read_dir(dir) {
        for entry in listing.flatten() {
            let name = entry.file_name();
            if !process::Process::key_is_alive(&name.to_string_lossy()) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    fs::write(marker, operation_id.to_string())
}

/// The operation id recorded for `key`: `Some(0)` when decided without a snapshot.
pub(crate) fn decided_operation(git_dir: &Path, key: &str) -> Option<i64> {
    fs::read_to_string(operation_marker(&state::state_dir(git_dir).ok()?, key))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The hook value dbguard replaced, as `install` recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Previous {
    /// Set in this repository's own config (uninstall puts it back), not inherited from
    /// the global or system config.
    pub(crate) local: bool,
    pub(crate) value: String,
    /// The repository's own `core.fsmonitorHookVersion` before install, if it had one.
    pub(crate) hook_version: Option<String>,
}

impl Previous {
    pub(crate) fn read(common_dir: &Path) -> Option<Previous> {
        let text = fs::read_to_string(common_dir.join(PREVIOUS_FILE)).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "dbguard-fsmonitor-previous 1" {
            return None;
        }
        let (mut local, mut value, mut hook_version) = (false, None, None);
        for line in lines {
            match line.split_once('=') {
                Some(("scope", scope)) => local = scope == "local",
                Some(("value", v)) => value = Some(v.to_string()),
                Some(("hook-version", v)) if !v.is_empty() => hook_version = Some(v.to_string()),
                _ => {}
            }
        }
        Some(Previous {
            local,
            value: value?,
            hook_version,
        })
    }

    pub(crate) fn write(&self, common_dir: &Path) -> io::Result<()> {
        fs::write(
            common_dir.join(PREVIOUS_FILE),
            format!(
                "dbguard-fsmonitor-previous 1\nscope={}\nvalue={}\nhook-version={}\n",
                if self.local { "local" } else { "inherited" },
                self.value,
                self.hook_version.as_deref().unwrap_or("")
            ),
        )
    }

    /// A hook program dbguard can run: not `true`/`false` (the built-in daemon, which
    /// has no client command) and not empty.
    pub(crate) fn runnable(&self) -> Option<&str> {
        let value = self.value.trim();
        let is_bool = matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "1" | "0" | ""
        );
        (!is_bool).then_some(value)
    }
}

/// The git dir of the worktree the hook runs in (git runs it from the worktree root)
/// and the common dir (differs in a linked worktree).
pub(crate) fn git_dirs(worktree: &Path) -> io::Result<(PathBuf, PathBuf)> {
    let git_dir = match std::env::var_os("GIT_DIR") {
        Some(dir) => worktree.join(dir),
        None => {
            let dot_git = worktree.join(".git");
            if dot_git.is_dir() {
                dot_git
            } else {
                let text = fs::read_to_string(&dot_git)?;
                let target = text.trim().strip_prefix("gitdir: ").ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "unreadable .git file")
                })?;
                worktree.join(target)
            }
        }
    };
    let common = match fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => git_dir.join(text.trim()),
        Err(_) => git_dir.clone(),
    };
    Ok((git_dir, common))
}

/// `main` of the `dbguard-fsmonitor` program.
pub fn hook_main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "watch")
        && let Some(worktree) = args.get(2)
    {
        return watcher::watcher_main(Path::new(worktree));
    }
    if args.get(1).is_some_and(|a| a == "no-staged-database") {
        let none =
            std::env::current_dir().is_ok_and(|worktree| known_databases::none_staged(&worktree));
        return if none {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let version = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let token = args.get(2).and_then(|a| a.to_str()).unwrap_or("");
    if version != "2" {
        // Version 1 has no token to key snapshots by; a failure makes git look at
        // everything itself.
        say("core.fsmonitorHookVersion must be 2 (run `dbguard install` again)");
        return ExitCode::from(1);
    }
    let answer = match std::env::current_dir().and_then(|worktree| respond(&worktree, token)) {
        Ok(answer) => answer,
        Err(error) => {
            say(&format!(
                "fsmonitor hook: {error}; git checks every file itself"
            ));
            Answer::everything().encode()
        }
    };
    let mut stdout = io::stdout().lock();
    // git reads the whole answer; if it went away there is no one left to tell.
    let _ = stdout.write_all(&answer).and_then(|()| stdout.flush());
    ExitCode::SUCCESS
}

/// Guard (when needed), then the bytes of the answer.
fn respond(worktree: &Path, token: &str) -> io::Result<Vec<u8>> {
    let (git_dir, common_dir) = git_dirs(worktree)?;
    // Once per change, and only to a person: an editor's background `git status` must
    // not use the notice up.
    if io::stderr().is_terminal()
        && let Some(notice) = replaced::replaced_notice(&common_dir)
    {
        say(&notice);
    }
    // Under the guard (`dbguard git …`) the snapshot is taken already: believed only
    // when the marker names the dbguard that started this git (a value left behind in
    // an environment would turn the hook off unseen).
    let guarded = std::env::var_os(GUARDED_VARIABLE)
        .is_some_and(|marker| process::guarded_by_ancestor(&marker));
    let skipped = std::env::var_os(SKIP_VARIABLE).is_some_and(|v| v == "1");
    let nearest = process::nearest_git();
    // Outside the git dir (git's commands move and list git dirs); when it cannot be had,
    // the guard still runs (without its fast path), and git gets `/`.
    let state_dir = state::state_dir(&git_dir);
    // Only a git that may write needs the command it belongs to (more of /proc to read).
    if !guarded && let Some(chain) = nearest.as_ref().and_then(writing_chain) {
        if skipped {
            say_skipped(&git_dir, &chain);
        } else {
            guard(&git_dir, state_dir.as_deref().ok(), worktree, &chain);
        }
    }
    if let Some(previous) = Previous::read(&common_dir)
        && let Some(program) = previous.runnable()
    {
        match chain::run_previous(program, worktree, token) {
            Ok(Some(answer)) => return Ok(answer),
            Ok(None) => return Ok(Answer::everything().encode()),
            Err(error) => {
                say(&format!(
                    "cannot run the previous fsmonitor hook {program}: {error}"
                ));
                return Ok(Answer::everything().encode());
            }
        }
    }
    let mut answer = exact_answer(worktree, &state_dir?, token)?;
    if nearest
        .as_ref()
        .is_some_and(|git| classify::needs_full_answer(git.git_args()))
    {
        answer.paths = None;
    }
    Ok(answer.encode())
}

/// The chain of a git that may write the worktree: one whose command line may (see
/// [`classify`]), or `git worktree remove`'s status check of the worktree it deletes.
fn writing_chain(nearest: &process::Process) -> Option<GitChain> {
    let args = nearest.git_args();
    if classify::classify(args) == Class::Plan {
        return Some(GitChain::above(nearest.clone()));
    }
    if classify::may_check_worktree_before_removal(args) {
        let chain = GitChain::above(nearest.clone());
        return classify::removes_worktree(chain.operation.git_args()).then_some(chain);
    }
    None
}

/// What changed since `token`: from the watcher when one runs, else by the walk (and a
/// watcher is started for the next query). A token the watcher does not know (the
/// walk's, an older watcher's) is answered by the walk against that token, handed to git
/// with the watcher's new token, which was taken before the walk began.
fn exact_answer(worktree: &Path, state_dir: &Path, token: &str) -> io::Result<Answer> {
    let snapshots = Snapshots::new(state_dir);
    match client::ask(state_dir, token) {
        client::Reply::Exact { token, paths } => Ok(Answer {
            token,
            paths: Some(paths),
        }),
        client::Reply::Unknown {
            token: watcher_token,
        } => Ok(Answer {
            paths: snapshots.changed_since(worktree, token)?,
            token: watcher_token,
        }),
        client::Reply::Unavailable => {
            client::start(state_dir, worktree);
            snapshots.answer(worktree, token)
        }
    }
}

/// For a git command that may write the worktree, when its operation is undecided: run
/// dbguard's planner and snapshot, and wait; unless the databases the planner found last
/// time, which the watcher proves are still all there are ([`known_databases`]), are
/// none, or are out of a branch switch's way ([`branch_switch`]). dbguard reports on
/// stderr what it saved and what it could not; its stdout goes there too, so the answer
/// on ours stays clean.
fn guard(git_dir: &Path, state_dir: Option<&Path>, worktree: &Path, chain: &GitChain) {
    if !undecided(git_dir, chain) {
        return;
    }
    if let Some(known) = state_dir.and_then(|state| known_databases::current(state, worktree))
        && (known.is_empty()
            || branch_switch::touches_none(worktree, git_dir, chain.nearest.git_args(), &known))
    {
        return;
    }
    // Taken before the planner scans: what changes during its scan is after this token.
    let scan_token = state_dir.and_then(client::fresh_token);
    let dbguard = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("dbguard")))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("dbguard"));
    let stdout = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::null(), Stdio::from);
    let mut command = Command::new(&dbguard);
    command
        .args(["hook", "fsmonitor-guard"])
        .arg(chain.nearest.pid.to_string())
        .arg(chain.operation.pid.to_string())
        .stdin(Stdio::null())
        .stdout(stdout);
    // Set or removed: a value inherited from elsewhere must not be recorded as ours.
    match &scan_token {
        Some(token) => command.env(known_databases::TOKEN_VARIABLE, token),
        None => command.env_remove(known_databases::TOKEN_VARIABLE),
    };
    let status = command.status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => say(&format!(
            "{} exited with {status}: databases git is about to change may not be saved",
            dbguard.display()
        )),
        Err(error) => say(&format!(
            "cannot run {}: {error}: databases git is about to change are not saved (is dbguard installed next to {PROGRAM}?)",
            dbguard.display()
        )),
    }
}

/// Whether no earlier call of the same operation (a git command that may write the
/// worktree) has decided for it.
fn undecided(git_dir: &Path, chain: &GitChain) -> bool {
    decided_operation(git_dir, &chain.operation.key()).is_none()
}

/// `DBGUARD_SKIP=1` and a git command that may write: nothing is saved, and the user
/// hears so once for every such command (a forgotten `export` must not switch the guard off unseen).
fn say_skipped(git_dir: &Path, chain: &GitChain) {
    if !undecided(git_dir, chain) {
        return;
    }
    let command: Vec<String> = chain
        .operation
        .git_args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    say(&format!(
        "{SKIP_VARIABLE}=1 is set: nothing saved before `git {}` (unset it to have databases snapshotted)",
        command.join(" ")
    ));
    // Said once for this command, not again at each of its index reads.
    let _ = mark_decided(git_dir, &chain.operation.key(), 0);
}

/// One line for the user on git's stderr.
fn say(line: &str) {
    eprintln!("dbguard: {line}");
}
