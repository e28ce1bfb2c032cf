//! `dbguard import-table FILE --into DB`: load one table written by `dbguard export`
//! back into a SQLite database, snapshotting that database first.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::db::{self, DbKind, Sniff};
use crate::error::CommandError;
use crate::export;
use crate::flow::snapshot::{Lines, snapshot_operation};
use crate::flow::{Context, command_line};
use crate::import;
use crate::ui::{self, Ui};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard import-table dbguard-export/posts.db/20261121T114500Z/parquet/posts.parquet \\
      --into posts.db --table posts --replace
  dbguard import-table posts.jsonl.gz --into /tmp/scratch.db

Reads Parquet or JSON Lines files written by `dbguard export` (plain, gzip or zstd).
The table is created when missing; with --replace its rows are replaced, otherwise the
rows are appended. When DB exists in this working tree it is snapshotted first, so the
import can be undone with `dbguard restore DB --from <that id>`. SQLite targets only.")]
pub(crate) struct Args {
    /// A Parquet or JSON Lines file written by `dbguard export`.
    pub(crate) file: PathBuf,
    /// The SQLite database to load into (created when missing).
    #[arg(long, value_name = "DB")]
    pub(crate) into: PathBuf,
    /// Table to load into (default: the table name the file was exported from).
    #[arg(long, value_name = "NAME")]
    pub(crate) table: Option<String>,
    /// Empty the table first instead of appending.
    #[arg(long)]
    pub(crate) replace: bool,
}

#[derive(Debug, Serialize)]
struct Imported {
    file: PathBuf,
    into: PathBuf,
    table: String,
    rows: u64,
    /// The snapshot taken of the database before the import (undo with restore --from).
    undo: Option<i64>,
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    let file = ctx.cwd.join(&args.file);
    if !file.is_file() {
        return Err(
            CommandError::new(format!("{} is not a file", args.file.display()))
                .hint("name a .parquet or .jsonl[.gz|.zst] file written by `dbguard export`"),
        );
    }
    let table = match &args.table {
        Some(table) => table.clone(),
        None => export::table_from_file_name(&file).ok_or_else(|| {
            CommandError::new(format!(
                "cannot tell which table {} holds",
                args.file.display()
            ))
            .hint("name it with --table NAME")
        })?,
    };
    let into = ctx.cwd.join(&args.into);
    let undo = snapshot_existing_target(ui, ctx, args, &into)?;
    let rows = import::import_table(DbKind::Sqlite, &file, &into, &table, args.replace)?;
    if ui.json {
        let imported = Imported {
            file,
            into: into.clone(),
            table: table.clone(),
            rows,
            undo,
        };
        ui.out(&serde_json::to_string_pretty(&imported).unwrap_or_default());
    }
    ui.status(&format!(
        "loaded {} rows into {} of {}",
        ui::count(rows),
        table,
        args.into.display()
    ));
    if let Some(id) = undo {
        ui.hint(&format!(
            "undo with: dbguard restore {} --from {id}",
            crate::ui::shell_quote(&args.into.to_string_lossy())
        ));
    }
    Ok(())
}

/// Refuses a target that is not a SQLite database; snapshots an existing one first (see
/// [`snapshot_before_import`]) and returns that snapshot's id.
fn snapshot_existing_target(
    ui: &Ui,
    ctx: &Context,
    args: &Args,
    into: &Path,
) -> Result<Option<i64>, CommandError> {
    if !into.exists() {
        return Ok(None);
    }
    match db::sniff(into) {
        Ok(Sniff::Database(DbKind::Sqlite)) => snapshot_before_import(ui, ctx, args),
        Ok(Sniff::Database(DbKind::DuckDb)) => Err(CommandError::new(format!(
            "{} is a DuckDB database; import-table loads into SQLite only",
            args.into.display()
        ))
        .hint(format!(
            "in DuckDB: CREATE TABLE t AS SELECT * FROM read_parquet('{}')",
            args.file.display()
        ))),
        Ok(Sniff::NotDatabase(reason)) => Err(CommandError::new(format!(
            "{} is not a SQLite database: {reason}",
            args.into.display()
        ))
        .hint("name a SQLite file, or a path that does not exist yet to create one")),
        Err(error) => Err(CommandError::new(format!(
            "cannot read {}: {error}",
            args.into.display()
        ))
        .hint("check that the file is readable")),
    }
}

/// Snapshot the target database first when it is in this working tree, so the import
/// can be undone. Outside the working tree there is no store to keep it in.
fn snapshot_before_import(
    ui: &Ui,
    ctx: &Context,
    args: &Args,
) -> Result<Option<i64>, CommandError> {
    if ctx.repo.relative(&ctx.cwd, &args.into).is_err() {
        ui.warn(&format!(
            "{} is outside this working tree, so it is not snapshotted first",
            args.into.display()
        ));
        return Ok(None);
    }
    let databases = ctx.scanner().explicit(&ctx.cwd, &args.into)?;
    let mut store = ctx.store()?;
    let results = snapshot_operation(
        ui,
        ctx,
        &mut store,
        ("import-table", &command_line()),
        &databases,
        Some("state before import-table"),
        Lines::Every,
    )?;
    let mut undo = None;
    for (_, outcome) in results {
        let taken = outcome.map_err(|e| {
            e.hint("dbguard snapshots the database before importing so the import can be undone")
        })?;
        undo = Some(taken.id);
    }
    Ok(undo)
}
