//! Which git subcommands are what: git's builtins (never looked up as aliases), the ones
//! that can overwrite or delete worktree files and that the planner models, and the ones
//! the shell function from `dbguard init` sends straight to git.

/// Builtin git commands: git never looks these up as aliases.
#[rustfmt::skip]
pub(super) const BUILTINS: &[&str] = &[
    "add", "am", "annotate", "apply", "archive", "bisect", "blame", "branch", "bugreport", "bundle",
    "cat-file", "check-attr", "check-ignore", "check-mailmap", "check-ref-format", "checkout",
    "checkout-index", "cherry", "cherry-pick", "clean", "clone", "column", "commit", "commit-graph",
    "commit-tree", "config", "count-objects", "credential", "describe", "diagnose", "diff",
    "diff-files", "diff-index", "diff-tree", "difftool", "fast-export", "fast-import", "fetch",
    "fetch-pack", "fmt-merge-msg", "for-each-ref", "for-each-repo", "format-patch", "fsck",
    "fsmonitor--daemon", "gc", "grep", "hash-object", "help", "hook", "index-pack", "init",
    "interpret-trailers", "log", "ls-files", "ls-remote", "ls-tree", "mailinfo", "mailsplit",
    "maintenance", "merge", "merge-base", "merge-file", "merge-index", "merge-tree", "mktag",
    "mktree", "multi-pack-index", "mv", "name-rev", "notes", "pack-objects", "pack-refs",
    "patch-id", "prune", "prune-packed", "pull", "push", "range-diff", "read-tree", "rebase",
    "receive-pack", "reflog", "refs", "remote", "repack", "replace", "replay", "rerere", "reset",
    "restore", "rev-list", "rev-parse", "revert", "rm", "send-pack", "shortlog", "show",
    "show-branch", "show-index", "show-ref", "sparse-checkout", "stash", "status", "stripspace",
    "submodule", "switch", "symbolic-ref", "tag", "unpack-file", "unpack-objects", "update-index",
    "update-ref", "update-server-info", "upload-archive", "upload-pack", "var", "verify-commit",
    "verify-pack", "verify-tag", "version", "whatchanged", "worktree", "write-tree",
];

/// Subcommands that can overwrite or delete worktree files and that [`plan`](super::plan)
/// models; the guard runs every other subcommand untouched.
const PLANNED_SUBCOMMANDS: &[&str] = &[
    "checkout", "switch", "reset", "pull", "merge", "rebase", "clean", "stash", "rm", "restore",
];

/// Subcommands that can overwrite or delete worktree files and that [`plan`](super::plan) models.
pub(crate) fn is_risky_subcommand(name: &str) -> bool {
    PLANNED_SUBCOMMANDS.contains(&name)
}

/// Subcommands that can overwrite worktree files (an ignored database at a path the
/// commit brings, `-f`) but that the planner does not model: every database is
/// snapshotted before them.
const UNPLANNED_WRITERS: &[&str] = &[
    "cherry-pick",
    "revert",
    "am",
    "apply",
    "read-tree",
    "checkout-index",
    "sparse-checkout",
    "mv",
    "bisect",
];

/// Whether `name` may write worktree files without the planner knowing which.
pub(crate) fn writes_unplanned(name: &str) -> bool {
    UNPLANNED_WRITERS.contains(&name)
}

/// Subcommands the shell function from `dbguard init` sends straight to git, sparing a
/// dbguard process: `dbguard git` would run each of them untouched anyway (none is
/// planned or an unplanned writer; a test holds the two lists apart). `submodule`
/// writes only another repository's files; `worktree` goes through `dbguard git` for
/// `worktree remove`, which deletes a whole worktree. Everything else
/// (aliases and external commands too) goes through `dbguard git`.
#[rustfmt::skip]
pub(crate) const PASS_THROUGH_SUBCOMMANDS: &[&str] = &[
    "status", "log", "diff", "show", "add", "commit", "push", "fetch", "branch", "tag", "remote",
    "config", "blame", "grep", "describe", "shortlog", "reflog", "help", "version", "ls-files",
    "ls-tree", "rev-parse", "cat-file", "show-ref", "for-each-ref", "notes",
    "cherry", "format-patch", "gc", "fsck", "init", "clone", "submodule", "lfs",
];

/// Every subcommand `dbguard git` snapshots before: the planned ones and the writers it
/// does not plan. The shell function sends each of them through `dbguard git` (its
/// tests hold one case per name).
#[cfg(test)]
pub(crate) fn guarded_subcommands() -> impl Iterator<Item = &'static str> {
    PLANNED_SUBCOMMANDS.iter().chain(UNPLANNED_WRITERS).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_the_guard_snapshots_for_bypasses_it() {
        for name in PASS_THROUGH_SUBCOMMANDS {
            assert!(
                !is_risky_subcommand(name) && !writes_unplanned(name),
                "{name} is guarded by `dbguard git` but the shell function passes it through"
            );
        }
        for name in PLANNED_SUBCOMMANDS.iter().chain(UNPLANNED_WRITERS) {
            assert!(BUILTINS.contains(name), "{name} is not a git builtin");
        }
    }

    #[test]
    fn the_fsmonitor_hook_skips_no_subcommand_the_planner_models() {
        for name in crate::fsmonitor::classify::READ_ONLY {
            assert!(
                !is_risky_subcommand(name),
                "{name} is planned but read-only"
            );
            assert!(BUILTINS.contains(name), "{name} is not a git builtin");
        }
    }
}
