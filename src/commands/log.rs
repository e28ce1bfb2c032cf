//! `dbguard log [PATH]`: snapshots newest first, with rows, size and the git operation,
//! and the later operations that found a database unchanged and refer to its snapshot.

use std::path::PathBuf;

use crate::error::CommandError;
use crate::flow::Context;
use crate::flow::snapshot::{occasion, operation_occasion, partial_message};
use crate::ui::local_time;
use crate::ui::{self, Tone, Ui, json};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard log                 every snapshot in this working tree
  dbguard log posts.db -n 5   the last five of one database
  dbguard log --json          for scripts")]
pub(crate) struct Args {
    /// Only snapshots of this database.
    pub(crate) path: Option<PathBuf>,
    /// How many snapshots to show.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub(crate) limit: usize,
    /// Include snapshots taken in other worktrees of this repository.
    #[arg(long)]
    pub(crate) all_worktrees: bool,
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    let path = match &args.path {
        Some(path) => Some(ctx.repo.relative(&ctx.cwd, path)?),
        None => None,
    };
    // A path that names nothing, now or in any snapshot, is a typo: say so (git log does).
    let unknown_path = |path: &crate::git::RepoPath| {
        CommandError::new(format!(
            "{path} does not exist and has no snapshots in this working tree"
        ))
        .hint("check the path; `dbguard log` lists every snapshot, `dbguard status` every database")
    };
    let missing = path
        .as_ref()
        .filter(|p| std::fs::symlink_metadata(p.in_worktree(&ctx.repo.worktree)).is_err());
    let Some(store) = ctx.existing_store()? else {
        if let Some(path) = missing {
            return Err(unknown_path(path));
        }
        if ui.json {
            ui.out("[]");
        } else {
            ui.status("no snapshots yet; `dbguard snapshot` takes one");
        }
        return Ok(());
    };
    let worktree = ctx.worktree_key();
    let snapshots = store.snapshots(
        (!args.all_worktrees).then_some(worktree.as_str()),
        path.as_ref().map(|p| p.as_str()),
        Some(args.limit),
    )?;
    if snapshots.is_empty()
        && let Some(path) = missing
    {
        return Err(unknown_path(path));
    }
    if ui.json {
        let entries: Vec<json::Snapshot> = snapshots.iter().map(json::Snapshot::from).collect();
        json::print(ui, &entries);
        return Ok(());
    }
    if snapshots.is_empty() {
        ui.status("no snapshots match; `dbguard snapshot` takes one");
        return Ok(());
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "TAKEN".into(),
        "DATABASE".into(),
        "ROWS".into(),
        "SIZE".into(),
        "OCCASION".into(),
    ]];
    let mut partial = Vec::new();
    // One line per snapshot, and one per later operation that found the database
    // unchanged and refers to it; newest first (operation ids break ties of the clock).
    let mut lines = Vec::new();
    for snapshot in &snapshots {
        let completeness = &snapshot.completeness;
        let mut rows_cell = ui::count(snapshot.census.total_rows());
        if completeness.partial {
            rows_cell.push_str(" PARTIAL");
            partial.push(partial_message(snapshot.id, &snapshot.path, completeness));
        }
        let line = |time, before: String| {
            vec![
                format!("#{}", snapshot.id),
                local_time(time),
                snapshot.path.clone(),
                rows_cell.clone(),
                ui::bytes(snapshot.size),
                before,
            ]
        };
        lines.push((
            (snapshot.created_at, snapshot.operation.id, snapshot.id),
            line(snapshot.created_at, occasion(snapshot)),
        ));
        for seen in &snapshot.unchanged {
            lines.push((
                (seen.created_at, seen.operation.id, snapshot.id),
                line(
                    seen.created_at,
                    format!(
                        "{} (unchanged since #{})",
                        operation_occasion(&seen.operation, "at"),
                        snapshot.id
                    ),
                ),
            ));
        }
    }
    lines.sort_by_key(|line| std::cmp::Reverse(line.0));
    rows.extend(lines.into_iter().map(|(_, line)| line));
    for (i, line) in ui::table(&rows).into_iter().enumerate() {
        ui.out(&if i == 0 {
            ui.paint(Tone::Dim, &line)
        } else {
            line
        });
    }
    for message in &partial {
        ui.warn(message);
    }
    Ok(())
}
