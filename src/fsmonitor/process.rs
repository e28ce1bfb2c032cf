//! Which git command a hook call belongs to, from `/proc`: git runs the fsmonitor hook
//! from whichever git process reads the index, often an internal child (stash's
//! `update-index` and `reset --hard`, pull's `merge FETCH_HEAD`, bisect's `checkout`).
//!
//! The *nearest* git is the one about to write (its first call precedes its writes). The
//! *operation* is the git command it belongs to: the nearest git's ancestors as long as
//! each is a git started directly by git, which is how a builtin runs its own internal
//! children (stash's `reset --hard`, pull's `merge FETCH_HEAD`). A git started by a shell
//! (a `!` alias, `rebase -x`, a script) is an operation of its own: every git in
//! `!git clean -fd && git reset --hard` writes, and each is planned.
//!
//! git is recognised by its executable (`/proc/PID/exe`, which resolves the symlink a
//! user may call `g`), not by the name it was started under.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// A running process, as `/proc` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    parent: u32,
    /// Clock ticks since boot when it started: with the pid, unique across pid reuse.
    pub(crate) started: u64,
    pub(crate) argv: Vec<OsString>,
    pub(crate) cwd: PathBuf,
    /// The program file it runs (`/proc/PID/exe`, symlinks resolved); `None` when the
    /// kernel does not show it (another user's process).
    exe: Option<PathBuf>,
}

impl Process {
    pub(crate) fn read(pid: u32) -> Option<Process> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces and parentheses: fields after the
        // last ')' are fixed.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
        let parent = fields.get(1)?.parse().ok()?;
        let started = fields.get(19)?.parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv = cmdline
            .split(|b| *b == 0)
            .map(|arg| OsString::from_vec(arg.to_vec()))
            .collect::<Vec<_>>();
        let argv = match argv.split_last() {
            Some((last, rest)) if last.is_empty() => rest.to_vec(),
            _ => argv,
        };
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
        let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
        Some(Process {
            pid,
            parent,
            started,
            argv,
            cwd,
            exe,
        })
    }

    /// `<pid>-<start ticks>`: names one process for its whole life.
    pub(crate) fn key(&self) -> String {
        format!("{}-{}", self.pid, self.started)
    }

    /// When it started, to 10 ms: its start tick (`USER_HZ`, 100 per second on Linux)
    /// against the uptime now. (`btime` in `/proc/stat` is whole seconds: up to a second
    /// off.)
    pub(crate) fn started_at(&self) -> Option<std::time::SystemTime> {
        let uptime = fs::read_to_string("/proc/uptime").ok()?;
        let uptime: f64 = uptime.split_whitespace().next()?.parse().ok()?;
        let age = uptime - self.started as f64 / 100.0;
        std::time::SystemTime::now().checked_sub(std::time::Duration::from_secs_f64(age.max(0.0)))
    }

    /// Whether the process is still the one this key names.
    pub(crate) fn key_is_alive(key: &str) -> bool {
        let Some((pid, started)) = key.split_once('-') else {
            return false;
        };
        pid.parse()
            .ok()
            .and_then(Process::read)
            .is_some_and(|p| p.started.to_string() == started)
    }

    /// The file name it was started under (`argv[0]`'s last component).
    fn program_name(&self) -> &[u8] {
        use std::os::unix::ffi::OsStrExt as _;
        let argv0 = self.argv.first().map_or(&[][..], |a| a.as_bytes());
        argv0.rsplit(|b| *b == b'/').next().unwrap_or(argv0)
    }

    /// The file name of the executable it runs, when the kernel shows it.
    fn exe_name(&self) -> Option<&[u8]> {
        use std::os::unix::ffi::OsStrExt as _;
        Some(self.exe.as_deref()?.file_name()?.as_bytes())
    }

    /// Whether it runs git: its executable is a file named `git` (a symlink `g -> git`
    /// resolves to it), or, when the kernel hides the executable, it was started as
    /// `git`.
    pub(crate) fn is_git(&self) -> bool {
        match self.exe_name() {
            Some(name) => name == b"git",
            None => self.program_name() == b"git",
        }
    }

    /// Whether it runs the same program file as `git` (a hard link under another name
    /// counts: git's exec-path copy is one).
    fn runs_same_program_as(&self, git: &Process) -> bool {
        let identity = |p: &Process| {
            let metadata = fs::metadata(p.exe.as_deref()?).ok()?;
            Some((metadata.dev(), metadata.ino()))
        };
        self.is_git() || identity(self).is_some_and(|id| identity(git) == Some(id))
    }

    fn is_shell(&self) -> bool {
        let shell = |name: &[u8]| matches!(name, b"sh" | b"dash" | b"bash");
        shell(self.program_name()) || self.exe_name().is_some_and(shell)
    }

    /// The git arguments after the program name.
    pub(crate) fn git_args(&self) -> &[OsString] {
        self.argv.get(1..).unwrap_or(&[])
    }
}

/// The git command a hook call serves.
#[derive(Clone, Debug)]
pub(crate) struct GitChain {
    /// The git process that ran the hook.
    pub(crate) nearest: Process,
    /// The git command it belongs to: the outermost git reached from `nearest` through
    /// gits that git started directly (the same process when the user's git ran the
    /// hook). It names the operation and keys its dedupe.
    pub(crate) operation: Process,
}

/// The git that ran this hook, or `None` when no git did (a hook run by hand). Up to
/// two shells may stand between this process and it: git runs a hook value with a
/// space through `sh -c`, and a hook script's interpreter is `sh`. (This process itself
/// is not read: its parent's pid is all the walk needs, and every `git status` pays for
/// each file read here.)
pub(crate) fn nearest_git() -> Option<Process> {
    let mut current = Process::read(std::os::unix::process::parent_id())?;
    for _ in 0..2 {
        if current.is_git() || !current.is_shell() {
            break;
        }
        current = Process::read(current.parent)?;
    }
    current.is_git().then_some(current)
}

impl GitChain {
    /// The chain from `nearest` (a git) up to the git command it belongs to. A shell
    /// between two gits ends the walk: the git above it ran a `!` alias or a command
    /// (`rebase -x`), and each git that shell starts is a command of its own.
    pub(crate) fn above(nearest: Process) -> GitChain {
        let mut operation = nearest.clone();
        while let Some(parent) = Process::read(operation.parent) {
            if !parent.runs_same_program_as(&nearest) {
                break;
            }
            operation = parent;
        }
        GitChain { nearest, operation }
    }
}

/// The gits above this process (see [`nearest_git`] and [`GitChain::above`]), or `None`
/// when no git runs it.
pub(crate) fn git_chain() -> Option<GitChain> {
    nearest_git().map(GitChain::above)
}

/// Whether `marker` (a `DBGUARD_GUARDED` value) was set by dbguard for this process: it
/// names, as `<pid>-<start ticks>`, a live process that is this process's ancestor (the
/// `dbguard git …` that snapshotted and then started the git this hook runs under). A
/// value left behind in an environment (`export DBGUARD_GUARDED=1`, or a key of a
/// dbguard that is gone or unrelated) is no proof that anything was saved.
pub(crate) fn guarded_by_ancestor(marker: &std::ffi::OsStr) -> bool {
    let Some(marker) = marker.to_str() else {
        return false;
    };
    let mut pid = std::process::id();
    // A chain deeper than this is no git run by dbguard.
    for _ in 0..64 {
        let Some(process) = Process::read(pid) else {
            return false;
        };
        if process.key() == marker {
            return true;
        }
        if process.parent == 0 {
            return false;
        }
        pid = process.parent;
    }
    false
}

/// The marker dbguard sets for a git it starts after snapshotting: this process's key.
pub(crate) fn guard_marker_for_children() -> Option<String> {
    Process::read(std::process::id()).map(|me| me.key())
}

/// The directory the user typed the git command in, as git tells its hooks: git has
/// already changed to the top of the worktree when it runs one, and puts the user's
/// directory, relative to that top, in `GIT_PREFIX` (`data/` for `cd data && git
/// restore posts.db`, and for `git -C data …`). Empty at the top.
pub(crate) fn user_prefix(worktree_top: &Path) -> PathBuf {
    match std::env::var_os("GIT_PREFIX") {
        Some(prefix) if !prefix.is_empty() => worktree_top.join(prefix),
        _ => worktree_top.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_keys_it_for_its_lifetime() {
        let me = Process::read(std::process::id()).unwrap();
        assert_eq!(me.cwd, std::env::current_dir().unwrap());
        assert!(!me.argv.is_empty());
        assert!(Process::key_is_alive(&me.key()));
        assert!(!Process::key_is_alive(&format!(
            "{}-{}",
            me.pid,
            me.started + 1
        )));
        assert!(!Process::key_is_alive("not-a-key"));
        let started = me.started_at().unwrap();
        let age = std::time::SystemTime::now()
            .duration_since(started)
            .unwrap();
        assert!(age < std::time::Duration::from_secs(3600), "{age:?}");
    }
}
