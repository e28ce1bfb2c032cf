//! Snapshot a list of databases as one recorded operation and tell the user about each:
//! the line per snapshot, warnings, partial copies, databases under version control.

use crate::clock;
use crate::db::Completeness;
use crate::error::CommandError;
use crate::flow::Context;
use crate::git::RepoPath;
use crate::scan::DbFile;
use crate::store::{AfterLoss, SnapshotInfo, SnapshotOutcome, SnapshotRequest, Store};
use crate::ui::{self, Ui};

/// What the user can do about a partial snapshot of a file `pid` holds.
pub(crate) fn partial_advice(pid: Option<u32>) -> String {
    let process = pid
        .map(|pid| format!("process {pid}"))
        .unwrap_or_else(|| "the process holding it".into());
    format!(
        "let {process} checkpoint (CHECKPOINT, or wait for its automatic one) and run `dbguard snapshot` again, or stop {process} first"
    )
}

/// "snapshot #7 of live.duckdb is partial: it lacks 12 committed transactions (…) …".
pub(crate) fn partial_message(id: i64, path: &str, completeness: &Completeness) -> String {
    format!(
        "snapshot #{id} of {path} is partial: it {}",
        completeness
            .describe_missing()
            .unwrap_or_else(|| "lacks commits made since the last checkpoint".into())
    )
}

/// One database and what snapshotting it gave.
pub(crate) type SnapshotResult = (DbFile, Result<SnapshotOutcome, CommandError>);

/// Which of the per-database lines [`report`] prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lines {
    /// A line for every snapshot (commands the user ran).
    Every,
    /// Only for databases that changed (git hooks: silent when nothing happened).
    Changed,
}

/// Whether a snapshot may be a baseline: as the database's latest snapshot says (what
/// every snapshot but a user's explicit one or the hooks' after a loss records).
pub(crate) fn as_before(_: &DbFile) -> AfterLoss {
    AfterLoss::AsBefore
}

/// Snapshot each database (a progress bar each on a terminal) and report each stored
/// snapshot as it is taken ([`report`], per `lines`); `after_loss` says for each whether
/// its state may be a baseline. Failures are returned, not printed, so the caller
/// decides whether they are fatal (the guard refuses to run git).
pub(crate) fn snapshot_all(
    ui: &Ui,
    ctx: &Context,
    store: &mut Store,
    databases: &[DbFile],
    (operation_id, message): (i64, Option<&str>),
    lines: Lines,
    after_loss: &dyn Fn(&DbFile) -> AfterLoss,
) -> Vec<SnapshotResult> {
    let mut results = Vec::new();
    for database in databases {
        let bar = ui.progress(database.size, &format!("snapshot {}", database.path));
        let progress = |done: u64| bar.set_position(done);
        let outcome = store.snapshot(
            &SnapshotRequest {
                worktree: &ctx.repo.worktree,
                path: database.path.as_str(),
                kind: database.kind,
                git_state: database.git.as_str(),
                operation_id,
                message,
                after_loss: after_loss(database),
            },
            &progress,
        );
        bar.finish_and_clear();
        if let Ok(taken) = &outcome {
            report(ui, database, taken, lines);
        }
        results.push((database.clone(), outcome.map_err(CommandError::from)));
    }
    // A new snapshot record (new bytes or not) goes to the autopush remote.
    let recorded = results
        .iter()
        .any(|(_, r)| r.as_ref().is_ok_and(|t| t.unchanged_since.is_none()));
    if recorded {
        crate::flow::remote::autopush_after_snapshots(ctx);
    }
    results
}

/// Why a snapshot exists, the "OCCASION" of `log` and `prune`: "before git pull" (the
/// git command it was taken for), "by dbguard snapshot" (a dbguard command took it on
/// its own), or "restored from #5" (the state a restore put back).
pub(crate) fn occasion(snapshot: &SnapshotInfo) -> String {
    match crate::compare::restored_from(snapshot) {
        Some(from) => format!("restored from #{from}"),
        None => operation_occasion(&snapshot.operation, "by"),
    }
}

/// "before git pull", or for a dbguard command `dbguard_verb` and it: "by dbguard
/// snapshot" (it took the snapshot), "at dbguard export" (it found the state unchanged).
pub(crate) fn operation_occasion(
    operation: &crate::store::OperationInfo,
    dbguard_verb: &str,
) -> String {
    let command = operation.describe();
    if operation.is_dbguard_command() {
        format!("{dbguard_verb} {command}")
    } else {
        format!("before {command}")
    }
}

/// A warning for each database that could not be snapshotted, where a failure must not
/// stop the command (hooks, install).
pub(crate) fn warn_failures(ui: &Ui, results: &[SnapshotResult]) {
    for (database, outcome) in results {
        if let Err(error) = outcome {
            ui.warn(&format!(
                "could not snapshot {}: {}",
                database.path,
                error.message()
            ));
        }
    }
}

/// Tell the user about one stored snapshot: its warnings and, when partial, what it
/// lacks (always), and its one-line description (for `Lines::Changed` only when it
/// stored something new).
pub(crate) fn report(ui: &Ui, database: &DbFile, taken: &SnapshotOutcome, lines: Lines) {
    if let Some(warning) = &taken.warning {
        ui.warn(warning);
    }
    // A hook says nothing about a database that did not change.
    if lines == Lines::Every || (!taken.reused && taken.unchanged_since.is_none()) {
        ui.status(&describe(ui, database, taken));
    }
    let completeness = &taken.completeness;
    if completeness.partial {
        ui.warn(&partial_message(
            taken.id,
            database.path.as_str(),
            completeness,
        ));
    }
}

/// Snapshot `databases` as one recorded operation (`kind`, `argv`), finished afterwards.
// Each argument is one fact about the operation, passed on to `snapshot_all` as it is.
#[allow(clippy::too_many_arguments)]
pub(crate) fn snapshot_operation(
    ui: &Ui,
    ctx: &Context,
    store: &mut Store,
    (kind, argv): (&str, &[String]),
    databases: &[DbFile],
    message: Option<&str>,
    lines: Lines,
    after_loss: &dyn Fn(&DbFile) -> AfterLoss,
) -> Result<Vec<SnapshotResult>, CommandError> {
    let head = ctx.repo.head();
    let operation = store.begin_operation(kind, argv, head.as_deref(), clock::now())?;
    let results = snapshot_all(
        ui,
        ctx,
        store,
        databases,
        (operation, message),
        lines,
        after_loss,
    );
    store.finish_operation(operation, head.as_deref(), Some(0))?;
    Ok(results)
}

/// "#12 posts.db: 900,000 rows in 2 tables, 412.0 MiB (+3.1 MiB stored)", or for a
/// database unchanged since its latest snapshot (no new one recorded) "posts.db unchanged
/// since snapshot #4 (900,000 rows in 2 tables, 412.0 MiB)".
pub(crate) fn describe(ui: &Ui, database: &DbFile, taken: &SnapshotOutcome) -> String {
    let tables = taken.census.tables.len();
    let contents = format!(
        "{} in {} table{}, {}",
        ui::rows(taken.census.total_rows()),
        tables,
        if tables == 1 { "" } else { "s" },
        ui::bytes(taken.size),
    );
    let id = ui.paint(crate::ui::Tone::Bold, &format!("#{}", taken.id));
    if taken.unchanged_since.is_some() {
        let stored = if taken.new_bytes > 0 {
            format!("; +{} stored", ui::bytes(taken.new_bytes))
        } else {
            String::new()
        };
        return format!(
            "{} is saved: unchanged since snapshot {id} ({contents}{stored})",
            database.path
        );
    }
    let stored = if taken.reused {
        "unchanged, not reopened".to_string()
    } else {
        format!("+{} stored", ui::bytes(taken.new_bytes))
    };
    format!("{id} {}: {contents} ({stored})", database.path)
}

/// The warning and advice for a database git tracks (status, install and the guard).
pub(crate) fn version_control_warning(ui: &Ui, path: &RepoPath) {
    ui.warn(&format!(
        "{path} is under version control: pull, checkout, reset --hard and stash will replace it with committed copies"
    ));
    ui.hint(&format!(
        "stop tracking it: dbguard untrack {} (snapshot, git rm --cached, .gitignore), then commit",
        ui::shell_quote(path.as_str())
    ));
    ui.hint(
        "caveat: when collaborators pull that commit, git deletes their copy; they should pull with `dbguard pull` (it snapshots first)",
    );
}

/// The file in the git dir (per worktree) that remembers when each database's
/// version-control warning was last said: one `<RFC 3339 time>\t<path>` line each.
const WARNED_FILE: &str = "dbguard-warned";

/// The version-control warning on a guarded command: said once a day per database, so
/// that the three lines are read instead of scrolled past (`dbguard status` and
/// `install` say it every time). When the git dir cannot be written (a read-only
/// repository), nothing is remembered and the warning is said every time.
pub(crate) fn version_control_warning_daily(ui: &Ui, ctx: &Context, path: &RepoPath) {
    let file = ctx.repo.git.path().join(WARNED_FILE);
    let now = clock::now();
    let mut warned: Vec<(chrono::DateTime<chrono::Utc>, String)> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (time, path) = line.split_once('\t')?;
            let time = chrono::DateTime::parse_from_rfc3339(time).ok()?;
            Some((time.with_timezone(&chrono::Utc), path.to_string()))
        })
        // Entries older than a day say nothing any more.
        .filter(|(time, _)| now - *time < chrono::Duration::days(1) && *time <= now)
        .collect();
    if warned.iter().any(|(_, p)| p == path.as_str()) {
        return;
    }
    version_control_warning(ui, path);
    warned.push((now, path.as_str().to_string()));
    let text: String = warned
        .iter()
        .map(|(time, path)| format!("{}\t{path}\n", time.to_rfc3339()))
        .collect();
    // Best effort, written whole (temp file + rename) so that a reader never sees half.
    let temp = file.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&temp, text).is_ok() && std::fs::rename(&temp, &file).is_err() {
        let _ = std::fs::remove_file(&temp);
    }
}
