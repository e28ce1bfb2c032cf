//! What each installed git hook does (`dbguard hook <name> [args…]`).
//!
//! After checkout/merge/rewrite: compare the databases the operation touched (and any
//! whose stat changed since the last snapshot) with their last snapshot, offer a restore
//! when one shrank, then refresh the baseline. Before rebase and at the `prepared` state of
//! a reference transaction that precedes a merge or stash: snapshot first. pre-commit:
//! refuse (by default) commits that add or change a database file.
//!
//! Hooks never break git: every failure becomes a warning and exit 0, and nothing is
//! printed when no database is involved.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Read;

use crate::compare;
use crate::config::PreCommitPolicy;
use crate::db::{self, Sniff};
use crate::error::{CommandError, ErrorKind};
use crate::flow::Context;
use crate::flow::snapshot::{Lines, as_before, snapshot_all, snapshot_operation, warn_failures};
use crate::git::RepoPath;
use crate::hook_files::fsmonitor_setting;
use crate::hook_files::{self, HookState, Install, watch};
use crate::scan::DbFile;
use crate::store::{AfterLoss, stat_signature};
use crate::ui::{Ui, shell_quote};

/// Run a hook; its exit code: 0, or for a refused commit [`ErrorKind::Refused`]'s code,
/// the one the pre-commit shim refuses on (any other failure, a crash included, lets the
/// commit through).
pub(crate) fn run(ui: &Ui, cwd: &std::path::Path, name: &str, args: &[OsString]) -> u8 {
    // The guard already snapshotted and will compare after git returns.
    if crate::env::guarded() {
        return 0;
    }
    if name == "fsmonitor-guard" {
        return crate::flow::pre_write_guard::run(ui, args);
    }
    // A hook runs inside a repository; an invalid setting falls back to its default
    // (said once); if the repository itself cannot be read it says so (nothing was
    // checked) and lets git go on.
    let ctx = match Context::load_for_hook(ui, cwd) {
        Ok(Some(ctx)) => ctx,
        Ok(None) => return 0,
        Err(error) => {
            ui.warn(&format!(
                "databases not checked: {} (git continues)",
                error.message()
            ));
            for hint in error.hints() {
                ui.hint(hint);
            }
            return 0;
        }
    };
    let arg = |i: usize| args.get(i).and_then(|a| a.to_str()).unwrap_or("");
    if matches!(
        name,
        "post-checkout" | "post-merge" | "post-rewrite" | "pre-commit"
    ) {
        keep_the_guard(ui, &ctx);
    }
    let result = match name {
        "post-checkout" => after(ui, &ctx, arg(0), arg(1), "checkout"),
        "post-merge" => after(ui, &ctx, "ORIG_HEAD", "HEAD", "merge"),
        "post-rewrite" => {
            // stdin lists rewritten commits; we only need to drain it.
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            after(ui, &ctx, "ORIG_HEAD", "HEAD", arg(0))
        }
        "pre-rebase" => before(ui, &ctx, "pre-rebase"),
        "reference-transaction" => reference_transaction(ui, &ctx, arg(0)),
        "pre-commit" => {
            let code = pre_commit(ui, &ctx);
            // Its shim starts dbguard when the watch file says so (a config change):
            // looked at now, so the next commits need not start it again.
            if let Err(error) = refresh_watch(&ctx) {
                ui.warn(&format!(
                    "could not update the hooks' watch file: {}",
                    error.message()
                ));
            }
            return code;
        }
        _ => Ok(()),
    };
    if let Err(error) = result {
        ui.warn(&format!("{} (git continues)", error.message()));
    }
    0
}

/// Compare touched databases with their last snapshot, offer restores, refresh baselines,
/// then rewrite the watch file so the next hook can skip all this when nothing changed.
fn after(ui: &Ui, ctx: &Context, from: &str, to: &str, what: &str) -> Result<(), CommandError> {
    let result = compare_and_refresh(ui, ctx, from, to, what);
    if let Err(error) = refresh_watch(ctx) {
        ui.warn(&format!(
            "could not update the hooks' watch file: {}",
            error.message()
        ));
    }
    result
}

fn compare_and_refresh(
    ui: &Ui,
    ctx: &Context,
    from: &str,
    to: &str,
    what: &str,
) -> Result<(), CommandError> {
    // No store means no baseline: there is nothing to compare against.
    let Some(store) = ctx.existing_store()? else {
        return Ok(());
    };
    let worktree = ctx.worktree_key();
    let snapshotted: BTreeSet<String> = store.snapshotted_paths(&worktree)?.into_iter().collect();
    let mut candidates = BTreeSet::new();
    if !from.is_empty() && from != to {
        // An unknown revision (e.g. no ORIG_HEAD yet) just means no diff-based candidates.
        for path in ctx.repo.changed_paths(from, to).unwrap_or_default() {
            let on_disk_db = matches!(
                db::sniff(&ctx.repo.worktree.join(&path)),
                Ok(Sniff::Database(_))
            );
            if snapshotted.contains(&path) || on_disk_db {
                candidates.insert(path);
            }
        }
    }
    let entries = store.stat_cache_entries(&worktree)?;
    for (path, kind, signature) in &entries {
        let now = stat_signature(&ctx.repo.worktree.join(path), *kind).map(|s| s.text);
        if now.ok().as_deref() != Some(signature.as_str()) {
            candidates.insert(path.clone());
        }
    }
    // A snapshot taken while the file was being written keeps no stat signature (it
    // could not tell a later write in the same clock tick): such a database may have
    // changed, so it is compared whenever it exists.
    for path in &snapshotted {
        if !entries.iter().any(|(p, _, _)| p == path) && ctx.repo.worktree.join(path).exists() {
            candidates.insert(path.clone());
        }
    }
    if candidates.is_empty() {
        return Ok(());
    }
    let operation = crate::flow::pre_write_guard::this_operation(ctx);
    let mut shrinks = Vec::new();
    for path in &candidates {
        if let Some(last) = store.latest(&worktree, path)?
            && let Some(shrink) = compare::check_live(&ctx.repo.worktree, &last)
        {
            shrinks.push(shrink);
        }
    }
    for shrink in &shrinks {
        // A snapshot that a later operation found unchanged stands for the state then.
        if operation.started_after(shrink.seen_at) {
            let last_recorded = if shrink.seen_at == shrink.taken_at {
                String::new()
            } else {
                format!(
                    ", found unchanged last at {}",
                    crate::ui::local_time(shrink.seen_at)
                )
            };
            ui.warn(&format!(
                "no snapshot of {} was taken right before {}: the comparison is with snapshot #{} from {}{last_recorded} ({}); rows written after that were never saved",
                shrink.path,
                operation.describe(what),
                shrink.snapshot_id,
                crate::ui::local_time(shrink.taken_at),
                crate::ui::age(shrink.seen_at),
            ));
        }
    }
    // A vanished database is reported once, not on every later checkout; its snapshots
    // stay, and it is compared again when a checkout brings the path back.
    for path in &candidates {
        if std::fs::symlink_metadata(ctx.repo.worktree.join(path)).is_err() {
            store.forget_stat_cache(&worktree, path)?;
        }
    }
    // Closed before the offer asks: its restore opens the store for writing, and nothing
    // holds the store while a user thinks.
    drop(store);
    let restored = if shrinks.is_empty() {
        Vec::new()
    } else {
        crate::flow::offer::offer(ui, ctx, &shrinks)
    };
    // What git left after a loss that was not restored is recorded, but never as the
    // baseline `status` compares with: the loss stays flagged until it is restored or
    // accepted (`dbguard snapshot PATH`).
    let losses: BTreeMap<String, i64> = shrinks
        .iter()
        .filter(|shrink| !restored.contains(&shrink.path))
        .map(|shrink| (shrink.path.clone(), shrink.snapshot_id))
        .collect();
    // Refresh the baseline of whatever is a database now.
    let databases: Vec<DbFile> = candidates
        .iter()
        .filter_map(|path| {
            ctx.scanner()
                .explicit(&ctx.repo.worktree, std::path::Path::new(path))
                .ok()
        })
        .flatten()
        .collect();
    baseline_after(ui, ctx, &databases, &operation, what, &losses)
}

/// Snapshot what git left, as the baseline the next comparison starts from: in the
/// operation of the command's pre-write snapshot when there is one (one command, one
/// operation in the log), else in an operation named after the command.
fn baseline_after(
    ui: &Ui,
    ctx: &Context,
    databases: &[DbFile],
    operation: &crate::flow::pre_write_guard::ThisOperation,
    what: &str,
    losses: &BTreeMap<String, i64>,
) -> Result<(), CommandError> {
    if databases.is_empty() {
        return Ok(());
    }
    let after_loss = |database: &DbFile| match losses.get(database.path.as_str()) {
        Some(lost) => AfterLoss::Of(*lost),
        None => AfterLoss::AsBefore,
    };
    let mut store = ctx.store()?;
    let results = match operation.snapshot_operation() {
        Some(operation_id) => snapshot_all(
            ui,
            ctx,
            &mut store,
            databases,
            (operation_id, Some("after it ran")),
            Lines::Changed,
            &after_loss,
        ),
        None => snapshot_operation(
            ui,
            ctx,
            &mut store,
            ("hook", &operation.command(what)),
            databases,
            Some("after it ran"),
            Lines::Changed,
            &after_loss,
        )?,
    };
    warn_failures(ui, &results);
    Ok(())
}

/// When `core.fsmonitor` no longer names dbguard's program (another tool took it over, it
/// was unset or set to `false` by hand), the pre-write guard of plain git is gone, and
/// `dbguard install` may have left out the fallback hooks that do its work without it
/// ([`hook_files::FALLBACK_HOOKS`]): put them back, and say so, once (they are there the next
/// time). Run by the post-* and pre-commit hooks, whose `sh` fast path starts dbguard
/// once after any change of the config files: the watch file lists them
/// ([`refresh_watch`]).
/// The config files decide, not this command's `-c core.fsmonitor=false` (libgit2 does
/// not read `GIT_CONFIG_PARAMETERS`): a one-off bypass changes nothing here.
fn keep_the_guard(ui: &Ui, ctx: &Context) {
    if matches!(
        fsmonitor_setting::setting(&ctx.repo.git),
        Ok(fsmonitor_setting::Setting::Dbguard { .. }) | Err(_)
    ) {
        return;
    }
    // Installed with them (`--no-fsmonitor`), or put back already: no `git rev-parse`
    // for the hooks directory on every commit. (One deleted since is for the replaced-
    // hooks notice and `install --status` to tell.)
    let common_dir = ctx.repo.git.commondir();
    if hook_files::FALLBACK_HOOKS
        .iter()
        .all(|hook| hook_files::replaced::records_hook(common_dir, hook))
    {
        return;
    }
    let now = match ctx
        .repo
        .git
        .config()
        .and_then(|config| config.get_string("core.fsmonitor"))
    {
        Ok(value) => format!("it is `{value}`"),
        Err(_) => "it is unset".to_string(),
    };
    let Ok(dir) = hook_files::hooks_dir(&ctx.repo.worktree) else {
        return;
    };
    let Ok(states) = hook_files::status(&dir.path) else {
        return;
    };
    let missing: Vec<&'static str> = hook_files::FALLBACK_HOOKS
        .iter()
        .copied()
        .filter(|hook| {
            states
                .iter()
                .any(|(name, state)| name == hook && matches!(state, HookState::Missing { .. }))
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let changes = match hook_files::install(&dir.path, &missing) {
        Ok(changes) => changes,
        Err(error) => {
            ui.warn(&format!(
                "core.fsmonitor no longer runs {} ({now}), and the fallback hooks could not be put back: {error}; plain git is compared only after it ran",
                crate::fsmonitor::PROGRAM
            ));
            ui.hint("run `dbguard install` to guard plain git before it writes again");
            return;
        }
    };
    // The replaced-hooks record lists every file holding the block (install wrote it).
    let _ = hook_files::replaced::record(&dir.git_dir, &installed_block_files(&dir.path));
    let put_back: Vec<&str> = changes
        .iter()
        .filter(|change| !matches!(change.outcome, Install::Skipped { .. }))
        .map(|change| change.hook)
        .collect();
    ui.warn(&format!(
        "core.fsmonitor no longer runs {} ({now}): plain `git reset --hard`, `checkout`, `clean` and `restore` are no longer snapshotted before they write, only compared after{}",
        crate::fsmonitor::PROGRAM,
        if put_back.is_empty() {
            String::new()
        } else {
            format!(
                "; dbguard put its {} hook{} back, which snapshot{} before `git pull`, `merge`, `stash` and `rebase`",
                put_back.join(" and "),
                if put_back.len() == 1 { "" } else { "s" },
                if put_back.len() == 1 { "s" } else { "" },
            )
        }
    ));
    for change in &changes {
        if let Install::Skipped {
            reason,
            add_yourself,
        } = &change.outcome
        {
            ui.warn(&format!("{}: left alone: {reason}", change.path.display()));
            ui.hint(&format!("add this line to it yourself: {add_yourself}"));
        }
    }
    ui.hint("to guard every plain git command before it writes again: dbguard install");
}

/// The hook files in `hooks_dir` (or the copies other managers run) that hold dbguard's
/// block now.
fn installed_block_files(hooks_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    hook_files::status(hooks_dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(hook, state)| match state {
            HookState::Installed { .. } => Some(hooks_dir.join(hook)),
            HookState::InstalledInCopy { copy, .. } => Some(copy),
            _ => None,
        })
        .collect()
}

/// Rewrite `<git dir>/dbguard-watch` (see [`crate::hook_files::watch`]): the catalog, every
/// database a post-* hook would compare and the repository's config files (so that a
/// change of `core.fsmonitor` reaches [`keep_the_guard`]), stamped before this moment
/// when each database still matches its stat signature, or removed when one does not.
fn refresh_watch(ctx: &Context) -> Result<(), CommandError> {
    let git_dir = ctx.repo.git.path();
    let io_error = |e: std::io::Error| CommandError::with_source(git_dir.display().to_string(), e);
    let verified_at = std::time::SystemTime::now();
    let catalog = ctx.settings.store.value.join("catalog.db");
    // A listed path that is missing starts dbguard every time: only those that exist.
    let mut paths: Vec<std::path::PathBuf> = [
        ctx.repo.git.commondir().join("config"),
        git_dir.join("config.worktree"),
    ]
    .into_iter()
    .filter(|config| config.is_file())
    .collect();
    // No store, no snapshot to compare with: the hooks need dbguard again only once
    // one is made (its catalog appears) or the config changes.
    let Some(store) = ctx.existing_store()? else {
        return watch::write(git_dir, &paths, &[catalog], Some(verified_at)).map_err(io_error);
    };
    let worktree = ctx.worktree_key();
    let entries = store.stat_cache_entries(&worktree)?;
    let mut unchanged = entries.iter().all(|(path, kind, signature)| {
        stat_signature(&ctx.repo.worktree.join(path), *kind).is_ok_and(|s| s.text == *signature)
    });
    paths.push(catalog);
    for path in store.snapshotted_paths(&worktree)? {
        let on_disk = ctx.repo.worktree.join(&path);
        let has_signature = entries.iter().any(|(p, _, _)| *p == path);
        if has_signature || on_disk.exists() {
            // Without a signature the post-* hook compares it every time (see above).
            unchanged &= has_signature;
            paths.push(on_disk);
        }
    }
    watch::write(git_dir, &paths, &[], unchanged.then_some(verified_at)).map_err(io_error)
}

/// Snapshot every database before git changes the working tree (tracked ones in excluded
/// directories too: a merge or rebase overwrites those).
fn before(ui: &Ui, ctx: &Context, what: &str) -> Result<(), CommandError> {
    // The fsmonitor hook snapshots at the moment the command is about to write, with
    // the plan of what it writes; this hook is the fallback for when it is off.
    if crate::flow::pre_write_guard::guards_plain_git(ctx) {
        return Ok(());
    }
    let databases = ctx.scanner().scan_with_tracked().databases;
    if databases.is_empty() {
        return Ok(());
    }
    snapshot_quietly(ui, ctx, &databases, &format!("git ({what})"))
}

/// The `prepared` state of a transaction that writes a remote-tracking ref (the fetch of
/// a pull), ORIG_HEAD (merge/pull before touching files) or refs/stash.
fn reference_transaction(ui: &Ui, ctx: &Context, state: &str) -> Result<(), CommandError> {
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    if state != "prepared" {
        return Ok(());
    }
    let refs: Vec<&str> = input
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .filter(|r| r.starts_with("refs/remotes/") || *r == "ORIG_HEAD" || *r == "refs/stash")
        .collect();
    match refs.first() {
        Some(first) => before(ui, ctx, &format!("before updating {first}")),
        None => Ok(()),
    }
}

/// Snapshot with one-line reports only for databases that really changed.
fn snapshot_quietly(
    ui: &Ui,
    ctx: &Context,
    databases: &[DbFile],
    label: &str,
) -> Result<(), CommandError> {
    if databases.is_empty() {
        return Ok(());
    }
    let mut store = ctx.store()?;
    let results = snapshot_operation(
        ui,
        ctx,
        &mut store,
        ("hook", &[label.to_string()]),
        databases,
        None,
        Lines::Changed,
        &as_before,
    )?;
    warn_failures(ui, &results);
    Ok(())
}

fn pre_commit(ui: &Ui, ctx: &Context) -> u8 {
    let policy = ctx.settings.pre_commit.value;
    if policy == PreCommitPolicy::Allow {
        return 0;
    }
    let Ok(output) = ctx
        .repo
        .query_git(crate::fsmonitor::known_databases::STAGED_FILES)
    else {
        return 0;
    };
    let offenders: Vec<(RepoPath, db::DbKind)> = output
        .stdout
        .split(|b| *b == 0)
        .filter_map(|p| std::str::from_utf8(p).ok())
        .filter(|p| !p.is_empty())
        .filter_map(|p| RepoPath::new(p).ok())
        // A symlink commits the path it points to, not the database there.
        .filter(|p| {
            !std::fs::symlink_metadata(p.in_worktree(&ctx.repo.worktree))
                .is_ok_and(|m| m.file_type().is_symlink())
        })
        .filter_map(|p| match db::sniff(&p.in_worktree(&ctx.repo.worktree)) {
            Ok(Sniff::Database(kind)) => Some((p, kind)),
            _ => None,
        })
        .collect();
    if offenders.is_empty() {
        return 0;
    }
    for (path, kind) in &offenders {
        let line = format!("this commit adds or changes {path}, a {kind} database");
        if policy == PreCommitPolicy::Refuse {
            ui.error(&line, &[], &[]);
        } else {
            ui.warn(&line);
        }
    }
    ui.hint("committed databases get overwritten by pull, checkout and reset --hard; keep them out of git:");
    let first = &offenders[0].0;
    ui.hint(&format!(
        "git rm --cached {} && echo {} >> .gitignore",
        shell_quote(first.as_str()),
        shell_quote(&format!("/{first}"))
    ));
    if policy == PreCommitPolicy::Refuse {
        ui.hint(
            "to commit it anyway: git commit --no-verify, or git config dbguard.precommit warn",
        );
        ErrorKind::Refused.exit_code()
    } else {
        0
    }
}
