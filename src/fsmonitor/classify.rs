//! Whether a git command line can write the working tree, decided from its words alone
//! so that the hook of a `git status` starts no second process. Only commands known to
//! leave the worktree alone are [`Class::ReadOnly`]; everything else (aliases, external
//! commands, anything new) goes to dbguard's planner, which reads aliases and options.

use std::ffi::OsString;

/// What the hook does for a git command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Never writes worktree files: answer only.
    ReadOnly,
    /// Writes only through an internal git child that calls the hook again before it
    /// writes (`pull` fetches first, then runs `merge` or `rebase`): decide there, when
    /// what the merge brings is known.
    Deferred,
    /// May write: ask dbguard's planner (before answering).
    Plan,
}

/// Builtins that never write a worktree file. Kept short on purpose: a command missing
/// here costs a planner run, a command wrongly here costs a database.
#[rustfmt::skip]
pub(crate) const READ_ONLY: &[&str] = &[
    "add", "blame", "branch", "cat-file", "check-attr", "check-ignore", "check-mailmap",
    "check-ref-format", "cherry", "commit", "commit-graph", "commit-tree", "config",
    "count-objects", "describe", "diff", "diff-files", "diff-index", "diff-tree", "fetch",
    "for-each-ref", "format-patch", "fsck", "gc", "grep", "hash-object", "help", "log",
    "ls-files", "ls-remote", "ls-tree", "maintenance", "merge-base", "merge-tree", "mktree",
    "multi-pack-index", "name-rev", "notes", "pack-objects", "pack-refs", "prune", "push",
    "range-diff", "reflog", "remote", "repack", "rev-list", "rev-parse", "shortlog", "show",
    "show-branch", "show-ref", "status", "symbolic-ref", "tag", "update-index", "update-ref",
    "var", "verify-commit", "verify-pack", "verify-tag", "version", "whatchanged",
    "write-tree",
];

/// git's global options that take the next word as their value (git.c's
/// `handle_options`). The planner's parser reads its table from here too
/// (`plan/invocation.rs`), so the hook and the planner agree on where the subcommand
/// is: `git --attr-source log reset --hard` runs `reset`, not `log`.
pub(crate) const GLOBAL_WITH_VALUE: &[&str] = &[
    "-C",
    "-c",
    "--config-env",
    "--git-dir",
    "--work-tree",
    "--namespace",
    "--super-prefix",
    "--attr-source",
];

/// The subcommand of `git <args>`: the first word after the global options; `Err` for
/// one that is not UTF-8.
fn subcommand(args: &[OsString]) -> Result<Option<&str>, ()> {
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let word = word.to_str().ok_or(())?;
        if GLOBAL_WITH_VALUE.contains(&word) {
            words.next();
            continue;
        }
        if word.starts_with('-') {
            continue;
        }
        return Ok(Some(word));
    }
    Ok(None)
}

/// The class of `git <args>`.
pub(crate) fn classify(args: &[OsString]) -> Class {
    match subcommand(args) {
        Err(()) => Class::Plan,
        Ok(Some("pull")) => Class::Deferred,
        Ok(Some(word)) if READ_ONLY.contains(&word) => Class::ReadOnly,
        Ok(Some(_)) => Class::Plan,
        // `git --version`, `git -C dir` alone: no subcommand runs.
        Ok(None) => Class::ReadOnly,
    }
}

/// Whether git must get "everything may have changed" (`/`) even from an exact monitor:
/// `git mv` and `git rm` trust fsmonitor-valid entries they themselves changed. `mv` or
/// `rm` of a submodule rewrites `.gitmodules` and then stages it only when its stat data
/// looks changed, which a valid entry never does, so the commit records the move without
/// it; `mv -f` over a tracked file keeps the old entry's stat data. (git's own bugs with
/// any exact monitor; a fix posted in 2018 was never merged.) Both commands rewrite the
/// index anyway, so `/` costs them one lstat per entry.
pub(crate) fn needs_full_answer(args: &[OsString]) -> bool {
    matches!(subcommand(args), Ok(Some("mv" | "rm")))
}

/// The check `git worktree remove` (without `--force`) runs in the worktree it is about
/// to delete (`check_clean_worktree`: `git status --porcelain --ignore-submodules=none`).
/// "Clean" there means no tracked change and no untracked file: ignored files, the
/// usual place of a database, are deleted with the worktree without a word. This
/// status is the last git that reads that worktree's index, so its hook call is where
/// they can be saved.
const WORKTREE_REMOVAL_CHECK: [&str; 3] = ["status", "--porcelain", "--ignore-submodules=none"];

/// Whether a hook call from the git `nearest` (of the command `operation`) is `git
/// worktree remove`'s check of this worktree, which it deletes next.
pub(crate) fn checks_worktree_before_removal(nearest: &[OsString], operation: &[OsString]) -> bool {
    may_check_worktree_before_removal(nearest) && removes_worktree(operation)
}

/// Whether `git <args>` is `git worktree remove …`.
pub(crate) fn removes_worktree(args: &[OsString]) -> bool {
    matches!(subcommand(args), Ok(Some("worktree")))
        && args
            .windows(2)
            .any(|pair| pair[0] == "worktree" && pair[1] == "remove")
}

/// Whether a hook call from `nearest` may be `git worktree remove`'s check (then the
/// command above it is worth reading; see [`checks_worktree_before_removal`]).
pub(crate) fn may_check_worktree_before_removal(nearest: &[OsString]) -> bool {
    nearest.len() == WORKTREE_REMOVAL_CHECK.len()
        && nearest
            .iter()
            .zip(WORKTREE_REMOVAL_CHECK)
            .all(|(word, check)| word == check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worktree_removal_is_recognised_by_its_status_check_under_worktree_remove() {
        let words =
            |line: &str| -> Vec<OsString> { line.split_whitespace().map(OsString::from).collect() };
        let check = words("status --porcelain --ignore-submodules=none");
        assert!(may_check_worktree_before_removal(&check));
        for operation in [
            "worktree remove ../linked",
            "-C /repo worktree remove --force ../linked",
        ] {
            assert!(
                checks_worktree_before_removal(&check, &words(operation)),
                "{operation}"
            );
        }
        for operation in ["worktree list", "status --porcelain", "log worktree remove"] {
            assert!(
                !checks_worktree_before_removal(&check, &words(operation)),
                "{operation}"
            );
        }
        assert!(!may_check_worktree_before_removal(&words(
            "status --porcelain"
        )));
        assert!(!checks_worktree_before_removal(
            &words("status"),
            &words("worktree remove ../linked")
        ));
    }

    fn class(line: &str) -> Class {
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        classify(&args)
    }

    #[test]
    fn reads_the_subcommand_after_global_options() {
        assert_eq!(class("status --porcelain"), Class::ReadOnly);
        assert_eq!(class("-c core.quotepath=off -C sub diff"), Class::ReadOnly);
        assert_eq!(class("--no-optional-locks status"), Class::ReadOnly);
        assert_eq!(class("-c status.x=y reset --hard"), Class::Plan);
        assert_eq!(class("-C status checkout other"), Class::Plan);
        assert_eq!(class("--git-dir .git clean -fdx"), Class::Plan);
        assert_eq!(class("pull --rebase"), Class::Deferred);
        assert_eq!(
            class("co other"),
            Class::Plan,
            "an alias goes to the planner"
        );
        assert_eq!(class("stash drop"), Class::Plan);
        assert_eq!(class("--version"), Class::ReadOnly);
        // A value that names a read-only command is a value, not the subcommand.
        assert_eq!(class("--attr-source log reset --hard"), Class::Plan);
        assert_eq!(class("--config-env status=HOME clean -fdx"), Class::Plan);
        assert_eq!(class("--super-prefix log/ checkout -f"), Class::Plan);
        assert_eq!(class("--attr-source=log reset --hard"), Class::Plan);
    }

    #[test]
    fn mv_and_rm_get_the_full_answer_and_nothing_else_does() {
        let full = |line: &str| {
            let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
            needs_full_answer(&args)
        };
        assert!(full("mv sub moved"));
        assert!(full("-C dir rm -r sub"));
        assert!(full("-c core.x=y mv -f a b"));
        assert!(!full("status"));
        assert!(!full("-C mv status"));
        assert!(!full("commit -m mv"));
    }
}
