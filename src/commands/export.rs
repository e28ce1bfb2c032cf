//! `dbguard export [ID|PATH]`: snapshot tables to Parquet / JSON Lines.

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::db;
use crate::error::CommandError;
use crate::export::{self, Compression, ExportFormat, ExportOptions, ExportProgress, folders};
use crate::flow::snapshot::{Lines, as_before, snapshot_operation};
use crate::flow::{Context, command_line, outside_git};
use crate::scan::DbFile;
use crate::store::{SnapshotInfo, Store, StoreError, files::temp_path};
use crate::ui::{self, Ui, WorkDone, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FormatArg {
    Parquet,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CompressionArg {
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard export                         snapshot every database now and export it
  dbguard export posts.db --format parquet --compression gzip
  dbguard export 14 --table posts        one table of snapshot #14
  dbguard export --out /backups/db --keep 10

Files go to <out>/<database>/<snapshot time, UTC>/{parquet,jsonl}/<table>.…, e.g.
/backups/db/posts.db/20261121T114500Z/parquet/posts.parquet. Without --out, <out> is
outside the working tree, in ~/.local/share/dbguard/exports/<name>-<hash> (under
$XDG_DATA_HOME when set), so git clean and deleting the clone leave it alone. Each
folder holds a .dbguard-export marker; --keep N removes the oldest marked folders of
each database exported beyond N, and nothing else. Tables are streamed in
Arrow record batches. SQLite columns holding several storage classes are written as a
struct (Parquet) or tagged values (JSON Lines) and the file metadata says so, so nothing
is lost; `dbguard import-table` loads a file back.")]
pub(crate) struct Args {
    /// A snapshot id (14 or #14), or a database file or directory to snapshot now and
    /// export (default: every database in the working tree, snapshotted now).
    #[arg(value_name = "ID|PATH")]
    pub(crate) target: Option<PathBuf>,
    /// Output formats, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "parquet,jsonl"
    )]
    pub(crate) format: Vec<FormatArg>,
    /// Compression of Parquet pages and of JSON Lines files.
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd)]
    pub(crate) compression: CompressionArg,
    /// Directory to write into (default: outside the working tree, see below).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Keep only the N newest export folders of each database exported (only folders
    /// dbguard made are removed).
    #[arg(long, value_name = "N")]
    pub(crate) keep: Option<usize>,
    /// Export only these tables (repeatable).
    #[arg(long = "table", value_name = "NAME")]
    pub(crate) tables: Vec<String>,
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
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
    let out = match &args.out {
        Some(out) => ctx.cwd.join(out),
        None => outside_git::default_export_dir(&ctx.repo.worktree)?,
    };
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
    if let Some(keep) = args.keep {
        keep_newest_exports(ui, &report, keep)?;
    }
    if ui.json {
        json::print(ui, &report);
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

/// `--keep N`: in the folder of each database just exported, only the N newest export
/// folders stay.
fn keep_newest_exports(
    ui: &Ui,
    report: &[json::Exported],
    keep: usize,
) -> Result<(), CommandError> {
    let mut database_dirs: Vec<&Path> = report
        .iter()
        .filter_map(|exported| exported.export_dir.parent())
        .collect();
    database_dirs.dedup();
    for dir in database_dirs {
        let removed = folders::keep_newest(dir, keep).map_err(|e| {
            CommandError::new(format!(
                "cannot remove old exports in {}: {e}",
                dir.display()
            ))
            .hint("the new export is complete; check the folder's permissions")
        })?;
        for old in removed {
            ui.status(&format!("removed the older export {}", old.display()));
        }
    }
    Ok(())
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
    // The export's own peak is small and steady (bounded queues): a snapshot that maps
    // the database would make it grow with the database.
    store.read_live_files_unmapped();
    let results = snapshot_operation(
        ui,
        ctx,
        &mut store,
        ("export", &command_line()),
        &databases,
        Some("before export"),
        Lines::Every,
        &as_before,
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
    // The export itself only reads: the writer lock goes with this store, so that a
    // long export never holds up a git command's snapshot.
    drop(store);
    let Some(reader) = ctx.existing_store()? else {
        return Err(
            CommandError::new("the snapshot store disappeared during the export")
                .hint("`dbguard config` shows where the store is"),
        );
    };
    Ok((reader, snapshots))
}

/// Write the snapshot's image to a private temp file, export it, remove the temp file.
fn export_snapshot(
    ui: &Ui,
    store: &mut Store,
    snapshot: &SnapshotInfo,
    out: &Path,
    opts: &ExportOptions,
) -> Result<json::Exported, CommandError> {
    let dir = export::export_dir(out, snapshot);
    let image = temp_path(store.tmp_dir(), ".export");
    let bar = ui.progress(snapshot.size, &format!("read #{}", snapshot.id));
    let report = |done: u64| bar.set_position(done);
    let materialized = store.materialize(snapshot, &image, false, &report);
    bar.finish_and_clear();
    let result = materialized.map_err(CommandError::from).and_then(|()| {
        let label = format!("export #{}", snapshot.id);
        let spinner = ui.spinner(&label);
        let rows_total = rows_to_export(snapshot, opts);
        let work_total = rows_total * export::row_passes(snapshot.kind, opts);
        let started = Instant::now();
        let last_shown = Cell::new(started);
        let show = |progress: ExportProgress| {
            // Reading the output sizes costs a few stat calls: four times a second is enough.
            let now = Instant::now();
            if now.duration_since(last_shown.get()) < Duration::from_millis(250) {
                return;
            }
            last_shown.set(now);
            let work = WorkDone {
                rows: progress.rows,
                rows_total,
                bytes: bytes_under(&dir),
                fraction: progress.work as f64 / work_total.max(1) as f64,
                elapsed: now.duration_since(started),
            };
            spinner.set_message(
                ui.safe(&ui::work_line(&label, "written", &work))
                    .into_owned(),
            );
        };
        let exported = export::export_image(snapshot.kind, &image, &dir, opts, &show)
            .map_err(CommandError::from);
        spinner.finish_and_clear();
        exported
    });
    db::remove_image_files(&image);
    let result = result.and_then(|report| {
        let what = format!("snapshot #{} of {}", snapshot.id, snapshot.path);
        folders::mark(&dir, &what).map_err(|e| {
            CommandError::new(format!(
                "cannot write the export marker in {}: {e}",
                dir.display()
            ))
            .hint("check that the export folder is writable")
        })?;
        Ok(report)
    });
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
            "  {}: {} → {} ({})",
            table.table,
            ui::rows(table.rows),
            names.join(", "),
            ui::bytes(size)
        ));
    }
    for skipped in &report.skipped {
        ui.status(&format!("  {}: skipped, {}", skipped.table, skipped.reason));
    }
    Ok(json::Exported {
        snapshot_id: snapshot.id,
        path: snapshot.path.clone(),
        export_dir: dir,
        tables: report
            .tables
            .into_iter()
            .map(|t| {
                let exported = json::ExportedTable {
                    rows: t.rows,
                    files: t.files,
                };
                (t.table, exported)
            })
            .collect(),
        skipped: report
            .skipped
            .into_iter()
            .map(|s| (s.table, s.reason))
            .collect(),
    })
}

/// The rows the export will write, from the snapshot's census: the tables asked for
/// (matched as [`export::export_image`] matches them), or all.
fn rows_to_export(snapshot: &SnapshotInfo, opts: &ExportOptions) -> u64 {
    let tables = &snapshot.census.tables;
    if opts.tables.is_empty() {
        return snapshot.census.total_rows();
    }
    let mut chosen: Vec<&String> = Vec::new();
    for want in &opts.tables {
        let found = tables
            .keys()
            .find(|t| *t == want)
            .or_else(|| tables.keys().find(|t| t.eq_ignore_ascii_case(want)));
        if let Some(t) = found.filter(|t| !chosen.contains(t)) {
            chosen.push(t);
        }
    }
    chosen.iter().map(|t| tables[*t]).sum()
}

/// Bytes of the files under `dir` so far (the export's output directory).
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
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
}
