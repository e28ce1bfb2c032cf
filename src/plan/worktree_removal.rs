//! `git worktree remove [--force] <worktree>`: which linked worktree git deletes, with
//! every file in it (ignored and, with `--force`, untracked ones: databases among them).
//! git names it by path or by a unique trailing part of its path (`find_worktree` in
//! git's worktree.c: the suffix first, then the real path), so the worktree is found
//! here the same way, from `git worktree list --porcelain -z`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use super::query::{Git, check};
use super::{GitInvocation, PlanError};

/// The worktree argument of a `git worktree remove` invocation; `None` for any other
/// command, or an argv this does not read (an option it does not know).
fn removal_argument(invocation: &GitInvocation) -> Option<&OsString> {
    if invocation.subcommand.as_deref() != Some("worktree") || invocation.shell_alias.is_some() {
        return None;
    }
    let mut args = invocation.args.iter();
    if args.next()? != "remove" {
        return None;
    }
    let mut target = None;
    let mut options_done = false;
    for arg in args {
        match arg.to_str() {
            Some("-f" | "--force" | "-ff") if !options_done => {}
            Some("--") if !options_done => options_done = true,
            Some(option) if option.starts_with('-') && !options_done => return None,
            _ if target.is_some() => return None,
            _ => target = Some(arg),
        }
    }
    target
}

/// The linked worktree `invocation` (`git worktree remove …`) deletes, as git finds it;
/// `Ok(None)` for another command, or when git will find none (and refuse) or only the
/// main worktree (which it refuses to remove).
pub(crate) fn removed_worktree(invocation: &GitInvocation) -> Result<Option<PathBuf>, PlanError> {
    let Some(argument) = removal_argument(invocation) else {
        return Ok(None);
    };
    let git = Git::new(invocation);
    let args: Vec<OsString> = ["worktree", "list", "--porcelain", "-z"]
        .iter()
        .map(OsString::from)
        .collect();
    let listing = check(&git.dir, &args, git.raw(&args, false)?)?;
    let worktrees: Vec<PathBuf> = listing
        .split(|byte| *byte == 0)
        .filter_map(|line| line.strip_prefix(b"worktree "))
        .map(|path| PathBuf::from(std::ffi::OsStr::from_bytes(path)))
        .collect();
    let found = by_suffix(&worktrees, Path::new(argument)).or_else(|| {
        let wanted = std::fs::canonicalize(invocation.cwd.join(argument)).ok()?;
        worktrees
            .iter()
            .find(|path| std::fs::canonicalize(path).ok().as_deref() == Some(&wanted))
    });
    // The first one listed is the main worktree, which git never removes.
    Ok(found
        .filter(|path| Some(*path) != worktrees.first())
        .cloned())
}

/// The one worktree whose path ends with `suffix` at a directory boundary (git's
/// `find_worktree_by_suffix`); none when no path or more than one does.
fn by_suffix<'a>(worktrees: &'a [PathBuf], suffix: &Path) -> Option<&'a PathBuf> {
    let suffix = suffix.as_os_str().as_bytes();
    if suffix.is_empty() {
        return None;
    }
    let mut matching = worktrees.iter().filter(|path| {
        let path = path.as_os_str().as_bytes();
        path.len() >= suffix.len() && path.ends_with(suffix) && {
            let start = path.len() - suffix.len();
            start == 0 || path[start - 1] == b'/'
        }
    });
    let found = matching.next()?;
    matching.next().is_none().then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worktree_is_named_by_a_unique_trailing_part_of_its_path() {
        let worktrees: Vec<PathBuf> = ["/src/app", "/src/wt/abc/def/ghi", "/src/wt/abc/def/ggg"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let find = |suffix: &str| by_suffix(&worktrees, Path::new(suffix)).cloned();
        assert_eq!(find("ghi"), Some(PathBuf::from("/src/wt/abc/def/ghi")));
        assert_eq!(find("def/ghi"), Some(PathBuf::from("/src/wt/abc/def/ghi")));
        assert_eq!(find("def"), None, "not a whole trailing part");
        assert_eq!(find("hi"), None, "not at a directory boundary");
        assert_eq!(find(""), None);
    }
}
