//! An [`Operation`] → the databases at risk: what git would write, delete or throw away,
//! asked of git itself (tree diffs, `status`, `merge-tree --write-tree`, `clean -n`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::databases::{DbSet, Risk, normalize};
use super::operation::{Operation, ResetMode, StashAction, Step, rebase_value};
use super::query::{
    Git, bytes_to_path, parse_merge_tree, parse_name_status, split_z, to_os, unquote_c,
};
use super::{PlanError, RiskReason};

/// Add to `risk` the databases `op` would overwrite, delete or throw away.
pub(super) fn assess(
    git: &Git,
    op: &Operation,
    worktree_root: &Path,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    match op {
        Operation::Checkout {
            target,
            paths,
            no_overlay,
            ..
        } if !paths.is_empty() => {
            restore_paths(git, target.as_deref(), paths, *no_overlay, dbs, risk)
        }
        Operation::Checkout {
            target,
            force,
            orphan,
            switch,
            ..
        } => {
            let to_empty_tree = *orphan && *switch;
            switch_to(git, target.as_deref(), *force, to_empty_tree, dbs, risk)
        }
        Operation::Reset {
            mode,
            target,
            paths,
        } => {
            if !paths.is_empty() || matches!(mode, ResetMode::Soft | ResetMode::Mixed) {
                return Ok(());
            }
            reset_worktree(git, *mode, target.as_deref(), dbs, risk)
        }
        Operation::Pull {
            remote,
            refspecs,
            rebase,
            ..
        } => pull(git, remote.as_deref(), refspecs, *rebase, dbs, risk),
        Operation::Merge { revs, step } => match step {
            Step::Start => merge(git, revs, dbs, risk),
            Step::Abort => discard_modified(git, dbs, risk),
            _ => Ok(()),
        },
        Operation::Rebase { step, .. } if *step != Step::Start => {
            rebase_step(git, *step, dbs, risk)
        }
        Operation::Rebase {
            upstream,
            onto,
            branch,
            keep_base,
            root,
            ..
        } => {
            let upstream = match (upstream, root) {
                (Some(u), _) => Some(u.as_str()),
                (None, false) => Some("@{upstream}"),
                (None, true) => None,
            };
            let (onto, branch) = (onto.as_deref(), branch.as_deref());
            rebase(git, upstream, onto, branch, *keep_base, dbs, risk)
        }
        Operation::Clean { args } => clean(git, worktree_root, args, dbs, risk),
        Operation::Stash {
            action: StashAction::Push,
            untracked,
            all,
            paths,
            ..
        } => stash_push(git, paths, *untracked, *all, dbs, risk),
        Operation::Stash {
            action: StashAction::Inspect,
            ..
        } => Ok(()),
        Operation::Stash { action, stash, .. } => {
            let branch = matches!(action, StashAction::Branch(_));
            stash_apply(git, stash.as_deref(), branch, dbs, risk)
        }
        Operation::Rm {
            cached: false,
            dry_run: false,
            paths,
        } => remove(git, paths, dbs, risk),
        Operation::Restore {
            staged,
            worktree: true,
            source,
            paths,
            no_overlay,
        } if !paths.is_empty() => {
            let source = restore_source(source.as_deref(), *staged);
            restore_paths(git, source, paths, *no_overlay, dbs, risk)
        }
        Operation::Rm { .. } | Operation::Restore { .. } | Operation::Other => Ok(()),
        Operation::Unknown { subcommand } => Err(PlanError::Unplannable(format!(
            "unknown command '{subcommand}'"
        ))),
    }
}

/// A rebase in progress: `--abort` returns to where it started, `--continue`/`--skip`
/// replay commits nobody can predict, `--quit` and the inspecting steps touch no file.
fn rebase_step(git: &Git, step: Step, dbs: &DbSet, risk: &mut Risk) -> Result<(), PlanError> {
    match step {
        Step::Abort => abort_rebase(git, dbs, risk),
        Step::Continue | Step::Skip => Err(PlanError::Unplannable(
            "rebase --continue/--skip replays commits dbguard cannot predict".into(),
        )),
        Step::Start | Step::Quit | Step::Inspect => Ok(()),
    }
}

/// `rm <paths>` (not `--cached`, not `-n`): the tracked databases under the paths go.
fn remove(git: &Git, paths: &[String], dbs: &DbSet, risk: &mut Risk) -> Result<(), PlanError> {
    if !paths.is_empty() {
        let tracked = git.ls_files(&[], paths)?;
        risk.add_exact(dbs, &tracked, RiskReason::Removed);
    }
    Ok(())
}

/// Where `restore` takes the files from: the source, else HEAD with `--staged`, else the index.
fn restore_source(source: Option<&str>, staged: bool) -> Option<&str> {
    match (source, staged) {
        (Some(s), _) => Some(s),
        (None, true) => Some("HEAD"),
        (None, false) => None,
    }
}

/// Tracked databases with local modifications are thrown away (`--force`, `--abort`).
fn discard_modified(git: &Git, dbs: &DbSet, risk: &mut Risk) -> Result<(), PlanError> {
    let modified = git.modified_tracked(&[])?;
    risk.add_exact(dbs, modified.iter().map(|e| &e.path), RiskReason::Discarded);
    Ok(())
}

/// `checkout`/`switch` to `target` (`to_empty_tree`: `switch --orphan`).
fn switch_to(
    git: &Git,
    target: Option<&str>,
    force: bool,
    to_empty_tree: bool,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    if force {
        discard_modified(git, dbs, risk)?;
    }
    let head = git.head_tree()?;
    let to = match target {
        _ if to_empty_tree => git.empty_tree()?,
        None => return Ok(()),
        Some(t) => git.must_checkout_commit(t)?,
    };
    risk.add_changes(dbs, &git.diff_trees(&head, &to)?);
    Ok(())
}

/// `reset --hard/--merge/--keep [<target>]`: the worktree becomes the target's tree.
fn reset_worktree(
    git: &Git,
    mode: ResetMode,
    target: Option<&str>,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    let to = match target {
        Some(t) => git.must_tree(t)?,
        None => git.head_tree()?,
    };
    let modified = git.modified_tracked(&[])?;
    let discarded = modified.iter().filter(|e| match mode {
        ResetMode::Hard => true,
        ResetMode::Merge => e.x != b' ',
        _ => false,
    });
    risk.add_exact(dbs, discarded.map(|e| &e.path), RiskReason::Discarded);
    risk.add_changes(dbs, &git.diff_trees(&git.head_tree()?, &to)?);
    Ok(())
}

/// `pull`: merging (or rebasing onto) each upstream it would merge.
fn pull(
    git: &Git,
    remote: Option<&str>,
    refspecs: &[String],
    rebase: Option<bool>,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    let rebase = match rebase {
        Some(r) => r,
        None => pull_rebase_config(git)?,
    };
    for up in pull_upstreams(git, remote, refspecs)? {
        merge_like(git, "HEAD", &up, rebase, dbs, risk)?;
    }
    Ok(())
}

/// `merge [<rev>…]` (the upstream when none is given).
fn merge(git: &Git, revs: &[String], dbs: &DbSet, risk: &mut Risk) -> Result<(), PlanError> {
    let revs = if revs.is_empty() {
        vec!["@{upstream}".to_owned()]
    } else {
        revs.to_vec()
    };
    for r in &revs {
        let c = git.must_commit(r)?;
        merge_like(git, "HEAD", &c, false, dbs, risk)?;
    }
    Ok(())
}

/// `rebase [--onto <onto>] [<upstream> [<branch>]]`; `upstream` is `None` for `--root`.
fn rebase(
    git: &Git,
    upstream: Option<&str>,
    onto: Option<&str>,
    branch: Option<&str>,
    keep_base: bool,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    let head = git.head_tree()?;
    let ours = match branch {
        Some(b) => {
            // the branch is checked out first, by its branch ref as checkout does
            let c = git.must_checkout_commit(b)?;
            risk.add_changes(dbs, &git.diff_trees(&head, &c)?);
            c
        }
        None => git.must_commit("HEAD")?,
    };
    let upstream = upstream.map(|u| git.must_commit(u)).transpose()?;
    let onto = match (onto, upstream) {
        (Some(o), _) => git.must_commit(o)?,
        (None, Some(u)) if keep_base => git.text(["merge-base", u.as_str(), ours.as_str()])?,
        (None, Some(u)) => u,
        (None, None) => return Ok(()),
    };
    merge_like(git, &ours, &onto, true, dbs, risk)
}

/// `rebase --abort`: local changes go, and the worktree returns to where the rebase started.
fn abort_rebase(git: &Git, dbs: &DbSet, risk: &mut Risk) -> Result<(), PlanError> {
    discard_modified(git, dbs, risk)?;
    if let Some(orig) = git.rebase_orig_head()? {
        risk.add_changes(dbs, &git.diff_trees(&git.head_tree()?, &orig)?);
    }
    Ok(())
}

/// `stash push [-u | -a] [-- <paths>]`: modified tracked databases (and untracked or ignored
/// ones) go into the stash.
fn stash_push(
    git: &Git,
    paths: &[String],
    untracked: bool,
    all: bool,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    let modified = git.modified_tracked(paths)?;
    risk.add_exact(dbs, modified.iter().map(|e| &e.path), RiskReason::Stashed);
    if untracked {
        if paths.is_empty() {
            // The listing below is limited to known databases: learn the
            // excluded ones first.
            dbs.discover(Path::new(""));
        }
        let u = git.untracked(paths, all, dbs)?;
        risk.add_exact(dbs, &u, RiskReason::Stashed);
    }
    Ok(())
}

/// `stash pop/apply/branch [<stash>]`: what the stash holds is written back, untracked
/// files included; `branch` first checks out the commit the stash was made on.
fn stash_apply(
    git: &Git,
    stash: Option<&str>,
    branch: bool,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    let commit = git.must_commit(stash.unwrap_or("stash@{0}"))?;
    let base = git.must_commit(&format!("{commit}^1"))?;
    if branch {
        risk.add_changes(dbs, &git.diff_trees(&git.head_tree()?, &base)?);
    }
    risk.add_changes(dbs, &git.diff_trees(&base, &commit)?);
    if let Some(u) = git.commit(&format!("{commit}^3"))? {
        let files = git.bytes([
            "ls-tree",
            "-r",
            "-z",
            "--name-only",
            "--full-tree",
            u.as_str(),
        ])?;
        let files: Vec<PathBuf> = split_z(&files).map(bytes_to_path).collect();
        risk.add_exact(dbs, &files, RiskReason::Overwritten);
    }
    Ok(())
}

/// Writing `paths` from `source` (a tree-ish) or from the index (`None`) into the worktree.
fn restore_paths(
    git: &Git,
    source: Option<&str>,
    paths: &[String],
    no_overlay: bool,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    let mut args = to_os(["-z", "--name-status", "--no-renames"]);
    let changes = match source {
        Some(s) => {
            let tree = git.must_tree(s)?;
            args.insert(0, "diff-index".into());
            args.push(tree.into());
            args.push("--".into());
            args.extend(paths.iter().map(OsString::from));
            // `A`: present locally, absent from the source (removed only without overlay)
            parse_name_status(&git.bytes(args)?, |st| match st.chars().next() {
                Some('A') if no_overlay => Some(RiskReason::Deleted),
                Some('A') => None,
                _ => Some(RiskReason::Overwritten),
            })
        }
        None => {
            args.insert(0, "diff-files".into());
            args.push("--".into());
            args.extend(paths.iter().map(OsString::from));
            parse_name_status(&git.bytes(args)?, |_| Some(RiskReason::Discarded))
        }
    };
    for (p, why) in &changes {
        risk.add_exact(dbs, std::iter::once(p), *why);
    }
    Ok(())
}

/// Merging (or rebasing onto) `theirs` into `ours`, seen from the current HEAD + worktree.
fn merge_like(
    git: &Git,
    ours: &str,
    theirs: &str,
    rebase: bool,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    let head = git.head_tree()?;
    let Some(ours_c) = git.commit(ours)? else {
        // unborn branch: pulling into it checks `theirs` out
        risk.add_changes(dbs, &git.diff_trees(&head, theirs)?);
        return Ok(());
    };
    if ours != "HEAD" {
        risk.add_changes(dbs, &git.diff_trees(&head, &ours_c)?);
    }
    if git.is_ancestor(theirs, &ours_c)? {
        return Ok(()); // already up to date
    }
    if rebase || git.is_ancestor(&ours_c, theirs)? {
        // fast-forward, or a rebase: the worktree passes through `theirs`
        risk.add_changes(dbs, &git.diff_trees(&head, theirs)?);
        if !rebase {
            return Ok(());
        }
    }
    let out = git.raw(
        &to_os([
            "merge-tree",
            "--write-tree",
            "-z",
            "--name-only",
            "--allow-unrelated-histories",
            &ours_c,
            theirs,
        ]),
        false,
    )?;
    match (out.status.code(), parse_merge_tree(&out.stdout)) {
        (Some(0 | 1), Some((tree, conflicts))) => {
            risk.add_changes(dbs, &git.diff_trees(&head, &tree)?);
            risk.add_exact(dbs, &conflicts, RiskReason::Overwritten);
        }
        // old git without merge-tree --write-tree: every path that differs is a candidate
        _ => risk.add_changes(dbs, &git.diff_trees(&head, theirs)?),
    }
    Ok(())
}

/// `branch.<b>.rebase`, else `pull.rebase`; default merge.
fn pull_rebase_config(git: &Git) -> Result<bool, PlanError> {
    if let Some(b) = git.current_branch()?
        && let Some(v) = git.config(&format!("branch.{b}.rebase"))?
    {
        return Ok(rebase_value(&v));
    }
    Ok(git.config("pull.rebase")?.is_some_and(|v| rebase_value(&v)))
}

/// The commits a pull merges: `@{upstream}`, or the given refspecs' remote-tracking refs
/// (or `FETCH_HEAD`'s merge heads).
fn pull_upstreams(
    git: &Git,
    remote: Option<&str>,
    refspecs: &[String],
) -> Result<Vec<String>, PlanError> {
    if refspecs.is_empty() {
        return Ok(vec![git.must_commit("@{upstream}")?]);
    }
    let remote = remote.unwrap_or("origin");
    let mut out = Vec::new();
    let mut missing = false;
    for spec in refspecs {
        let src = spec.trim_start_matches('+');
        let src = src.split_once(':').map_or(src, |(s, _)| s);
        let short = src.strip_prefix("refs/heads/").unwrap_or(src);
        let candidates = [format!("refs/remotes/{remote}/{short}"), src.to_owned()];
        let mut found = None;
        for c in &candidates {
            if let Some(id) = git.commit(c)? {
                found = Some(id);
                break;
            }
        }
        match found {
            Some(id) => out.push(id),
            None => missing = true,
        }
    }
    if missing {
        // the caller ran `git fetch <remote> <refspec>…`: FETCH_HEAD lists what to merge
        out.extend(git.fetch_head_merges()?);
    }
    if out.is_empty() {
        return Err(PlanError::Unplannable(format!(
            "cannot tell which commit `git pull {remote} {}` merges",
            refspecs.join(" ")
        )));
    }
    Ok(out)
}

/// `git clean -n` with the same flags: `Would remove <path>` lines, relative to the cwd.
fn clean(
    git: &Git,
    worktree_root: &Path,
    args: &[String],
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    let mut full = to_os(["-c", "core.quotePath=false", "clean", "-n"]);
    full.extend(args.iter().map(OsString::from));
    let out = String::from_utf8(git.bytes(full)?)
        .map_err(|_| PlanError::Unplannable("git clean -n printed a non-UTF-8 path".into()))?;
    let prefix = match git.text(["rev-parse", "--show-prefix"]) {
        Ok(p) => PathBuf::from(p),
        Err(_) => git
            .dir
            .strip_prefix(worktree_root)
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    for line in out.lines() {
        let Some(p) = line.strip_prefix("Would remove ") else {
            continue;
        };
        let bytes = unquote_c(p);
        let rel = bytes_to_path(&bytes);
        let Some(path) = normalize(&prefix.join(rel)) else {
            continue;
        };
        // a removed directory takes every database below it
        for db in dbs.touched_by(&path) {
            if normalize(&db).is_some_and(|n| n.starts_with(&path)) {
                risk.add(&db, RiskReason::Cleaned);
            }
        }
    }
    Ok(())
}
