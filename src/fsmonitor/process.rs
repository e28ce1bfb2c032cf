//! Which git command a hook call belongs to, from `/proc`: git runs the fsmonitor hook
//! from whichever git process reads the index, often an internal child (stash's
//! `update-index` and `reset --hard`, pull's `merge FETCH_HEAD`, bisect's `checkout`).
//!
//! The *nearest* git is the one about to write (its first call precedes its writes); the
//! *outermost* git is the user's command: it names the operation and keys its dedupe.
//! Walking up, a `sh -c` directly between two gits (a shell alias, or git running a
//! hook value with a space) is passed through; anything else ends the chain.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt as _;
use std::path::PathBuf;

/// A running process, as `/proc` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    parent: u32,
    /// Clock ticks since boot when it started: with the pid, unique across pid reuse.
    pub(crate) started: u64,
    pub(crate) argv: Vec<OsString>,
    pub(crate) cwd: PathBuf,
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
        Some(Process {
            pid,
            parent,
            started,
            argv,
            cwd,
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

    fn program_name(&self) -> &[u8] {
        use std::os::unix::ffi::OsStrExt as _;
        let argv0 = self.argv.first().map_or(&[][..], |a| a.as_bytes());
        argv0.rsplit(|b| *b == b'/').next().unwrap_or(argv0)
    }

    pub(crate) fn is_git(&self) -> bool {
        self.program_name() == b"git"
    }

    fn is_shell(&self) -> bool {
        matches!(self.program_name(), b"sh" | b"dash" | b"bash")
    }

    /// `sh -c …` (dash, bash or sh itself).
    fn is_shell_command(&self) -> bool {
        self.is_shell() && self.argv.get(1).is_some_and(|a| a == "-c")
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
    /// The user's git command (the same process when git ran it directly).
    pub(crate) outermost: Process,
}

/// The gits above this process, or `None` when no git is (a hook run by hand). Up to
/// two shells may stand between this process and the nearest git: git runs a hook value
/// with a space through `sh -c`, and a hook script's interpreter is `sh`.
pub(crate) fn git_chain() -> Option<GitChain> {
    let me = Process::read(std::process::id())?;
    let mut current = Process::read(me.parent)?;
    for _ in 0..2 {
        if current.is_git() || !current.is_shell() {
            break;
        }
        current = Process::read(current.parent)?;
    }
    if !current.is_git() {
        return None;
    }
    let nearest = current.clone();
    let mut outermost = current;
    while let Some(mut parent) = Process::read(outermost.parent) {
        if parent.is_shell_command() {
            match Process::read(parent.parent) {
                Some(grandparent) if grandparent.is_git() => parent = grandparent,
                _ => break,
            }
        }
        if !parent.is_git() {
            break;
        }
        outermost = parent;
    }
    Some(GitChain { nearest, outermost })
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
