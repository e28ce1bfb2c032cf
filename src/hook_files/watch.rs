//! The watch file: what lets the post-* hook shims skip starting dbguard.
//!
//! `<per-worktree git dir>/dbguard-watch` holds a header line, then absolute paths, one
//! per line: the store's catalog, every database the post-* hooks would compare in
//! this worktree, and the repository's config files (`config`, `config.worktree`): a
//! change there may have taken `core.fsmonitor` away from dbguard, which the next
//! post-* hook must notice (`flow::hook_actions::keep_the_guard`). Its mtime is set *before* the moment dbguard last confirmed that each
//! listed database still matched its last snapshot (its stat signature was unchanged),
//! minus one second, so even a shell whose `test -nt` compares whole seconds sees any
//! later write as newer. A line `?<path>` names a file that does not exist yet and
//! starts dbguard only once it does: the catalog of a store not made yet. Without a
//! store there is nothing to compare, so a worktree where dbguard never took a snapshot
//! (no database) costs a checkout no dbguard start; the first snapshot makes the
//! catalog, and the hooks start comparing. `hooks/fast-path.sh` starts dbguard when a listed path is
//! missing, or it or its WAL is newer than the watch file; otherwise nothing dbguard
//! would compare has changed and the hook is done.
//!
//! Safety rests on one rule: a watch file exists only when it is complete and its
//! databases were verified. Whenever dbguard cannot vouch for that (a database changed
//! and was not re-snapshotted, a path the shell cannot read back), the file is removed
//! and every hook starts dbguard again. A snapshot taken elsewhere writes the catalog,
//! which is listed, so a stale list can only cost a dbguard start, never a comparison.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The file name, inside the per-worktree git dir (`git rev-parse --git-dir`).
pub(crate) const WATCH_FILE: &str = "dbguard-watch";

/// First line; the shim ignores a file with any other (a future format).
pub(crate) const HEADER: &str = "dbguard-watch 2";

/// How far the file's mtime is set before the moment the databases were verified: the
/// kernel stamps files from a clock that may lag by a tick, and some shells compare
/// whole seconds.
const CLOCK_TICK: Duration = Duration::from_millis(10);

/// Write the watch file in `git_dir`, listing `paths` (a change starts dbguard) and
/// `appearing` (files that do not exist yet: their creation starts dbguard), as of
/// `verified_at`; with `verified_at` of `None` (something could not be vouched for),
/// remove it instead.
pub(crate) fn write(
    git_dir: &Path,
    paths: &[PathBuf],
    appearing: &[PathBuf],
    verified_at: Option<SystemTime>,
) -> io::Result<()> {
    let target = git_dir.join(WATCH_FILE);
    let mut text = format!("{HEADER}\n");
    let lines = paths
        .iter()
        .map(|path| ("", path))
        .chain(appearing.iter().map(|path| ("?", path)));
    for (prefix, path) in lines {
        // The shell reads one path per line, as text.
        match path.to_str() {
            Some(p) if path.is_absolute() && !p.contains('\n') => {
                text.push_str(prefix);
                text.push_str(p);
                text.push('\n');
            }
            _ => return remove(&target),
        }
    }
    let Some(verified_at) = verified_at else {
        return remove(&target);
    };
    let stamp = whole_second_before(verified_at);
    let staging = git_dir.join(format!("{WATCH_FILE}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&staging)?;
        file.write_all(text.as_bytes())?;
        file.set_modified(stamp)?;
        drop(file);
        fs::rename(&staging, &target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&staging);
        remove(&target)?;
    }
    result
}

/// Remove the watch file (every hook then starts dbguard); missing is fine.
pub(crate) fn remove(target: &Path) -> io::Result<()> {
    match fs::remove_file(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// One whole second before the whole second that holds `moment - CLOCK_TICK`: any file
/// written at or after `moment` is newer in whole seconds as well as in nanoseconds.
fn whole_second_before(moment: SystemTime) -> SystemTime {
    let since_epoch = moment
        .checked_sub(CLOCK_TICK)
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_is_a_whole_second_at_least_one_second_earlier() {
        let moment = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_005);
        // 5 ms into the second, minus the tick, is still in the previous second.
        assert_eq!(
            whole_second_before(moment),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_699_999_998)
        );
        let moment = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert_eq!(
            whole_second_before(moment),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_699_999_999)
        );
    }

    #[test]
    fn unverified_or_unreadable_lists_remove_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let catalog = dir.path().join("catalog.db");
        write(
            dir.path(),
            std::slice::from_ref(&db),
            std::slice::from_ref(&catalog),
            Some(SystemTime::now()),
        )
        .unwrap();
        let text = fs::read_to_string(dir.path().join(WATCH_FILE)).unwrap();
        assert_eq!(
            text,
            format!("{HEADER}\n{}\n?{}\n", db.display(), catalog.display())
        );
        write(dir.path(), &[db], &[], None).unwrap();
        assert!(!dir.path().join(WATCH_FILE).exists());

        let odd = dir.path().join("line\nbreak.db");
        write(dir.path(), &[], &[], Some(SystemTime::now())).unwrap();
        write(dir.path(), &[], &[odd], Some(SystemTime::now())).unwrap();
        assert!(!dir.path().join(WATCH_FILE).exists());
        write(
            dir.path(),
            &[PathBuf::from("relative.db")],
            &[],
            Some(SystemTime::now()),
        )
        .unwrap();
        assert!(!dir.path().join(WATCH_FILE).exists());
    }
}
