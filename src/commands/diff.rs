//! `dbguard diff [PATH] [ID [ID]]`: rows per table now vs a snapshot, or between two.

use std::collections::BTreeSet;
use std::path::Path;

use crate::db::{self, Census};
use crate::error::CommandError;
use crate::flow::Context;
use crate::store::Store;
use crate::ui::{self, Tone, Ui, json};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard diff                  every database now vs its last snapshot
  dbguard diff posts.db         one database now vs its last snapshot
  dbguard diff 14               snapshot #14 vs that database now
  dbguard diff 12 14            two snapshots")]
pub(crate) struct Args {
    /// A database path and/or one or two snapshot ids (14 or #14).
    #[arg(value_name = "PATH|ID")]
    pub(crate) items: Vec<String>,
}

#[derive(Debug)]
struct TableDiff {
    table: String,
    before: Option<u64>,
    after: Option<u64>,
}

#[derive(Debug)]
struct Diff {
    path: String,
    /// The snapshot compared (always a snapshot).
    before_id: i64,
    /// The other side: a snapshot, or `None` for the file now.
    after_id: Option<i64>,
    /// False when the after side is the file now and it is gone.
    after_exists: bool,
    schema_changed: bool,
    tables: Vec<TableDiff>,
}

impl Diff {
    /// Column heading of each side: "#4", "now" or "now (missing)".
    fn before_label(&self) -> String {
        format!("#{}", self.before_id)
    }

    fn after_label(&self) -> String {
        match (self.after_id, self.after_exists) {
            (Some(id), _) => format!("#{id}"),
            (None, true) => "now".into(),
            (None, false) => "now (missing)".into(),
        }
    }

    fn json(&self) -> json::Diff {
        json::Diff {
            path: self.path.clone(),
            before_snapshot_id: self.before_id,
            after_snapshot_id: self.after_id,
            after_exists: self.after_exists,
            schema_changed: self.schema_changed,
            tables: self
                .tables
                .iter()
                .map(|t| {
                    let rows = json::TableDiff {
                        rows_before: t.before,
                        rows_after: t.after,
                    };
                    (t.table.clone(), rows)
                })
                .collect(),
        }
    }
}

fn is_id(text: &str) -> bool {
    crate::store::parse_snapshot_id(text).is_some()
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    let Some(store) = ctx.existing_store()? else {
        if let Some(missing) = args
            .items
            .iter()
            .find(|item| !is_id(item) && !ctx.cwd.join(item).exists())
        {
            return Err(CommandError::new(format!(
                "{missing} does not exist and has no snapshots"
            ))
            .hint("check the path; `dbguard status` lists the databases dbguard sees"));
        }
        return Err(
            CommandError::new("there are no snapshots in this repository yet")
                .hint("`dbguard snapshot` takes one"),
        );
    };
    let (ids, paths): (Vec<&String>, Vec<&String>) = args
        .items
        .iter()
        .partition(|item| is_id(item) && !ctx.cwd.join(item).exists());
    if ids.len() > 2 || paths.len() > 1 {
        return Err(CommandError::new("too many arguments").hint("dbguard diff [PATH] [ID [ID]]"));
    }
    let diffs = match ids.as_slice() {
        [first, second] => {
            let a = Context::find_snapshot(&store, first)?;
            let b = Context::find_snapshot(&store, second)?;
            vec![diff(&a.path, a.id, &a.census, Some(b.id), Some(&b.census))]
        }
        [only] => {
            let a = Context::find_snapshot(&store, only)?;
            let current = census_now(ctx, &a.path, a.kind)?;
            vec![diff(&a.path, a.id, &a.census, None, current.as_ref())]
        }
        _ => latest_against_now(ui, ctx, &store, paths.first().map(|p| p.as_str()))?,
    };
    if ui.json {
        let diffs: Vec<json::Diff> = diffs.iter().map(Diff::json).collect();
        json::print(ui, &diffs);
        return Ok(());
    }
    for d in &diffs {
        print_diff(ui, d);
    }
    Ok(())
}

/// The census of the live file at `path`, `None` when it is gone.
fn census_now(ctx: &Context, path: &str, kind: db::DbKind) -> Result<Option<Census>, CommandError> {
    let live = ctx.repo.worktree.join(path);
    if !live.exists() {
        return Ok(None);
    }
    db::census_live(kind, &live)
        .map(Some)
        .map_err(CommandError::from)
}

/// Each database's latest snapshot against the file now: the one named, or every
/// database in the working tree (those without a snapshot are mentioned and skipped).
fn latest_against_now(
    ui: &Ui,
    ctx: &Context,
    store: &Store,
    named: Option<&str>,
) -> Result<Vec<Diff>, CommandError> {
    let targets: Vec<String> = match named {
        Some(path) => vec![ctx.repo.relative(&ctx.cwd, Path::new(path))?.to_string()],
        None => ctx
            .scanner()
            .scan()
            .databases
            .iter()
            .map(|d| d.path.to_string())
            .collect(),
    };
    let worktree = ctx.worktree_key();
    let mut diffs = Vec::new();
    for path in targets {
        let Some(last) = store.latest(&worktree, &path)? else {
            if named.is_some() {
                return Err(no_snapshot_of(ctx, &path));
            }
            ui.status(&format!("{path}: no snapshot yet"));
            continue;
        };
        let current = census_now(ctx, &path, last.kind)?;
        diffs.push(diff(&path, last.id, &last.census, None, current.as_ref()));
    }
    Ok(diffs)
}

/// The error for a path the user named that has no snapshot to compare with.
fn no_snapshot_of(ctx: &Context, path: &str) -> CommandError {
    if ctx.repo.worktree.join(path).exists() {
        CommandError::new(format!("there is no snapshot of {path} to compare with")).hint(format!(
            "`dbguard snapshot {}` takes one",
            crate::ui::shell_quote(path)
        ))
    } else {
        CommandError::new(format!("{path} does not exist and has no snapshots"))
            .hint("check the path; `dbguard log` lists the snapshots there are")
    }
}

/// One diff as a table: rows before, after and the change per table.
fn print_diff(ui: &Ui, d: &Diff) {
    ui.out(&ui.paint(
        Tone::Bold,
        &format!("{}: {} → {}", d.path, d.before_label(), d.after_label()),
    ));
    let mut rows = vec![vec![
        "TABLE".to_string(),
        d.before_label(),
        d.after_label(),
        "CHANGE".into(),
    ]];
    for t in &d.tables {
        let change = match (t.before, t.after) {
            (Some(b), Some(a)) if a == b => String::new(),
            (Some(b), Some(a)) if a > b => format!("+{}", ui::count(a - b)),
            (Some(b), Some(a)) => format!("-{}", ui::count(b - a)),
            (Some(_), None) => "table gone".into(),
            (None, Some(_)) => "new table".into(),
            (None, None) => String::new(),
        };
        rows.push(vec![
            t.table.clone(),
            t.before.map(ui::count).unwrap_or_else(|| "-".into()),
            t.after.map(ui::count).unwrap_or_else(|| "-".into()),
            change,
        ]);
    }
    for line in ui::table(&rows) {
        ui.out(&format!("  {line}"));
    }
    if d.schema_changed {
        ui.out("  schema changed");
    }
}

/// Snapshot `before_id` (its census `before`) against snapshot `after_id`, or the file
/// now when `after_id` is `None` (`after` is `None` when that file is gone).
fn diff(
    path: &str,
    before_id: i64,
    before: &Census,
    after_id: Option<i64>,
    after: Option<&Census>,
) -> Diff {
    let names: BTreeSet<&String> = std::iter::once(before)
        .chain(after)
        .flat_map(|c| c.tables.keys())
        .collect();
    Diff {
        path: path.to_string(),
        before_id,
        after_id,
        after_exists: after.is_some(),
        schema_changed: after.is_some_and(|b| before.schema != b.schema),
        tables: names
            .into_iter()
            .map(|name| TableDiff {
                table: name.clone(),
                before: before.tables.get(name).copied(),
                after: after.and_then(|c| c.tables.get(name).copied()),
            })
            .collect(),
    }
}
