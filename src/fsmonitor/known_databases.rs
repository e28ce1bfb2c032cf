//! What the hook knows about the worktree's databases without starting dbguard: the
//! list the planner's last scan found, trusted while the watcher proves that nothing
//! changed since that could be another one. With it, a git command that may write the
//! worktree skips dbguard's planner (loading its binary alone costs over 10 ms) when
//! there is no database at all, or when it is a branch switch that touches none of
//! them ([`super::branch_switch`]).
//!
//! The record (`known-databases` in the state dir) holds the worktree, a watcher token
//! taken *before* the planner's scan began (so a file created during the scan is among
//! the watcher's changes since that token), and the scan's findings: every database
//! file, and every directory it did not look into (the configured exclusions, `.venv`,
//! `node_modules`, …, whose contents may be anything). Any doubt sends the command to
//! the planner: no watcher, another watcher than the token's (restarted, overflowed),
//! another worktree, or a changed path that is not accounted for and may be a database
//! (by its header, as the scanner tells), a directory, a symlink, or anything that
//! cannot be read.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use super::client;

/// The record's file in the state dir.
const FILE: &str = "known-databases";
/// Its first line; any other is not trusted (earlier builds wrote `no-databases`).
const HEADER: &str = "dbguard-known-databases 1";

/// When the watcher lists more changed paths than this since the record's token, the
/// record moves on to the token of the check that vouched for them all, so that each
/// later check reads only what changed after it.
const REFRESH_AFTER: usize = 64;

/// The watcher token the hook took before starting the planner, handed to it in the
/// environment (crate::env lists it).
pub(crate) const TOKEN_VARIABLE: &str = "DBGUARD_FSMONITOR_SCAN_TOKEN";

/// The scanner's rules, repeated here because this module links nothing of dbguard's
/// (a lib test checks they agree with `crate::db` and `crate::scan`): smaller files are
/// never databases; SQLite's magic string at 0, DuckDB's at 8.
pub(crate) const MIN_DATABASE_SIZE: u64 = 512;
pub(crate) const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
pub(crate) const DUCKDB_MAGIC: &[u8; 4] = b"DUCK";

/// What a scan found, as worktree-relative `/`-separated paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Known {
    /// Database files.
    pub(crate) files: Vec<String>,
    /// Directories not looked into: anything below them may be a database.
    pub(crate) dirs: Vec<String>,
}

impl Known {
    /// No database anywhere: git cannot overwrite or delete one.
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// Whether git writing or removing `path` (a file as a tree diff names it) may touch
    /// a known database: the path is one, its WAL or journal beside it, lies inside one
    /// (`app.db/x` replaces the file by a directory), is a directory above one (`data`
    /// replacing `data/app.db`'s directory by a file), or lies in or above a directory
    /// that was not looked into. A plain byte prefix, so `app.db2` counts too: a false
    /// "may" costs a planner run, a false "no" a database.
    pub(crate) fn touched_by(&self, path: &[u8]) -> bool {
        let above = |known: &str| {
            known.len() > path.len()
                && known.as_bytes().starts_with(path)
                && known.as_bytes()[path.len()] == b'/'
        };
        self.files
            .iter()
            .any(|file| path.starts_with(file.as_bytes()) || above(file))
            || self
                .dirs
                .iter()
                .any(|dir| path.starts_with(dir.as_bytes()) || above(dir))
    }

    /// Whether a path the watcher reports changed leaves the set of databases as
    /// recorded: a known database file (written to), or anything in a directory that was
    /// not looked into (whatever it holds counts already).
    fn accounts_for(&self, changed: &[u8]) -> bool {
        self.files.iter().any(|file| changed == file.as_bytes())
            || self.dirs.iter().any(|dir| {
                changed.starts_with(dir.as_bytes())
                    && changed.get(dir.len()).is_none_or(|byte| *byte == b'/')
            })
    }
}

/// The planner's side: a scan begun after the watcher handed out `token` found `known`
/// in `worktree`. A path that cannot be written on one line is not recorded, and then
/// neither is anything.
pub(crate) fn record(
    state_dir: &Path,
    worktree: &Path,
    token: &str,
    known: &Known,
) -> io::Result<()> {
    let worktree = fs::canonicalize(worktree)?;
    let Some(worktree) = worktree.to_str() else {
        return forget(state_dir);
    };
    write_record(state_dir, worktree, token, known)
}

fn write_record(state_dir: &Path, worktree: &str, token: &str, known: &Known) -> io::Result<()> {
    let one_line = |text: &str| !text.is_empty() && !text.contains('\n');
    let paths = known.files.iter().chain(&known.dirs);
    if !one_line(worktree) || !one_line(token) || !paths.clone().all(|p| one_line(p)) {
        return forget(state_dir);
    }
    let mut text = format!("{HEADER}\n{worktree}\n{token}\n");
    for file in &known.files {
        text.push_str(&format!("file {file}\n"));
    }
    for dir in &known.dirs {
        text.push_str(&format!("dir {dir}\n"));
    }
    let staging = state_dir.join(format!("{FILE}.{}", std::process::id()));
    fs::write(&staging, text)?;
    fs::rename(&staging, state_dir.join(FILE))
}

/// The planner's side: a scan could not vouch for what it found.
pub(crate) fn forget(state_dir: &Path) -> io::Result<()> {
    match fs::remove_file(state_dir.join(FILE)) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// The hook's side: the databases of `worktree` as recorded, when the watcher proves
/// that every path changed since the record's token leaves them as they were; `None`
/// on any doubt.
pub(crate) fn current(state_dir: &Path, worktree: &Path) -> Option<Known> {
    let text = fs::read_to_string(state_dir.join(FILE)).ok()?;
    let mut lines = text.lines();
    let (HEADER, recorded, token) = (lines.next()?, lines.next()?, lines.next()?) else {
        return None;
    };
    let mut known = Known::default();
    for line in lines {
        match line.split_once(' ') {
            Some(("file", path)) => known.files.push(path.to_string()),
            Some(("dir", path)) => known.dirs.push(path.to_string()),
            _ => return None,
        }
    }
    if fs::canonicalize(worktree).ok().as_deref() != Some(Path::new(recorded)) {
        return None;
    }
    let client::Reply::Exact {
        token: now,
        paths: changed,
    } = client::ask(state_dir, token)
    else {
        return None;
    };
    let unchanged = changed
        .iter()
        .all(|path| known.accounts_for(path) || cannot_be_database(worktree, path));
    if !unchanged {
        return None;
    }
    if changed.len() > REFRESH_AFTER {
        // Best effort: a failed write leaves the older, longer record, still sound.
        let _ = write_record(state_dir, recorded, &now, &known);
    }
    Some(known)
}

/// The git arguments that list, NUL-separated, every path the index adds or changes
/// against HEAD (the empty tree before the first commit): added, modified, and a file
/// in a symlink's place (`T`). Renames are off: with git's default rename detection a
/// tracked database moved (and changed) in the index is one `R` entry, which the
/// filter would drop. dbguard's own commit check lists the same.
pub(crate) const STAGED_FILES: [&str; 6] = [
    "diff",
    "--cached",
    "--no-renames",
    "--name-only",
    "-z",
    "--diff-filter=AMT",
];

/// `dbguard-fsmonitor no-staged-database`, run by the pre-commit shim before it would
/// start dbguard: whether no file the commit adds or changes can be a database (by the
/// scanner's rules, as dbguard's commit check reads the worktree file), so that check
/// has nothing to refuse and the dbguard binary need not load. Any doubt (git fails, a
/// staged symlink, an unreadable file) says "maybe", and dbguard runs. The index and
/// the paths are git's own: `GIT_INDEX_FILE` of `git commit -a`/`commit <paths>` is
/// inherited.
pub(crate) fn none_staged(worktree: &Path) -> bool {
    let Ok(output) = Command::new("git")
        .args(["-c", "core.fsmonitor=false"])
        .args(STAGED_FILES)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .current_dir(worktree)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    output.status.success()
        && output
            .stdout
            .split(|byte| *byte == 0)
            .filter(|path| !path.is_empty())
            .all(|path| !path.ends_with(b"/") && cannot_be_database(worktree, path))
}

/// Whether the changed worktree path `path` is surely no database now: gone, or a
/// regular file too small or with another header. Directories (named `dir/` when
/// created, moved or removed), symlinks and unreadable files go to the planner.
fn cannot_be_database(worktree: &Path, path: &[u8]) -> bool {
    if path.ends_with(b"/") {
        return fs::symlink_metadata(
            worktree.join(std::ffi::OsStr::from_bytes(&path[..path.len() - 1])),
        )
        .is_err_and(|error| error.kind() == io::ErrorKind::NotFound);
    }
    let full = worktree.join(std::ffi::OsStr::from_bytes(path));
    match fs::symlink_metadata(&full) {
        Err(error) => error.kind() == io::ErrorKind::NotFound,
        Ok(metadata) if metadata.is_file() => {
            metadata.len() < MIN_DATABASE_SIZE || header_is_no_database(&full).unwrap_or(false)
        }
        Ok(_) => false,
    }
}

/// Whether the file's first 16 bytes are neither SQLite's nor DuckDB's header.
fn header_is_no_database(path: &Path) -> io::Result<bool> {
    let mut header = [0u8; 16];
    let mut file = fs::File::open(path)?;
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..])? {
            0 => break,
            n => read += n,
        }
    }
    let header = &header[..read];
    let sqlite = header.starts_with(SQLITE_MAGIC);
    let duckdb = header.len() >= 12 && &header[8..12] == DUCKDB_MAGIC;
    Ok(!sqlite && !duckdb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_or_foreign_files_and_gone_paths_are_no_database() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("small.db"), b"SQLite format 3\0").unwrap();
        fs::write(root.join("text.txt"), vec![b'a'; 4096]).unwrap();
        let mut sqlite = SQLITE_MAGIC.to_vec();
        sqlite.resize(4096, 0);
        fs::write(root.join("app.bin"), &sqlite).unwrap();
        let mut duckdb = vec![0u8; 8];
        duckdb.extend_from_slice(DUCKDB_MAGIC);
        duckdb.resize(4096, 0);
        fs::write(root.join("warehouse"), &duckdb).unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        std::os::unix::fs::symlink("text.txt", root.join("link")).unwrap();

        assert!(cannot_be_database(root, b"small.db"));
        assert!(cannot_be_database(root, b"text.txt"));
        assert!(cannot_be_database(root, b"gone.db"));
        assert!(cannot_be_database(root, b"gone/"));
        assert!(!cannot_be_database(root, b"app.bin"));
        assert!(!cannot_be_database(root, b"warehouse"));
        assert!(!cannot_be_database(root, b"sub/"));
        assert!(!cannot_be_database(root, b"sub"));
        assert!(!cannot_be_database(root, b"link"));
    }

    #[test]
    fn a_record_without_a_watcher_proves_nothing() {
        let state = tempfile::tempdir().unwrap();
        let worktree = tempfile::tempdir().unwrap();
        let known = Known {
            files: vec!["data/app.db".into()],
            dirs: vec![".venv".into()],
        };
        record(state.path(), worktree.path(), "dbguard:w:1.a:0", &known).unwrap();
        assert!(
            fs::read_to_string(state.path().join(FILE))
                .unwrap()
                .starts_with(HEADER)
        );
        assert_eq!(
            current(state.path(), worktree.path()),
            None,
            "no watcher answers"
        );
        forget(state.path()).unwrap();
        forget(state.path()).unwrap();
        assert!(!state.path().join(FILE).exists());
    }

    #[test]
    fn a_database_is_touched_by_itself_its_side_files_and_the_paths_around_it() {
        let known = Known {
            files: vec!["data/app.db".into()],
            dirs: vec!["web/node_modules".into()],
        };
        for touching in [
            "data/app.db",
            "data/app.db-wal",
            "data/app.db-journal",
            "data/app.db/inner",
            "data",
            "web",
            "web/node_modules",
            "web/node_modules/x/y.js",
        ] {
            assert!(known.touched_by(touching.as_bytes()), "{touching}");
        }
        for apart in [
            "data/other.db",
            "dat",
            "data2/app.db",
            "web/src.js",
            "app.db",
        ] {
            assert!(!known.touched_by(apart.as_bytes()), "{apart}");
        }
        assert!(!Known::default().touched_by(b"anything"));
    }

    #[test]
    fn only_the_known_files_and_what_lies_in_skipped_directories_are_accounted_for() {
        let known = Known {
            files: vec!["data/app.db".into()],
            dirs: vec![".venv".into()],
        };
        assert!(known.accounts_for(b"data/app.db"));
        assert!(known.accounts_for(b".venv/lib/x.db"));
        assert!(known.accounts_for(b".venv/"));
        assert!(known.accounts_for(b".venv"));
        assert!(
            !known.accounts_for(b"data/app.db/"),
            "a database turned directory"
        );
        assert!(!known.accounts_for(b"data/new.db"));
        assert!(!known.accounts_for(b".venv2/x.db"));
    }

    #[test]
    fn a_path_that_does_not_fit_on_a_line_leaves_no_record() {
        let state = tempfile::tempdir().unwrap();
        let worktree = tempfile::tempdir().unwrap();
        let plain = Known {
            files: vec!["app.db".into()],
            dirs: Vec::new(),
        };
        record(state.path(), worktree.path(), "dbguard:w:1.a:0", &plain).unwrap();
        assert!(state.path().join(FILE).exists());
        let broken = Known {
            files: vec!["two\nlines.db".into()],
            dirs: Vec::new(),
        };
        record(state.path(), worktree.path(), "dbguard:w:1.a:0", &broken).unwrap();
        assert!(
            !state.path().join(FILE).exists(),
            "the older record is removed, not kept"
        );
    }
}
