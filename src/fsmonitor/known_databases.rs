//! The hook's fast path for a git command that may write the worktree: when dbguard's
//! planner last found no database file anywhere in the worktree, and the watcher proves
//! that nothing changed since then that could be one, git cannot overwrite or delete a
//! database, and the hook answers without starting dbguard (loading its binary alone
//! costs tens of milliseconds per checkout).
//!
//! The record (`no-databases` in the state dir) holds the worktree and a watcher token
//! taken *before* the planner's scan began, so a file created during the scan is among
//! the watcher's changes since that token. Any doubt sends the command to the planner:
//! no watcher, another watcher than the token's (restarted, overflowed), another
//! worktree, or a changed path that is a database (by its header, as the scanner tells),
//! a directory, a symlink, or anything that cannot be read.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use super::client;

/// The record's file in the state dir.
const FILE: &str = "no-databases";
/// Its first line; any other is not trusted.
const HEADER: &str = "dbguard-no-databases 1";

/// The watcher token the hook took before starting the planner, handed to it in the
/// environment (crate::env lists it).
pub(crate) const TOKEN_VARIABLE: &str = "DBGUARD_FSMONITOR_SCAN_TOKEN";

/// The scanner's rules, repeated here because this module links nothing of dbguard's
/// (a lib test checks they agree with `crate::db` and `crate::scan`): smaller files are
/// never databases; SQLite's magic string at 0, DuckDB's at 8.
pub(crate) const MIN_DATABASE_SIZE: u64 = 512;
pub(crate) const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
pub(crate) const DUCKDB_MAGIC: &[u8; 4] = b"DUCK";

/// The planner's side: a scan begun after the watcher handed out `token` found no
/// database in `worktree` (and no directory it was told to skip).
pub(crate) fn record(state_dir: &Path, worktree: &Path, token: &str) -> io::Result<()> {
    let worktree = fs::canonicalize(worktree)?;
    let Some(worktree) = worktree.to_str().filter(|w| !w.contains('\n')) else {
        return forget(state_dir);
    };
    if token.is_empty() || token.contains('\n') {
        return forget(state_dir);
    }
    let staging = state_dir.join(format!("{FILE}.{}", std::process::id()));
    fs::write(&staging, format!("{HEADER}\n{worktree}\n{token}\n"))?;
    fs::rename(&staging, state_dir.join(FILE))
}

/// The planner's side: a scan found databases (or could not vouch for none).
pub(crate) fn forget(state_dir: &Path) -> io::Result<()> {
    match fs::remove_file(state_dir.join(FILE)) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// The hook's side: whether `worktree` still holds no database, proven by the record
/// and the watcher's changes since it.
pub(crate) fn still_none(state_dir: &Path, worktree: &Path) -> bool {
    let Ok(text) = fs::read_to_string(state_dir.join(FILE)) else {
        return false;
    };
    let mut lines = text.lines();
    let (Some(HEADER), Some(recorded), Some(token), None) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return false;
    };
    if fs::canonicalize(worktree).ok().as_deref() != Some(Path::new(recorded)) {
        return false;
    }
    match client::ask(state_dir, token) {
        client::Reply::Exact { paths, .. } => {
            paths.iter().all(|path| cannot_be_database(worktree, path))
        }
        client::Reply::Unknown { .. } | client::Reply::Unavailable => false,
    }
}

/// `dbguard-fsmonitor no-staged-database`, run by the pre-commit shim before it would
/// start dbguard: whether no file the commit adds or changes can be a database (by the
/// scanner's rules, as dbguard's commit check reads the worktree file), so that check
/// has nothing to refuse and the dbguard binary need not load. Any doubt (git fails, a
/// staged symlink, an unreadable file) says "maybe", and dbguard runs. The index and
/// the paths are git's own: `GIT_INDEX_FILE` of `git commit -a`/`commit <paths>` is
/// inherited.
pub(crate) fn none_staged(worktree: &Path) -> bool {
    let Ok(output) = Command::new("git")
        .args([
            "-c",
            "core.fsmonitor=false",
            "diff",
            "--cached",
            "--name-only",
            "-z",
            "--diff-filter=AM",
        ])
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
        record(state.path(), worktree.path(), "dbguard:w:1.a:0").unwrap();
        assert!(
            fs::read_to_string(state.path().join(FILE))
                .unwrap()
                .starts_with(HEADER)
        );
        assert!(
            !still_none(state.path(), worktree.path()),
            "no watcher answers"
        );
        forget(state.path()).unwrap();
        forget(state.path()).unwrap();
        assert!(!state.path().join(FILE).exists());
    }
}
