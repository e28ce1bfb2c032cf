//! `dbguard hook fsmonitor-guard <nearest git pid> <operation git pid>`: started by the
//! `core.fsmonitor` hook (see [`crate::fsmonitor`]) when a plain git command may write
//! the worktree, before git writes anything. It plans the nearest git's command line
//! (the process about to write: `merge FETCH_HEAD` under `git pull`), snapshots the
//! databases at risk under one operation named after the user's command, and records
//! the operation as decided, so the command's later hook calls take nothing again.
//!
//! git cannot be stopped from here (the hook's exit status only changes its answer), so
//! what could not be saved is said, exactly, instead of refused.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::clock;
use crate::error::CommandError;
use crate::flow::Context;
use crate::flow::guard::{
    databases_at_risk, every_database, may_write_worktree, say_worktree_removal,
};
use crate::flow::snapshot::{
    Lines, as_before, partial_message, snapshot_all, version_control_warning_daily,
};
use crate::fsmonitor::{self, process::Process};
use crate::plan;
use crate::scan::{Scan, Scanner};
use crate::ui::Ui;

/// Run the guard for the git processes `nearest` and `operation` (the command it belongs
/// to, see [`fsmonitor::process`]); always 0 (the hook
/// must answer git whatever happens here).
pub(crate) fn run(ui: &Ui, args: &[OsString]) -> u8 {
    let pid = |i: usize| -> Option<Process> {
        let pid = args.get(i)?.to_str()?.parse().ok()?;
        Process::read(pid)
    };
    let (Some(nearest), Some(operation)) = (pid(0), pid(1)) else {
        ui.warn("fsmonitor-guard: the git processes it was started for are gone; nothing saved");
        return 0;
    };
    if let Err(error) = guard(ui, &nearest, &operation) {
        let mut said = CommandError::new(format!(
            "not saved before `{}` (git goes on): {}",
            command_of(&operation).join(" "),
            error.message()
        ));
        for cause in error.causes() {
            said = said.cause(cause);
        }
        for hint in error.hints() {
            said = said.hint(hint);
        }
        said.report(ui);
    }
    0
}

/// Tell the hook's fast paths ([`fsmonitor::known_databases`]) which databases the
/// worktree holds: recorded with the watcher token the hook took before starting us, so
/// that the next writing git command skips dbguard while the watcher shows nothing that
/// could be another one, when there is none or a branch switch touches none. Best
/// effort: without the record the planner runs, as it always did.
fn remember_databases(
    git_dir: &std::path::Path,
    worktree: &std::path::Path,
    scanner: &Scanner,
    scan: &Scan,
) {
    let Ok(state_dir) = fsmonitor::state::state_dir(git_dir) else {
        return;
    };
    let known = crate::env::fsmonitor_scan_token()
        .and_then(|token| Some((token, known_databases(worktree, scanner, scan)?)));
    let _ = match known {
        Some((token, known)) => {
            fsmonitor::known_databases::record(&state_dir, worktree, &token, &known)
        }
        None => fsmonitor::known_databases::forget(&state_dir),
    };
}

/// What `scan` found, for the record; `None` when it cannot vouch for it (a file it
/// skipped, a path that is not UTF-8).
fn known_databases(
    worktree: &std::path::Path,
    scanner: &Scanner,
    scan: &Scan,
) -> Option<fsmonitor::known_databases::Known> {
    if !scan.skipped.is_empty() {
        return None;
    }
    let files: Vec<String> = scan
        .databases
        .iter()
        .map(|database| database.path.as_str().to_string())
        .collect();
    // The directories the scan skipped (`.venv`, `__pycache__`, … by default) are looked
    // into only when nothing was found elsewhere: "no database anywhere" spares every
    // later writing command the planner. Otherwise they stand in the record whole.
    let none_anywhere = files.is_empty()
        && scan
            .excluded
            .iter()
            .all(|dir| scanner.unfiltered().scan_under(dir).databases.is_empty());
    let skipped_dirs = if none_anywhere {
        &[][..]
    } else {
        &scan.excluded[..]
    };
    let dirs = skipped_dirs
        .iter()
        .map(|dir| Some(dir.strip_prefix(worktree).ok()?.to_str()?.to_string()))
        .collect::<Option<Vec<String>>>()?;
    Some(fsmonitor::known_databases::Known { files, dirs })
}

/// The user's command line as the log shows it: `git reset --hard origin/main`.
fn command_of(process: &Process) -> Vec<String> {
    std::iter::once("git".to_string())
        .chain(
            process
                .git_args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned()),
        )
        .collect()
}

fn guard(ui: &Ui, nearest: &Process, operation: &Process) -> Result<(), CommandError> {
    // git runs its hooks from the top of the worktree; the user's relative pathspecs
    // (`cd data && git restore posts.db`, `git -C data …`) are relative to GIT_PREFIX.
    let user_dir = fsmonitor::process::user_prefix(&nearest.cwd);
    let Some(ctx) = Context::load_for_hook(ui, &nearest.cwd)? else {
        return Ok(());
    };
    let git_dir: PathBuf = ctx.repo.git.path().to_path_buf();
    let key = operation.key();
    let decided = |operation_id: i64| {
        fsmonitor::mark_decided(&git_dir, &key, operation_id).map_err(|e| {
            CommandError::with_source(
                format!("cannot record the operation in {}", git_dir.display()),
                e,
            )
        })
    };
    let argv = nearest.git_args();
    let (invocation, unparsed) = match plan::parse_running_invocation(argv, &user_dir) {
        Ok(invocation) => (invocation, None),
        Err(error) => (
            plan::GitInvocation::unparsed(argv, &user_dir),
            Some(error.to_string()),
        ),
    };
    // `git worktree remove` deletes this worktree (ignored files too) once its status
    // check, the git that ran the hook, finds it clean.
    let removal = fsmonitor::classify::checks_worktree_before_removal(argv, operation.git_args());
    if !removal && !may_write_worktree(&invocation, unparsed.is_some()) {
        // Undecided: a later call of the same command (its internal child) may write.
        return Ok(());
    }
    let scanner = ctx.scanner();
    let scan = scanner.scan();
    remember_databases(&git_dir, &ctx.repo.worktree, &scanner, &scan);
    if scan.databases.is_empty() && scan.excluded.is_empty() {
        return decided(0);
    }
    let at_risk = if removal {
        say_worktree_removal(ui, &command_of(operation).join(" "), &ctx.repo.worktree);
        every_database(&ctx, &scanner, &scan)?
    } else {
        databases_at_risk(ui, &ctx, &scanner, &scan, &invocation, unparsed.as_deref())?
    };
    if at_risk.is_empty() {
        return decided(0);
    }
    let command = command_of(operation);
    let head = ctx.repo.head();
    // Waits while another dbguard works with the store (a prune, a big snapshot): git
    // waits for this hook, and the snapshot gets through. Only a holder that is stuck
    // makes it give up, and then git has gone on: say exactly what was not saved.
    let mut store = match ctx.store() {
        Ok(store) => store,
        Err(error) => {
            let paths: Vec<&str> = at_risk.iter().map(|d| d.path.as_str()).collect();
            let mut said = CommandError::new(format!(
                "{} not snapshotted, so what git overwrites or deletes there is not in the store: {}",
                paths.join(", "),
                error.message()
            ));
            for cause in error.causes() {
                said = said.cause(cause);
            }
            return Err(said.hint(
                "the snapshots taken before (`dbguard log`) are what can be restored; end or resume the process named above so that the next git command is saved again",
            ));
        }
    };
    let operation_id = store.begin_operation("guard", &command, head.as_deref(), clock::now())?;
    // Decided before snapshotting: a second call of this command while the snapshot
    // runs (none is known to happen; git waits for the hook) must not take another.
    decided(operation_id)?;
    let results = snapshot_all(
        ui,
        &ctx,
        &mut store,
        &at_risk,
        (operation_id, None),
        Lines::Every,
        &as_before,
    );
    let mut not_saved = Vec::new();
    for (database, outcome) in &results {
        match outcome {
            Ok(taken) => {
                let completeness = &taken.completeness;
                if completeness.partial {
                    not_saved.push(partial_message(
                        taken.id,
                        database.path.as_str(),
                        completeness,
                    ));
                }
                if database.git.under_version_control() {
                    version_control_warning_daily(ui, &ctx, &database.path);
                }
            }
            Err(error) => not_saved.push(format!("{}: {}", database.path, error.message())),
        }
    }
    if !not_saved.is_empty() {
        let mut error = CommandError::new(format!(
            "{} of {} database{} at risk",
            not_saved.len(),
            results.len(),
            if results.len() == 1 { "" } else { "s" }
        ));
        for line in not_saved {
            error = error.cause(line);
        }
        return Err(error.hint(
            "to be refused instead of warned, run it through the guard: dbguard git <command>",
        ));
    }
    Ok(())
}

/// Whether dbguard's fsmonitor hook runs for git commands here: configured, and not
/// turned off for this command (`git -c core.fsmonitor=false …`, which git passes on to
/// its hooks in `GIT_CONFIG_PARAMETERS`).
pub(crate) fn guards_plain_git(ctx: &Context) -> bool {
    let overridden = std::env::var("GIT_CONFIG_PARAMETERS")
        .is_ok_and(|parameters| parameters.to_ascii_lowercase().contains("'core.fsmonitor'"));
    !overridden
        && matches!(
            crate::hook_files::fsmonitor_setting::setting(&ctx.repo.git),
            Ok(crate::hook_files::fsmonitor_setting::Setting::Dbguard { .. })
        )
}

/// The git command a post-* hook runs under, and what the fsmonitor hook did for it.
pub(crate) struct ThisOperation {
    /// The user's command line, when the hook runs under git.
    command: Option<Vec<String>>,
    /// When that command started.
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The operation of its pre-write snapshot; `Some(0)`: decided, nothing at risk.
    decided: Option<i64>,
}

/// The operation of the git command this hook process runs under.
pub(crate) fn this_operation(ctx: &Context) -> ThisOperation {
    match fsmonitor::process::git_chain() {
        Some(chain) => ThisOperation {
            command: Some(command_of(&chain.operation)),
            started_at: chain.operation.started_at().map(chrono::DateTime::from),
            decided: fsmonitor::decided_operation(ctx.repo.git.path(), &chain.operation.key()),
        },
        None => ThisOperation {
            command: None,
            started_at: None,
            decided: None,
        },
    }
}

impl ThisOperation {
    /// The operation holding the snapshots taken right before this command wrote.
    pub(crate) fn snapshot_operation(&self) -> Option<i64> {
        self.decided.filter(|id| *id > 0)
    }

    /// Whether a snapshot taken at `taken_at` predates the command: rows written in
    /// between were never saved. (The start is known to 10 ms; a snapshot in the same
    /// tick counts as taken during the command.)
    pub(crate) fn started_after(&self, taken_at: chrono::DateTime<chrono::Utc>) -> bool {
        self.started_at
            .is_some_and(|started| taken_at + chrono::Duration::milliseconds(10) < started)
    }

    /// The command line to record, `git <what>` when unknown.
    pub(crate) fn command(&self, what: &str) -> Vec<String> {
        self.command
            .clone()
            .unwrap_or_else(|| vec!["git".into(), what.into()])
    }

    /// "`git reset --hard origin/main`", for a sentence.
    pub(crate) fn describe(&self, what: &str) -> String {
        format!("`{}`", self.command(what).join(" "))
    }
}
