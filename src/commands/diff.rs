//! `dbguard diff [PATH] [ID [ID]]`: rows per table now vs a snapshot, or between two.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::db::{self, Census};
use crate::error::CommandError;
use crate::flow::Context;
use crate::ui::{self, Tone, Ui};

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

#[derive(Debug, Serialize)]
struct TableDiff {
    table: String,
    before: Option<u64>,
    after: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Diff {
    path: String,
    before: String,
    after: String,
    schema_changed: bool,
    tables: Vec<TableDiff>,
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
    let worktree = ctx.worktree_key();
    let mut diffs = Vec::new();
    let now = |path: &str, kind: db::DbKind| -> Result<Option<Census>, CommandError> {
        let live = ctx.repo.worktree.join(path);
        if !live.exists() {
            return Ok(None);
        }
        db::census_live(kind, &live)
            .map(Some)
            .map_err(CommandError::from)
    };
    match ids.as_slice() {
        [first, second] => {
            let a = Context::find_snapshot(&store, first)?;
            let b = Context::find_snapshot(&store, second)?;
            diffs.push(diff(
                &a.path,
                format!("#{}", a.id),
                Some(&a.census),
                format!("#{}", b.id),
                Some(&b.census),
            ));
        }
        [only] => {
            let a = Context::find_snapshot(&store, only)?;
            let current = now(&a.path, a.kind)?;
            diffs.push(diff(
                &a.path,
                format!("#{}", a.id),
                Some(&a.census),
                "now".into(),
                current.as_ref(),
            ));
        }
        _ => {
            let named = !paths.is_empty();
            let targets: Vec<String> = match paths.first() {
                Some(path) => vec![
                    ctx.repo
                        .relative(&ctx.cwd, std::path::Path::new(path))?
                        .to_string(),
                ],
                None => ctx
                    .scanner()
                    .scan()
                    .databases
                    .iter()
                    .map(|d| d.path.to_string())
                    .collect(),
            };
            for path in targets {
                let Some(last) = store.latest(&worktree, &path)? else {
                    if named {
                        let exists = ctx.repo.worktree.join(&path).exists();
                        return Err(CommandError::new(if exists {
                            format!("there is no snapshot of {path} to compare with")
                        } else {
                            format!("{path} does not exist and has no snapshots")
                        })
                        .hint(if exists {
                            format!(
                                "`dbguard snapshot {}` takes one",
                                crate::ui::shell_quote(&path)
                            )
                        } else {
                            "check the path; `dbguard log` lists the snapshots there are"
                                .to_string()
                        }));
                    }
                    ui.status(&format!("{path}: no snapshot yet"));
                    continue;
                };
                let current = now(&path, last.kind)?;
                diffs.push(diff(
                    &path,
                    format!("#{}", last.id),
                    Some(&last.census),
                    "now".into(),
                    current.as_ref(),
                ));
            }
        }
    }
    if ui.json {
        ui.out(&serde_json::to_string_pretty(&diffs).unwrap_or_default());
        return Ok(());
    }
    for d in &diffs {
        ui.out(&ui.paint(
            Tone::Bold,
            &format!("{}: {} → {}", d.path, d.before, d.after),
        ));
        let mut rows = vec![vec![
            "TABLE".to_string(),
            d.before.clone(),
            d.after.clone(),
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
    Ok(())
}

fn diff(
    path: &str,
    before_label: String,
    before: Option<&Census>,
    after_label: String,
    after: Option<&Census>,
) -> Diff {
    let names: BTreeSet<&String> = before
        .iter()
        .chain(after.iter())
        .flat_map(|c| c.tables.keys())
        .collect();
    Diff {
        path: path.to_string(),
        after: if after.is_none() {
            format!("{after_label} (missing)")
        } else {
            after_label
        },
        before: before_label,
        schema_changed: matches!((before, after), (Some(a), Some(b)) if a.schema != b.schema),
        tables: names
            .into_iter()
            .map(|name| TableDiff {
                table: name.clone(),
                before: before.and_then(|c| c.tables.get(name).copied()),
                after: after.and_then(|c| c.tables.get(name).copied()),
            })
            .collect(),
    }
}
