//! The store's two advisory locks (flock), so that a busy store never turns the guard off.
//!
//! - `lock` admits one writer at a time: a snapshot, a restore, a fetch, each step of a
//!   prune. Readers (`log`, `status`, `verify`, `export`, a restore picker) never take it,
//!   so they never hold up the snapshot a git command waits for.
//! - `packs.lock` is held shared by every open store (readers and writers read packs,
//!   writers deduplicate against them) and exclusively only by prune while it deletes or
//!   rewrites pack files, a step at a time.
//!
//! A waiter gives up only when the holder shows no sign of work for [`STALL_LIMIT`]: a
//! holder writes who it is into the lock file when it takes it and touches the file as it
//! goes (every segment of an ingest, every pack of a prune), so a long prune or a big
//! snapshot is waited out; only a holder that is stuck (stopped, hung) makes it give up.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a holder may go without any sign of work before a waiter gives up on it.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(120);

/// How often a waiter looks again: short, so that a prune yielding between its steps
/// lets a waiting snapshot in.
const POLL: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Exclusive,
    Shared,
}

/// A lock this process holds: released when dropped (closing the file releases a flock).
pub(super) struct Held {
    file: File,
}

impl Held {
    /// Turn a shared lock into an exclusive one if nobody else holds it now. On `false`
    /// the lock may be gone altogether (flock drops the old lock before it tries the new
    /// one): drop this `Held` then.
    pub(super) fn try_upgrade(&self) -> io::Result<bool> {
        if try_lock(&self.file, Mode::Exclusive)? {
            let mut file = &self.file;
            let _ = file
                .set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", this_process()));
            return Ok(true);
        }
        Ok(false)
    }

    /// A second handle on the lock file, to touch it (`set_modified`) from the threads
    /// of an ingest: waiters see the holder is still working and reset their patience.
    /// The lock stays held as long as this `Held` lives.
    pub(super) fn toucher(&self) -> Option<File> {
        self.file.try_clone().ok()
    }
}

/// Why a lock could not be taken.
pub(super) enum LockFailure {
    /// The holder showed no sign of work for [`STALL_LIMIT`]; who it said it was.
    Stalled {
        holder: String,
    },
    Io(io::Error),
}

/// What this process says it is, in the lock file: `1234 dbguard prune --keep-last 3`.
fn this_process() -> String {
    // Redacted: the lock file is in the store, and a guarded git's argv may hold secrets.
    let whole: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv: Vec<String> = crate::git::redact::redact_argv(&whole)
        .into_iter()
        .take(4)
        .collect();
    let name = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dbguard".into());
    let rest = argv.get(1..).unwrap_or_default().join(" ");
    format!("{} {name} {rest}", std::process::id())
        .trim_end()
        .to_string()
}

/// Open the lock file at `path` for locking: created (private) when `create`, else it
/// must exist.
pub(super) fn open(path: &Path, create: bool) -> io::Result<File> {
    if create {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)
    } else {
        File::open(path)
    }
}

/// Take the lock on `file` (at `path`), waiting while the holder works.
pub(super) fn acquire(file: File, path: &Path, mode: Mode) -> Result<Held, LockFailure> {
    let mut seen = progress_mark(path);
    let mut patience = Instant::now() + STALL_LIMIT;
    loop {
        match try_lock(&file, mode) {
            Ok(true) => return Ok(claimed(file, mode)),
            Ok(false) => {}
            Err(e) => return Err(LockFailure::Io(e)),
        }
        let mark = progress_mark(path);
        if mark != seen {
            seen = mark;
            patience = Instant::now() + STALL_LIMIT;
        } else if Instant::now() >= patience {
            return Err(LockFailure::Stalled {
                holder: holder(path),
            });
        }
        std::thread::sleep(POLL);
    }
}

fn try_lock(file: &File, mode: Mode) -> io::Result<bool> {
    let attempt = match mode {
        Mode::Exclusive => file.try_lock(),
        Mode::Shared => file.try_lock_shared(),
    };
    match attempt {
        Ok(()) => Ok(true),
        Err(fs::TryLockError::WouldBlock) => Ok(false),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// An exclusive holder says who it is (best effort: a read-only lock file stays as it is).
fn claimed(mut file: File, mode: Mode) -> Held {
    if mode == Mode::Exclusive {
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", this_process()));
    }
    Held { file }
}

/// What changes while a holder works: the lock file's mtime and size (a new holder
/// rewrites it, a working one touches it).
fn progress_mark(path: &Path) -> Option<(i64, i64, u64, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.mtime(), meta.mtime_nsec(), meta.len(), meta.ino()))
}

/// Who the lock file says holds it: `pid 1234 (dbguard prune --keep-last 3)`.
pub(super) fn holder(path: &Path) -> String {
    let mut text = String::new();
    let _ = File::open(path).and_then(|f| f.take(512).read_to_string(&mut text));
    match text.trim().split_once(' ') {
        Some((pid, what)) if pid.parse::<u32>().is_ok() => {
            let what: String = what.chars().filter(|c| !c.is_control()).collect();
            format!("pid {pid} ({what})")
        }
        _ => "another dbguard process".into(),
    }
}

/// The lock files of the store at `root`.
pub(super) fn writer_path(root: &Path) -> PathBuf {
    root.join("lock")
}

pub(super) fn packs_path(root: &Path) -> PathBuf {
    root.join("packs.lock")
}
