//! The watched tree: one inotify instance with a watch on every directory of a worktree
//! (its top-level `.git` excepted) and one on the watcher's cookie directory inside the
//! git dir, turning kernel events into worktree-relative paths in a [`ChangeLog`].
//!
//! Completeness rules, each one a way a watcher can miss a change:
//! - A new directory is watched *before* it is read, then read and every path inside it
//!   recorded: whatever was created in it before the watch existed is in the listing,
//!   whatever came after has an event (the mkdir/add_watch race).
//! - A directory moved away or deleted is recorded as `dir/` (git then re-checks every
//!   entry under it) and its watches are dropped; moved back in, it is a new directory.
//! - Events of one inotify instance arrive in the order they happened, the cookie
//!   directory's included: once a cookie's creation is read, every earlier change is.
//! - Anything the tree cannot follow ends it with a [`Stop`]: a full event queue, the
//!   watch limit, the worktree or git dir gone. The watcher then exits and the hook walks.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};

/// Why the tree can no longer answer exactly.
#[derive(Debug)]
pub(crate) enum Stop {
    /// `fs.inotify.max_user_watches` (or `max_user_instances`) reached; the text says
    /// which and how to raise it.
    Limit(String),
    /// The kernel's event queue overflowed: events were lost.
    Overflow,
    /// The worktree, the git dir or a mount under the worktree went away.
    Gone,
    Io(io::Error),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Limit(text) => f.write_str(text),
            Stop::Overflow => write!(
                f,
                "the inotify event queue overflowed (fs.inotify.max_queued_events={}); \
                 the watcher restarts, git checks every file itself once; to raise it: \
                 sudo sysctl fs.inotify.max_queued_events=65536",
                read_limit("max_queued_events").unwrap_or_default()
            ),
            Stop::Gone => f.write_str("the worktree or its git dir went away"),
            Stop::Io(error) => write!(f, "{error}"),
        }
    }
}

/// A value under `/proc/sys/fs/inotify/`.
pub(crate) fn read_limit(name: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/sys/fs/inotify/{name}"))
        .ok()
        .map(|text| text.trim().to_string())
}

/// What every worktree directory is watched for: any change to an entry's content,
/// metadata or name. `IN_CLOSE_WRITE` also catches writes through a shared mapping,
/// which raise no `IN_MODIFY`.
fn directory_events() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::IN_DONT_FOLLOW
}

/// Every path changed since the watcher began, in event order, numbered: the token of an
/// answer is the number of the next change, so "changed since token" is a suffix.
#[derive(Debug, Default)]
pub(crate) struct ChangeLog {
    /// The number of `paths[0]`: changes before it were forgotten.
    base: u64,
    paths: Vec<Vec<u8>>,
}

/// Past this many remembered changes, older ones are forgotten (a token from before
/// them is unknown: the hook walks once). About 100 MB of paths at most.
const LOG_LIMIT: usize = 1_000_000;

impl ChangeLog {
    pub(crate) fn record(&mut self, path: Vec<u8>) {
        if self.paths.len() >= LOG_LIMIT {
            self.base += self.paths.len() as u64;
            self.paths.clear();
        }
        self.paths.push(path);
    }

    /// The number the next change will get.
    pub(crate) fn end(&self) -> u64 {
        self.base + self.paths.len() as u64
    }

    /// Every distinct path changed at or after `from`, or `None` when `from` is not a
    /// number this log can answer for.
    #[cfg(test)]
    pub(crate) fn since(&self, from: u64) -> Option<Vec<Vec<u8>>> {
        self.between(from, self.end())
    }

    /// Every distinct path with a number in `from..to`; `None` when the log does not
    /// hold them all.
    pub(crate) fn between(&self, from: u64, to: u64) -> Option<Vec<Vec<u8>>> {
        if from < self.base || from > to || to > self.end() {
            return None;
        }
        let mut seen = std::collections::HashSet::new();
        let suffix = &self.paths[(from - self.base) as usize..(to - self.base) as usize];
        Some(
            suffix
                .iter()
                .filter(|path| seen.insert(path.as_slice()))
                .cloned()
                .collect(),
        )
    }
}

/// The inotify instance and what each watch stands for.
pub(crate) struct Tree {
    inotify: Inotify,
    root: PathBuf,
    root_wd: WatchDescriptor,
    cookie_wd: WatchDescriptor,
    /// Watch → worktree-relative directory, `""` for the root, else ending in `/`.
    dirs: HashMap<WatchDescriptor, Vec<u8>>,
    by_path: HashMap<Vec<u8>, WatchDescriptor>,
}

/// What one event meant for the watcher besides changed paths.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    Nothing,
    /// The cookie with this number was created.
    Cookie(u64),
}

impl Tree {
    /// Watch `cookies` and every directory under `root`. Nothing is recorded: answers
    /// start from the first cookie after this returns.
    pub(crate) fn open(root: &Path, cookies: &Path) -> Result<Tree, Stop> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|errno| match errno {
            Errno::EMFILE => Stop::Limit(format!(
                "too many inotify instances (fs.inotify.max_user_instances={}); git status walks the worktree instead. To raise it: sudo sysctl fs.inotify.max_user_instances=1024",
                read_limit("max_user_instances").unwrap_or_default()
            )),
            errno => Stop::Io(errno.into()),
        })?;
        let cookie_wd = inotify
            .add_watch(
                cookies,
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_ONLYDIR,
            )
            .map_err(add_watch_error)?;
        let root_wd = inotify
            .add_watch(root, directory_events())
            .map_err(add_watch_error)?;
        let mut tree = Tree {
            inotify,
            root: root.to_path_buf(),
            root_wd,
            cookie_wd,
            dirs: HashMap::from([(root_wd, Vec::new())]),
            by_path: HashMap::from([(Vec::new(), root_wd)]),
        };
        let mut ignore = ChangeLog::default();
        tree.read_into(Vec::new(), &mut ignore, false)?;
        Ok(tree)
    }

    /// How many directories are watched.
    pub(crate) fn watches(&self) -> usize {
        self.dirs.len()
    }

    /// Block until events arrive.
    pub(crate) fn read_events(&self) -> Result<Vec<InotifyEvent>, Stop> {
        loop {
            match self.inotify.read_events() {
                Ok(events) => return Ok(events),
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(Stop::Io(errno.into())),
            }
        }
    }

    /// Record what `event` changed.
    pub(crate) fn handle(
        &mut self,
        event: &InotifyEvent,
        log: &mut ChangeLog,
    ) -> Result<Seen, Stop> {
        let mask = event.mask;
        if mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            return Err(Stop::Overflow);
        }
        if event.wd == self.cookie_wd {
            if mask.intersects(AddWatchFlags::IN_IGNORED | AddWatchFlags::IN_DELETE_SELF) {
                return Err(Stop::Gone);
            }
            let number = event.name.as_deref().and_then(|n| n.to_str()?.parse().ok());
            return Ok(number.map_or(Seen::Nothing, Seen::Cookie));
        }
        if mask.contains(AddWatchFlags::IN_UNMOUNT) {
            return Err(Stop::Gone);
        }
        if mask.contains(AddWatchFlags::IN_IGNORED) {
            if event.wd == self.root_wd {
                return Err(Stop::Gone);
            }
            if let Some(dir) = self.dirs.remove(&event.wd) {
                self.by_path.remove(&dir);
            }
            return Ok(Seen::Nothing);
        }
        if event.wd == self.root_wd
            && mask.intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF)
        {
            return Err(Stop::Gone);
        }
        // A removed watch's late events, or a directory's own DELETE/MOVE_SELF (its
        // parent's event names it).
        let (Some(dir), Some(name)) = (self.dirs.get(&event.wd), event.name.as_deref()) else {
            return Ok(Seen::Nothing);
        };
        if dir.is_empty() && name == ".git" {
            return Ok(Seen::Nothing);
        }
        let mut path = dir.clone();
        path.extend_from_slice(name.as_bytes());
        if !mask.contains(AddWatchFlags::IN_ISDIR) {
            log.record(path);
            return Ok(Seen::Nothing);
        }
        let mut as_dir = path.clone();
        as_dir.push(b'/');
        log.record(as_dir.clone());
        if mask.intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM) {
            self.forget(&as_dir);
        } else if mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
            || !self.by_path.contains_key(&as_dir)
        {
            // New, moved in, or (IN_ATTRIB) perhaps readable now.
            self.watch_new(path, log)?;
        }
        Ok(Seen::Nothing)
    }

    /// Watch a directory that appeared, then record everything in it.
    fn watch_new(&mut self, path: Vec<u8>, log: &mut ChangeLog) -> Result<(), Stop> {
        let absolute = self.root.join(OsStr::from_bytes(&path));
        match self.inotify.add_watch(&absolute, directory_events()) {
            Ok(wd) => {
                let mut dir = path;
                dir.push(b'/');
                self.remember(wd, dir.clone());
                self.read_into(dir, log, true)
            }
            // Gone again (its removal has an event), not a directory any more, or
            // unreadable (git cannot look inside either; a chmod raises IN_ATTRIB).
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::EACCES) => Ok(()),
            Err(errno) => Err(add_watch_error(errno)),
        }
    }

    fn remember(&mut self, wd: WatchDescriptor, dir: Vec<u8>) {
        if let Some(old) = self.dirs.insert(wd, dir.clone()) {
            self.by_path.remove(&old);
        }
        self.by_path.insert(dir, wd);
    }

    /// Drop the watches of `dir` (ending in `/`) and everything under it.
    fn forget(&mut self, dir: &[u8]) {
        let under: Vec<Vec<u8>> = self
            .by_path
            .keys()
            .filter(|path| path.starts_with(dir))
            .cloned()
            .collect();
        for path in under {
            if let Some(wd) = self.by_path.remove(&path) {
                self.dirs.remove(&wd);
                // Already gone when the directory was deleted; that is fine.
                let _ = self.inotify.rm_watch(wd);
            }
        }
    }

    /// Watch every directory below the already watched `dir` (relative, `""` or ending
    /// in `/`), recording every path found when `record`.
    fn read_into(&mut self, dir: Vec<u8>, log: &mut ChangeLog, record: bool) -> Result<(), Stop> {
        let mut pending = vec![dir];
        while let Some(dir) = pending.pop() {
            let absolute = self.root.join(OsStr::from_bytes(&dir));
            let listing = match fs::read_dir(&absolute) {
                Ok(listing) => listing,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
                Err(e) => return Err(Stop::Io(e)),
            };
            for entry in listing {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Stop::Io(e)),
                };
                let name = entry.file_name();
                if dir.is_empty() && name == ".git" {
                    continue;
                }
                let mut path = dir.clone();
                path.extend_from_slice(name.as_bytes());
                // The entry's type without following a symlink.
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if !is_dir {
                    if record {
                        log.record(path);
                    }
                    continue;
                }
                path.push(b'/');
                if record {
                    log.record(path.clone());
                }
                match self.inotify.add_watch(&entry.path(), directory_events()) {
                    Ok(wd) => {
                        self.remember(wd, path.clone());
                        pending.push(path);
                    }
                    Err(Errno::ENOENT | Errno::ENOTDIR | Errno::EACCES) => {}
                    Err(errno) => return Err(add_watch_error(errno)),
                }
            }
        }
        Ok(())
    }
}

fn add_watch_error(errno: Errno) -> Stop {
    match errno {
        Errno::ENOSPC => Stop::Limit(format!(
            "the inotify watch limit is reached (fs.inotify.max_user_watches={}); git status walks the worktree instead. To raise it: sudo sysctl fs.inotify.max_user_watches=524288 (and add fs.inotify.max_user_watches=524288 to /etc/sysctl.conf to keep it)",
            read_limit("max_user_watches").unwrap_or_default()
        )),
        errno => Stop::Io(errno.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read events until cookie `n` shows, recording changes.
    fn drain_to_cookie(tree: &mut Tree, log: &mut ChangeLog, cookies: &Path, n: u64) {
        fs::write(cookies.join(n.to_string()), "").unwrap();
        loop {
            for event in tree.read_events().unwrap() {
                if tree.handle(&event, log).unwrap() == Seen::Cookie(n) {
                    return;
                }
            }
        }
    }

    fn names(paths: Vec<Vec<u8>>) -> Vec<String> {
        let mut names: Vec<String> = paths
            .into_iter()
            .map(|p| String::from_utf8(p).unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn names_every_change_a_new_directory_included_and_nothing_in_git() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("work");
        let cookies = dir.path().join("cookies");
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::create_dir_all(root.join("src/deep")).unwrap();
        fs::create_dir_all(&cookies).unwrap();
        fs::write(root.join("src/deep/old.txt"), "old").unwrap();
        fs::write(root.join("gone.txt"), "g").unwrap();
        let mut tree = Tree::open(&root, &cookies).unwrap();
        assert_eq!(tree.watches(), 3, "root, src, src/deep; not .git");
        let mut log = ChangeLog::default();
        drain_to_cookie(&mut tree, &mut log, &cookies, 1);
        let start = log.end();
        assert_eq!(log.since(start), Some(Vec::new()));

        fs::write(root.join("src/deep/old.txt"), "changed").unwrap();
        fs::remove_file(root.join("gone.txt")).unwrap();
        fs::write(root.join(".git/index"), "not watched").unwrap();
        // A tree made in one go: its files exist before any watch on it can.
        fs::create_dir_all(root.join("new/a/b")).unwrap();
        fs::write(root.join("new/a/b/file.txt"), "x").unwrap();
        fs::rename(root.join("src"), dir.path().join("moved-away")).unwrap();
        drain_to_cookie(&mut tree, &mut log, &cookies, 2);
        let changed = names(log.since(start).unwrap());
        for expected in [
            "gone.txt",
            "src/deep/old.txt",
            "new/",
            "new/a/b/file.txt",
            "src/",
        ] {
            assert!(
                changed.contains(&expected.to_string()),
                "{expected} in {changed:?}"
            );
        }
        assert!(
            !changed.iter().any(|p| p.starts_with(".git")),
            "{changed:?}"
        );
        // The moved-away tree is no longer watched; the new one is.
        assert_eq!(tree.watches(), 4, "root, new, new/a, new/a/b");
        let after = log.end();
        fs::write(dir.path().join("moved-away/deep/old.txt"), "outside now").unwrap();
        fs::write(root.join("new/a/b/file.txt"), "y").unwrap();
        drain_to_cookie(&mut tree, &mut log, &cookies, 3);
        assert_eq!(names(log.since(after).unwrap()), ["new/a/b/file.txt"]);
    }

    #[test]
    fn the_log_answers_only_for_numbers_it_holds() {
        let mut log = ChangeLog::default();
        log.record(b"a".to_vec());
        log.record(b"b".to_vec());
        log.record(b"a".to_vec());
        assert_eq!(names(log.since(0).unwrap()), ["a", "b"]);
        assert_eq!(names(log.since(2).unwrap()), ["a"]);
        assert_eq!(log.since(3), Some(Vec::new()));
        assert_eq!(log.since(4), None);
    }

    #[test]
    fn the_root_going_away_stops_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("work");
        let cookies = dir.path().join("cookies");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&cookies).unwrap();
        let mut tree = Tree::open(&root, &cookies).unwrap();
        fs::remove_dir(&root).unwrap();
        let mut log = ChangeLog::default();
        let stopped = 'read: loop {
            for event in tree.read_events().unwrap() {
                if let Err(stop) = tree.handle(&event, &mut log) {
                    break 'read stop;
                }
            }
        };
        assert!(matches!(stopped, Stop::Gone), "{stopped:?}");
    }
}
