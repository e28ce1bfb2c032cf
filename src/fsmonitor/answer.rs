//! The answer to git's fsmonitor query without a file-system monitor: a token names a
//! saved lstat snapshot of the whole working tree, and the answer is every path whose
//! lstat data changed since the snapshot the given token names.
//!
//! Why this shape (measured in `docs/fsmonitor.md` §3–4): answering "everything may have
//! changed" (`/`) is always correct but makes every `git status` rewrite `.git/index`, so
//! editors that watch the index refresh forever. An exact answer leaves the index alone.
//! git passes back the token stored in the index *on disk*, so "changed since that
//! token" is relative to what git last wrote, whether or not git wrote this time.
//!
//! Complete by construction, not by sampling: every file, symlink and unreadable
//! directory under the worktree (tracked, untracked and ignored; `.git` itself excluded)
//! is in a snapshot, and a path is named when it was added, removed, or any of
//! `(size, mtime, ctime, inode, mode)` differs. ctime is set by the kernel on every write
//! and cannot be set by a user, so a change keeps the whole tuple only when it lands in
//! the same timestamp tick as the state the snapshot recorded; such "racy" paths (ctime
//! or mtime within [`RACY_NS`] of the snapshot's scan, or a wider window on file systems
//! without sub-second times) are always named, like git's own racy-git check.
//! Anything that stops a complete scan makes the caller answer `/`.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Paths whose ctime or mtime is this close to (or after) the scan start of the snapshot
/// they are compared with are named even when unchanged: a write in the same timestamp
/// tick keeps the stat data. Linux stamps files from the coarse clock, one jiffy (at most
/// 10 ms, HZ=100) behind; twice that is safe. A wider window costs settling time: while
/// a path is racy, an answer naming it makes git (with `core.untrackedCache`) write the
/// index again, so an editor watching it runs `git status` about once more per 10 ms.
const RACY_NS: i128 = 20_000_000;

/// The window when a snapshot holds no sub-second timestamp at all (FAT, some network
/// file systems, 1–2 s granularity).
const COARSE_RACY_NS: i128 = 2_100_000_000;

/// How many snapshot files to keep besides the one git's index names.
const KEEP_NEWEST: usize = 6;

const MAGIC: &[u8; 8] = b"DBGFSM1\n";

/// What lstat says about one path; any difference means "changed".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
    mode: u32,
}

impl Stat {
    fn of(meta: &fs::Metadata) -> Stat {
        Stat {
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            inode: meta.ino(),
            mode: meta.mode(),
        }
    }

    fn newest_ns(&self) -> i128 {
        self.mtime_ns.max(self.ctime_ns)
    }
}

/// Every path of a working tree with its stat data, sorted by path bytes.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    /// Wall-clock time when the scan began, in ns since the epoch.
    scanned_at_ns: i128,
    entries: Vec<(Vec<u8>, Stat)>,
}

impl Snapshot {
    /// Walk `worktree`, skipping its top-level `.git`. Unreadable directories are
    /// entries themselves (git cannot look inside either); a path that vanishes during
    /// the walk is simply absent. Any other error fails the scan.
    fn scan(worktree: &Path) -> io::Result<Snapshot> {
        let scanned_at_ns = now_ns();
        let mut entries = Vec::new();
        let mut pending: Vec<(PathBuf, Vec<u8>)> = vec![(worktree.to_path_buf(), Vec::new())];
        while let Some((dir, prefix)) = pending.pop() {
            let listing = match fs::read_dir(&dir) {
                Ok(listing) => listing,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !prefix.is_empty() => continue,
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied && !prefix.is_empty() => {
                    let meta = fs::symlink_metadata(&dir)?;
                    entries.push((prefix[..prefix.len() - 1].to_vec(), Stat::of(&meta)));
                    continue;
                }
                Err(e) => return Err(e),
            };
            for entry in listing {
                let entry = entry?;
                let name = entry.file_name();
                if prefix.is_empty() && name == ".git" {
                    continue;
                }
                let mut path = prefix.clone();
                path.extend_from_slice(name.as_bytes());
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if meta.is_dir() {
                    path.push(b'/');
                    pending.push((entry.path(), path));
                } else {
                    entries.push((path, Stat::of(&meta)));
                }
            }
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Snapshot {
            scanned_at_ns,
            entries,
        })
    }

    /// The racy window for comparisons against this snapshot.
    fn racy_window(&self) -> i128 {
        let sub_second = self.entries.iter().any(|(_, stat)| {
            stat.mtime_ns % 1_000_000_000 != 0 || stat.ctime_ns % 1_000_000_000 != 0
        });
        if sub_second || self.entries.is_empty() {
            RACY_NS
        } else {
            COARSE_RACY_NS
        }
    }

    /// Whether a path in this snapshot may have been written after it was scanned
    /// without its stat data changing.
    fn has_racy_entries(&self) -> bool {
        let window = self.racy_window();
        self.entries
            .iter()
            .any(|(_, stat)| stat.newest_ns() >= self.scanned_at_ns - window)
    }

    /// Paths that differ between `self` (the older snapshot) and `now`: added, removed,
    /// changed, and every racy one.
    fn changed_since(&self, now: &Snapshot) -> Vec<Vec<u8>> {
        let racy_from = self.scanned_at_ns - self.racy_window();
        let mut changed = Vec::new();
        let (mut old, mut new) = (
            self.entries.iter().peekable(),
            now.entries.iter().peekable(),
        );
        loop {
            match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some((path, _)), None) => {
                    changed.push(path.clone());
                    old.next();
                }
                (None, Some((path, _))) => {
                    changed.push(path.clone());
                    new.next();
                }
                (Some((old_path, old_stat)), Some((new_path, new_stat))) => {
                    match old_path.cmp(new_path) {
                        std::cmp::Ordering::Less => {
                            changed.push(old_path.clone());
                            old.next();
                        }
                        std::cmp::Ordering::Greater => {
                            changed.push(new_path.clone());
                            new.next();
                        }
                        std::cmp::Ordering::Equal => {
                            if old_stat != new_stat || old_stat.newest_ns() >= racy_from {
                                changed.push(new_path.clone());
                            }
                            old.next();
                            new.next();
                        }
                    }
                }
            }
        }
        changed
    }

    /// Same paths with the same stat data.
    fn same_entries(&self, other: &Snapshot) -> bool {
        self.entries == other.entries
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.entries.len() * 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.scanned_at_ns.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (path, stat) in &self.entries {
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path);
            out.extend_from_slice(&stat.size.to_le_bytes());
            out.extend_from_slice(&stat.mtime_ns.to_le_bytes());
            out.extend_from_slice(&stat.ctime_ns.to_le_bytes());
            out.extend_from_slice(&stat.inode.to_le_bytes());
            out.extend_from_slice(&stat.mode.to_le_bytes());
        }
        out
    }

    /// `None` for anything that is not a complete snapshot file.
    fn decode(bytes: &[u8]) -> Option<Snapshot> {
        let mut input = Reader(bytes);
        if input.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let scanned_at_ns = i128::from_le_bytes(input.array()?);
        let count = u64::from_le_bytes(input.array()?);
        let mut entries = Vec::with_capacity(count.min(1 << 24) as usize);
        for _ in 0..count {
            let len = u32::from_le_bytes(input.array()?) as usize;
            let path = input.take(len)?.to_vec();
            let stat = Stat {
                size: u64::from_le_bytes(input.array()?),
                mtime_ns: i128::from_le_bytes(input.array()?),
                ctime_ns: i128::from_le_bytes(input.array()?),
                inode: u64::from_le_bytes(input.array()?),
                mode: u32::from_le_bytes(input.array()?),
            };
            entries.push((path, stat));
        }
        input.0.is_empty().then_some(Snapshot {
            scanned_at_ns,
            entries,
        })
    }
}

/// A cursor over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// What to print to git: the new token and either the changed paths or "everything".
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) token: String,
    /// `None`: everything may have changed (`/`).
    pub(crate) paths: Option<Vec<Vec<u8>>>,
}

impl Answer {
    /// Everything may have changed, with a token nothing was saved under (the next call
    /// answers `/` again).
    pub(crate) fn everything() -> Answer {
        Answer {
            token: format!("dbguard:none:{}", now_ns()),
            paths: None,
        }
    }

    /// The bytes git reads: `<token>\0` then NUL-terminated paths.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = self.token.as_bytes().to_vec();
        out.push(0);
        match &self.paths {
            None => out.extend_from_slice(b"/\0"),
            Some(paths) => {
                for path in paths {
                    out.extend_from_slice(path);
                    out.push(0);
                }
            }
        }
        out
    }
}

/// The saved snapshots of one working tree, in its state dir ([`super::state`]).
pub(crate) struct Snapshots {
    dir: PathBuf,
}

const TOKEN_PREFIX: &str = "dbguard:";

/// The file holding the token saved last.
const LATEST: &str = "latest";

impl Snapshots {
    pub(crate) fn new(state_dir: &Path) -> Snapshots {
        Snapshots {
            dir: state_dir.to_path_buf(),
        }
    }

    /// Answer git's query for `token` about `worktree`: scan, compare with the token's
    /// snapshot (unknown token: `/`), and save the scan under the token returned unless
    /// an identical, settled snapshot is saved already (then its token is reused, so
    /// repeated queries with nothing changing write nothing).
    pub(crate) fn answer(&self, worktree: &Path, token: &str) -> io::Result<Answer> {
        let now = Snapshot::scan(worktree)?;
        let previous = self.load(token);
        let paths = previous.as_ref().map(|old| old.changed_since(&now));
        let settled_as_now = |old: &Snapshot| old.same_entries(&now) && !old.has_racy_entries();
        let token = match &previous {
            Some(old) if settled_as_now(old) => token.to_string(),
            // While a change git does not record stays (an uncommitted edit), every
            // query differs from the index's token but not from the last save.
            _ => match self.latest() {
                Some((latest_token, latest)) if settled_as_now(&latest) => latest_token,
                _ => self.save(&now)?,
            },
        };
        Ok(Answer { token, paths })
    }

    /// The paths changed since the snapshot `token` names, without saving a new one
    /// (the caller hands git a watcher's token instead); `None` when `token` names no
    /// snapshot. The scan starts after the watcher's token was taken, so a change lands
    /// in this list, in the watcher's next answer, or in both.
    pub(crate) fn changed_since(
        &self,
        worktree: &Path,
        token: &str,
    ) -> io::Result<Option<Vec<Vec<u8>>>> {
        let Some(previous) = self.load(token) else {
            return Ok(None);
        };
        let now = Snapshot::scan(worktree)?;
        Ok(Some(previous.changed_since(&now)))
    }

    /// The token and snapshot saved last.
    fn latest(&self) -> Option<(String, Snapshot)> {
        let token = fs::read_to_string(self.dir.join(LATEST)).ok()?;
        let snapshot = self.load(&token)?;
        Some((token, snapshot))
    }

    fn path_of(&self, token: &str) -> Option<PathBuf> {
        let id = token.strip_prefix(TOKEN_PREFIX)?;
        (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.dir.join(format!("{id}.snap")))
    }

    fn load(&self, token: &str) -> Option<Snapshot> {
        let mut bytes = Vec::new();
        fs::File::open(self.path_of(token)?)
            .ok()?
            .read_to_end(&mut bytes)
            .ok()?;
        Snapshot::decode(&bytes)
    }

    /// Write `snapshot` atomically under a new token, then drop old snapshots.
    fn save(&self, snapshot: &Snapshot) -> io::Result<String> {
        fs::create_dir_all(&self.dir)?;
        let id = format!("{:x}{:x}", snapshot.scanned_at_ns, std::process::id());
        let token = format!("{TOKEN_PREFIX}{id}");
        let final_path = self.dir.join(format!("{id}.snap"));
        let temp_path = self.dir.join(format!("{id}.tmp"));
        let mut file = fs::File::create(&temp_path)?;
        file.write_all(&snapshot.encode())?;
        drop(file);
        fs::rename(&temp_path, &final_path)?;
        // Only an optimisation: a lost pointer costs one more save.
        let _ = fs::write(self.dir.join(LATEST), &token);
        self.prune(&final_path);
        Ok(token)
    }

    /// Keep the newest few snapshots. The one the on-disk index names is among them
    /// unless git has not written the index for many changing queries; then the next
    /// query finds no snapshot and answers `/`, which is always correct.
    fn prune(&self, keep: &Path) {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, PathBuf)> = listing
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.path())
            .filter(|path| path != keep && path.extension().is_some_and(|e| e == "snap"))
            .filter_map(|path| Some((fs::metadata(&path).ok()?.modified().ok()?, path)))
            .collect();
        files.sort();
        let excess = files.len().saturating_sub(KEEP_NEWEST);
        for (_, path) in files.into_iter().take(excess) {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, text).unwrap();
    }

    fn names(answer: &Answer) -> Vec<String> {
        answer
            .paths
            .as_ref()
            .expect("an exact answer")
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    /// Sleep past the racy window so unchanged paths stop being named.
    fn settle() {
        std::thread::sleep(std::time::Duration::from_millis(30));
    }

    #[test]
    fn unknown_token_is_everything_and_a_known_one_names_exactly_what_changed() {
        let tree = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let root = tree.path();
        write(&root.join("a.txt"), "a");
        write(&root.join("dir/b.txt"), "b");
        write(&root.join("dir/gone.txt"), "g");
        write(&root.join(".git/index"), "not scanned");
        settle();
        let snapshots = Snapshots::new(state.path());
        let first = snapshots.answer(root, "").unwrap();
        assert_eq!(first.paths, None);
        assert!(first.encode().ends_with(b"\0/\0"));
        let unchanged = snapshots.answer(root, &first.token).unwrap();
        assert_eq!(names(&unchanged), Vec::<String>::new());
        assert_eq!(unchanged.token, first.token, "nothing changed: same token");

        write(&root.join("dir/b.txt"), "bb");
        write(&root.join("new/c.txt"), "c");
        fs::remove_file(root.join("dir/gone.txt")).unwrap();
        write(&root.join(".git/index"), "changed but not scanned");
        let changed = snapshots.answer(root, &first.token).unwrap();
        assert_eq!(names(&changed), ["dir/b.txt", "dir/gone.txt", "new/c.txt"]);
        assert_ne!(changed.token, first.token);
        // Compared with a snapshot scanned right after the writes, the written paths are
        // racy (named again); one scanned later names nothing.
        settle();
        let racy = snapshots.answer(root, &changed.token).unwrap();
        assert_eq!(names(&racy), ["dir/b.txt", "new/c.txt"]);
        let settled = snapshots.answer(root, &racy.token).unwrap();
        assert_eq!(names(&settled), Vec::<String>::new());
        assert_eq!(settled.token, racy.token);
    }

    #[test]
    fn a_same_size_write_in_the_same_tick_as_the_scan_is_named() {
        let tree = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let root = tree.path();
        write(&root.join("a.txt"), "one");
        let snapshots = Snapshots::new(state.path());
        let first = snapshots.answer(root, "").unwrap();
        // Right after the scan, and the stat tuple put back as it was: only the racy
        // rule can know.
        write(&root.join("a.txt"), "two");
        let answer = snapshots.answer(root, &first.token).unwrap();
        assert_eq!(names(&answer), ["a.txt"]);
    }

    #[test]
    fn a_damaged_or_foreign_token_is_everything() {
        let tree = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        write(&tree.path().join("a.txt"), "a");
        let snapshots = Snapshots::new(state.path());
        let first = snapshots.answer(tree.path(), "").unwrap();
        let file = snapshots.path_of(&first.token).unwrap();
        let bytes = fs::read(&file).unwrap();
        fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(
            snapshots.answer(tree.path(), &first.token).unwrap().paths,
            None
        );
        for foreign in [
            "1700000000",
            "c:1:abc",
            "dbguard:../../etc/passwd",
            "dbguard:",
        ] {
            assert_eq!(snapshots.answer(tree.path(), foreign).unwrap().paths, None);
        }
    }

    #[test]
    fn an_unreadable_directory_is_one_entry_not_a_failure() {
        let tree = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let root = tree.path();
        write(&root.join("locked/inside.txt"), "x");
        let snapshot_of = |root: &Path| Snapshot::scan(root).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        let scanned = snapshot_of(root);
        fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
        // root reads any directory; elsewhere the directory is one entry.
        let paths: Vec<&[u8]> = scanned.entries.iter().map(|(p, _)| p.as_slice()).collect();
        assert!(paths == [b"locked/inside.txt".as_slice()] || paths == [b"locked".as_slice()]);
        drop(state);
    }

    #[test]
    fn snapshots_round_trip_and_old_ones_are_pruned() {
        let tree = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        write(&tree.path().join("a.txt"), "a");
        let snapshot = Snapshot::scan(tree.path()).unwrap();
        assert_eq!(Snapshot::decode(&snapshot.encode()), Some(snapshot));
        let snapshots = Snapshots::new(state.path());
        for i in 0..(KEEP_NEWEST + 4) {
            write(&tree.path().join("a.txt"), &"x".repeat(i + 2));
            snapshots.answer(tree.path(), "").unwrap();
        }
        let kept = fs::read_dir(state.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "snap")
            })
            .count();
        assert_eq!(kept, KEEP_NEWEST + 1);
    }
}
