//! The hook's fast path for the commonest writing command, a branch switch:
//! `git checkout <branch>`, `git switch <branch>`, and their `-b`/`-c` forms. A switch
//! writes only the paths whose entries differ between HEAD's tree and the target's: git's
//! two-way merge keeps every other index entry and worktree file as it is (and refuses,
//! without `-f`, to overwrite a differing path that has local changes). So when none of
//! those paths touches a known database ([`Known::touched_by`]), dbguard's planner need
//! not start. Any other form, option or doubt (submodules, a sparse checkout, a target
//! git cannot resolve here, git failing) goes to the planner.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use super::known_databases::Known;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Switch<'a> {
    /// A new branch at HEAD (`checkout -b new`, `switch -c new`): no file changes.
    NewBranchAtHead,
    /// The worktree of this commit (a branch, tag, commit id, `HEAD~2`, …).
    To(&'a str),
}

/// Whether the git command `args` (after `git`) is a branch switch that surely writes no
/// path of `known`.
pub(crate) fn touches_none(
    worktree: &Path,
    git_dir: &Path,
    args: &[OsString],
    known: &Known,
) -> bool {
    let Some(switch) = parse(args) else {
        return false;
    };
    // `submodule.recurse` would take the switch into submodules, whose databases the
    // record does not list; a sparse checkout also adds and removes paths by its patterns.
    if worktree.join(".gitmodules").exists() || git_dir.join("info/sparse-checkout").exists() {
        return false;
    }
    match switch {
        Switch::NewBranchAtHead => true,
        Switch::To(target) => changed_paths(worktree, target)
            .is_some_and(|paths| paths.iter().all(|path| !known.touched_by(path))),
    }
}

/// The switch `args` asks for; `None` for anything else. No global options (`-c` may
/// change how git checks out), no pathspec, no option but `-q`.
fn parse(args: &[OsString]) -> Option<Switch<'_>> {
    let words: Vec<&str> = args.iter().map(|arg| arg.to_str()).collect::<Option<_>>()?;
    let (command, rest) = words.split_first()?;
    let creating: &[&str] = match *command {
        "checkout" => &["-b", "-B"],
        "switch" => &["-c", "-C", "--create", "--force-create"],
        _ => return None,
    };
    let mut new_branch = false;
    let mut operands = Vec::new();
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        match *word {
            "-q" | "--quiet" => {}
            option if creating.contains(&option) && !new_branch => {
                words.next()?;
                new_branch = true;
            }
            // `-`, `--`, `-f`, `--detach`, `--orphan`, `-m`, `--recurse-submodules`, …
            option if option.starts_with('-') => return None,
            operand => operands.push(operand),
        }
    }
    match (new_branch, operands.as_slice()) {
        (true, []) => Some(Switch::NewBranchAtHead),
        // `A...B` is a merge base to checkout, a range to diff-tree.
        (_, [target]) if !target.contains("..") => Some(Switch::To(target)),
        _ => None,
    }
}

/// The paths that differ between HEAD and what `git checkout <target>` checks out.
/// checkout takes `refs/heads/<target>` when that branch exists, else the usual
/// resolution (which would prefer a tag of the same name): tried in that order.
fn changed_paths(worktree: &Path, target: &str) -> Option<Vec<Vec<u8>>> {
    let plain_name = target
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"/._-".contains(&byte));
    let branch = plain_name
        .then(|| diff_tree(worktree, &format!("refs/heads/{target}")))
        .flatten();
    branch.or_else(|| diff_tree(worktree, &format!("{target}^{{commit}}")))
}

/// `git diff-tree -r --name-only HEAD <commit>`; `None` when git fails (an unborn HEAD,
/// a name that is no commit).
fn diff_tree(worktree: &Path, commit: &str) -> Option<Vec<Vec<u8>>> {
    let output = Command::new("git")
        .args([
            "-c",
            "core.fsmonitor=false",
            "diff-tree",
            "-r",
            "-z",
            "--name-only",
        ])
        .args([
            "--no-renames",
            "--no-textconv",
            "--no-ext-diff",
            "HEAD",
            commit,
            "--",
        ])
        .env("GIT_OPTIONAL_LOCKS", "0")
        .current_dir(worktree)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output.status.success().then(|| {
        output
            .stdout
            .split(|byte| *byte == 0)
            .filter(|path| !path.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `git <line>` asks for, as text.
    fn parsed(line: &str) -> Option<String> {
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        parse(&args).map(|switch| match switch {
            Switch::NewBranchAtHead => "new branch at HEAD".to_string(),
            Switch::To(target) => format!("to {target}"),
        })
    }

    #[test]
    fn only_plain_switches_are_read() {
        assert_eq!(parsed("checkout other"), Some("to other".into()));
        assert_eq!(parsed("switch -q other"), Some("to other".into()));
        assert_eq!(parsed("checkout HEAD~2"), Some("to HEAD~2".into()));
        assert_eq!(parsed("checkout -b new"), Some("new branch at HEAD".into()));
        assert_eq!(parsed("switch -c new"), Some("new branch at HEAD".into()));
        assert_eq!(parsed("checkout -B new main"), Some("to main".into()));
        assert_eq!(parsed("switch --create new v1"), Some("to v1".into()));
        for other in [
            "checkout",
            "checkout -",
            "checkout -f other",
            "checkout other -- app.db",
            "checkout -- app.db",
            "checkout other app.db",
            "checkout --detach other",
            "checkout -m other",
            "checkout --orphan new",
            "checkout -b new -b newer",
            "checkout a...b",
            "switch -c new --discard-changes",
            "switch --recurse-submodules other",
            "restore app.db",
            "reset --hard",
            "-C sub checkout other",
            "-c core.sparseCheckout=true checkout other",
            "co other",
        ] {
            assert_eq!(parsed(other), None, "{other}");
        }
    }
}
