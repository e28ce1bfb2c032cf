//! `import-table`: load one file written by [`crate::export`] (Parquet or JSON Lines,
//! plain, gzip or zstd) back into a table of a SQLite database, in one transaction, each
//! value with the storage class it was exported with.

mod jsonl_file;
mod parquet_file;
#[cfg(test)]
mod tests;
mod values;

use jsonl_file::*;
#[cfg(test)]
pub(crate) use parquet_file::key_value_metadata;
use parquet_file::*;
pub(crate) use values::{SqlVal, arrow_to_sql, json_to_sql};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{ToSql, Transaction};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use crate::db::create_table::{CreateTableError, checked_create_table, restrict};
use crate::db::{DbKind, quote_ident};
use crate::export::json::{base64_decode, write_arrow_json};
use crate::export::{
    ENCODING_NUMERIC_FLOAT, MAX_SAFE_INT_F64, META_ENCODING_PREFIX, META_NOT_NULL,
    META_PRIMARY_KEY, META_SQLITE_DECLTYPE_PREFIX, META_SQLITE_SQL, is_mixed_struct,
};

/// Everything that can go wrong while importing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    #[error("cannot open SQLite database {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("SQLite error on table {table:?} of {}", path.display())]
    Sqlite {
        path: PathBuf,
        table: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot read {}", path.display())]
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
    #[error("{} line {line}: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("table {table:?} in {} has no column {column:?} present in the export", path.display())]
    MissingColumn {
        path: PathBuf,
        table: String,
        column: String,
    },
    #[error("{what} ({})", path.display())]
    Unsupported { path: PathBuf, what: String },
    /// The Parquet reader gave up on inconsistent data inside the file.
    #[error("{} is damaged: its Parquet data contradicts itself", path.display())]
    Damaged { path: PathBuf },
    /// The table definition the file carries was refused (it was not run).
    #[error("{} describes table {table:?} with a definition dbguard will not run", file.display())]
    Definition {
        file: PathBuf,
        table: String,
        #[source]
        source: CreateTableError,
    },
    /// A column's declared type in the file's metadata is not a SQLite type name.
    #[error("{} gives column {column:?} the type {decltype:?}, which is not a SQLite type name", file.display())]
    Decltype {
        file: PathBuf,
        column: String,
        decltype: String,
    },
    #[error(
        "row {row} of {} has the same {key} as a row already in table {table:?} of {} ({detail})",
        file.display(),
        path.display()
    )]
    Duplicate {
        file: PathBuf,
        path: PathBuf,
        table: String,
        row: u64,
        /// "primary key" or "unique key".
        key: &'static str,
        /// SQLite's message, naming the column(s).
        detail: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads one file written by [`crate::export::export_image`] (Parquet or JSON Lines,
/// plain, gzip or zstd; detected from its first bytes) into table `table` of `target_db`,
/// in one transaction.
///
/// The table is created when missing (Parquet: with the shape the export recorded: a SQLite
/// source's own CREATE statement, a DuckDB source's primary key and NOT NULL columns; else,
/// as for files exported before dbguard recorded it, with the declared column types when
/// known; JSON Lines: untyped columns, which keep every value's storage class). With
/// `replace`, an existing table is emptied first; otherwise rows are appended. Returns the
/// number of rows inserted. Only SQLite targets are supported.
pub(crate) fn import_table(
    kind: DbKind,
    exported_file: &Path,
    target_db: &Path,
    table: &str,
    replace: bool,
) -> Result<u64, ImportError> {
    match kind {
        DbKind::Sqlite => sqlite_import(exported_file, target_db, table, replace),
        DbKind::DuckDb => Err(ImportError::Unsupported {
            path: target_db.to_path_buf(),
            what: "importing into a DuckDB database is not supported yet".to_string(),
        }),
    }
}

fn sqlite_import(
    file: &Path,
    target_db: &Path,
    table: &str,
    replace: bool,
) -> Result<u64, ImportError> {
    let format = sniff_file(file)?;
    let open_err = |source| ImportError::Open {
        path: target_db.to_path_buf(),
        source,
    };
    let mut conn = rusqlite::Connection::open(target_db).map_err(open_err)?;
    // Nothing the file carries may attach, drop or alter anything.
    restrict(&mut conn).map_err(open_err)?;
    let sql_err = |source| ImportError::Sqlite {
        path: target_db.to_path_buf(),
        table: table.to_string(),
        source,
    };
    let tx = conn.transaction().map_err(sql_err)?;
    let target = Destination {
        tx: &tx,
        file,
        path: target_db,
        table,
        replace,
    };
    let rows = match format {
        // The arrow and parquet crates assert on some inconsistent files (found by
        // `fuzz_damaged_parquet_files_are_errors`): a damaged file is an error, and the
        // transaction is rolled back, never a crash halfway.
        FileFormat::Parquet => quietly_catching_panics(|| import_parquet(file, target))
            .unwrap_or_else(|()| {
                Err(ImportError::Damaged {
                    path: file.to_path_buf(),
                })
            })?,
        FileFormat::Jsonl => {
            let r = BufReader::new(File::open(file).map_err(io_err(file))?);
            import_jsonl(file, r, target)?
        }
        FileFormat::JsonlGzip => {
            let f = File::open(file).map_err(io_err(file))?;
            let r = BufReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)));
            import_jsonl(file, r, target)?
        }
        FileFormat::JsonlZstd => {
            let f = File::open(file).map_err(io_err(file))?;
            let r = BufReader::new(zstd::Decoder::new(f).map_err(io_err(file))?);
            import_jsonl(file, r, target)?
        }
    };
    tx.commit().map_err(sql_err)?;
    Ok(rows)
}

/// Run `work`, turning a panic inside it into `Err(())` without the panic message on
/// stderr: the caller reports a damaged file in its own words. Panics on other threads
/// (and outside `work`) are printed as before.
fn quietly_catching_panics<T>(work: impl FnOnce() -> T) -> Result<T, ()> {
    use std::cell::Cell;
    use std::sync::Once;
    thread_local! {
        static QUIET: Cell<bool> = const { Cell::new(false) };
    }
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|quiet| quiet.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    QUIET.with(|quiet| quiet.set(false));
    result.map_err(|_| ())
}

enum FileFormat {
    Parquet,
    Jsonl,
    JsonlGzip,
    JsonlZstd,
}

/// The format of an exported file, from its magic bytes (anything else is read as plain
/// JSON Lines, whose errors then say what is wrong).
fn sniff_file(path: &Path) -> Result<FileFormat, ImportError> {
    let mut head = [0u8; 4];
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut n = 0;
    while n < head.len() {
        let got = f.read(&mut head[n..]).map_err(io_err(path))?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(match &head[..n] {
        b"PAR1" => FileFormat::Parquet,
        [0x1f, 0x8b, ..] => FileFormat::JsonlGzip,
        [0x28, 0xb5, 0x2f, 0xfd] => FileFormat::JsonlZstd,
        _ => FileFormat::Jsonl,
    })
}

/// Where the rows go: a table of the target database, inside the import's transaction.
#[derive(Clone, Copy)]
struct Destination<'t> {
    tx: &'t Transaction<'t>,
    /// The file being loaded (named by errors).
    file: &'t Path,
    path: &'t Path,
    table: &'t str,
    /// Empty an existing table first instead of appending.
    replace: bool,
}

impl<'t> Destination<'t> {
    fn sql_err(self) -> impl Fn(rusqlite::Error) -> ImportError + 't {
        move |source| ImportError::Sqlite {
            path: self.path.to_path_buf(),
            table: self.table.to_string(),
            source,
        }
    }

    /// Creates the table if missing (`columns`: name and declared type; `shape`: what the
    /// export recorded about the source table), empties it when `replace`, and checks that
    /// it has every column of the file.
    fn prepare(
        self,
        columns: &[(String, String)],
        shape: &Shape,
    ) -> Result<TargetTable<'t>, ImportError> {
        let exists: bool = self
            .tx
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
                [self.table],
                |r| r.get(0),
            )
            .map_err(self.sql_err())?;
        if !exists {
            self.create(columns, shape)?;
        } else if self.replace {
            self.tx
                .execute_batch(&format!("DELETE FROM main.{}", quote_ident(self.table)))
                .map_err(self.sql_err())?;
        }
        self.insert_plan(columns)
    }

    /// Creates the table. Whatever the file says about its shape goes through
    /// [`checked_create_table`]: one `CREATE TABLE` statement, checked on a scratch
    /// database and renamed there, is all that runs here.
    fn create(self, columns: &[(String, String)], shape: &Shape) -> Result<(), ImportError> {
        if !matches!(shape, Shape::SqliteDefinition(_))
            && let Some((column, decltype)) = columns.iter().find(|(_, d)| !is_type_name(d))
        {
            return Err(ImportError::Decltype {
                file: self.file.to_path_buf(),
                column: column.clone(),
                decltype: decltype.clone(),
            });
        }
        let statement = match shape {
            // The source's own definition, under the target's name.
            Shape::SqliteDefinition(recorded) => recorded.clone(),
            Shape::Constraints {
                primary_key,
                not_null,
            } => format!(
                "CREATE TABLE t {}",
                column_definitions(columns, primary_key, not_null)
            ),
            Shape::Unknown => format!("CREATE TABLE t {}", column_definitions(columns, &[], &[])),
        };
        let sql = checked_create_table(&statement, self.table).map_err(|source| {
            ImportError::Definition {
                file: self.file.to_path_buf(),
                table: self.table.to_string(),
                source,
            }
        })?;
        self.tx
            .prepare(&sql)
            .and_then(|mut create| create.raw_execute())
            .map(|_| ())
            .map_err(self.sql_err())
    }

    /// Matches the file's columns to the table's (case-insensitively, as SQLite does);
    /// generated columns of the table are left for SQLite to compute.
    fn insert_plan(self, columns: &[(String, String)]) -> Result<TargetTable<'t>, ImportError> {
        // Existing columns: name (lower-cased) → hidden.
        let mut target_cols: BTreeMap<String, i64> = BTreeMap::new();
        {
            let mut stmt = self
                .tx
                .prepare("SELECT name, hidden FROM pragma_table_xinfo(?1, 'main')")
                .map_err(self.sql_err())?;
            let rows = stmt
                .query_map([self.table], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(self.sql_err())?;
            for row in rows {
                let (n, h) = row.map_err(self.sql_err())?;
                target_cols.insert(n.to_lowercase(), h);
            }
        }
        let mut insert_mask = Vec::new();
        let mut names = Vec::new();
        for (name, _) in columns {
            match target_cols.get(&name.to_lowercase()) {
                None => {
                    return Err(ImportError::MissingColumn {
                        path: self.path.to_path_buf(),
                        table: self.table.to_string(),
                        column: name.clone(),
                    });
                }
                Some(0) => {
                    insert_mask.push(true);
                    names.push(quote_ident(name));
                }
                Some(_) => insert_mask.push(false),
            }
        }
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO main.{} ({}) VALUES ({})",
            quote_ident(self.table),
            names.join(", "),
            placeholders.join(", ")
        );
        let insert = self.tx.prepare(&sql).map_err(self.sql_err())?;
        Ok(TargetTable {
            destination: self,
            insert_mask,
            insert,
            inserted: 0,
        })
    }
}

/// `(col TYPE [NOT NULL], …[, PRIMARY KEY (…)])` for a table the export recorded no
/// CREATE statement of; key and NOT NULL columns missing from `columns` are left out.
fn column_definitions(
    columns: &[(String, String)],
    primary_key: &[String],
    not_null: &[String],
) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|(name, decl)| {
            let mut part = quote_ident(name);
            if !decl.is_empty() {
                part.push(' ');
                part.push_str(decl);
            }
            if not_null.contains(name) {
                part.push_str(" NOT NULL");
            }
            part
        })
        .collect();
    if !primary_key.is_empty()
        && primary_key
            .iter()
            .all(|k| columns.iter().any(|(c, _)| c == k))
    {
        let key: Vec<String> = primary_key.iter().map(|k| quote_ident(k)).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!("({})", parts.join(", "))
}

/// What an exported file says about the shape of its source table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// A SQLite source: its CREATE TABLE statement as recorded (columns, constraints and
    /// table options such as WITHOUT ROWID or STRICT), unchecked: see [`Destination::create`].
    SqliteDefinition(String),
    /// Another source: the primary key and NOT NULL columns.
    Constraints {
        primary_key: Vec<String>,
        not_null: Vec<String>,
    },
    /// Nothing recorded (JSON Lines, or a file exported before dbguard recorded it).
    Unknown,
}

impl Shape {
    fn from_metadata(kv: &HashMap<String, String>) -> Shape {
        if let Some(recorded) = kv.get(META_SQLITE_SQL) {
            return Shape::SqliteDefinition(recorded.clone());
        }
        let names = |key: &str| -> Option<Vec<String>> {
            kv.get(key).and_then(|v| serde_json::from_str(v).ok())
        };
        match (names(META_PRIMARY_KEY), names(META_NOT_NULL)) {
            (None, None) => Shape::Unknown,
            (primary_key, not_null) => Shape::Constraints {
                primary_key: primary_key.unwrap_or_default(),
                not_null: not_null.unwrap_or_default(),
            },
        }
    }
}

/// The target table, ready for inserts.
struct TargetTable<'t> {
    destination: Destination<'t>,
    /// For each source column, whether it is inserted (false: generated in the target).
    insert_mask: Vec<bool>,
    insert: rusqlite::Statement<'t>,
    /// Rows inserted so far (names the row a constraint refused).
    inserted: u64,
}

impl TargetTable<'_> {
    /// Whether the file's column `i` is inserted.
    fn inserts(&self, i: usize) -> bool {
        self.insert_mask.get(i).copied().unwrap_or(false)
    }

    /// Inserts one row: the values of the inserted columns, in file order. A row whose
    /// key is already in the table is [`ImportError::Duplicate`].
    fn insert(&mut self, values: &[SqlVal]) -> Result<(), ImportError> {
        let d = self.destination;
        match self
            .insert
            .execute(rusqlite::params_from_iter(values.iter()))
        {
            Ok(_) => {
                self.inserted += 1;
                Ok(())
            }
            Err(rusqlite::Error::SqliteFailure(e, message))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                Err(ImportError::Duplicate {
                    file: d.file.to_path_buf(),
                    path: d.path.to_path_buf(),
                    table: d.table.to_string(),
                    row: self.inserted + 1,
                    key: if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY {
                        "primary key"
                    } else {
                        "unique key"
                    },
                    detail: message.unwrap_or_else(|| e.to_string()),
                })
            }
            Err(source) => Err(d.sql_err()(source)),
        }
    }
}
