//! The restore offer: after a git command shrank a database, show what was lost and offer
//! to put it back (never asking without a terminal: the exact command is printed instead);
//! and the report of a restore, shared with `dbguard restore`.

use indicatif::ProgressBar;

use crate::compare::Shrink;
use crate::error::CommandError;
use crate::flow::Context;
use crate::git::Repo;
use crate::restore::{self, ReadProgress, RestoreWarning, Restored, Target};
use crate::store::{SnapshotInfo, Store};
use crate::ui::{self, Tone, Ui, shell_quote};

/// The question the guard and the hooks ask after a shrink, and what happens next.
/// Never asks without a terminal: prints the exact command instead. Returns the paths
/// restored. The caller holds no store while this asks: the restore opens it.
pub(crate) fn offer(ui: &Ui, ctx: &Context, shrinks: &[Shrink]) -> Vec<String> {
    let mut restored_paths = Vec::new();
    for shrink in shrinks {
        for line in shrink_report(ui, shrink) {
            ui.status(&line);
        }
        let command = format!(
            "dbguard restore {} --from {}",
            shell_quote(&shrink.path),
            shrink.snapshot_id
        );
        let origin = match (shrink.restored_from, &shrink.still_before) {
            (Some(from), _) => format!("the state restored from #{from}"),
            (None, Some(later)) => format!("{}, unchanged before `{later}`", shrink.taken()),
            (None, None) => shrink.taken(),
        };
        let question = format!(
            "Restore {} from #{} ({origin}, {})?",
            shrink.path,
            shrink.snapshot_id,
            ui::rows(shrink.rows_before())
        );
        match ui.confirm(&question, true) {
            Some(true) => match restore_by_id(ui, ctx, shrink.snapshot_id) {
                Ok(restored) => {
                    report(ui, &shrink.path, shrink.snapshot_id, &restored);
                    restored_paths.push(shrink.path.clone());
                }
                Err(error) => error.report(ui),
            },
            Some(false) => ui.status(&format!("not restored; later: {command}")),
            None => ui.status(&format!("to restore it: {command}")),
        }
    }
    restored_paths
}

fn restore_by_id(ui: &Ui, ctx: &Context, id: i64) -> Result<Restored, CommandError> {
    let mut store = ctx.store()?;
    let snapshot = Context::find_snapshot(&store, &id.to_string())?;
    run_restore(ui, &ctx.repo, &mut store, &snapshot, &[], Target::InPlace)
}

/// Run the restore engine with a progress bar for reading the snapshot back, and warn
/// about what went wrong after the file was restored.
pub(crate) fn run_restore(
    ui: &Ui,
    repo: &Repo,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    tables: &[String],
    target: Target,
) -> Result<Restored, CommandError> {
    let bar = ui.progress(snapshot.size, &format!("read #{}", snapshot.id));
    let restored = restore::restore(repo, store, snapshot, tables, target, &bar)?;
    for warning in &restored.warnings {
        ui.warn(&warning_text(warning));
    }
    Ok(restored)
}

impl ReadProgress for ProgressBar {
    fn read(&self, done: u64) {
        self.set_position(done);
    }

    fn read_finished(&self) {
        self.finish_and_clear();
    }
}

fn warning_text(warning: &RestoreWarning) -> String {
    match warning {
        RestoreWarning::BaselineNotRecorded { path, error } => format!(
            "{path} is restored, but the restored state could not be recorded as its latest snapshot ({error}); take one with `dbguard snapshot {}` so later losses are measured against it",
            shell_quote(path)
        ),
    }
}

/// Tell the user what was restored and how to undo it.
pub(crate) fn report(ui: &Ui, path: &str, from: i64, restored: &Restored) {
    if let Some(note) = &restored.note {
        ui.warn(note);
    }
    ui.status(&format!(
        "restored {path} from #{from}: {} ({})",
        ui::rows(restored.census.total_rows()),
        restored.method
    ));
    if let Some(undo) = restored.undo {
        ui.status(&format!(
            "undo with: dbguard restore {} --from {undo}",
            shell_quote(path)
        ));
    }
}

/// The shrink report: a headline and a table of rows before/after.
fn shrink_report(ui: &Ui, shrink: &Shrink) -> Vec<String> {
    let headline = match (&shrink.after, &shrink.unreadable) {
        (None, Some(why)) => format!(
            "{} was replaced by something that is not a readable database ({why})",
            shrink.path
        ),
        (None, None) => format!("{} is gone", shrink.path),
        (Some(_), _) if shrink.schema_replaced => format!(
            "{} was replaced by a different database: {} before, {} now",
            shrink.path,
            ui::rows(shrink.rows_before()),
            ui::count(shrink.rows_after())
        ),
        (Some(_), _) => format!(
            "{} lost rows: {} before, {} now",
            shrink.path,
            ui::count(shrink.rows_before()),
            ui::count(shrink.rows_after())
        ),
    };
    let mut lines = vec![ui.paint(Tone::Bad, &headline)];
    let mut rows = vec![vec!["TABLE".to_string(), "BEFORE".into(), "AFTER".into()]];
    for loss in &shrink.lost {
        rows.push(vec![
            loss.table.clone(),
            ui::count(loss.before),
            loss.after.map(ui::count).unwrap_or_else(|| "gone".into()),
        ]);
    }
    lines.extend(ui::table(&rows).into_iter().map(|l| format!("  {l}")));
    lines.push(format!(
        "  snapshot #{} {}",
        shrink.snapshot_id,
        snapshot_origin(shrink)
    ));
    lines
}

/// Where a shrink's snapshot came from, as the end of a sentence about it.
fn snapshot_origin(shrink: &Shrink) -> String {
    let origin = match shrink.restored_from {
        Some(from) => format!(
            "is the state restored from #{from} by `{}`",
            shrink.taken_before
        ),
        None => format!("was {}", shrink.taken()),
    };
    match &shrink.still_before {
        Some(later) => format!("{origin}; the database was unchanged since then before `{later}`"),
        None => origin,
    }
}
