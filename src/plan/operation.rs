//! A [`GitInvocation`] → [`Operation`]: what the command does, as far as the planner cares.
//!
//! Where git itself decides between a revision and a path, or guesses a remote branch,
//! the same questions go to git (read-only queries).

use std::ffi::OsString;

use super::PlanError;
use super::invocation::GitInvocation;
use super::options::{
    CHECKOUT, CLEAN, MERGE_OPTS, PULL_ONLY, Parsed, REBASE, RESET, RESTORE, RM, STASH_APPLY,
    STASH_PUSH, SWITCH, Spec, parse_opts, unsupported, utf8_args,
};
use super::query::{Git, query_globals};
use super::subcommands::is_risky_subcommand;

/// `git reset` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetMode {
    Soft,
    Mixed,
    Hard,
    Merge,
    Keep,
}

/// Where a multi-step command (merge, rebase) is in its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Start,
    Continue,
    Skip,
    Abort,
    Quit,
    /// `--edit-todo`, `--show-current-patch`: touches no file.
    Inspect,
}

/// What a `git stash` invocation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StashAction {
    /// `push`, `save`, or bare `git stash [options]`.
    Push,
    Pop,
    Apply,
    /// `git stash branch <name> [<stash>]`.
    Branch(String),
    /// list, show, drop, clear, create, store: no worktree change.
    Inspect,
}

/// The git operation an argv performs, as far as the planner cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    /// `checkout` or `switch` (`switch: true`).
    Checkout {
        /// The revision switched to, or the tree-ish paths are taken from (`-` already `@{-1}`).
        target: Option<String>,
        /// Pathspecs (path mode); empty for a branch switch.
        paths: Vec<String>,
        /// `-b/-B/-c/-C/--orphan <name>`.
        new_branch: Option<String>,
        force: bool,
        detach: bool,
        orphan: bool,
        /// `--no-overlay` (path mode also deletes tracked files the source lacks).
        no_overlay: bool,
        switch: bool,
    },
    Reset {
        mode: ResetMode,
        target: Option<String>,
        paths: Vec<String>,
    },
    Pull {
        remote: Option<String>,
        refspecs: Vec<String>,
        /// `Some` when given on the command line (`--rebase[=…]`, `--no-rebase`), else config decides.
        rebase: Option<bool>,
        /// `--all`.
        all: bool,
    },
    Merge {
        revs: Vec<String>,
        step: Step,
    },
    Rebase {
        upstream: Option<String>,
        onto: Option<String>,
        branch: Option<String>,
        keep_base: bool,
        root: bool,
        step: Step,
    },
    /// `clean`; `args` are the flags and pathspecs for the `git clean -n` dry run.
    Clean {
        args: Vec<String>,
    },
    Stash {
        action: StashAction,
        untracked: bool,
        all: bool,
        paths: Vec<String>,
        /// The stash entry for pop/apply/branch (`stash@{n}`), `None` = latest.
        stash: Option<String>,
    },
    Rm {
        cached: bool,
        dry_run: bool,
        paths: Vec<String>,
    },
    Restore {
        staged: bool,
        worktree: bool,
        source: Option<String>,
        paths: Vec<String>,
        no_overlay: bool,
    },
    /// A command that could touch files but cannot be understood (shell alias, unknown option…).
    Unknown {
        subcommand: String,
    },
    /// Everything else (status, log, commit, fetch, push…): git runs untouched.
    Other,
}

/// What `inv` does; [`Operation::Other`] for every subcommand the planner does not model.
pub(super) fn parse_operation(git: &Git, inv: &GitInvocation) -> Result<Operation, PlanError> {
    let Some(cmd) = inv.subcommand.as_deref() else {
        return Ok(Operation::Other);
    };
    if !is_risky_subcommand(cmd) {
        return Ok(Operation::Other);
    }
    let args = utf8_args(cmd, &inv.args)?;
    if matches!(args.first().map(String::as_str), Some("--help" | "-h")) {
        return Ok(Operation::Other);
    }
    match cmd {
        "checkout" => parse_checkout(git, &args),
        "switch" => parse_switch(git, &args),
        "reset" => parse_reset(git, &args),
        "pull" => parse_pull(&inv.args),
        "merge" => parse_merge(&args),
        "rebase" => parse_rebase(&args),
        "clean" => parse_clean(&args),
        "stash" => parse_stash(&args),
        "rm" => parse_rm(&args),
        "restore" => parse_restore(&args),
        _ => Ok(Operation::Other),
    }
}

/// Is `arg` a path git would accept as a pathspec (tracked, or present on disk)?
fn is_path(git: &Git, arg: &str) -> Result<bool, PlanError> {
    if git.dir.join(arg).symlink_metadata().is_ok() {
        return Ok(true);
    }
    Ok(!git.ls_files(&[], &[arg.to_owned()])?.is_empty())
}

/// `checkout <name>` of a missing local branch with a unique `<remote>/<name>` (`--guess`).
fn dwim_remote_branch(git: &Git, name: &str) -> Result<Option<String>, PlanError> {
    if name.contains(['*', '?', '[']) || name.starts_with('-') {
        return Ok(None);
    }
    let out = git.text([
        "for-each-ref".to_owned(),
        "--format=%(refname)".to_owned(),
        format!("refs/remotes/*/{name}"),
    ])?;
    let refs: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    match refs.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).to_owned())),
        many => {
            if let Some(remote) = git.config("checkout.defaultRemote")? {
                let want = format!("refs/remotes/{remote}/{name}");
                if many.contains(&want.as_str()) {
                    return Ok(Some(want));
                }
            }
            Err(PlanError::Unplannable(format!(
                "'{name}' matches several remote-tracking branches"
            )))
        }
    }
}

fn parse_checkout(git: &Git, args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("checkout", args, CHECKOUT)?;
    no_pathspec_file("checkout", &p)?;
    let orphan = p.value("orphan").is_some();
    let new_branch = p
        .value("b")
        .or(p.value("B"))
        .or(p.value("orphan"))
        .map(str::to_owned);
    let (target, paths) = match &p.after {
        Some(after) => {
            if p.before.len() > 1 {
                return Err(unsupported(
                    "checkout",
                    "only one reference expected before --",
                ));
            }
            (p.before.first().map(|r| dash_rev(r)), after.clone())
        }
        None => match p.before.split_first() {
            None => (None, Vec::new()),
            Some((first, rest)) => {
                let rev = dash_rev(first);
                // with -b/--detach the argument is a start point; otherwise a revision
                // (a tree-ish when paths follow) wins over a path, as in git
                if new_branch.is_some()
                    || p.has("detach")
                    || (rest.is_empty() && git.commit(&rev)?.is_some())
                    || (!rest.is_empty() && git.peel(&rev, "tree")?.is_some())
                {
                    (Some(rev), rest.to_vec())
                } else if rest.is_empty()
                    && p.flag(&["guess"]) != Some(false)
                    && let Some(remote) = dwim_remote_branch(git, first)?
                {
                    (Some(remote), Vec::new())
                } else if p.before.iter().all(|a| is_path(git, a).unwrap_or(true)) || p.has("patch")
                {
                    (None, p.before.clone())
                } else {
                    return Err(unsupported(
                        "checkout",
                        format_args!("'{first}' is neither a revision nor a known path"),
                    ));
                }
            }
        },
    };
    // `checkout -p` without a pathspec works on the whole tree
    let paths = if paths.is_empty() && p.has("patch") {
        vec![":/".to_owned()]
    } else {
        paths
    };
    Ok(Operation::Checkout {
        target,
        paths,
        new_branch,
        force: p.has("force"),
        detach: p.has("detach"),
        orphan,
        no_overlay: p.flag(&["overlay"]) == Some(false),
        switch: false,
    })
}

fn parse_switch(git: &Git, args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("switch", args, SWITCH)?;
    let pos = p.all_positional();
    if pos.len() > 1 {
        return Err(unsupported("switch", "too many arguments"));
    }
    let new_branch = p
        .value("create")
        .or(p.value("force-create"))
        .or(p.value("orphan"))
        .map(str::to_owned);
    let orphan = p.value("orphan").is_some();
    let mut target = pos.first().map(|r| dash_rev(r));
    if let Some(t) = &target
        && new_branch.is_none()
        && !p.has("detach")
        && git.commit(t)?.is_none()
        && p.flag(&["guess"]) != Some(false)
        && let Some(remote) = dwim_remote_branch(git, t)?
    {
        target = Some(remote);
    }
    if target.is_none() && new_branch.is_none() && !p.has("detach") {
        return Err(unsupported("switch", "missing branch or commit argument"));
    }
    Ok(Operation::Checkout {
        target,
        paths: Vec::new(),
        new_branch,
        force: p.has("force") || p.has("discard-changes"),
        detach: p.has("detach"),
        orphan,
        no_overlay: false,
        switch: true,
    })
}

fn parse_reset(git: &Git, args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("reset", args, RESET)?;
    no_pathspec_file("reset", &p)?;
    let mode = match p.last_of(&["soft", "mixed", "hard", "merge", "keep"]) {
        Some("soft") => ResetMode::Soft,
        Some("hard") => ResetMode::Hard,
        Some("merge") => ResetMode::Merge,
        Some("keep") => ResetMode::Keep,
        _ => ResetMode::Mixed,
    };
    let (target, paths) = match &p.after {
        Some(after) => {
            if p.before.len() > 1 {
                return Err(unsupported("reset", "only one revision expected before --"));
            }
            (p.before.first().cloned(), after.clone())
        }
        None => match p.before.split_first() {
            None => (None, Vec::new()),
            Some((first, rest)) => {
                if git.peel(first, "tree")?.is_some() {
                    (Some(first.clone()), rest.to_vec())
                } else if mode == ResetMode::Mixed
                    && p.before.iter().all(|a| is_path(git, a).unwrap_or(true))
                {
                    (None, p.before.clone())
                } else {
                    return Err(unsupported(
                        "reset",
                        format_args!("unknown revision '{first}'"),
                    ));
                }
            }
        },
    };
    Ok(Operation::Reset {
        mode,
        target,
        paths,
    })
}

fn parse_pull(args: &[OsString]) -> Result<Operation, PlanError> {
    let args = utf8_args("pull", args)?;
    let specs: Vec<Spec> = MERGE_OPTS
        .iter()
        .chain(PULL_ONLY)
        .filter(|s| {
            !matches!(
                s.name,
                "abort" | "quit" | "continue" | "message" | "file" | "into-name"
            )
        })
        .copied()
        .collect();
    let p = parse_opts("pull", &args, &specs)?;
    let pos = p.all_positional();
    let rebase = match p.opt_value("rebase") {
        None if p.flag(&["rebase"]) == Some(false) => Some(false),
        None => None,
        Some(None) => Some(true),
        Some(Some(v)) => Some(rebase_value(v)),
    };
    Ok(Operation::Pull {
        remote: pos.first().cloned(),
        refspecs: pos.get(1..).unwrap_or_default().to_vec(),
        rebase,
        all: p.has("all"),
    })
}

/// A `--rebase=<value>` or `pull.rebase` setting: true unless false-like (`merges`,
/// `interactive` rebase too).
pub(super) fn rebase_value(v: &str) -> bool {
    !matches!(
        v.to_ascii_lowercase().as_str(),
        "false" | "no" | "off" | "0" | ""
    )
}

/// Where in its sequence a merge or rebase command line is (`--continue`, `--abort`, …).
fn step_of(p: &Parsed) -> Step {
    let steps = [
        "continue",
        "skip",
        "abort",
        "quit",
        "edit-todo",
        "show-current-patch",
    ];
    match p.last_of(&steps) {
        Some("continue") => Step::Continue,
        Some("skip") => Step::Skip,
        Some("abort") => Step::Abort,
        Some("quit") => Step::Quit,
        Some(_) => Step::Inspect,
        None => Step::Start,
    }
}

fn parse_merge(args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("merge", args, MERGE_OPTS)?;
    Ok(Operation::Merge {
        revs: p.all_positional().iter().map(|r| dash_rev(r)).collect(),
        step: step_of(&p),
    })
}

fn parse_rebase(args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("rebase", args, REBASE)?;
    let pos = p.all_positional();
    if pos.len() > 2 {
        return Err(unsupported("rebase", "too many arguments"));
    }
    let root = p.has("root");
    let (upstream, branch) = if root {
        (None, pos.first().cloned())
    } else {
        (pos.first().map(|r| dash_rev(r)), pos.get(1).cloned())
    };
    Ok(Operation::Rebase {
        upstream,
        onto: p.value("onto").map(str::to_owned),
        branch,
        keep_base: p.has("keep-base"),
        root,
        step: step_of(&p),
    })
}

fn parse_clean(args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("clean", args, CLEAN)?;
    let mut out = Vec::new();
    for (name, neg, val) in &p.hits {
        if *neg {
            continue;
        }
        match (*name, val) {
            ("d", _) => out.push("-d".to_owned()),
            ("force", _) => out.push("-f".to_owned()),
            ("x", _) => out.push("-x".to_owned()),
            ("X", _) => out.push("-X".to_owned()),
            ("exclude", Some(v)) => out.push(format!("--exclude={v}")),
            _ => {}
        }
    }
    out.push("--".to_owned());
    out.extend(p.all_positional());
    Ok(Operation::Clean { args: out })
}

fn parse_stash(args: &[String]) -> Result<Operation, PlanError> {
    let (sub, rest) = match args.split_first() {
        Some((s, r)) if !s.starts_with('-') => (s.as_str(), r),
        _ => ("push", args),
    };
    let inspect = Operation::Stash {
        action: StashAction::Inspect,
        untracked: false,
        all: false,
        paths: Vec::new(),
        stash: None,
    };
    match sub {
        "push" | "save" => {
            let p = parse_opts("stash", rest, STASH_PUSH)?;
            no_pathspec_file("stash", &p)?;
            let all = p.has("all");
            // `save` takes a message, not pathspecs; bare `git stash -- paths` is push
            let paths = if sub == "save" {
                Vec::new()
            } else {
                p.all_positional()
            };
            Ok(Operation::Stash {
                action: StashAction::Push,
                untracked: p.has("include-untracked") || all,
                all,
                paths,
                stash: None,
            })
        }
        "pop" | "apply" | "branch" => {
            let p = parse_opts("stash", rest, STASH_APPLY)?;
            let mut pos = p.all_positional();
            let action = match sub {
                "pop" => StashAction::Pop,
                "apply" => StashAction::Apply,
                _ => {
                    if pos.is_empty() {
                        return Err(unsupported("stash", "branch needs a name"));
                    }
                    StashAction::Branch(pos.remove(0))
                }
            };
            if pos.len() > 1 {
                return Err(unsupported("stash", "too many arguments"));
            }
            let stash = pos.first().map(|s| {
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    format!("stash@{{{s}}}")
                } else {
                    s.clone()
                }
            });
            Ok(Operation::Stash {
                action,
                untracked: false,
                all: false,
                paths: Vec::new(),
                stash,
            })
        }
        "list" | "show" | "drop" | "clear" | "create" | "store" => Ok(inspect),
        other => Err(unsupported(
            "stash",
            format_args!("unknown subcommand '{other}'"),
        )),
    }
}

fn parse_rm(args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("rm", args, RM)?;
    no_pathspec_file("rm", &p)?;
    Ok(Operation::Rm {
        cached: p.has("cached"),
        dry_run: p.has("dry-run"),
        paths: p.all_positional(),
    })
}

fn parse_restore(args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("restore", args, RESTORE)?;
    no_pathspec_file("restore", &p)?;
    let staged = p.has("staged");
    let mut paths = p.all_positional();
    if paths.is_empty() && p.has("patch") {
        paths.push(":/".to_owned());
    }
    Ok(Operation::Restore {
        staged,
        worktree: p.has("worktree") || !staged,
        source: p.value("source").map(str::to_owned),
        paths,
        no_overlay: p.flag(&["overlay"]) != Some(true),
    })
}

/// The `git fetch` argv (after `git`, to run in `inv.cwd`) that a `git pull` invocation
/// performs first; empty when `inv` is not a pull.
pub(crate) fn pull_fetch_args(inv: &GitInvocation) -> Vec<OsString> {
    if inv.subcommand.as_deref() != Some("pull") {
        return Vec::new();
    }
    let mut out = query_globals(&inv.global);
    out.push("fetch".into());
    // unparsable: a plain fetch of the default remote still updates the upstream
    if let Ok(Operation::Pull {
        remote,
        refspecs,
        all,
        ..
    }) = parse_pull(&inv.args)
    {
        if all {
            out.push("--all".into());
        } else if let Some(r) = remote {
            out.push("--end-of-options".into());
            out.push(r.into());
            out.extend(refspecs.into_iter().map(OsString::from));
        }
    }
    out
}

/// `--pathspec-from-file` names paths the planner does not read: a fallback plan.
fn no_pathspec_file(cmd: &str, p: &Parsed) -> Result<(), PlanError> {
    if p.value("pathspec-from-file").is_some() {
        Err(unsupported(
            cmd,
            "--pathspec-from-file is not supported by the planner",
        ))
    } else {
        Ok(())
    }
}

/// `-` as a revision is the previous branch, as in git.
fn dash_rev(rev: &str) -> String {
    if rev == "-" {
        "@{-1}".into()
    } else {
        rev.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::plan::parse_invocation;
    use crate::plan::test_repo::os;

    #[test]
    fn parse_pull_and_fetch_args() {
        let inv = parse_invocation(
            &os("-c x=1 pull --rebase=false -q upstream main dev"),
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(
            parse_pull(&inv.args).unwrap(),
            Operation::Pull {
                remote: Some("upstream".into()),
                refspecs: vec!["main".into(), "dev".into()],
                rebase: Some(false),
                all: false,
            }
        );
        assert_eq!(
            pull_fetch_args(&inv),
            os("-c x=1 fetch --end-of-options upstream main dev")
        );
        let inv = parse_invocation(&os("pull -r"), Path::new("/w")).unwrap();
        assert!(matches!(
            parse_pull(&inv.args).unwrap(),
            Operation::Pull {
                rebase: Some(true),
                ..
            }
        ));
        assert_eq!(pull_fetch_args(&inv), os("fetch"));
        let inv = parse_invocation(&os("pull --no-rebase --all"), Path::new("/w")).unwrap();
        assert!(matches!(
            parse_pull(&inv.args).unwrap(),
            Operation::Pull {
                rebase: Some(false),
                all: true,
                ..
            }
        ));
        assert_eq!(pull_fetch_args(&inv), os("fetch --all"));
        let inv = parse_invocation(&os("status"), Path::new("/w")).unwrap();
        assert!(pull_fetch_args(&inv).is_empty());
    }
}
