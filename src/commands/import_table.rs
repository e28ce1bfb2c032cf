//! `dbguard import-table FILE --into DB`: load one table written by `dbguard export`
//! back into a SQLite database anywhere, snapshotting that database first when it lies
//! in a git working tree.

use std::path::{Path, PathBuf};

use crate::db::{self, DbKind, Sniff};
use crate::error::CommandError;
use crate::export;
use crate::flow::snapshot::{Lines, as_before, snapshot_operation};
use crate::flow::{Context, command_line};
use crate::import;
use crate::ui::{self, Ui, json, shell_quote};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard import-table /backups/db/posts.db/20261121T114500Z/parquet/posts.parquet \\
      --into posts.db --table posts --replace
  dbguard import-table posts.jsonl.gz --into /tmp/scratch.db

Reads Parquet or JSON Lines files written by `dbguard export` (plain, gzip or zstd).
The table is created when missing; with --replace its rows are replaced, otherwise the
rows are appended, in one transaction. No repository is needed. When DB exists inside a
git working tree it is snapshotted first into that repository's store, so the import can
be undone (the hint prints the restore command); elsewhere it says that nothing was
snapshotted. SQLite targets only.")]
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

/// The snapshot taken before the import, and where it can be restored from.
struct Undo {
    id: i64,
    worktree: PathBuf,
    path: String,
}

impl Undo {
    /// The restore command, runnable from `cwd` (with `-C` when the database belongs to
    /// another repository than the one around `cwd`).
    fn command(&self, cwd: &Path) -> String {
        let here = cwd
            .canonicalize()
            .is_ok_and(|cwd| cwd.starts_with(&self.worktree));
        let dir = if here {
            String::new()
        } else {
            format!("-C {} ", shell_quote(&self.worktree.to_string_lossy()))
        };
        format!(
            "dbguard {dir}restore {} --from {}",
            shell_quote(&self.path),
            self.id
        )
    }
}

/// Runs anywhere: the target needs no repository. When the target exists inside a git
/// working tree, that repository's store keeps the snapshot taken before the import.
pub(crate) fn run(ui: &Ui, cwd: &Path, args: &Args) -> Result<(), CommandError> {
    let file = cwd.join(&args.file);
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
    let into = cwd.join(&args.into);
    let undo = snapshot_existing_target(ui, cwd, args, &into)?;
    let rows = import::import_table(DbKind::Sqlite, &file, &into, &table, args.replace)?;
    if ui.json {
        let imported = json::Imported {
            source_file: file,
            database_file: into.clone(),
            path: undo.as_ref().map(|u| u.path.clone()),
            table: table.clone(),
            rows,
            undo_snapshot_id: undo.as_ref().map(|u| u.id),
        };
        json::print(ui, &imported);
    }
    ui.status(&format!(
        "loaded {} into {} of {}",
        ui::rows(rows),
        table,
        args.into.display()
    ));
    if let Some(undo) = undo {
        ui.hint(&format!("undo with: {}", undo.command(cwd)));
    }
    Ok(())
}

/// Refuses a target that is not a SQLite database; snapshots an existing one first (see
/// [`snapshot_before_import`]) and returns that snapshot's id.
fn snapshot_existing_target(
    ui: &Ui,
    cwd: &Path,
    args: &Args,
    into: &Path,
) -> Result<Option<Undo>, CommandError> {
    if !into.exists() {
        return Ok(None);
    }
    match db::sniff(into) {
        Ok(Sniff::Database(DbKind::Sqlite)) => snapshot_before_import(ui, cwd, into),
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
        Err(error) => Err(CommandError::with_source(
            format!("cannot read {}", args.into.display()),
            error,
        )
        .hint("check that the file is readable")),
    }
}

/// Snapshot the target database first when it lies in a git working tree (the
/// repository around it, not necessarily the one around the cwd), so the import can be
/// undone. Outside any working tree there is no store to keep it in, and the user is told.
fn snapshot_before_import(ui: &Ui, cwd: &Path, into: &Path) -> Result<Option<Undo>, CommandError> {
    let dir = into.parent().filter(|d| d.is_dir()).unwrap_or(cwd);
    let relative = match Context::load_to_protect(dir)? {
        Some(ctx) => ctx.repo.relative(cwd, into).ok().map(|path| (ctx, path)),
        None => None,
    };
    let Some((ctx, relative)) = relative else {
        ui.warn(&format!(
            "{} is not inside a git working tree, so it is not snapshotted first (the import cannot be undone with dbguard)",
            into.display()
        ));
        return Ok(None);
    };
    for warning in &ctx.settings.warnings {
        ui.warn(warning);
    }
    let ctx = &ctx;
    let databases = ctx.scanner().explicit(cwd, into)?;
    let mut store = ctx.store()?;
    let results = snapshot_operation(
        ui,
        ctx,
        &mut store,
        ("import-table", &command_line()),
        &databases,
        Some("state before import-table"),
        Lines::Every,
        &as_before,
    )?;
    let mut undo = None;
    for (_, outcome) in results {
        let taken = outcome.map_err(|e| {
            e.hint("dbguard snapshots the database before importing so the import can be undone")
        })?;
        undo = Some(Undo {
            id: taken.id,
            worktree: ctx.repo.worktree.clone(),
            path: relative.to_string(),
        });
    }
    Ok(undo)
}
