//! `dbguard status`: every database in the worktree with its git state, size, last
//! snapshot and rows now vs then; a warning for each one under version control, and for
//! each database that shrank or vanished since its last snapshot, with the command that
//! brings it back.

use std::path::Path;

use crate::compare::{Shrink, TableLoss, check_live, shrink_against};
use crate::db::{self, Completeness, DbError};
use crate::error::{CommandError, ErrorKind};
use crate::flow::Context;
use crate::flow::snapshot::version_control_warning;
use crate::flow::snapshot::{partial_advice, partial_message};
use crate::scan::Scan;
use crate::ui::age;
use crate::ui::{self, Tone, Ui, json, shell_quote};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard status
  dbguard status --json

A database that lost rows or vanished since its baseline (the newest snapshot taken here
that is not a state recorded right after a loss) is flagged (SHRANK, GONE), with the
`dbguard restore` command that brings it back, until it is restored or its state is
accepted with `dbguard snapshot PATH`.

Exit status: 0 nothing lost; 4 a database shrank, vanished or became unreadable; 1 an
error.")]
pub(crate) struct Args {}

#[derive(Debug)]
struct Row {
    path: String,
    kind: db::DbKind,
    /// `None` only for a database that is no longer in the worktree as one.
    git: Option<crate::git::GitState>,
    /// `None` only for a file that is gone.
    size: Option<u64>,
    rows_now: Option<u64>,
    busy: Option<String>,
    last_snapshot: Option<LastSnapshot>,
    /// Whether the file is worse off than its last snapshot.
    state: State,
    /// What was lost and how to get it back; only when `state` is not `ok`.
    loss: Option<Loss>,
}

/// How a database compares with its last snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No table lost rows (or there is no snapshot to compare with).
    Ok,
    /// A table lost rows or vanished.
    Shrank,
    /// The file is gone.
    Vanished,
    /// The file is there but is no longer a readable database of its kind.
    Unreadable,
}

#[derive(Debug)]
struct Loss {
    snapshot_id: i64,
    rows_then: u64,
    /// `None` when the file is gone or unreadable.
    rows_now: Option<u64>,
    tables: Vec<TableLoss>,
    /// Why an unreadable file cannot be read.
    reason: Option<String>,
    /// The command that puts the snapshot back, to run from the current directory.
    restore: String,
}

#[derive(Debug)]
struct LastSnapshot {
    id: i64,
    path: String,
    taken: chrono::DateTime<chrono::Utc>,
    rows: u64,
    /// `partial`, and for a partial snapshot `missing`.
    completeness: Completeness,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Shrank => "shrank",
            State::Vanished => "vanished",
            State::Unreadable => "unreadable",
        }
    }
}

/// A row as `--json` prints it (see `ui::json`).
fn row_json(row: &Row) -> json::StatusRow {
    json::StatusRow {
        path: row.path.clone(),
        kind: row.kind,
        git_state: row.git,
        size_bytes: row.size,
        rows_now: row.rows_now,
        busy: row.busy.clone(),
        last_snapshot: row.last_snapshot.as_ref().map(|s| json::SnapshotBrief {
            id: s.id,
            path: s.path.clone(),
            taken_at: json::time(&s.taken),
            rows: s.rows,
            completeness: json::Completeness::from(&s.completeness),
        }),
        state: row.state.as_str(),
        loss: row.loss.as_ref().map(|loss| json::Loss {
            snapshot_id: loss.snapshot_id,
            rows_then: loss.rows_then,
            rows_now: loss.rows_now,
            tables: loss
                .tables
                .iter()
                .map(|t| {
                    let lost = json::TableLoss {
                        rows_then: t.before,
                        rows_now: t.after,
                    };
                    (t.table.clone(), lost)
                })
                .collect(),
            reason: loss.reason.clone(),
            restore_command: loss.restore.clone(),
        }),
    }
}

pub(crate) fn run(ui: &Ui, ctx: &Context, _args: &Args) -> Result<(), CommandError> {
    let scan = ctx.scanner().scan();
    let rows = rows(ctx, &scan)?;
    if ui.json {
        let rows: Vec<json::StatusRow> = rows.iter().map(row_json).collect();
        json::print(ui, &rows);
    } else if rows.is_empty() {
        ui.status("no SQLite or DuckDB databases in this working tree");
    } else {
        print_table(ui, &rows);
    }
    for row in &rows {
        warn_loss(ui, row);
    }
    let lost: Vec<&str> = rows
        .iter()
        .filter(|row| row.state != State::Ok)
        .map(|row| row.path.as_str())
        .collect();
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
    if lost.is_empty() {
        return Ok(());
    }
    Err(CommandError::new(format!(
        "{} database{} lost rows or vanished: {}",
        lost.len(),
        if lost.len() == 1 { "" } else { "s" },
        lost.join(", ")
    ))
    .hint(format!(
        "restore (the commands above), or accept the state as it is now: {}",
        snapshot_command(&ctx.repo.worktree, &lost)
    ))
    .with_kind(ErrorKind::Loss))
}

/// `dbguard snapshot PATH…` as it works when pasted in the current directory (naming
/// the paths accepts their state as the new baseline).
fn snapshot_command(worktree: &Path, paths: &[&str]) -> String {
    let cwd = std::env::current_dir().and_then(|d| d.canonicalize()).ok();
    let relative: Option<Vec<String>> = paths
        .iter()
        .map(|path| {
            cwd.as_ref()
                .and_then(|cwd| relative_to(cwd, worktree, path))
        })
        .collect();
    match relative {
        Some(relative) => format!(
            "dbguard snapshot {}",
            relative
                .iter()
                .map(|p| shell_quote(p))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        None => format!(
            "dbguard -C {} snapshot {}",
            shell_quote(&worktree.to_string_lossy()),
            paths
                .iter()
                .map(|p| shell_quote(p))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// One row per database: what it is now, and its last snapshot; then one row for each
/// snapshotted path that is not listed as a database any more and is worse off than its
/// last snapshot (gone, replaced, or shrunk in an excluded directory).
fn rows(ctx: &Context, scan: &Scan) -> Result<Vec<Row>, CommandError> {
    let store = ctx.existing_store()?;
    let worktree = ctx.worktree_key();
    let mut rows = Vec::new();
    for database in &scan.databases {
        let last = match &store {
            // Never a state recorded after a loss, nor another clone's snapshot: a loss
            // stays flagged until it is restored or accepted.
            Some(store) => store.baseline(&worktree, database.path.as_str())?,
            None => None,
        };
        let live = database.path.in_worktree(&ctx.repo.worktree);
        let (census, busy) = match db::census_live(database.kind, &live) {
            Ok(census) => (Some(census), None),
            Err(DbError::DuckDbLocked { pid, .. }) => {
                (None, Some(format!("open in process {pid}")))
            }
            Err(error) => (None, Some(error.to_string())),
        };
        // Only a census taken now is evidence of a loss: a file that cannot be read
        // shows why in ROWS NOW, and is not called shrunk.
        let shrink = match (&last, &census) {
            (Some(last), Some(census)) if last.kind == database.kind => {
                shrink_against(last, Some(census.clone()), None)
            }
            _ => None,
        };
        rows.push(Row {
            path: database.path.to_string(),
            kind: database.kind,
            git: Some(database.git),
            size: Some(database.size),
            rows_now: census.as_ref().map(db::Census::total_rows),
            busy,
            state: shrink.as_ref().map_or(State::Ok, state_of),
            loss: shrink.as_ref().map(|s| loss(ctx, s)),
            last_snapshot: last.map(last_snapshot),
        });
    }
    let Some(store) = store else {
        return Ok(rows);
    };
    for path in store.snapshotted_paths(&worktree)? {
        if rows.iter().any(|row| row.path == path) {
            continue;
        }
        let Some(last) = store.baseline(&worktree, &path)? else {
            continue;
        };
        let Some(shrink) = check_live(&ctx.repo.worktree, &last) else {
            continue;
        };
        let size = std::fs::metadata(ctx.repo.worktree.join(&path))
            .ok()
            .map(|m| m.len());
        rows.push(Row {
            path,
            kind: last.kind,
            git: None,
            size,
            rows_now: shrink.after.as_ref().map(db::Census::total_rows),
            busy: None,
            state: state_of(&shrink),
            loss: Some(loss(ctx, &shrink)),
            last_snapshot: Some(last_snapshot(last)),
        });
    }
    Ok(rows)
}

fn last_snapshot(s: crate::store::SnapshotInfo) -> LastSnapshot {
    LastSnapshot {
        id: s.id,
        path: s.path.clone(),
        taken: s.created_at,
        rows: s.census.total_rows(),
        completeness: s.completeness.clone(),
    }
}

fn state_of(shrink: &Shrink) -> State {
    match (&shrink.after, &shrink.unreadable) {
        (Some(_), _) => State::Shrank,
        (None, Some(_)) => State::Unreadable,
        (None, None) => State::Vanished,
    }
}

fn loss(ctx: &Context, shrink: &Shrink) -> Loss {
    Loss {
        snapshot_id: shrink.snapshot_id,
        rows_then: shrink.rows_before(),
        rows_now: shrink.after.as_ref().map(db::Census::total_rows),
        tables: shrink.lost.clone(),
        reason: shrink.unreadable.clone(),
        restore: restore_command(&ctx.repo.worktree, &shrink.path, shrink.snapshot_id),
    }
}

/// The warning and the restore hint for a row that is worse off than its last snapshot.
fn warn_loss(ui: &Ui, row: &Row) {
    let (Some(loss), Some(last)) = (&row.loss, &row.last_snapshot) else {
        return;
    };
    let then = format!(
        "snapshot #{} ({}) holds {}",
        loss.snapshot_id,
        age(last.taken),
        ui::rows(loss.rows_then)
    );
    let what = match (row.state, loss.rows_now) {
        (State::Shrank, Some(now)) => {
            let tables: Vec<String> = loss
                .tables
                .iter()
                .map(|t| match t.after {
                    Some(after) => format!(
                        "{} {} -> {}",
                        t.table,
                        ui::count(t.before),
                        ui::count(after)
                    ),
                    None => format!("{} {} -> gone", t.table, ui::count(t.before)),
                })
                .collect();
            format!(
                "{} shrank since its last snapshot: {then}, the file has {} now ({})",
                row.path,
                ui::count(now),
                tables.join(", ")
            )
        }
        (State::Unreadable, _) => format!(
            "{} is no longer a readable {} database ({}); {then}",
            row.path,
            row.kind.as_str(),
            loss.reason.as_deref().unwrap_or("unknown reason")
        ),
        _ => format!("{} is gone; {then}", row.path),
    };
    ui.warn(&what);
    ui.hint(&format!("to bring it back: {}", loss.restore));
}

/// `dbguard restore PATH --from ID` as it works when pasted in the current directory:
/// PATH relative to it inside the worktree, or `-C <worktree>` from elsewhere.
fn restore_command(worktree: &Path, path: &str, id: i64) -> String {
    let cwd = std::env::current_dir().and_then(|d| d.canonicalize());
    match cwd.ok().and_then(|cwd| relative_to(&cwd, worktree, path)) {
        Some(relative) => format!("dbguard restore {} --from {id}", shell_quote(&relative)),
        None => format!(
            "dbguard -C {} restore {} --from {id}",
            shell_quote(&worktree.to_string_lossy()),
            shell_quote(path)
        ),
    }
}

/// `path` (relative to `worktree`, `/`-separated) relative to `cwd`, when `cwd` is in
/// the worktree.
fn relative_to(cwd: &Path, worktree: &Path, path: &str) -> Option<String> {
    let below: Vec<String> = cwd
        .strip_prefix(worktree)
        .ok()?
        .components()
        .map(|c| c.as_os_str().to_str().map(str::to_string))
        .collect::<Option<_>>()?;
    let parts: Vec<&str> = path.split('/').collect();
    let common = below
        .iter()
        .zip(&parts)
        .take_while(|(a, b)| a.as_str() == **b)
        .count();
    // Keep the file name even when cwd is the path itself (a directory by that name).
    let common = common.min(parts.len() - 1);
    let mut out: Vec<&str> = vec![".."; below.len() - common];
    out.extend(&parts[common..]);
    Some(out.join("/"))
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
            row.git.map_or("-", |g| g.as_str()).into(),
            row.size.map_or_else(|| "-".into(), ui::bytes),
            match (row.state, row.rows_now) {
                (State::Shrank, Some(now)) => format!("{} SHRANK", ui::count(now)),
                (State::Vanished, _) => "GONE".into(),
                (State::Unreadable, _) => "UNREADABLE".into(),
                (_, Some(now)) => ui::count(now),
                (_, None) => row.busy.clone().unwrap_or_default(),
            },
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

#[cfg(test)]
mod tests {
    use super::relative_to;
    use std::path::Path;

    #[test]
    fn restore_paths_are_relative_to_where_the_user_is() {
        let wt = Path::new("/r");
        let at = |cwd: &str, path: &str| relative_to(Path::new(cwd), wt, path);
        assert_eq!(at("/r", "data/crawl.db").as_deref(), Some("data/crawl.db"));
        assert_eq!(at("/r/data", "data/crawl.db").as_deref(), Some("crawl.db"));
        assert_eq!(
            at("/r/src/x", "data/a.db").as_deref(),
            Some("../../data/a.db")
        );
        assert_eq!(at("/r/a.db", "a.db").as_deref(), Some("../a.db"));
        assert_eq!(at("/elsewhere", "a.db"), None);
    }
}
