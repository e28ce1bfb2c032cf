//! `dbguard export [ID|PATH]` (snapshot tables to Parquet / JSON Lines) and
//! `dbguard import-table FILE --into DB` (load one exported table back).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::db::{self, DbKind, Sniff};
use crate::error::CommandError;
use crate::export::{self, Compression, ExportFormat, ExportOptions};
use crate::flow::snapshot::{Lines, snapshot_operation};
use crate::flow::{Context, command_line};
use crate::scan::DbFile;
use crate::store::{SnapshotInfo, Store, StoreError, chunks::temp_path};
use crate::ui::{self, Ui};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Parquet,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard export                         snapshot every database now and export it
  dbguard export posts.db --format parquet --compression gzip
  dbguard export 14 --table posts        one table of snapshot #14
  dbguard export --out /backups/db

Files go to <out>/<database>/<snapshot time, UTC>/{parquet,jsonl}/<table>.…, e.g.
dbguard-export/posts.db/20261121T114500Z/parquet/posts.parquet. Tables are streamed in
Arrow record batches. SQLite columns holding several storage classes are written as a
struct (Parquet) or tagged values (JSON Lines) and the file metadata says so, so nothing
is lost; `dbguard import-table` loads a file back.")]
pub struct Args {
    /// A snapshot id (14 or #14), or a database file or directory to snapshot now and
    /// export (default: every database in the working tree, snapshotted now).
    #[arg(value_name = "ID|PATH")]
    pub target: Option<PathBuf>,
    /// Output formats, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "parquet,jsonl"
    )]
    pub format: Vec<FormatArg>,
    /// Compression of Parquet pages and of JSON Lines files.
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd)]
    pub compression: CompressionArg,
    /// Directory to write into.
    #[arg(long, value_name = "DIR", default_value = "dbguard-export")]
    pub out: PathBuf,
    /// Export only these tables (repeatable).
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard import-table dbguard-export/posts.db/20261121T114500Z/parquet/posts.parquet \\
      --into posts.db --table posts --replace
  dbguard import-table posts.jsonl.gz --into /tmp/scratch.db

Reads Parquet or JSON Lines files written by `dbguard export` (plain, gzip or zstd).
The table is created when missing; with --replace its rows are replaced, otherwise the
rows are appended. When DB exists in this working tree it is snapshotted first, so the
import can be undone with `dbguard restore DB --from <that id>`. SQLite targets only.")]
pub struct ImportArgs {
    /// A Parquet or JSON Lines file written by `dbguard export`.
    pub file: PathBuf,
    /// The SQLite database to load into (created when missing).
    #[arg(long, value_name = "DB")]
    pub into: PathBuf,
    /// Table to load into (default: the table name the file was exported from).
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// Empty the table first instead of appending.
    #[arg(long)]
    pub replace: bool,
}

/// One exported snapshot, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Exported {
    snapshot: i64,
    path: String,
    dir: PathBuf,
    tables: Vec<ExportedTable>,
    skipped: Vec<SkippedTable>,
}

#[derive(Debug, Serialize)]
struct ExportedTable {
    table: String,
    rows: u64,
    files: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
struct SkippedTable {
    table: String,
    reason: String,
}

pub fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    let opts = ExportOptions {
        formats: dedup_formats(&args.format),
        compression: match args.compression {
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::None => Compression::None,
        },
        tables: args.tables.clone(),
        ..ExportOptions::default()
    };
    let out = ctx.cwd.join(&args.out);
    let snapshot_id = args
        .target
        .as_ref()
        .and_then(|t| t.to_str())
        .filter(|t| is_snapshot_id(t) && !ctx.cwd.join(t).exists());
    let mut failures = Vec::new();
    let (mut store, snapshots) = match snapshot_id {
        Some(id) => {
            let Some(store) = ctx.existing_store()? else {
                return Err(
                    CommandError::new("there are no snapshots in this repository yet")
                        .hint("`dbguard export PATH` snapshots a database now and exports it"),
                );
            };
            let snapshot = Context::find_snapshot(&store, id)?;
            (store, vec![snapshot])
        }
        None => fresh_snapshots(ui, ctx, args.target.as_deref(), &mut failures)?,
    };
    let mut report = Vec::new();
    for snapshot in &snapshots {
        report.push(export_snapshot(ui, &mut store, snapshot, &out, &opts)?);
    }
    if ui.json {
        ui.out(&serde_json::to_string_pretty(&report).unwrap_or_default());
    }
    match failures.len() {
        0 => Ok(()),
        1 if snapshots.is_empty() => Err(failures.remove(0)),
        n => {
            for error in &failures {
                error.report_without_hints(ui);
            }
            Err(CommandError::new(format!(
                "{n} databases could not be snapshotted, so they were not exported"
            ))
            .hint("the others were exported; fix or exclude the failing files and run `dbguard export` again"))
        }
    }
}

fn is_snapshot_id(text: &str) -> bool {
    crate::store::parse_snapshot_id(text).is_some()
}

fn dedup_formats(formats: &[FormatArg]) -> Vec<ExportFormat> {
    let mut result = Vec::new();
    for format in formats {
        let format = match format {
            FormatArg::Parquet => ExportFormat::Parquet,
            FormatArg::Jsonl => ExportFormat::Jsonl,
        };
        if !result.contains(&format) {
            result.push(format);
        }
    }
    result
}

/// Snapshot the named databases (default: all) now, as `dbguard snapshot` would, and
/// return the snapshots taken. Databases that failed are pushed to `failures`.
fn fresh_snapshots(
    ui: &Ui,
    ctx: &Context,
    target: Option<&Path>,
    failures: &mut Vec<CommandError>,
) -> Result<(Store, Vec<SnapshotInfo>), CommandError> {
    let scanner = ctx.scanner();
    let databases: Vec<DbFile> = match target {
        Some(path) => scanner.explicit(&ctx.cwd, path)?,
        None => scanner.scan().databases,
    };
    if databases.is_empty() {
        return Err(
            CommandError::new("no SQLite or DuckDB databases found to export")
                .hint("name a database file, or a snapshot id from `dbguard log`"),
        );
    }
    let mut store = ctx.store()?;
    let results = snapshot_operation(
        ui,
        ctx,
        &mut store,
        ("export", &command_line()),
        &databases,
        Some("before export"),
        Lines::Every,
    )?;
    let mut snapshots = Vec::new();
    for (_, outcome) in results {
        match outcome {
            Ok(taken) => {
                let info = store
                    .find_snapshot(taken.id)?
                    .ok_or(StoreError::NoSuchSnapshot(taken.id))?;
                snapshots.push(info);
            }
            Err(error) => failures.push(error),
        }
    }
    Ok((store, snapshots))
}

/// `<out>/<database path, / as _>/<created_at as 20261121T114500Z>`.
pub fn export_dir(out: &Path, snapshot: &SnapshotInfo) -> PathBuf {
    out.join(database_dir_name(&snapshot.path))
        .join(snapshot.created_at.format("%Y%m%dT%H%M%SZ").to_string())
}

/// One directory name for a database path, always a plain name inside `--out` whatever
/// the catalog says: `/` (and NUL) becomes `_`, and the names that would mean the directory itself
/// or its parent (`""`, `.`, `..`, any all-dots name) get their dots written as `%2E`
/// (an empty one becomes `%`, as an empty table name does).
fn database_dir_name(path: &str) -> String {
    let name = path.replace(['/', '\0'], "_");
    if name.is_empty() {
        "%".to_string()
    } else if name.bytes().all(|b| b == b'.') {
        name.replace('.', "%2E")
    } else {
        name
    }
}

fn export_kind(kind: DbKind) -> export::DbKind {
    match kind {
        DbKind::Sqlite => export::DbKind::Sqlite,
        DbKind::DuckDb => export::DbKind::DuckDb,
    }
}

/// Write the snapshot's image to a private temp file, export it, remove the temp file.
fn export_snapshot(
    ui: &Ui,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    out: &Path,
    opts: &ExportOptions,
) -> Result<Exported, CommandError> {
    let dir = export_dir(out, snapshot);
    let image = temp_path(store.tmp_dir(), ".export");
    let bar = ui.progress(snapshot.size, &format!("read #{}", snapshot.id));
    let report = |done: u64| bar.set_position(done);
    let materialized = store.materialize(snapshot, &image, false, &report);
    bar.finish_and_clear();
    let result = materialized.map_err(CommandError::from).and_then(|()| {
        let spinner = ui.spinner(&format!("export #{}", snapshot.id));
        let exported = export::export_image(export_kind(snapshot.kind), &image, &dir, opts)
            .map_err(CommandError::from);
        spinner.finish_and_clear();
        exported
    });
    for suffix in ["", ".wal", "-journal", "-wal", "-shm"] {
        let mut name = image.clone().into_os_string();
        name.push(suffix);
        let _ = fs::remove_file(PathBuf::from(name));
    }
    let report = result.map_err(|e| {
        e.cause(format!(
            "while exporting snapshot #{} of {}",
            snapshot.id, snapshot.path
        ))
    })?;
    ui.status(&format!(
        "#{} {} → {}",
        snapshot.id,
        snapshot.path,
        dir.display()
    ));
    for table in &report.tables {
        let size: u64 = table
            .files
            .iter()
            .filter_map(|f| fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        let names: Vec<String> = table
            .files
            .iter()
            .map(|f| {
                f.strip_prefix(&dir)
                    .unwrap_or(f)
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        ui.status(&format!(
            "  {}: {} rows → {} ({})",
            table.table,
            ui::count(table.rows),
            names.join(", "),
            ui::bytes(size)
        ));
    }
    for skipped in &report.skipped {
        ui.status(&format!("  {}: skipped, {}", skipped.table, skipped.reason));
    }
    Ok(Exported {
        snapshot: snapshot.id,
        path: snapshot.path.clone(),
        dir,
        tables: report
            .tables
            .into_iter()
            .map(|t| ExportedTable {
                table: t.table,
                rows: t.rows,
                files: t.files,
            })
            .collect(),
        skipped: report
            .skipped
            .into_iter()
            .map(|s| SkippedTable {
                table: s.table,
                reason: s.reason,
            })
            .collect(),
    })
}

/// The table a file was exported from: its name without `.parquet` / `.jsonl[.gz|.zst]`,
/// percent-decoded.
fn table_from_file_name(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let stem = [".parquet", ".jsonl.gz", ".jsonl.zst", ".jsonl"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))?;
    export::table_name_from_stem(stem)
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

pub fn import(ui: &Ui, ctx: &Context, args: &ImportArgs) -> Result<(), CommandError> {
    let file = ctx.cwd.join(&args.file);
    if !file.is_file() {
        return Err(
            CommandError::new(format!("{} is not a file", args.file.display()))
                .hint("name a .parquet or .jsonl[.gz|.zst] file written by `dbguard export`"),
        );
    }
    let table = match &args.table {
        Some(table) => table.clone(),
        None => table_from_file_name(&file).ok_or_else(|| {
            CommandError::new(format!(
                "cannot tell which table {} holds",
                args.file.display()
            ))
            .hint("name it with --table NAME")
        })?,
    };
    let into = ctx.cwd.join(&args.into);
    let undo = if into.exists() {
        match db::sniff(&into) {
            Ok(Sniff::Database(DbKind::Sqlite)) => snapshot_before_import(ui, ctx, args)?,
            Ok(Sniff::Database(DbKind::DuckDb)) => {
                return Err(CommandError::new(format!(
                    "{} is a DuckDB database; import-table loads into SQLite only",
                    args.into.display()
                ))
                .hint(format!(
                    "in DuckDB: CREATE TABLE t AS SELECT * FROM read_parquet('{}')",
                    args.file.display()
                )));
            }
            Ok(Sniff::NotDatabase(reason)) => {
                return Err(CommandError::new(format!(
                    "{} is not a SQLite database: {reason}",
                    args.into.display()
                ))
                .hint("name a SQLite file, or a path that does not exist yet to create one"));
            }
            Err(error) => {
                return Err(CommandError::new(format!(
                    "cannot read {}: {error}",
                    args.into.display()
                ))
                .hint("check that the file is readable"));
            }
        }
    } else {
        None
    };
    let rows = export::import_table(export::DbKind::Sqlite, &file, &into, &table, args.replace)?;
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

/// Snapshot the target database first when it is in this working tree, so the import
/// can be undone. Outside the working tree there is no store to keep it in.
fn snapshot_before_import(
    ui: &Ui,
    ctx: &Context,
    args: &ImportArgs,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_ids_are_numbers_with_an_optional_hash() {
        assert!(is_snapshot_id("14"));
        assert!(is_snapshot_id("#14"));
        assert!(!is_snapshot_id("#"));
        assert!(!is_snapshot_id("posts.db"));
        assert!(!is_snapshot_id("14a"));
    }

    #[test]
    fn database_dir_names_stay_inside_out() {
        assert_eq!(database_dir_name("data/posts.db"), "data_posts.db");
        assert_eq!(database_dir_name(".."), "%2E%2E");
        assert_eq!(database_dir_name("."), "%2E");
        assert_eq!(database_dir_name(""), "%");
        assert_eq!(database_dir_name("../../x"), ".._.._x");
        assert_eq!(database_dir_name("/etc/passwd"), "_etc_passwd");
        for path in ["..", ".", "", "/", "a/../..", "...", "\0"] {
            let name = database_dir_name(path);
            let joined = Path::new("out").join(&name);
            assert_eq!(
                joined.parent(),
                Some(Path::new("out")),
                "{path:?} -> {name:?}"
            );
            assert!(!matches!(name.as_str(), "" | "." | ".."));
        }
    }

    #[test]
    fn table_names_come_back_from_file_names() {
        assert_eq!(
            table_from_file_name(Path::new("x/parquet/posts.parquet")).as_deref(),
            Some("posts")
        );
        assert_eq!(
            table_from_file_name(Path::new("posts.jsonl.gz")).as_deref(),
            Some("posts")
        );
        assert_eq!(table_from_file_name(Path::new("posts.csv")), None);
    }
}
