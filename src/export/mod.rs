//! Export every table of a database image (a consistent copy on disk) to Parquet and/or
//! JSON Lines, streaming in Arrow record batches. [`crate::import`] loads one exported
//! table back.
//!
//! # The folder
//!
//! - `mod.rs`: the public face: options, report, [`ExportError`], [`export_image`], and
//!   choosing the tables to export.
//! - `folders.rs`: the marker in every export folder, and keeping the newest N.
//! - `naming.rs`: output directory and file names, and the table name read back from one.
//! - `sinks.rs`: the Parquet and JSON Lines writers of one table, each on its own thread
//!   behind a bounded queue.
//! - `columns.rs`: SQLite's dynamically typed columns: profiling, the Arrow type chosen,
//!   the column builders.
//! - `sqlite.rs`, `duckdb.rs`: exporting the tables of a SQLite or DuckDB image.
//! - `json.rs`: the JSON Lines value encoding of SQLite and Arrow values, base64 included.
//! - `tests.rs`: round trips through export and [`crate::import`].
//!
//! # Layout
//!
//! Under the destination directory: `parquet/<stem>.parquet` and
//! `jsonl/<stem>.jsonl[.gz|.zst]`, where `<stem>` is `naming::table_file_stem` of the
//! table name (percent-encoding of every byte outside `[A-Za-z0-9_-]`, so it is reversible
//! with `naming::table_name_from_stem`; names whose stem would exceed 180 bytes are cut
//! and suffixed with `~` and a hash). The real table name is also stored in each Parquet file's
//! key-value metadata under `dbguard.table`, and the table's shape with it, so that
//! `import-table` recreates it: a SQLite table's CREATE statement (`dbguard.sqlite.sql`)
//! and declared column types; a DuckDB table's CREATE statement, column types, primary
//! key and NOT NULL columns.
//!
//! # SQLite values
//!
//! SQLite columns are dynamically typed, so each column is profiled first (one pass over
//! the table) and mapped to an Arrow type:
//!
//! | values present                                     | Arrow type |
//! |----------------------------------------------------|------------|
//! | INTEGER (+NULL)                                    | `Int64`    |
//! | REAL (+NULL)                                       | `Float64`  |
//! | INTEGER + REAL, column affinity INTEGER or NUMERIC, all integers within ±2^53 | `Float64`, metadata `dbguard.encoding.<col>` = [`ENCODING_NUMERIC_FLOAT`]: integral values go back as INTEGER |
//! | valid UTF-8 TEXT (+NULL)                           | `Utf8`     |
//! | BLOB (+NULL)                                       | `Binary`   |
//! | only NULL                                          | `Utf8`, all null, metadata [`ENCODING_ALL_NULL`] |
//! | anything else (mixed classes, non-UTF-8 TEXT)      | struct, see below |
//!
//! A mixed column is a nullable `Struct<type: Utf8, integer: Int64, real: Float64,
//! text: Utf8, blob: Binary>`: `type` is one of `integer`, `real`, `text`, `blob`, and the
//! value sits in the field of that name; SQL NULL is a null struct; TEXT that is not valid
//! UTF-8 has `type` = `text` and its raw bytes in `blob`. The file's key-value metadata
//! records this as `dbguard.encoding.<col>` = [`ENCODING_SQLITE_VALUE`].
//!
//! JSON Lines: one object per row, keys in column order. Values: `null`; INTEGER as a JSON
//! integer (exact, also beyond 2^53); REAL as a JSON number that always has a fraction or
//! exponent (`1.0`, `1e20`), or `{"$real": "inf" | "-inf" | "nan"}` when not finite; TEXT as
//! a JSON string, or `{"$text_b64": "<base64>"}` when not valid UTF-8; BLOB as
//! `{"$blob_b64": "<base64>"}` (standard alphabet, padded). The same encoding is used for
//! every column, so each value's storage class survives a round trip.
//!
//! DuckDB tables are streamed through DuckDB's Arrow interface; columns whose type Parquet
//! cannot hold (UNION, nanosecond INTERVAL) are written as text, recorded in
//! `dbguard.encoding.<col>`. In JSON Lines, dates, times, timestamps, decimals and other
//! non-JSON types are ISO / display strings; lists are arrays and structs objects.

mod columns;
mod duckdb;
pub(crate) mod folders;
pub(crate) mod json;
mod naming;
mod sinks;
mod sqlite;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

use arrow::error::ArrowError;
use parquet::errors::ParquetError;

use crate::db::{DbError, DbKind};

pub(crate) use columns::is_mixed_struct;
pub(crate) use naming::{export_dir, table_from_file_name};

/// Metadata value for a mixed SQLite column stored as a struct (see module docs).
pub(crate) const ENCODING_SQLITE_VALUE: &str = "sqlite-value-struct-v1: struct<type: utf8 (integer|real|text|blob), integer: int64, real: float64, text: utf8, blob: binary>; NULL = null struct; TEXT that is not valid UTF-8 = type 'text' with its bytes in 'blob'";
/// Metadata value for an INTEGER+REAL column stored as `Float64`.
pub(crate) const ENCODING_NUMERIC_FLOAT: &str = "numeric-float64-v1: SQLite INTEGER and REAL values as float64 (integers all within +-2^53); column has INTEGER/NUMERIC affinity, integral values were INTEGER";
/// Metadata value for a column holding only NULLs.
pub(crate) const ENCODING_ALL_NULL: &str = "all-null: every value is SQL NULL";
/// Metadata key prefix for per-column encodings.
pub(crate) const META_ENCODING_PREFIX: &str = "dbguard.encoding.";
/// Metadata key holding the real table name.
pub(crate) const META_TABLE: &str = "dbguard.table";
/// Metadata key prefix for a SQLite column's declared type (`dbguard.sqlite.decltype.<col>`).
pub(crate) const META_SQLITE_DECLTYPE_PREFIX: &str = "dbguard.sqlite.decltype.";
/// Metadata key holding a SQLite source table's CREATE TABLE statement, as
/// `sqlite_schema` has it: import recreates the table from it (primary key, NOT NULL,
/// types, CHECK, WITHOUT ROWID, STRICT).
pub(crate) const META_SQLITE_SQL: &str = "dbguard.sqlite.sql";
/// Metadata key holding a DuckDB source table's CREATE TABLE statement (for people and
/// DuckDB; import into SQLite uses [`META_PRIMARY_KEY`] and [`META_NOT_NULL`]).
pub(crate) const META_DUCKDB_SQL: &str = "dbguard.duckdb.sql";
/// Metadata key prefix for a DuckDB column's type (`dbguard.duckdb.type.<col>`).
pub(crate) const META_DUCKDB_TYPE_PREFIX: &str = "dbguard.duckdb.type.";
/// Metadata key holding the source table's primary key columns, as a JSON array of
/// names in key order (DuckDB sources; absent when the table has none).
pub(crate) const META_PRIMARY_KEY: &str = "dbguard.primary_key";
/// Metadata key holding the source table's NOT NULL columns, as a JSON array of names
/// (DuckDB sources).
pub(crate) const META_NOT_NULL: &str = "dbguard.not_null";

/// Integers up to this magnitude survive a round trip through `f64` exactly.
pub(crate) const MAX_SAFE_INT_F64: i64 = 1 << 53;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    Parquet,
    Jsonl,
}

/// Compression for Parquet pages and for JSON Lines files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    Zstd,
    Gzip,
    None,
}

/// What to export and how.
#[derive(Debug, Clone)]
pub(crate) struct ExportOptions {
    pub(crate) formats: Vec<ExportFormat>,
    pub(crate) compression: Compression,
    /// Tables to export; empty means all. DuckDB tables outside schema `main` are named
    /// `schema.table`.
    pub(crate) tables: Vec<String>,
    /// Rows per Arrow record batch and Parquet row group.
    pub(crate) batch_rows: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            formats: vec![ExportFormat::Parquet, ExportFormat::Jsonl],
            compression: Compression::Zstd,
            tables: Vec::new(),
            batch_rows: 65_536,
        }
    }
}

/// One exported table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableExport {
    pub(crate) table: String,
    pub(crate) rows: u64,
    pub(crate) files: Vec<PathBuf>,
}

/// A table that was not exported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SkippedTable {
    pub(crate) table: String,
    pub(crate) reason: String,
}

/// The result of [`export_image`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExportReport {
    pub(crate) tables: Vec<TableExport>,
    pub(crate) skipped: Vec<SkippedTable>,
}

/// Everything that can go wrong while exporting.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error("cannot open SQLite image {}", path.display())]
    OpenSqlite {
        path: PathBuf,
        #[source]
        source: DbError,
    },
    #[error("cannot open DuckDB image {}", path.display())]
    OpenDuckDb {
        path: PathBuf,
        #[source]
        source: ::duckdb::Error,
    },
    #[error("SQLite error on table {table:?} of {}", path.display())]
    Sqlite {
        path: PathBuf,
        table: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("DuckDB error on table {table:?} of {}", path.display())]
    DuckDb {
        path: PathBuf,
        table: String,
        #[source]
        source: ::duckdb::Error,
    },
    #[error("cannot write or read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Parquet error in {} (table {table:?})", path.display())]
    Parquet {
        path: PathBuf,
        table: String,
        #[source]
        source: ParquetError,
    },
    #[error("Arrow error in {} (table {table:?})", path.display())]
    Arrow {
        path: PathBuf,
        table: String,
        #[source]
        source: ArrowError,
    },
    #[error("no table {table:?} in {}", path.display())]
    UnknownTable { path: PathBuf, table: String },
    #[error("table {table:?} in {} changed while exporting: {detail}", path.display())]
    Changed {
        path: PathBuf,
        table: String,
        detail: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The table being exported and the image it is read from: what its errors name.
#[derive(Clone, Copy)]
struct TableInImage<'a> {
    image: &'a Path,
    table: &'a str,
}

impl<'a> TableInImage<'a> {
    fn sqlite_err(self) -> impl Fn(rusqlite::Error) -> ExportError + 'a {
        move |source| ExportError::Sqlite {
            path: self.image.to_path_buf(),
            table: self.table.to_string(),
            source,
        }
    }

    fn duckdb_err(self) -> impl Fn(::duckdb::Error) -> ExportError + 'a {
        move |source| ExportError::DuckDb {
            path: self.image.to_path_buf(),
            table: self.table.to_string(),
            source,
        }
    }

    fn arrow_err(self) -> impl Fn(ArrowError) -> ExportError + 'a {
        move |source| ExportError::Arrow {
            path: self.image.to_path_buf(),
            table: self.table.to_string(),
            source,
        }
    }

    fn changed(self, detail: String) -> ExportError {
        ExportError::Changed {
            path: self.image.to_path_buf(),
            table: self.table.to_string(),
            detail,
        }
    }
}

/// How far an export has got: reported to [`export_image`]'s caller every few thousand
/// rows, for a progress display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ExportProgress {
    /// Rows written to the output files so far, all tables together.
    pub(crate) rows: u64,
    /// Rows read so far, each pass counted: a SQLite table exported to Parquet is read
    /// twice (see [`row_passes`]), so the work in all is rows × passes.
    pub(crate) work: u64,
}

/// How many times an export reads each row: SQLite tables are profiled first when
/// Parquet needs a fixed type per column.
pub(crate) fn row_passes(kind: DbKind, opts: &ExportOptions) -> u64 {
    if kind == DbKind::Sqlite && opts.formats.contains(&ExportFormat::Parquet) {
        2
    } else {
        1
    }
}

/// Counts rows as they are read and written and tells the caller's progress callback
/// now and then (every [`Tally::EVERY`] rows, not on every row).
struct Tally<'p> {
    progress: &'p dyn Fn(ExportProgress),
    now: std::cell::Cell<ExportProgress>,
}

impl<'p> Tally<'p> {
    const EVERY: u64 = 4096;

    fn new(progress: &'p dyn Fn(ExportProgress)) -> Self {
        Tally {
            progress,
            now: std::cell::Cell::new(ExportProgress::default()),
        }
    }

    /// `read` rows read, of which `written` were also written.
    fn add(&self, read: u64, written: u64) {
        let before = self.now.get();
        let after = ExportProgress {
            rows: before.rows + written,
            work: before.work + read,
        };
        self.now.set(after);
        if after.work / Self::EVERY != before.work / Self::EVERY || read >= Self::EVERY {
            (self.progress)(after);
        }
    }
}

/// Exports the tables of `image` (a private, consistent copy) into `dest_dir`, telling
/// `progress` how far it has got now and then.
///
/// Virtual tables and SQLite shadow tables are skipped and listed in
/// [`ExportReport::skipped`]; `sqlite_*` internal tables are ignored. A name in
/// `opts.tables` that is not a table is an [`ExportError::UnknownTable`].
pub(crate) fn export_image(
    kind: DbKind,
    image: &Path,
    dest_dir: &Path,
    opts: &ExportOptions,
    progress: &dyn Fn(ExportProgress),
) -> Result<ExportReport, ExportError> {
    let tally = Tally::new(progress);
    match kind {
        DbKind::Sqlite => sqlite::export(image, dest_dir, opts, &tally),
        DbKind::DuckDb => duckdb::export(image, dest_dir, opts, &tally),
    }
}

/// The tables `opts.tables` asks for (all when empty), matched exactly or else
/// case-insensitively as SQLite does, and the asked-for ones that are skipped.
fn select_tables(
    image: &Path,
    available: &[String],
    skipped: &[SkippedTable],
    opts: &ExportOptions,
) -> Result<(Vec<String>, Vec<SkippedTable>), ExportError> {
    if opts.tables.is_empty() {
        return Ok((available.to_vec(), skipped.to_vec()));
    }
    let mut chosen = Vec::new();
    let mut chosen_skipped = Vec::new();
    for want in &opts.tables {
        if let Some(t) = available
            .iter()
            .find(|t| *t == want)
            .or_else(|| available.iter().find(|t| t.eq_ignore_ascii_case(want)))
        {
            if !chosen.contains(t) {
                chosen.push(t.clone());
            }
        } else if let Some(s) = skipped
            .iter()
            .find(|s| s.table == *want || s.table.eq_ignore_ascii_case(want))
        {
            if !chosen_skipped.contains(s) {
                chosen_skipped.push(s.clone());
            }
        } else {
            return Err(ExportError::UnknownTable {
                path: image.to_path_buf(),
                table: want.clone(),
            });
        }
    }
    Ok((chosen, chosen_skipped))
}
