//! `import-table`: load one file written by [`crate::export`] (Parquet or JSON Lines,
//! plain, gzip or zstd) back into a table of a SQLite database, in one transaction, each
//! value with the storage class it was exported with.

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

fn import_parquet(file: &Path, target: Destination<'_>) -> Result<u64, ImportError> {
    let pq_err = |source| ImportError::Parquet {
        path: file.to_path_buf(),
        table: target.table.to_string(),
        source,
    };
    let f = File::open(file).map_err(io_err(file))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(pq_err)?;
    let kv = key_value_metadata(builder.metadata());
    let (columns, numeric) = parquet_columns(builder.schema(), &kv);
    let mut table = target.prepare(&columns, &Shape::from_metadata(&kv))?;
    let reader = builder.with_batch_size(8192).build().map_err(pq_err)?;
    let mut rows = 0u64;
    let mut vals = Vec::with_capacity(columns.len());
    for batch in reader {
        let batch = batch.map_err(|source| ImportError::Arrow {
            path: file.to_path_buf(),
            table: target.table.to_string(),
            source,
        })?;
        for row in 0..batch.num_rows() {
            vals.clear();
            for (i, col) in batch.columns().iter().enumerate() {
                if !table.inserts(i) {
                    continue;
                }
                let numeric_float = numeric.get(i).copied().unwrap_or(false);
                let v = arrow_to_sql(col.as_ref(), row, numeric_float).map_err(|reason| {
                    ImportError::Malformed {
                        path: file.to_path_buf(),
                        line: rows + 1,
                        reason,
                    }
                })?;
                vals.push(v);
            }
            table.insert(&vals)?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// The key-value metadata of a Parquet file; keys without a value are left out.
pub(crate) fn key_value_metadata(metadata: &ParquetMetaData) -> HashMap<String, String> {
    metadata
        .file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|k| Some((k.key.clone(), k.value.clone()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Each column's name and declared type (the source's, recorded by the export, or one
/// that suits its Arrow type), and whether it holds [`ENCODING_NUMERIC_FLOAT`] values.
/// A recorded type is checked where it would be used: [`Destination::create`].
fn parquet_columns(
    schema: &Schema,
    kv: &HashMap<String, String>,
) -> (Vec<(String, String)>, Vec<bool>) {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let decl = kv
                .get(&format!("{META_SQLITE_DECLTYPE_PREFIX}{}", f.name()))
                .cloned()
                .unwrap_or_else(|| default_decltype(f.data_type()).to_string());
            (f.name().clone(), decl)
        })
        .collect();
    let numeric = schema
        .fields()
        .iter()
        .map(|f| {
            kv.get(&format!("{META_ENCODING_PREFIX}{}", f.name()))
                .is_some_and(|e| e == ENCODING_NUMERIC_FLOAT)
        })
        .collect();
    (columns, numeric)
}

/// SQLite's `type-name`: words (`UNSIGNED BIG INT`, `VARCHAR`) and at most one
/// parenthesised pair of numbers (`DECIMAL(10, 5)`), or nothing at all.
fn is_type_name(text: &str) -> bool {
    let (words, size) = match text.split_once('(') {
        Some((words, rest)) => match rest.strip_suffix(')') {
            Some(size) => (words, Some(size)),
            None => return false,
        },
        None => (text, None),
    };
    let word_ok = |w: &str| {
        w.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let mut word_list = words.split(' ').filter(|w| !w.is_empty()).peekable();
    let some_words = word_list.peek().is_some();
    let words_ok = word_list.all(word_ok) && (some_words || text.is_empty());
    let number_ok = |n: &str| {
        let n = n.trim();
        let n = n.strip_prefix(['+', '-']).unwrap_or(n);
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit() || c == '.')
            && n.chars().filter(|&c| c == '.').count() <= 1
    };
    let size_ok = size.is_none_or(|size| {
        let numbers: Vec<&str> = size.split(',').collect();
        numbers.len() <= 2 && numbers.into_iter().all(number_ok)
    });
    words_ok && size_ok
}

fn default_decltype(dt: &DataType) -> &'static str {
    match dt {
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "INTEGER",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "REAL",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "TEXT",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BLOB",
        _ => "",
    }
}

/// The objects of a JSON Lines file, one a line; blank lines are skipped.
struct JsonlRows<'f, R> {
    file: &'f Path,
    reader: R,
    buf: Vec<u8>,
    /// The line the last row came from (1-based; 0 before the first).
    line: u64,
}

impl<'f, R: BufRead> JsonlRows<'f, R> {
    fn malformed(&self, line: u64, reason: String) -> ImportError {
        ImportError::Malformed {
            path: self.file.to_path_buf(),
            line,
            reason,
        }
    }

    fn next_row(&mut self) -> Result<Option<OrderedRow>, ImportError> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(io_err(self.file))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return serde_json::from_slice::<OrderedRow>(&self.buf)
                .map(Some)
                .map_err(|e| self.malformed(self.line, e.to_string()));
        }
    }
}

/// Loads JSON lines; the first line's keys name the columns and every line must have
/// the same keys in the same order.
fn import_jsonl<R: BufRead>(
    file: &Path,
    reader: R,
    target: Destination<'_>,
) -> Result<u64, ImportError> {
    let mut lines = JsonlRows {
        file,
        reader,
        buf: Vec::new(),
        line: 0,
    };
    let Some(first) = lines.next_row()? else {
        return Err(lines.malformed(
            0,
            format!(
                "empty file: no columns to load into table {:?}",
                target.table
            ),
        ));
    };
    let columns: Vec<(String, String)> = first
        .0
        .iter()
        .map(|(k, _)| (k.clone(), String::new()))
        .collect();
    let mut table = target.prepare(&columns, &Shape::Unknown)?;
    let mut rows = 0u64;
    let mut current = Some(first);
    let mut vals: Vec<SqlVal> = Vec::with_capacity(columns.len());
    while let Some(row) = current {
        if row.0.len() != columns.len() || row.0.iter().zip(&columns).any(|((k, _), (c, _))| k != c)
        {
            return Err(lines.malformed(lines.line, "keys differ from the first line".to_string()));
        }
        vals.clear();
        for (i, (_, v)) in row.0.into_iter().enumerate() {
            if table.inserts(i) {
                vals.push(json_to_sql(v).map_err(|r| lines.malformed(lines.line, r))?);
            }
        }
        table.insert(&vals)?;
        rows += 1;
        current = lines.next_row()?;
    }
    Ok(rows)
}

/// A JSON object with its keys in file order.
struct OrderedRow(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for OrderedRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedRow;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedRow, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    v.push(entry);
                }
                Ok(OrderedRow(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// An owned SQLite value that can bind TEXT bytes that are not valid UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlVal {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl ToSql for SqlVal {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            SqlVal::Null => ValueRef::Null,
            SqlVal::Int(i) => ValueRef::Integer(*i),
            SqlVal::Real(r) => ValueRef::Real(*r),
            SqlVal::Text(b) => ValueRef::Text(b),
            SqlVal::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn numeric_from_f64(r: f64) -> SqlVal {
    if r.fract() == 0.0 && r.abs() <= MAX_SAFE_INT_F64 as f64 {
        SqlVal::Int(r as i64)
    } else {
        SqlVal::Real(r)
    }
}

fn u64_to_sql(u: u64) -> SqlVal {
    i64::try_from(u).map_or(SqlVal::Real(u as f64), SqlVal::Int)
}

/// Converts one Arrow value to the SQLite value it stands for.
pub(crate) fn arrow_to_sql(
    array: &dyn Array,
    row: usize,
    numeric_float: bool,
) -> Result<SqlVal, String> {
    if array.is_null(row) {
        return Ok(SqlVal::Null);
    }
    Ok(match array.data_type() {
        DataType::Null => SqlVal::Null,
        DataType::Boolean => SqlVal::Int(i64::from(array.as_boolean().value(row))),
        DataType::Int8 => SqlVal::Int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => SqlVal::Int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => SqlVal::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => SqlVal::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => SqlVal::Int(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => SqlVal::Int(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => SqlVal::Int(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => u64_to_sql(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => {
            SqlVal::Real(f64::from(array.as_primitive::<Float32Type>().value(row)))
        }
        DataType::Float64 => {
            let r = array.as_primitive::<Float64Type>().value(row);
            if numeric_float {
                numeric_from_f64(r)
            } else {
                SqlVal::Real(r)
            }
        }
        DataType::Utf8 => SqlVal::Text(array.as_string::<i32>().value(row).as_bytes().to_vec()),
        DataType::LargeUtf8 => {
            SqlVal::Text(array.as_string::<i64>().value(row).as_bytes().to_vec())
        }
        DataType::Utf8View => SqlVal::Text(array.as_string_view().value(row).as_bytes().to_vec()),
        DataType::Binary => SqlVal::Blob(array.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => SqlVal::Blob(array.as_binary::<i64>().value(row).to_vec()),
        DataType::BinaryView => SqlVal::Blob(array.as_binary_view().value(row).to_vec()),
        DataType::FixedSizeBinary(_) => {
            SqlVal::Blob(array.as_fixed_size_binary().value(row).to_vec())
        }
        DataType::Struct(fields) if is_mixed_struct(fields) => mixed_to_sql(array, row)?,
        _ => {
            let mut buf = Vec::new();
            write_arrow_json(&mut buf, array, row).map_err(|e| e.to_string())?;
            // Strings keep their text; nested values stay JSON.
            match serde_json::from_slice::<serde_json::Value>(&buf) {
                Ok(serde_json::Value::String(s)) => SqlVal::Text(s.into_bytes()),
                _ => SqlVal::Text(buf),
            }
        }
    })
}

/// Converts one mixed-value struct (see [`crate::export::ENCODING_SQLITE_VALUE`]) to the
/// SQLite value it stands for.
fn mixed_to_sql(array: &dyn Array, row: usize) -> Result<SqlVal, String> {
    let s = array.as_struct();
    let col = |i: usize| s.column(i).as_ref();
    let ty = match arrow_to_sql(col(0), row, false)? {
        SqlVal::Text(t) => t,
        _ => return Err("mixed value without a type".to_string()),
    };
    let v = match ty.as_slice() {
        b"integer" => arrow_to_sql(col(1), row, false)?,
        b"real" => arrow_to_sql(col(2), row, false)?,
        b"text" => match arrow_to_sql(col(3), row, false)? {
            SqlVal::Null => match arrow_to_sql(col(4), row, false)? {
                SqlVal::Blob(b) => SqlVal::Text(b),
                other => other,
            },
            other => other,
        },
        b"blob" => arrow_to_sql(col(4), row, false)?,
        other => {
            return Err(format!(
                "unknown mixed value type {:?}",
                String::from_utf8_lossy(other)
            ));
        }
    };
    if v == SqlVal::Null {
        return Err(format!(
            "mixed value of type {:?} has no value",
            String::from_utf8_lossy(&ty)
        ));
    }
    Ok(v)
}

/// Converts one JSON value (module-doc encoding) to a SQLite value.
pub(crate) fn json_to_sql(v: serde_json::Value) -> Result<SqlVal, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => SqlVal::Null,
        J::Bool(b) => SqlVal::Int(i64::from(b)),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                SqlVal::Int(i)
            } else if let Some(u) = n.as_u64() {
                u64_to_sql(u)
            } else {
                SqlVal::Real(n.as_f64().ok_or("number out of range")?)
            }
        }
        J::String(s) => SqlVal::Text(s.into_bytes()),
        J::Object(map) => {
            let mut it = map.iter();
            let tagged = match (it.next(), it.next()) {
                (Some((k, J::String(s))), None) => match (k.as_str(), s.as_str()) {
                    ("$blob_b64", s) => Some(SqlVal::Blob(base64_decode(s).ok_or("bad base64")?)),
                    ("$text_b64", s) => Some(SqlVal::Text(base64_decode(s).ok_or("bad base64")?)),
                    ("$real", "nan") => Some(SqlVal::Real(f64::NAN)),
                    ("$real", "inf") => Some(SqlVal::Real(f64::INFINITY)),
                    ("$real", "-inf") => Some(SqlVal::Real(f64::NEG_INFINITY)),
                    _ => None,
                },
                _ => None,
            };
            match tagged {
                Some(v) => v,
                None => SqlVal::Text(J::Object(map).to_string().into_bytes()),
            }
        }
        other => SqlVal::Text(other.to_string().into_bytes()),
    })
}

#[cfg(test)]
mod tests {
    //! Round trips through export and import are tested in `crate::export`'s tests.
    use std::fs;

    use rusqlite::Connection;
    use tempfile::TempDir;

    use super::*;

    /// A three-row Parquet file with columns `a` (integer) and `b` (text) whose
    /// key-value metadata is `kv`, written by the parquet crate as another tool would.
    fn parquet_with_metadata(path: &Path, kv: &[(String, String)]) {
        use std::sync::Arc;
        let schema = Arc::new(Schema::new(vec![
            arrow::datatypes::Field::new("a", DataType::Int64, true),
            arrow::datatypes::Field::new("b", DataType::Utf8, true),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3])),
                Arc::new(arrow::array::StringArray::from(vec!["x", "y", "z"])),
            ],
        )
        .expect("batch");
        let kv = kv
            .iter()
            .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
            .collect();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_key_value_metadata(Some(kv))
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            File::create(path).expect("create"),
            schema,
            Some(props),
        )
        .expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
    }

    /// Pieces of SQL an attacker would put in a table definition.
    fn sql_piece() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("CREATE TABLE t (a INTEGER, b TEXT)".to_string()),
            Just("CREATE TABLE t".to_string()),
            Just("(a, b)".to_string()),
            Just("; DROP TABLE users".to_string()),
            Just("; ATTACH 'planted.db' AS p".to_string()),
            Just("; CREATE TABLE p.x(y)".to_string()),
            Just(" -- (".to_string()),
            Just("\n".to_string()),
            Just("/* (".to_string()),
            Just("*/".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just(" WITHOUT ROWID".to_string()),
            Just("CREATE TRIGGER x AFTER INSERT ON users BEGIN DELETE FROM users; END".to_string()),
            Just("CREATE TEMP TABLE t(a)".to_string()),
            Just("CREATE VIEW v AS SELECT * FROM users".to_string()),
            Just("PRAGMA writable_schema=1".to_string()),
            "[ -~]{0,12}",
        ]
    }

    proptest::proptest! {
        /// Whatever a Parquet file's metadata says (table definitions and declared types
        /// built from SQL fragments), an import leaves `users` alone, creates no file
        /// and no table but the one asked for, and ends in rows or an error.
        #[test]
        fn fuzz_parquet_metadata_runs_no_sql(
            sql in proptest::collection::vec(sql_piece(), 0..6),
            decltype in proptest::option::of(sql_piece()),
            with_sql in proptest::bool::ANY,
        ) {
            let tmp = TempDir::new().expect("tempdir");
            let target = tmp.path().join("t.db");
            Connection::open(&target)
                .and_then(|c| {
                    c.execute_batch(
                        "CREATE TABLE users(id INTEGER PRIMARY KEY); INSERT INTO users VALUES (1), (2), (3);",
                    )
                })
                .expect("users");
            let mut kv = Vec::new();
            if with_sql {
                kv.push((META_SQLITE_SQL.to_string(), sql.concat()));
            }
            if let Some(decltype) = decltype {
                kv.push((format!("{META_SQLITE_DECLTYPE_PREFIX}a"), decltype));
            }
            let file = tmp.path().join("f.parquet");
            parquet_with_metadata(&file, &kv);
            let imported = import_table(DbKind::Sqlite, &file, &target, "loaded", false);
            let conn = Connection::open(&target).expect("open");
            let users: i64 = conn
                .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
                .expect("users survive");
            proptest::prop_assert_eq!(users, 3);
            let names: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
                .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
                .expect("schema");
            match imported {
                Ok(rows) => {
                    proptest::prop_assert_eq!(rows, 3);
                    proptest::prop_assert_eq!(names, vec!["loaded".to_string(), "users".to_string()]);
                }
                Err(_) => proptest::prop_assert_eq!(names, vec!["users".to_string()]),
            }
            let files: Vec<String> = fs::read_dir(tmp.path())
                .expect("list")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            proptest::prop_assert!(!files.iter().any(|f| f.starts_with("planted")), "{:?}", files);
            proptest::prop_assert!(!Path::new("planted.db").exists());
        }

        /// A Parquet file with bytes flipped: rows or an error, never a panic.
        #[test]
        fn fuzz_damaged_parquet_files_are_errors(
            flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 1u8..), 1..6),
        ) {
            let tmp = TempDir::new().expect("tempdir");
            let file = tmp.path().join("f.parquet");
            parquet_with_metadata(&file, &[]);
            let mut bytes = fs::read(&file).expect("read");
            for (at, mask) in &flips {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
            fs::write(&file, &bytes).expect("write");
            let _ = import_table(DbKind::Sqlite, &file, &tmp.path().join("t.db"), "t", false);
        }
    }

    #[test]
    fn recorded_types_must_be_type_names() {
        for ok in [
            "",
            "INTEGER",
            "unsigned big int",
            "VARCHAR(255)",
            "DECIMAL(10, 5)",
            "NUMERIC(-1.5)",
        ] {
            assert!(is_type_name(ok), "{ok:?}");
        }
        for bad in [
            "INTEGER); DROP TABLE users; --",
            "TEXT, evil INTEGER",
            "INT -- (",
            "(1)",
            "TEXT(1",
            "TEXT(1, 2, 3)",
            "TEXT DEFAULT (x)",
            "1NT",
            "TEXT\nCHECK",
        ] {
            assert!(!is_type_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn constraints_are_added_for_columns_the_file_has() {
        let columns = [
            ("id".to_string(), "INTEGER".to_string()),
            ("name".to_string(), String::new()),
        ];
        assert_eq!(
            column_definitions(&columns, &["id".to_string()], &["name".to_string()]),
            "(\"id\" INTEGER, \"name\" NOT NULL, PRIMARY KEY (\"id\"))"
        );
        // A key naming a column the file lacks is left out rather than failing the import.
        assert_eq!(
            column_definitions(&columns, &["gone".to_string()], &[]),
            "(\"id\" INTEGER, \"name\")"
        );
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let tmp = TempDir::new().expect("tempdir");
        let target = tmp.path().join("t.db");
        let bad = tmp.path().join("bad.jsonl");
        fs::write(&bad, "{\"a\": 1}\nnot json\n").expect("write");
        let err = import_table(DbKind::Sqlite, &bad, &target, "x", false).expect_err("bad");
        assert!(matches!(err, ImportError::Malformed { line: 2, .. }));
        // Nothing committed.
        let dst = Connection::open(&target).expect("open");
        let tables: i64 = dst
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .expect("count");
        assert_eq!(tables, 0);
        assert!(matches!(
            import_table(DbKind::DuckDb, &bad, &target, "x", false),
            Err(ImportError::Unsupported { .. })
        ));
    }
}
