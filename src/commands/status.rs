//! `dbguard status`: every database in the worktree with its git state, size, last
//! snapshot and rows now vs then; a warning for each one under version control.

use serde::Serialize;

use crate::db::{self, Completeness, DbError};
use crate::error::CommandError;
use crate::flow::Context;
use crate::flow::snapshot::version_control_warning;
use crate::flow::snapshot::{partial_advice, partial_message};
use crate::scan::Scan;
use crate::ui::age;
use crate::ui::{self, Tone, Ui};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard status
  dbguard status --json")]
pub(crate) struct Args {}

#[derive(Debug, Serialize)]
struct Row {
    path: String,
    kind: db::DbKind,
    git: crate::git::GitState,
    size: u64,
    rows_now: Option<u64>,
    busy: Option<String>,
    last_snapshot: Option<LastSnapshot>,
}

#[derive(Debug, Serialize)]
struct LastSnapshot {
    id: i64,
    #[serde(serialize_with = "crate::store::catalog::rfc3339")]
    taken: chrono::DateTime<chrono::Utc>,
    rows: u64,
    /// `partial`, and for a partial snapshot `missing`.
    #[serde(flatten)]
    completeness: Completeness,
}

pub(crate) fn run(ui: &Ui, ctx: &Context, _args: &Args) -> Result<(), CommandError> {
    let scan = ctx.scanner().scan();
    let rows = rows(ctx, &scan)?;
    if ui.json {
        ui.out(&serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else if rows.is_empty() {
        ui.status("no SQLite or DuckDB databases in this working tree");
    } else {
        print_table(ui, &rows);
    }
    for row in &rows {
        if let Some(last) = row
            .last_snapshot
            .as_ref()
            .filter(|s| s.completeness.partial)
        {
            ui.warn(&format!(
                "last {}",
                partial_message(last.id, &row.path, &last.completeness)
            ));
            ui.hint(&partial_advice(
                last.completeness
                    .missing
                    .as_ref()
                    .and_then(|m| m.holder_pid),
            ));
        }
    }
    for database in scan
        .databases
        .iter()
        .filter(|d| d.git.under_version_control())
    {
        version_control_warning(ui, &database.path);
    }
    if !scan.excluded.is_empty() {
        let shown: Vec<String> = scan
            .excluded
            .iter()
            .map(|dir| {
                let relative = dir.strip_prefix(&ctx.repo.worktree).unwrap_or(dir);
                format!("{}/", relative.display())
            })
            .collect();
        ui.status(&format!(
            "not listed: {} (exclude = {:?}, from {}); a database there is still snapshotted before git overwrites or deletes it",
            shown.join(", "),
            ctx.settings.exclude.value,
            ctx.settings.exclude.source.describe()
        ));
    }
    Ok(())
}

/// One row per database: what it is now, and its last snapshot.
fn rows(ctx: &Context, scan: &Scan) -> Result<Vec<Row>, CommandError> {
    let store = ctx.existing_store()?;
    let worktree = ctx.worktree_key();
    let mut rows = Vec::new();
    for database in &scan.databases {
        let last = match &store {
            Some(store) => store.latest(&worktree, database.path.as_str())?,
            None => None,
        };
        let live = database.path.in_worktree(&ctx.repo.worktree);
        let (rows_now, busy) = match db::census_live(database.kind, &live) {
            Ok(census) => (Some(census.total_rows()), None),
            Err(DbError::DuckDbLocked { pid, .. }) => {
                (None, Some(format!("open in process {pid}")))
            }
            Err(error) => (None, Some(error.to_string())),
        };
        rows.push(Row {
            path: database.path.to_string(),
            kind: database.kind,
            git: database.git,
            size: database.size,
            rows_now,
            busy,
            last_snapshot: last.map(|s| LastSnapshot {
                id: s.id,
                taken: s.created_at,
                rows: s.census.total_rows(),
                completeness: Completeness::of_label(&s.consistency),
            }),
        });
    }
    Ok(rows)
}

fn print_table(ui: &Ui, rows: &[Row]) {
    let mut table = vec![vec![
        "DATABASE".to_string(),
        "KIND".into(),
        "GIT".into(),
        "SIZE".into(),
        "ROWS NOW".into(),
        "LAST SNAPSHOT".into(),
        "ROWS THEN".into(),
    ]];
    for row in rows {
        table.push(vec![
            row.path.clone(),
            row.kind.as_str().into(),
            row.git.as_str().into(),
            ui::bytes(row.size),
            row.rows_now
                .map(ui::count)
                .unwrap_or_else(|| row.busy.clone().unwrap_or_default()),
            row.last_snapshot
                .as_ref()
                .map(|s| format!("#{} {}", s.id, age(s.taken)))
                .unwrap_or_else(|| "never".into()),
            row.last_snapshot
                .as_ref()
                .map(|s| {
                    let rows = ui::count(s.rows);
                    if s.completeness.partial {
                        format!("{rows} PARTIAL")
                    } else {
                        rows
                    }
                })
                .unwrap_or_default(),
        ]);
    }
    for (i, line) in ui::table(&table).into_iter().enumerate() {
        ui.out(&if i == 0 {
            ui.paint(Tone::Dim, &line)
        } else {
            line
        });
    }
}
