//! `dbguard snapshot [PATH…] [-m MESSAGE]`, and the routine every other command uses to
//! snapshot a list of databases.

use std::path::PathBuf;

use crate::clock;
use crate::db::Completeness;
use crate::error::{CommandError, ErrorKind};
use crate::flow::snapshot::{
    Lines, SnapshotResult, as_before, partial_advice, partial_message, snapshot_operation,
};
use crate::flow::{Context, command_line};
use crate::scan::DbFile;
use crate::store::{AfterLoss, SnapshotOutcome};
use crate::ui::{self, Ui, json};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard snapshot                      every database in the working tree
  dbguard snapshot data/posts.db -m 'before migration'
  dbguard snapshot --quiet              for cron: one line per run

A DuckDB file that another process holds open read-write is copied live (WAL and main
file, retried while checkpoints overlap the copy). When no complete copy can be made, the
database as of its last checkpoint is stored and marked partial (`log`, `show`, `status`).

Naming a database accepts its state as the baseline `status` compares with, also after a
loss; a snapshot of everything (the schedule's) accepts nothing.

Exit status: 0 every snapshot complete; 1 a snapshot failed; 3 every snapshot was stored
but at least one is partial (it lacks commits still in a DuckDB WAL).")]
pub(crate) struct Args {
    /// Database files or directories (default: every database in the working tree).
    pub(crate) paths: Vec<PathBuf>,
    /// A note stored with the snapshot.
    #[arg(short, long)]
    pub(crate) message: Option<String>,
}

/// The one line `--quiet` prints, for cron logs:
/// "2026-11-21T11:45:00Z snapshot: 3 databases, 1 changed, +1.2 MiB".
fn quiet_summary(results: &[(DbFile, Result<SnapshotOutcome, CommandError>)]) -> String {
    let taken: Vec<&SnapshotOutcome> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let changed = taken.iter().filter(|t| t.new_bytes > 0).count();
    let added: u64 = taken.iter().map(|t| t.new_bytes).sum();
    let failed = results.len() - taken.len();
    let mut line = format!(
        "{} snapshot: {} database{}, {changed} changed, +{}",
        clock::now().format("%Y-%m-%dT%H:%M:%SZ"),
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        ui::bytes(added)
    );
    if failed > 0 {
        line.push_str(&format!(", {failed} failed"));
    }
    // A scheduled run's log line says whether the backup is whole.
    let partial: Vec<String> = results
        .iter()
        .filter_map(|(database, r)| {
            let taken = r.as_ref().ok()?;
            let completeness = &taken.completeness;
            completeness.partial.then(|| {
                format!(
                    "{} #{} {}",
                    database.path,
                    taken.id,
                    completeness.describe_missing().unwrap_or_default()
                )
            })
        })
        .collect();
    if partial.is_empty() {
        if !taken.is_empty() {
            line.push_str(if failed == 0 {
                ", complete"
            } else {
                ", the rest complete"
            });
        }
    } else {
        line.push_str(&format!(
            ", {} PARTIAL: {}",
            partial.len(),
            partial.join("; ")
        ));
    }
    line
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    let databases = databases_to_snapshot(ui, ctx, args)?;
    if databases.is_empty() {
        if ui.json {
            ui.out("[]");
        } else if ui.quiet {
            ui.out(&quiet_summary(&[]));
        } else {
            ui.status("no SQLite or DuckDB databases found in this working tree");
        }
        return Ok(());
    }
    let mut store = ctx.store()?;
    // Naming a database is how a user accepts its state after a loss (status then
    // compares with it); a snapshot of everything (the schedule's) accepts nothing.
    let accepted = |_: &DbFile| AfterLoss::Accepted;
    let after_loss: &dyn Fn(&DbFile) -> AfterLoss = if args.paths.is_empty() {
        &as_before
    } else {
        &accepted
    };
    let results = snapshot_operation(
        ui,
        ctx,
        &mut store,
        ("snapshot", &command_line()),
        &databases,
        args.message.as_deref(),
        Lines::Every,
        after_loss,
    )?;
    if ui.json {
        let report: Vec<json::Taken> = results
            .iter()
            .map(|(database, outcome)| taken(database, outcome))
            .collect();
        json::print(ui, &report);
    } else if ui.quiet {
        ui.out(&quiet_summary(&results));
    }
    exit_result(ui, results)
}

/// The paths named, or every database in the working tree (saying which were skipped).
fn databases_to_snapshot(ui: &Ui, ctx: &Context, args: &Args) -> Result<Vec<DbFile>, CommandError> {
    let scanner = ctx.scanner();
    if args.paths.is_empty() {
        let scan = scanner.scan();
        for skipped in &scan.skipped {
            ui.status(&format!("skipped {}: {}", skipped.path, skipped.reason));
        }
        return Ok(scan.databases);
    }
    let mut found = Vec::new();
    for path in &args.paths {
        found.extend(scanner.explicit(&ctx.cwd, path)?);
    }
    Ok(found)
}

/// One database's snapshot result, as `--json` prints it.
fn taken(database: &DbFile, outcome: &Result<SnapshotOutcome, CommandError>) -> json::Taken {
    let mut taken = json::Taken {
        path: database.path.to_string(),
        kind: database.kind,
        git_state: database.git,
        id: None,
        rows: None,
        tables: None,
        size_bytes: None,
        stored_bytes: None,
        reused: false,
        unchanged: false,
        consistency: None,
        completeness: json::Completeness::from(&Completeness::default()),
        error: None,
    };
    match outcome {
        Ok(outcome) => {
            taken.id = Some(outcome.id);
            taken.rows = Some(outcome.census.total_rows());
            taken.tables = Some(outcome.census.tables.clone());
            taken.size_bytes = Some(outcome.size);
            taken.stored_bytes = Some(outcome.new_bytes);
            taken.reused = outcome.reused;
            taken.unchanged = outcome.unchanged_since.is_some();
            taken.consistency = Some(outcome.consistency.clone());
            taken.completeness = json::Completeness::from(&outcome.completeness);
        }
        Err(error) => taken.error = Some(error.message()),
    }
    taken
}

/// How the command ends: success; a refusal (exit 3) when every snapshot was stored but
/// some are partial; the one failure itself; or a summary after printing each failure.
fn exit_result(ui: &Ui, results: Vec<SnapshotResult>) -> Result<(), CommandError> {
    let total = results.len();
    let failures: Vec<&CommandError> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    let partial: Vec<(String, i64, Completeness)> = results
        .iter()
        .filter_map(|(database, outcome)| {
            let outcome = outcome.as_ref().ok()?;
            let completeness = outcome.completeness.clone();
            completeness
                .partial
                .then(|| (database.path.to_string(), outcome.id, completeness))
        })
        .collect();
    match failures.len() {
        0 if !partial.is_empty() => {
            let pid = partial
                .iter()
                .find_map(|(_, _, c)| c.missing.as_ref().and_then(|m| m.holder_pid));
            let mut error = CommandError::new(format!(
                "{} of {total} snapshot{} partial: {} lack{} committed data",
                partial.len(),
                if total == 1 { " is" } else { "s are" },
                if partial.len() == 1 { "it" } else { "they" },
                if partial.len() == 1 { "s" } else { "" },
            ));
            for (path, id, completeness) in &partial {
                error = error.cause(partial_message(*id, path, completeness));
            }
            Err(error
                .with_kind(ErrorKind::Refused)
                .hint(partial_advice(pid)))
        }
        0 => Ok(()),
        1 if total == 1 => match results.into_iter().next() {
            Some((_, outcome)) => outcome.map(|_| ()),
            None => Ok(()),
        },
        n => {
            for error in &failures {
                error.report_without_hints(ui);
            }
            Err(CommandError::new(format!(
                "{n} of {total} databases could not be snapshotted"
            ))
            .hint("the others were saved; fix or exclude the failing files and run `dbguard snapshot` again"))
        }
    }
}
