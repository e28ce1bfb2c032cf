//! `dbguard restore [PATH] [--from ID] [--table NAME…] [--to PATH]`: put a snapshot back.

use std::path::PathBuf;

use crate::error::CommandError;
use crate::flow::Context;
use crate::flow::offer::{report, run_restore};
use crate::restore::Target;
use crate::store::{SnapshotInfo, Store};
use crate::ui::local_time;
use crate::ui::{self, Ui, json};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard restore posts.db                 the latest snapshot of posts.db
  dbguard restore posts.db --from 14       a particular snapshot
  dbguard restore --from 14 --table posts  only the rows of one table
  dbguard restore --from 14 --to /tmp/old.db
  dbguard restore                          pick from recent snapshots (on a terminal)

The current state is snapshotted first, so every restore can be undone with
`dbguard restore PATH --from <that id>`. To guard `git restore`, use `dbguard git restore …`.")]
pub(crate) struct Args {
    /// The database to restore (default: the snapshot's own path).
    pub(crate) path: Option<PathBuf>,
    /// Snapshot id (default: the latest snapshot of PATH).
    #[arg(long, value_name = "ID")]
    pub(crate) from: Option<String>,
    /// Replace only these tables' rows, leaving the rest of the database as it is.
    #[arg(long = "table", value_name = "NAME")]
    pub(crate) tables: Vec<String>,
    /// Write the snapshot to this new file instead; the live database is left alone.
    #[arg(long, value_name = "PATH")]
    pub(crate) to: Option<PathBuf>,
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    let no_snapshots = || {
        CommandError::new("there are no snapshots in this repository yet")
            .hint("`dbguard snapshot` takes one; `dbguard install` keeps them coming")
    };
    // Choosing only reads, and the picker lets go of the store before it asks: a user
    // thinking about which snapshot never holds up a git command's snapshot.
    let Some(reader) = ctx.existing_store()? else {
        return Err(no_snapshots());
    };
    let chosen = choose(ui, ctx, reader, args)?;
    if args.to.is_some() && !args.tables.is_empty() {
        return Err(CommandError::new("--table and --to cannot be combined")
            .hint("--to writes the whole snapshot to a new file"));
    }
    let target = match &args.to {
        Some(path) => Target::To(ctx.cwd.join(path)),
        None => Target::InPlace,
    };
    // Only --to leaves the store alone (an in-place restore records an undo snapshot), so
    // only --to can read a read-only store.
    let store = if args.to.is_some() {
        ctx.existing_store()?
    } else {
        ctx.existing_store_for_writing()?
    };
    let Some(mut store) = store else {
        return Err(no_snapshots());
    };
    // Found again: a prune may have removed it while the picker was open.
    let snapshot = Context::find_snapshot(&store, &chosen.id.to_string())?;
    let restored = run_restore(ui, &ctx.repo, &mut store, &snapshot, &args.tables, target)?;
    if ui.json {
        json::print(ui, &json::Restored::new(&snapshot, &restored));
    }
    let shown = match &args.to {
        Some(_) => restored.path.display().to_string(),
        None => snapshot.path.clone(),
    };
    report(ui, &shown, snapshot.id, &restored);
    Ok(())
}

/// The snapshot to restore: `--from`, the likely one of PATH, or the user's pick (the
/// store is closed before the picker asks).
fn choose(ui: &Ui, ctx: &Context, store: Store, args: &Args) -> Result<SnapshotInfo, CommandError> {
    let worktree = ctx.worktree_key();
    if let Some(id) = &args.from {
        let snapshot = Context::find_snapshot(&store, id)?;
        if let Some(path) = &args.path {
            let wanted = ctx.repo.relative(&ctx.cwd, path)?;
            if wanted.as_str() != snapshot.path && args.to.is_none() {
                return Err(CommandError::new(format!(
                    "snapshot #{} is of {}, not {}",
                    snapshot.id, snapshot.path, wanted
                ))
                .hint(format!("to write it to {wanted}, use --to {wanted}")));
            }
        }
        return Ok(snapshot);
    }
    if let Some(path) = &args.path {
        let wanted = ctx.repo.relative(&ctx.cwd, path)?;
        let recent = store.snapshots(Some(&worktree), Some(wanted.as_str()), Some(30))?;
        if recent.is_empty() {
            return Err(
                CommandError::new(format!("there is no snapshot of {wanted}"))
                    .hint("`dbguard log` lists the snapshots there are"),
            );
        }
        // After `git checkout` the newest snapshot is the state git left; the one a
        // user wants back is the newest taken before the database lost rows.
        let index = likely_wanted(&listed_rows(&recent), |path| {
            live_rows(ctx, &store, &recent, path)
        });
        if index > 0 {
            ui.status(&format!(
                "restoring #{} ({}, taken before `{}`): {} lost rows after it; the newest snapshot is #{} ({}): --from {}",
                recent[index].id,
                ui::rows(recent[index].census.total_rows()),
                recent[index].operation.describe(),
                wanted,
                recent[0].id,
                ui::rows(recent[0].census.total_rows()),
                recent[0].id,
            ));
        }
        return Ok(recent[index].clone());
    }
    let recent = store.snapshots(Some(&worktree), None, Some(30))?;
    if recent.is_empty() {
        return Err(CommandError::new(
            "there are no snapshots in this working tree",
        ));
    }
    if ui.assume_yes || !ui.can_prompt() {
        // `recent` is newest first and not empty: an example the user can run as it is.
        let example = &recent[0];
        return Err(
            CommandError::new("which snapshot? name a PATH or --from ID").hint(format!(
                "`dbguard log` lists them; e.g. dbguard restore {} --from {}",
                crate::ui::shell_quote(&example.path),
                example.id
            )),
        );
    }
    let items: Vec<String> = recent.iter().map(picker_item).collect();
    // Preselect the snapshot a user most likely wants back: the newest one taken right
    // before its database shrank or vanished, not simply the newest (often the bad state).
    let preselected = likely_wanted(&listed_rows(&recent), |path| {
        live_rows(ctx, &store, &recent, path)
    });
    drop(store);
    let picked = dialoguer::Select::new()
        .with_prompt("Restore which snapshot?")
        .items(&items)
        .default(preselected)
        .interact_opt()
        .map_err(|e| CommandError::with_source("cannot ask on this terminal", e))?;
    match picked {
        Some(index) => Ok(recent[index].clone()),
        None => Err(CommandError::new("nothing chosen; nothing restored")),
    }
}

/// One line of the picker: id, database, rows, when and how long ago, what it was taken
/// before (and the newest command that found it unchanged), and the rows per table.
fn picker_item(s: &SnapshotInfo) -> String {
    let tables: Vec<String> = s
        .census
        .tables
        .iter()
        .map(|(t, n)| format!("{t} {}", ui::count(*n)))
        .collect();
    let mut label = crate::flow::snapshot::occasion(s);
    if let Some(last) = s.unchanged.last() {
        label.push_str(&format!(
            ", unchanged before `{}` ({})",
            last.operation.describe(),
            crate::ui::age(last.created_at)
        ));
    }
    format!(
        "#{:<4} {}  {}  {} ({})  {label}  [{}]",
        s.id,
        s.path,
        ui::rows(s.census.total_rows()),
        local_time(s.created_at),
        crate::ui::age(s.created_at),
        tables.join(", ")
    )
}

fn listed_rows(snapshots: &[SnapshotInfo]) -> Vec<(&str, u64)> {
    snapshots
        .iter()
        .map(|s| (s.path.as_str(), s.census.total_rows()))
        .collect()
}

/// Rows in the database at `path` now: 0 when it is gone, `None` when it cannot be read
/// (no evidence either way). Counted only when the stat cache cannot vouch that the file
/// is unchanged since a snapshot (counting the 376 MiB seed-shaped database reads all of
/// it: 0.4 s of a restore that otherwise takes about a second).
fn live_rows(ctx: &Context, store: &Store, snapshots: &[SnapshotInfo], path: &str) -> Option<u64> {
    let file = ctx.repo.worktree.join(path);
    let kind = snapshots.iter().find(|s| s.path == path).map(|s| s.kind)?;
    if !file.exists() {
        return Some(0);
    }
    if let Some(census) = store.census_if_unchanged(&ctx.worktree_key(), path, kind) {
        return Some(census.total_rows());
    }
    crate::db::census_live(kind, &file)
        .ok()
        .map(|c| c.total_rows())
}

/// Index of the snapshot to preselect in `listed` ((path, rows), newest first): the
/// newest one after which its database shrank, judged by the next newer snapshot of the
/// same path or, for a path's newest snapshot, by `live_rows` (the file now; `None` when
/// it cannot be read). 0 when nothing shrank.
fn likely_wanted(listed: &[(&str, u64)], mut live_rows: impl FnMut(&str) -> Option<u64>) -> usize {
    for (i, (path, rows)) in listed.iter().enumerate() {
        let newer = listed[..i].iter().rev().find(|(p, _)| p == path);
        let after = match newer {
            Some((_, newer_rows)) => Some(*newer_rows),
            None => live_rows(path),
        };
        if after.is_some_and(|after| after < *rows) {
            return i;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::{likely_wanted, picker_item};
    use crate::db::{Census, DbKind};
    use crate::store::SnapshotInfo;
    use crate::store::{OperationInfo, OperationRef};

    fn operation(id: i64, kind: &str, argv: &[&str]) -> OperationInfo {
        OperationInfo {
            id,
            kind: kind.into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            head_before: None,
            head_after: None,
            exit_code: Some(0),
        }
    }

    fn snapshot(
        id: i64,
        rows: u64,
        days_ago: i64,
        operation: OperationInfo,
        message: Option<&str>,
    ) -> SnapshotInfo {
        SnapshotInfo {
            id,
            path: "posts.db".into(),
            worktree: "/w".into(),
            kind: DbKind::Sqlite,
            created_at: crate::clock::now() - chrono::Duration::days(days_ago),
            size: 4096,
            consistency: "online-backup".into(),
            completeness: Default::default(),
            git_state: "ignored".into(),
            reused: false,
            message: message.map(str::to_string),
            operation,
            census: Census {
                tables: [("posts".to_string(), rows), ("users".to_string(), 2)].into(),
                schema: "s".into(),
            },
            image_id: id,
            image_digest: format!("{id:064}"),
            unchanged: Vec::new(),
            origin: None,
            after_loss_of: None,
        }
    }

    #[test]
    fn the_picker_shows_rows_label_and_age() {
        let mut pulled = snapshot(4, 90_000, 2, operation(4, "guard", &["git", "pull"]), None);
        pulled.unchanged.push(OperationRef {
            created_at: crate::clock::now() - chrono::Duration::hours(3),
            git_state: "ignored".into(),
            reopened: false,
            message: Some("before export".into()),
            operation: operation(6, "export", &["dbguard", "export"]),
        });
        let listed = [
            snapshot(
                7,
                5_000,
                1,
                operation(
                    7,
                    "restore",
                    &["dbguard", "restore", "posts.db", "--from", "2"],
                ),
                Some("restored from #2"),
            ),
            pulled,
            snapshot(
                2,
                5_000,
                3,
                operation(2, "install", &["dbguard", "install"]),
                None,
            ),
        ];
        // Local times depend on the machine's time zone; ages are fixed by construction.
        let text: String = listed
            .iter()
            .map(|s| picker_item(s).replace(&crate::ui::local_time(s.created_at), "[time]") + "\n")
            .collect();
        insta::assert_snapshot!("picker_items", text);
    }

    #[test]
    fn the_picker_preselects_the_snapshot_taken_before_a_shrink() {
        // Newest first: the post-reset baseline (5,100), then the pre-reset copy (90,000).
        let listed = [
            ("posts.db", 5_100),
            ("posts.db", 90_000),
            ("posts.db", 80_000),
        ];
        assert_eq!(likely_wanted(&listed, |_| Some(5_100)), 1);
        // The file shrank after its newest snapshot: that one.
        assert_eq!(likely_wanted(&listed, |_| Some(10)), 0);
        // A vanished database (0 rows now) among others.
        let listed = [("a.db", 7), ("b.db", 300), ("a.db", 7)];
        assert_eq!(
            likely_wanted(&listed, |p| Some(if p == "b.db" { 0 } else { 7 })),
            1
        );
        // Nothing shrank, or nothing can be judged: the newest.
        assert_eq!(likely_wanted(&[("a.db", 1), ("a.db", 1)], |_| Some(5)), 0);
        assert_eq!(likely_wanted(&[("a.db", 9)], |_| None), 0);
    }
}
