//! The "before" half: plan what git is about to overwrite or delete → snapshot it →
//! warn → run the real git with the user's arguments → compare → offer a restore.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::clock;
use crate::compare;
use crate::error::{CommandError, ErrorKind};
use crate::flow::Context;
use crate::flow::snapshot::{
    Lines, as_before, partial_advice, partial_message, snapshot_all, version_control_warning_daily,
};
use crate::git::{self, GitRunner};
use crate::plan;
use crate::scan::{DbFile, Scan, Scanner};
use crate::ui::Ui;

pub(crate) struct GuardOptions {
    /// Run git even though the snapshot failed or was skipped (explicit user override).
    pub(crate) no_snapshot: bool,
}

/// Run `git <argv>` under guard; returns git's exit code.
///
/// Fails closed: git runs unguarded only with `--no-snapshot`, outside a repository (or in
/// a bare one), or when the plan shows that no database is at risk. Anything else that
/// goes wrong before git starts refuses, naming the override.
pub(crate) fn run(
    ui: &Ui,
    cwd: &Path,
    argv: &[OsString],
    options: &GuardOptions,
) -> Result<u8, CommandError> {
    if options.no_snapshot || crate::env::skip_snapshots() {
        ui.warn("not snapshotting (--no-snapshot): git may overwrite databases without a copy");
        return run_git(cwd, argv, false);
    }
    let refuse = |error: CommandError| refusal(error, argv);
    // An argv we cannot parse (a global option newer than dbguard, say) is planned as
    // "anything may change" in the repository around the cwd.
    let parsed = plan::parse_invocation(argv, cwd);
    let repo_dir = parsed
        .as_ref()
        .map_or(cwd, |invocation| invocation.cwd.as_path());
    // Not a repository, or a bare one: nothing on disk to protect; let git speak.
    let Some(ctx) = Context::load_to_protect(repo_dir).map_err(refuse)? else {
        return run_git(cwd, argv, false);
    };
    for warning in &ctx.settings.warnings {
        ui.warn(warning);
    }
    let (invocation, unparsed) = match parsed {
        Ok(invocation) => (invocation, None),
        Err(error) => (
            plan::GitInvocation::unparsed(argv, cwd),
            Some(error.to_string()),
        ),
    };
    let removed = plan::removed_worktree(&invocation).map_err(|error| {
        refuse(CommandError::with_source(
            "cannot work out which worktree `git worktree remove` deletes",
            error,
        ))
    })?;
    if let Some(removed) = removed {
        return guard_worktree_removal(ui, &removed, cwd, argv).map_err(refuse);
    }
    if !may_write_worktree(&invocation, unparsed.is_some()) {
        return run_git(cwd, argv, false);
    }
    let scanner = ctx.scanner();
    let scan = scanner.scan();
    if scan.databases.is_empty() && scan.excluded.is_empty() {
        return run_git(cwd, argv, false);
    }
    if pull_changes_nothing(ui, &ctx, &invocation) {
        return run_git(cwd, argv, false);
    }
    let at_risk = databases_at_risk(ui, &ctx, &scanner, &scan, &invocation, unparsed.as_deref())
        .map_err(refuse)?;
    if at_risk.is_empty() {
        return run_git(cwd, argv, false);
    }
    let git_argv: Vec<String> = std::iter::once("git".to_string())
        .chain(argv.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let before = snapshot_before(ui, &ctx, &at_risk, &git_argv).map_err(refuse)?;
    for (database, _) in &before.snapshots {
        if database.git.under_version_control() {
            version_control_warning_daily(ui, &ctx, &database.path);
        }
    }
    let code = run_git(cwd, argv, true)?;
    // git has run: its exit code is the result. A failed comparison is said, not
    // returned, so a script still sees what git did (the snapshots are kept either way).
    if let Err(error) = compare_after(ui, &ctx, &before, code) {
        ui.warn(&format!(
            "git ran, but dbguard could not compare the databases with their snapshots: {}; `dbguard status` compares them again",
            error.message()
        ));
    }
    Ok(code)
}

/// `git worktree remove` of the linked worktree `removed`: git deletes it with every
/// file in it (no hook runs with `--force`), so every database there is snapshotted
/// first, in that worktree's own context (its settings, its paths).
fn guard_worktree_removal(
    ui: &Ui,
    removed: &Path,
    cwd: &Path,
    argv: &[OsString],
) -> Result<u8, CommandError> {
    let Some(ctx) = Context::load_to_protect(removed)? else {
        return run_git(cwd, argv, false);
    };
    let scanner = ctx.scanner();
    let scan = scanner.scan();
    let at_risk = every_database(&ctx, &scanner, &scan)?;
    if at_risk.is_empty() {
        return run_git(cwd, argv, false);
    }
    say_worktree_removal(ui, "git worktree remove", &ctx.repo.worktree);
    let git_argv: Vec<String> = std::iter::once("git".to_string())
        .chain(argv.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let before = snapshot_before(ui, &ctx, &at_risk, &git_argv)?;
    let code = run_git(cwd, argv, true)?;
    // Nothing to compare: the worktree is gone when git succeeded.
    if let Ok(store) = ctx.store() {
        let _ = store.finish_operation(before.operation_id, None, Some(i32::from(code)));
    }
    Ok(code)
}

/// Said before the databases of `worktree` are snapshotted because `command` deletes it:
/// afterwards they are found by id, not by a path in a worktree that is gone.
pub(crate) fn say_worktree_removal(ui: &Ui, command: &str, worktree: &Path) {
    ui.status(&format!(
        "dbguard: `{command}` deletes {} with every file in it; snapshotting its databases (to get one back later: `dbguard log --all-worktrees`, then `dbguard restore --from <ID> --to <new path>`)",
        worktree.display()
    ));
}

/// Whether the command may write the worktree: a planned subcommand, or anything the
/// planner cannot read (a shell alias, an argv it could not parse).
pub(crate) fn may_write_worktree(invocation: &plan::GitInvocation, unparsed: bool) -> bool {
    invocation.shell_alias.is_some()
        || unparsed
        || invocation
            .subcommand
            .as_deref()
            .is_some_and(|name| plan::is_risky_subcommand(name) || plan::writes_unplanned(name))
}

/// For `git pull`: fetch first, so that the plan sees what the merge will bring (git
/// pull's own fetch then finds nothing new), and answer whether the pull will leave the
/// working tree alone (already up to date).
fn pull_changes_nothing(ui: &Ui, ctx: &Context, invocation: &plan::GitInvocation) -> bool {
    if invocation.subcommand.as_deref() != Some("pull") || invocation.shell_alias.is_some() {
        return false;
    }
    // A local remote whose branch has not moved, merged already: nothing to do, and
    // asking it in process saves a second fetch.
    if remote_branch_unmoved(ctx, &invocation.args) && pull_is_noop(ctx, &invocation.args) {
        return true;
    }
    let fetch = plan::pull_fetch_args(invocation);
    let fetched = GitRunner::default()
        .user(&invocation.cwd, true)
        .args(&fetch)
        .status();
    if !fetched.is_ok_and(|s| s.success()) {
        ui.warn("git fetch failed; snapshotting every database before git pull");
        return false;
    }
    // Answered in process, because each planner query is a git process (~3 ms).
    pull_is_noop(ctx, &invocation.args)
}

/// The databases git is about to overwrite or delete, by the plan; every database when
/// no plan can be made (fail safe).
pub(crate) fn databases_at_risk(
    ui: &Ui,
    ctx: &Context,
    scanner: &Scanner<'_>,
    scan: &Scan,
    invocation: &plan::GitInvocation,
    unparsed: Option<&str>,
) -> Result<Vec<DbFile>, CommandError> {
    let unplanned = invocation
        .subcommand
        .as_deref()
        .filter(|name| plan::writes_unplanned(name))
        .map(|name| format!("dbguard does not plan `git {name}`"));
    at_risk_by(ctx, scanner, scan, |relative, probe| {
        let plan = match unparsed.map(str::to_string).or(unplanned) {
            Some(reason) => plan::Plan::everything(relative, probe, &reason),
            None => plan::plan(invocation, &ctx.repo.worktree, relative, probe).unwrap_or_else(
                |error| plan::Plan::everything(relative, probe, &error.to_string()),
            ),
        };
        if let Some(reason) = &plan.fallback_reason {
            ui.status(&format!(
                "dbguard: could not work out what git will touch ({reason}); snapshotting every database"
            ));
        }
        plan
    })
}

/// Every database in the worktree, those in the directories the scan skips included:
/// for a command that deletes the whole worktree (`git worktree remove`).
pub(crate) fn every_database(
    ctx: &Context,
    scanner: &Scanner<'_>,
    scan: &Scan,
) -> Result<Vec<DbFile>, CommandError> {
    at_risk_by(ctx, scanner, scan, |relative, probe| {
        plan::Plan::everything(relative, probe, "the whole worktree goes")
    })
}

/// The database files at risk by the plan `make_plan` makes from the scan's databases
/// (worktree-relative) and a probe of the directories it skipped.
fn at_risk_by(
    ctx: &Context,
    scanner: &Scanner<'_>,
    scan: &Scan,
    make_plan: impl FnOnce(&[PathBuf], Option<plan::Probe<'_>>) -> plan::Plan,
) -> Result<Vec<DbFile>, CommandError> {
    let relative: Vec<PathBuf> = scan
        .databases
        .iter()
        .map(|d| PathBuf::from(d.path.as_str()))
        .collect();
    // Databases in excluded directories are found where git says it will write.
    let probe = |path: &Path| -> Vec<PathBuf> {
        scanner
            .excluded_databases(scan, path)
            .into_iter()
            .map(|d| PathBuf::from(d.path.as_str()))
            .collect()
    };
    let probe: Option<plan::Probe<'_>> = (!scan.excluded.is_empty()).then_some(&probe);
    let plan = make_plan(&relative, probe);
    let mut at_risk = Vec::new();
    for risk in &plan.at_risk {
        match scan
            .databases
            .iter()
            .find(|d| Path::new(d.path.as_str()) == risk.path)
        {
            Some(database) => at_risk.push(database.clone()),
            None => at_risk.extend(
                scanner
                    .unfiltered()
                    .explicit(&ctx.repo.worktree, &risk.path)?,
            ),
        }
    }
    Ok(at_risk)
}

/// The snapshots taken before git ran, under one recorded operation.
struct Before {
    operation_id: i64,
    snapshots: Vec<(DbFile, i64)>,
}

/// Snapshot every database at risk. Any failure, a partial copy included (it lacks
/// committed data), is an error: git must not run.
fn snapshot_before(
    ui: &Ui,
    ctx: &Context,
    at_risk: &[DbFile],
    git_argv: &[String],
) -> Result<Before, CommandError> {
    let head_before = ctx.repo.head();
    let mut store = ctx.store()?;
    let operation_id =
        store.begin_operation("guard", git_argv, head_before.as_deref(), clock::now())?;
    let results = snapshot_all(
        ui,
        ctx,
        &mut store,
        at_risk,
        (operation_id, None),
        Lines::Every,
        &as_before,
    );
    let mut snapshots = Vec::new();
    let mut failed = Vec::new();
    for (database, outcome) in results {
        match outcome {
            Ok(outcome) if outcome.completeness.partial => {
                let error = partial_refusal(&database, &outcome);
                failed.push((database, error));
            }
            Ok(outcome) => snapshots.push((database, outcome.id)),
            Err(error) => failed.push((database, error)),
        }
    }
    if !failed.is_empty() {
        let _ = store.finish_operation(operation_id, head_before.as_deref(), None);
        let mut error = CommandError::new(format!(
            "not running `{}`: {} database{} could not be snapshotted",
            crate::git::redact::redact_argv(git_argv).join(" "),
            failed.len(),
            if failed.len() == 1 { "" } else { "s" }
        ));
        for (database, cause) in &failed {
            error = error.cause(format!("{}: {}", database.path, cause.message()));
        }
        return Err(error.hint("copy the database aside yourself before running git anyway"));
    }
    // The store (and its lock) is dropped here: hooks that git runs may need it.
    Ok(Before {
        operation_id,
        snapshots,
    })
}

/// After git ran: record its exit code, compare each database with its snapshot, and
/// offer a restore of any that shrank or vanished.
fn compare_after(ui: &Ui, ctx: &Context, before: &Before, code: u8) -> Result<(), CommandError> {
    let store = ctx.store()?;
    let _ = store.finish_operation(
        before.operation_id,
        ctx.repo.head().as_deref(),
        Some(i32::from(code)),
    );
    let mut shrinks = Vec::new();
    for (_, id) in &before.snapshots {
        if let Some(snapshot) = store.find_snapshot(*id)?
            && let Some(shrink) = compare::check_live(&ctx.repo.worktree, &snapshot)
        {
            shrinks.push(shrink);
        }
    }
    drop(store);
    if !shrinks.is_empty() {
        // What git left is not recorded here, so the loss stays flagged by `status`
        // (which compares with the snapshot taken before) until it is restored.
        crate::flow::offer::offer(ui, ctx, &shrinks);
    }
    Ok(())
}

/// Git will not run: the error, then how to run it anyway. A user who reads only the
/// last line learns the override, and that it gives up the snapshot. The exit code is
/// [`ErrorKind::Refused`]'s, outside git's own, so a script can tell "git did not run".
fn refusal(error: CommandError, argv: &[OsString]) -> CommandError {
    let retry = argv
        .iter()
        .map(|a| crate::ui::shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    error.with_kind(ErrorKind::Refused).hint(format!(
        "git did not run; to run it without a snapshot: dbguard --no-snapshot git {retry}"
    ))
}

/// Why a partial snapshot is not enough to let git run: which process holds the file,
/// what the copy lacks, and what the user can do.
fn partial_refusal(database: &DbFile, outcome: &crate::store::SnapshotOutcome) -> CommandError {
    let pid = outcome
        .completeness
        .missing
        .as_ref()
        .and_then(|m| m.holder_pid);
    let holder = pid
        .map(crate::db::duckdb::describe_process)
        .unwrap_or_else(|| "another process".into());
    CommandError::new(format!(
        "only a partial copy could be made while {holder} holds it open for writing: {}; {}",
        partial_message(outcome.id, database.path.as_str(), &outcome.completeness),
        partial_advice(pid),
    ))
}

/// A plain `git pull [--options]` (no remote or refspec) whose upstream is already
/// contained in HEAD: nothing to merge, so nothing in the working tree changes.
fn pull_is_noop(ctx: &Context, args: &[OsString]) -> bool {
    if args.iter().any(|a| !a.to_string_lossy().starts_with('-')) {
        return false;
    }
    let repo = &ctx.repo.git;
    let head = repo.head().ok().and_then(|h| h.target());
    let upstream = repo
        .revparse_single("@{upstream}")
        .ok()
        .and_then(|o| o.peel_to_commit().ok())
        .map(|c| c.id());
    match (head, upstream) {
        (Some(head), Some(upstream)) => {
            head == upstream || repo.graph_descendant_of(head, upstream).unwrap_or(false)
        }
        _ => false,
    }
}

/// For a plain `git pull` whose upstream lives in a remote on this machine: whether the
/// remote's branch still points where our remote-tracking ref does (libgit2's local
/// transport, no process). Network remotes answer `false`: they are fetched as usual.
fn remote_branch_unmoved(ctx: &Context, args: &[OsString]) -> bool {
    if args.iter().any(|a| !a.to_string_lossy().starts_with('-')) {
        return false;
    }
    let repo = &ctx.repo.git;
    let lookup = || -> Option<bool> {
        let head = repo.head().ok()?;
        let branch = head.name().ok()?;
        let remote_name = repo.branch_upstream_remote(branch).ok()?;
        let merge = repo.branch_upstream_merge(branch).ok()?;
        let tracking = repo.branch_upstream_name(branch).ok()?;
        let tracking = repo.refname_to_id(tracking.as_str().ok()?).ok()?;
        let mut remote = repo.find_remote(remote_name.as_str().ok()?).ok()?;
        let url = remote.url().ok()?.to_string();
        let local = url.starts_with('/')
            || url.starts_with("file://")
            || ctx.repo.worktree.join(&url).exists();
        if !local {
            return None;
        }
        remote.connect(git2::Direction::Fetch).ok()?;
        let merge = merge.as_str().ok()?;
        let tip = remote
            .list()
            .ok()?
            .iter()
            .find(|h| h.name() == merge)
            .map(|h| h.oid())?;
        Some(tip == tracking)
    };
    lookup().unwrap_or(false)
}

/// Run the user's git with inherited stdio; its exit code (128 + signal when killed).
fn run_git(cwd: &Path, argv: &[OsString], guarded: bool) -> Result<u8, CommandError> {
    let status = GitRunner::default()
        .user(cwd, guarded)
        .args(argv)
        .status()
        .map_err(|e| {
            CommandError::with_source("cannot run git", e)
                .with_kind(ErrorKind::Refused)
                .hint("install git and make sure it is on PATH")
        })?;
    Ok(git::exit_code(status))
}
