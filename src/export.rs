//! Export every table of a database image (a consistent copy on disk) to Parquet and/or
//! JSON Lines, streaming in Arrow record batches, and load one exported table back.
//!
//! # Layout
//!
//! Under the destination directory: `parquet/<stem>.parquet` and
//! `jsonl/<stem>.jsonl[.gz|.zst]`, where `<stem>` is [`table_file_stem`] of the table name
//! (percent-encoding of every byte outside `[A-Za-z0-9_-]`, so it is reversible with
//! [`table_name_from_stem`]; names whose stem would exceed 180 bytes are cut and suffixed
//! with `~` and a hash). The real table name is also stored in each Parquet file's
//! key-value metadata under `dbguard.table`.
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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Float64Builder, Int64Builder, StringBuilder,
    StructArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Field, Fields, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    IntervalUnit, Schema, SchemaRef, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression as PqCompression, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{OpenFlags, ToSql};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use sha2::{Digest, Sha256};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Metadata value for a mixed SQLite column stored as a struct (see module docs).
pub const ENCODING_SQLITE_VALUE: &str = "sqlite-value-struct-v1: struct<type: utf8 (integer|real|text|blob), integer: int64, real: float64, text: utf8, blob: binary>; NULL = null struct; TEXT that is not valid UTF-8 = type 'text' with its bytes in 'blob'";
/// Metadata value for an INTEGER+REAL column stored as `Float64`.
pub const ENCODING_NUMERIC_FLOAT: &str = "numeric-float64-v1: SQLite INTEGER and REAL values as float64 (integers all within +-2^53); column has INTEGER/NUMERIC affinity, integral values were INTEGER";
/// Metadata value for a column holding only NULLs.
pub const ENCODING_ALL_NULL: &str = "all-null: every value is SQL NULL";
/// Metadata key prefix for per-column encodings.
pub const META_ENCODING_PREFIX: &str = "dbguard.encoding.";
/// Metadata key holding the real table name.
pub const META_TABLE: &str = "dbguard.table";

const MAX_STEM_BYTES: usize = 180;
const MAX_SAFE_INT_F64: i64 = 1 << 53;

/// Which database engine an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    DuckDb,
}

impl fmt::Display for DbKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbKind::Sqlite => "SQLite",
            DbKind::DuckDb => "DuckDB",
        })
    }
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Parquet,
    Jsonl,
}

/// Compression for Parquet pages and for JSON Lines files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub formats: Vec<ExportFormat>,
    pub compression: Compression,
    /// Tables to export; empty means all. DuckDB tables outside schema `main` are named
    /// `schema.table`.
    pub tables: Vec<String>,
    /// Rows per Arrow record batch and Parquet row group.
    pub batch_rows: usize,
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
pub struct TableExport {
    pub table: String,
    pub rows: u64,
    pub files: Vec<PathBuf>,
}

/// A table that was not exported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTable {
    pub table: String,
    pub reason: String,
}

/// The result of [`export_image`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub tables: Vec<TableExport>,
    pub skipped: Vec<SkippedTable>,
}

/// Everything that can go wrong while exporting or importing.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot open {kind} image {}", path.display())]
    OpenSqlite {
        kind: DbKind,
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot open {kind} image {}", path.display())]
    OpenDuckDb {
        kind: DbKind,
        path: PathBuf,
        #[source]
        source: duckdb::Error,
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
        source: duckdb::Error,
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
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// File names

/// The file stem used for a table: bytes outside `[A-Za-z0-9_-]` become `%XX`; the empty
/// name becomes `%`; stems over 180 bytes are cut and get `~` + 16 hex digits of sha256.
pub fn table_file_stem(table: &str) -> String {
    if table.is_empty() {
        return "%".to_string();
    }
    let mut out = String::with_capacity(table.len());
    for &b in table.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push_str(&format!("{b:02X}"));
        }
    }
    if out.len() > MAX_STEM_BYTES {
        let digest = Sha256::digest(table.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        out.truncate(MAX_STEM_BYTES - 17);
        // An encoded `%XX` may have been cut in the middle; drop a dangling escape.
        if let Some(pos) = out[out.len().saturating_sub(2)..].find('%') {
            out.truncate(out.len().saturating_sub(2) + pos);
        }
        out.push('~');
        out.push_str(&hex);
    }
    out
}

/// Inverse of [`table_file_stem`]; `None` for hashed (cut) stems or malformed input.
pub fn table_name_from_stem(stem: &str) -> Option<String> {
    if stem == "%" {
        return Some(String::new());
    }
    if stem.contains('~') {
        return None;
    }
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn jsonl_extension(c: Compression) -> &'static str {
    match c {
        Compression::Zstd => "jsonl.zst",
        Compression::Gzip => "jsonl.gz",
        Compression::None => "jsonl",
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

// ---------------------------------------------------------------------------------------
// Base64

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Output sinks

enum JsonlSink {
    Plain(BufWriter<File>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    Zstd(zstd::Encoder<'static, BufWriter<File>>),
}

impl JsonlSink {
    fn create(path: &Path, compression: Compression) -> io::Result<Self> {
        let file = BufWriter::with_capacity(256 * 1024, File::create(path)?);
        Ok(match compression {
            Compression::None => JsonlSink::Plain(file),
            Compression::Gzip => JsonlSink::Gzip(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::default(),
            )),
            Compression::Zstd => JsonlSink::Zstd(zstd::Encoder::new(file, 3)?),
        })
    }

    fn finish(self) -> io::Result<()> {
        let mut inner = match self {
            JsonlSink::Plain(w) => w,
            JsonlSink::Gzip(w) => w.finish()?,
            JsonlSink::Zstd(w) => w.finish()?,
        };
        inner.flush()?;
        inner.get_ref().sync_all()
    }
}

impl Write for JsonlSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            JsonlSink::Plain(w) => w.write(buf),
            JsonlSink::Gzip(w) => w.write(buf),
            JsonlSink::Zstd(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            JsonlSink::Plain(w) => w.write_all(buf),
            JsonlSink::Gzip(w) => w.write_all(buf),
            JsonlSink::Zstd(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            JsonlSink::Plain(w) => w.flush(),
            JsonlSink::Gzip(w) => w.flush(),
            JsonlSink::Zstd(w) => w.flush(),
        }
    }
}

/// Bytes handed to the JSON Lines compressor thread at a time.
const JSONL_CHUNK: usize = 1 << 20;

/// A thread that consumes items from a bounded queue and reports how it ended once the
/// queue is closed: the shared mechanism behind [`BackgroundJsonl`] and
/// [`BackgroundParquet`].
struct QueueWorker<T, E> {
    queue: Option<SyncSender<T>>,
    thread: Option<JoinHandle<Result<(), E>>>,
    /// Builds the error reported when the thread is gone or panicked.
    lost: fn(&'static str) -> E,
}

impl<T: Send + 'static, E: Send + 'static> QueueWorker<T, E> {
    fn start(
        depth: usize,
        lost: fn(&'static str) -> E,
        body: impl FnOnce(Receiver<T>) -> Result<(), E> + Send + 'static,
    ) -> Self {
        let (queue, items) = sync_channel(depth);
        QueueWorker {
            queue: Some(queue),
            thread: Some(std::thread::spawn(move || body(items))),
            lost,
        }
    }

    /// Queue an item (blocking while the queue is full). A worker that stopped early
    /// failed: its error is returned.
    fn send(&mut self, item: T) -> Result<(), E> {
        let delivered = self.queue.as_ref().is_some_and(|q| q.send(item).is_ok());
        if delivered { Ok(()) } else { self.stop() }
    }

    /// Close the queue, wait for the worker and return how it ended.
    fn stop(&mut self) -> Result<(), E> {
        self.queue = None;
        match self.thread.take().map(JoinHandle::join) {
            None => Err((self.lost)("the writer thread has already stopped")),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err((self.lost)("the writer thread panicked")),
        }
    }
}

impl<T, E> Drop for QueueWorker<T, E> {
    /// On an error path: let the worker end before the partial file is removed.
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A [`JsonlSink`] fed from another thread: the exporting thread formats JSON into a
/// buffer and hands full buffers over, so compression runs on the second core while
/// rows are read and formatted. At most two chunks wait in the queue.
struct BackgroundJsonl {
    buffer: Vec<u8>,
    worker: QueueWorker<Vec<u8>, io::Error>,
}

impl BackgroundJsonl {
    fn start(mut sink: JsonlSink) -> Self {
        let worker = QueueWorker::start(2, io::Error::other, move |chunks: Receiver<Vec<u8>>| {
            for chunk in chunks {
                sink.write_all(&chunk)?;
            }
            sink.finish()
        });
        BackgroundJsonl {
            buffer: Vec::with_capacity(JSONL_CHUNK),
            worker,
        }
    }

    fn hand_over(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(JSONL_CHUNK));
        self.worker.send(chunk)
    }

    /// Write what is buffered, finish the compressed stream and fsync the file.
    fn finish(mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.hand_over()?;
        }
        self.worker.stop()
    }
}

impl Write for BackgroundJsonl {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= JSONL_CHUNK {
            self.hand_over()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An [`ArrowWriter`] on its own thread: batches are encoded and compressed into Parquet
/// pages while the next batch is read. One batch waits in the queue at most, which
/// bounds memory to about three batches.
struct BackgroundParquet(QueueWorker<RecordBatch, ParquetError>);

impl BackgroundParquet {
    fn start(mut writer: ArrowWriter<BufWriter<File>>) -> Self {
        let lost = |why: &'static str| ParquetError::General(why.to_string());
        BackgroundParquet(QueueWorker::start(1, lost, move |batches| {
            for batch in batches {
                writer.write(&batch)?;
            }
            let mut file = writer.into_inner()?;
            file.flush()?;
            file.get_ref().sync_all()?;
            Ok(())
        }))
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        self.0.send(batch.clone())
    }

    /// Wait until the file is complete and synced; the writer's error if it failed.
    fn stop(&mut self) -> Result<(), ParquetError> {
        self.0.stop()
    }
}

/// The open output files of one table.
struct TableSinks {
    table: String,
    parquet: Option<(PathBuf, BackgroundParquet)>,
    jsonl: Option<(PathBuf, BackgroundJsonl)>,
    /// JSON-encoded column names, each followed by `:`.
    json_keys: Vec<Vec<u8>>,
}

impl TableSinks {
    fn open(
        dest_dir: &Path,
        table: &str,
        schema: &SchemaRef,
        kv: Vec<KeyValue>,
        opts: &ExportOptions,
    ) -> Result<Self, ExportError> {
        let stem = table_file_stem(table);
        let mut sinks = TableSinks {
            table: table.to_string(),
            parquet: None,
            jsonl: None,
            json_keys: schema
                .fields()
                .iter()
                .map(|f| {
                    let mut k = serde_json::to_vec(f.name()).unwrap_or_else(|_| b"\"\"".to_vec());
                    k.push(b':');
                    k
                })
                .collect(),
        };
        if opts.formats.contains(&ExportFormat::Parquet) {
            let dir = dest_dir.join("parquet");
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let path = dir.join(format!("{stem}.parquet"));
            let file = File::create(&path).map_err(io_err(&path))?;
            let compression = match opts.compression {
                Compression::Zstd => PqCompression::ZSTD(ZstdLevel::default()),
                Compression::Gzip => PqCompression::GZIP(GzipLevel::default()),
                Compression::None => PqCompression::UNCOMPRESSED,
            };
            let props = WriterProperties::builder()
                .set_compression(compression)
                .set_max_row_group_row_count(Some(opts.batch_rows.max(1)))
                .set_key_value_metadata(Some(kv))
                .build();
            let writer = ArrowWriter::try_new(
                BufWriter::with_capacity(256 * 1024, file),
                schema.clone(),
                Some(props),
            )
            .map_err(|source| ExportError::Parquet {
                path: path.clone(),
                table: table.to_string(),
                source,
            })?;
            sinks.parquet = Some((path, BackgroundParquet::start(writer)));
        }
        if opts.formats.contains(&ExportFormat::Jsonl) {
            let dir = dest_dir.join("jsonl");
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let path = dir.join(format!("{stem}.{}", jsonl_extension(opts.compression)));
            let sink = JsonlSink::create(&path, opts.compression).map_err(io_err(&path))?;
            sinks.jsonl = Some((path, BackgroundJsonl::start(sink)));
        }
        Ok(sinks)
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        if let Some((path, writer)) = &mut self.parquet {
            writer.write(batch).map_err(|source| ExportError::Parquet {
                path: path.clone(),
                table: self.table.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Some((p, _)) = &self.parquet {
            v.push(p.clone());
        }
        if let Some((p, _)) = &self.jsonl {
            v.push(p.clone());
        }
        v
    }

    fn finish(self) -> Result<Vec<PathBuf>, ExportError> {
        let mut files = Vec::new();
        if let Some((path, mut writer)) = self.parquet {
            writer.stop().map_err(|source| ExportError::Parquet {
                path: path.clone(),
                table: self.table.clone(),
                source,
            })?;
            files.push(path);
        }
        if let Some((path, sink)) = self.jsonl {
            sink.finish().map_err(io_err(&path))?;
            files.push(path);
        }
        Ok(files)
    }
}

/// Runs `body` with freshly opened sinks; on error removes the partial files.
fn with_sinks<F>(mut sinks: TableSinks, body: F) -> Result<Vec<PathBuf>, ExportError>
where
    F: FnOnce(&mut TableSinks) -> Result<(), ExportError>,
{
    let paths = sinks.paths();
    let result = body(&mut sinks).and_then(|()| sinks.finish());
    if result.is_err() {
        for p in paths {
            let _ = fs::remove_file(p);
        }
    }
    result
}

// ---------------------------------------------------------------------------------------
// Entry points

/// Exports the tables of `image` (a private, consistent copy) into `dest_dir`.
///
/// Virtual tables and SQLite shadow tables are skipped and listed in
/// [`ExportReport::skipped`]; `sqlite_*` internal tables are ignored. A name in
/// `opts.tables` that is not a table is an [`ExportError::UnknownTable`].
pub fn export_image(
    kind: DbKind,
    image: &Path,
    dest_dir: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    match kind {
        DbKind::Sqlite => sqlite_export(image, dest_dir, opts),
        DbKind::DuckDb => duckdb_export(image, dest_dir, opts),
    }
}

/// Loads one file written by [`export_image`] (Parquet or JSON Lines, plain, gzip or zstd;
/// detected from its first bytes) into table `table` of `target_db`, in one transaction.
///
/// The table is created when missing (Parquet: with the source's declared column types
/// when known; JSON Lines: untyped columns, which keep every value's storage class). With
/// `replace`, an existing table is emptied first; otherwise rows are appended. Returns the
/// number of rows inserted. Only SQLite targets are supported.
pub fn import_table(
    kind: DbKind,
    exported_file: &Path,
    target_db: &Path,
    table: &str,
    replace: bool,
) -> Result<u64, ExportError> {
    match kind {
        DbKind::Sqlite => sqlite_import(exported_file, target_db, table, replace),
        DbKind::DuckDb => Err(ExportError::Unsupported {
            path: target_db.to_path_buf(),
            what: "importing into a DuckDB database is not supported yet".to_string(),
        }),
    }
}

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

// ---------------------------------------------------------------------------------------
// SQLite export

fn sqlite_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut uri = String::from("file:");
    for &b in abs.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

fn open_sqlite_image(image: &Path) -> Result<rusqlite::Connection, ExportError> {
    let open_err = |source| ExportError::OpenSqlite {
        kind: DbKind::Sqlite,
        path: image.to_path_buf(),
        source,
    };
    // A missing file would otherwise surface as a confusing "unable to open" later on.
    fs::metadata(image).map_err(io_err(image))?;
    let conn = rusqlite::Connection::open_with_flags(
        sqlite_uri(image),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    // Force the header to be read now so that a non-database fails here.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(open_err)?;
    Ok(conn)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColPlan {
    Int,
    Real,
    NumericFloat,
    Text,
    Blob,
    AllNull,
    Mixed,
}

#[derive(Debug, Default, Clone, Copy)]
struct ColProfile {
    int: bool,
    big_int: bool,
    real: bool,
    text: bool,
    bad_text: bool,
    blob: bool,
}

struct SqliteColumn {
    name: String,
    decltype: String,
    plan: ColPlan,
}

fn affinity_is_int_or_numeric(decltype: &str) -> bool {
    let t = decltype.to_ascii_uppercase();
    if t.contains("INT") {
        return true;
    }
    if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        return false;
    }
    if t.is_empty() || t.contains("BLOB") {
        return false;
    }
    !(t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB"))
}

fn plan_for(p: ColProfile, decltype: &str) -> ColPlan {
    if p.bad_text {
        return ColPlan::Mixed;
    }
    match (p.int, p.real, p.text, p.blob) {
        (false, false, false, false) => ColPlan::AllNull,
        (true, false, false, false) => ColPlan::Int,
        (false, true, false, false) => ColPlan::Real,
        (false, false, true, false) => ColPlan::Text,
        (false, false, false, true) => ColPlan::Blob,
        (true, true, false, false) if !p.big_int && affinity_is_int_or_numeric(decltype) => {
            ColPlan::NumericFloat
        }
        _ => ColPlan::Mixed,
    }
}

fn mixed_fields() -> Fields {
    Fields::from(vec![
        Field::new("type", DataType::Utf8, true),
        Field::new("integer", DataType::Int64, true),
        Field::new("real", DataType::Float64, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("blob", DataType::Binary, true),
    ])
}

fn is_mixed_struct(fields: &Fields) -> bool {
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    names == ["type", "integer", "real", "text", "blob"]
}

struct MixedBuilder {
    valid: Vec<bool>,
    ty: StringBuilder,
    int: Int64Builder,
    real: Float64Builder,
    text: StringBuilder,
    blob: BinaryBuilder,
}

impl MixedBuilder {
    fn new() -> Self {
        MixedBuilder {
            valid: Vec::new(),
            ty: StringBuilder::new(),
            int: Int64Builder::new(),
            real: Float64Builder::new(),
            text: StringBuilder::new(),
            blob: BinaryBuilder::new(),
        }
    }

    fn append(&mut self, v: ValueRef<'_>) {
        let (ty, i, r, t, b): (Option<&str>, _, _, Option<&str>, Option<&[u8]>) = match v {
            ValueRef::Null => (None, None, None, None, None),
            ValueRef::Integer(i) => (Some("integer"), Some(i), None, None, None),
            ValueRef::Real(r) => (Some("real"), None, Some(r), None, None),
            ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(s) => (Some("text"), None, None, Some(s), None),
                Err(_) => (Some("text"), None, None, None, Some(bytes)),
            },
            ValueRef::Blob(bytes) => (Some("blob"), None, None, None, Some(bytes)),
        };
        self.valid.push(ty.is_some());
        self.ty.append_option(ty);
        self.int.append_option(i);
        self.real.append_option(r);
        self.text.append_option(t);
        self.blob.append_option(b);
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let nulls = NullBuffer::from(std::mem::take(&mut self.valid));
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(self.ty.finish()),
            Arc::new(self.int.finish()),
            Arc::new(self.real.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.blob.finish()),
        ];
        Ok(Arc::new(StructArray::try_new(
            mixed_fields(),
            arrays,
            Some(nulls),
        )?))
    }
}

enum ColBuilder {
    Int(Int64Builder),
    Real(Float64Builder),
    Text(StringBuilder),
    Blob(BinaryBuilder),
    Mixed(Box<MixedBuilder>),
}

impl ColBuilder {
    fn new(plan: ColPlan) -> Self {
        match plan {
            ColPlan::Int => ColBuilder::Int(Int64Builder::new()),
            ColPlan::Real | ColPlan::NumericFloat => ColBuilder::Real(Float64Builder::new()),
            ColPlan::Text | ColPlan::AllNull => ColBuilder::Text(StringBuilder::new()),
            ColPlan::Blob => ColBuilder::Blob(BinaryBuilder::new()),
            ColPlan::Mixed => ColBuilder::Mixed(Box::new(MixedBuilder::new())),
        }
    }

    /// Appends `v`; `Err` names the storage class that does not fit the profiled plan.
    fn append(&mut self, v: ValueRef<'_>) -> Result<(), &'static str> {
        match (self, v) {
            (ColBuilder::Mixed(b), v) => b.append(v),
            (ColBuilder::Int(b), ValueRef::Null) => b.append_null(),
            (ColBuilder::Real(b), ValueRef::Null) => b.append_null(),
            (ColBuilder::Text(b), ValueRef::Null) => b.append_null(),
            (ColBuilder::Blob(b), ValueRef::Null) => b.append_null(),
            (ColBuilder::Int(b), ValueRef::Integer(i)) => b.append_value(i),
            (ColBuilder::Real(b), ValueRef::Real(r)) => b.append_value(r),
            (ColBuilder::Real(b), ValueRef::Integer(i))
                if i.unsigned_abs() <= MAX_SAFE_INT_F64 as u64 =>
            {
                b.append_value(i as f64)
            }
            (ColBuilder::Text(b), ValueRef::Text(bytes)) => match std::str::from_utf8(bytes) {
                Ok(s) => b.append_value(s),
                Err(_) => return Err("TEXT that is not UTF-8"),
            },
            (ColBuilder::Blob(b), ValueRef::Blob(bytes)) => b.append_value(bytes),
            (_, v) => return Err(storage_class(v)),
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            ColBuilder::Int(b) => Arc::new(b.finish()),
            ColBuilder::Real(b) => Arc::new(b.finish()),
            ColBuilder::Text(b) => Arc::new(b.finish()),
            ColBuilder::Blob(b) => Arc::new(b.finish()),
            ColBuilder::Mixed(b) => b.finish()?,
        })
    }
}

fn storage_class(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

fn write_sqlite_json<W: Write>(w: &mut W, v: ValueRef<'_>) -> io::Result<()> {
    match v {
        ValueRef::Null => w.write_all(b"null"),
        ValueRef::Integer(i) => write!(w, "{i}"),
        ValueRef::Real(r) => write_json_f64(w, r),
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => Ok(serde_json::to_writer(w, s)?),
            Err(_) => write!(w, "{{\"$text_b64\":\"{}\"}}", base64_encode(bytes)),
        },
        ValueRef::Blob(bytes) => write!(w, "{{\"$blob_b64\":\"{}\"}}", base64_encode(bytes)),
    }
}

fn write_json_f64<W: Write>(w: &mut W, r: f64) -> io::Result<()> {
    if r.is_finite() {
        Ok(serde_json::to_writer(w, &r)?)
    } else if r.is_nan() {
        w.write_all(br#"{"$real":"nan"}"#)
    } else if r > 0.0 {
        w.write_all(br#"{"$real":"inf"}"#)
    } else {
        w.write_all(br#"{"$real":"-inf"}"#)
    }
}

fn sqlite_export(
    image: &Path,
    dest_dir: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    let conn = open_sqlite_image(image)?;
    let sql_err = |table: &str| {
        let table = table.to_string();
        move |source| ExportError::Sqlite {
            path: image.to_path_buf(),
            table,
            source,
        }
    };

    // Tables in schema order, with their kind as PRAGMA table_list reports it.
    let mut available = Vec::new();
    let mut skipped = Vec::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT l.name, l.type, coalesce(s.sql, '') FROM pragma_table_list AS l \
                 LEFT JOIN sqlite_schema AS s ON s.name = l.name AND s.type = 'table' \
                 WHERE l.schema = 'main' AND l.type IN ('table', 'virtual', 'shadow') \
                 AND l.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY s.rowid",
            )
            .map_err(sql_err("(schema)"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql_err("(schema)"))?;
        for row in rows {
            let (name, ty, sql) = row.map_err(sql_err("(schema)"))?;
            match ty.as_str() {
                "table" => available.push(name),
                "virtual" => skipped.push(SkippedTable {
                    table: name,
                    reason: format!("virtual table ({})", sql.trim()),
                }),
                _ => skipped.push(SkippedTable {
                    table: name,
                    reason: "shadow table of a virtual table".to_string(),
                }),
            }
        }
    }
    let (tables, skipped) = select_tables(image, &available, &skipped, opts)?;

    let mut report = ExportReport {
        tables: Vec::new(),
        skipped,
    };
    for table in tables {
        report
            .tables
            .push(sqlite_export_table(&conn, image, &table, dest_dir, opts)?);
    }
    Ok(report)
}

fn sqlite_export_table(
    conn: &rusqlite::Connection,
    image: &Path,
    table: &str,
    dest_dir: &Path,
    opts: &ExportOptions,
) -> Result<TableExport, ExportError> {
    let sql_err = |source| ExportError::Sqlite {
        path: image.to_path_buf(),
        table: table.to_string(),
        source,
    };
    let create_sql: String = conn
        .query_row(
            "SELECT coalesce(sql, '') FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    // Columns as SELECT * would show them (hidden = 0 ordinary, 2/3 generated).
    let mut columns: Vec<SqliteColumn> = {
        let mut stmt = conn
            .prepare(
                "SELECT name, coalesce(type, '') FROM pragma_table_xinfo(?1, 'main') \
                 WHERE hidden IN (0, 2, 3) ORDER BY cid",
            )
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([table], |r| {
                Ok(SqliteColumn {
                    name: r.get(0)?,
                    decltype: r.get(1)?,
                    plan: ColPlan::AllNull,
                })
            })
            .map_err(sql_err)?;
        rows.collect::<Result<_, _>>().map_err(sql_err)?
    };
    if columns.is_empty() {
        return Err(ExportError::Changed {
            path: image.to_path_buf(),
            table: table.to_string(),
            detail: "table has no columns".to_string(),
        });
    }
    let select = format!(
        "SELECT {} FROM main.{}",
        columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        quote_ident(table)
    );

    // Pass 1: profile storage classes (only Parquet needs a fixed type per column).
    let mut profiles = vec![ColProfile::default(); columns.len()];
    if opts.formats.contains(&ExportFormat::Parquet) {
        let mut stmt = conn.prepare(&select).map_err(sql_err)?;
        let mut rows = stmt.query([]).map_err(sql_err)?;
        while let Some(row) = rows.next().map_err(sql_err)? {
            for (i, p) in profiles.iter_mut().enumerate() {
                match row.get_ref(i).map_err(sql_err)? {
                    ValueRef::Null => {}
                    ValueRef::Integer(v) => {
                        p.int = true;
                        if v.unsigned_abs() > MAX_SAFE_INT_F64 as u64 {
                            p.big_int = true;
                        }
                    }
                    ValueRef::Real(_) => p.real = true,
                    ValueRef::Text(b) => {
                        p.text = true;
                        if !p.bad_text && std::str::from_utf8(b).is_err() {
                            p.bad_text = true;
                        }
                    }
                    ValueRef::Blob(_) => p.blob = true,
                }
            }
        }
    }
    for (c, p) in columns.iter_mut().zip(&profiles) {
        c.plan = plan_for(*p, &c.decltype);
    }

    // Schema and metadata.
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            let dt = match c.plan {
                ColPlan::Int => DataType::Int64,
                ColPlan::Real | ColPlan::NumericFloat => DataType::Float64,
                ColPlan::Text | ColPlan::AllNull => DataType::Utf8,
                ColPlan::Blob => DataType::Binary,
                ColPlan::Mixed => DataType::Struct(mixed_fields()),
            };
            Field::new(c.name.clone(), dt, true)
        })
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut kv = vec![
        KeyValue::new("dbguard.format".to_string(), "1".to_string()),
        KeyValue::new("dbguard.source".to_string(), "sqlite".to_string()),
        KeyValue::new(META_TABLE.to_string(), table.to_string()),
        KeyValue::new("dbguard.sqlite.sql".to_string(), create_sql),
    ];
    for c in &columns {
        kv.push(KeyValue::new(
            format!("dbguard.sqlite.decltype.{}", c.name),
            c.decltype.clone(),
        ));
        let enc = match c.plan {
            ColPlan::Mixed => Some(ENCODING_SQLITE_VALUE),
            ColPlan::NumericFloat => Some(ENCODING_NUMERIC_FLOAT),
            ColPlan::AllNull => Some(ENCODING_ALL_NULL),
            _ => None,
        };
        if let Some(enc) = enc {
            kv.push(KeyValue::new(
                format!("{META_ENCODING_PREFIX}{}", c.name),
                enc.to_string(),
            ));
        }
    }

    // Pass 2: stream rows into batches and JSON lines.
    let batch_rows = opts.batch_rows.max(1);
    let sinks = TableSinks::open(dest_dir, table, &schema, kv, opts)?;
    let mut rows_done: u64 = 0;
    let files = with_sinks(sinks, |sinks| {
        let mut builders: Vec<ColBuilder> =
            columns.iter().map(|c| ColBuilder::new(c.plan)).collect();
        let mut in_batch = 0usize;
        let mut stmt = conn.prepare(&select).map_err(sql_err)?;
        let mut rows = stmt.query([]).map_err(sql_err)?;
        let flush = |builders: &mut Vec<ColBuilder>, sinks: &mut TableSinks| {
            let arrays = builders
                .iter_mut()
                .map(ColBuilder::finish)
                .collect::<Result<Vec<_>, _>>()
                .and_then(|a| RecordBatch::try_new(schema.clone(), a));
            let batch = arrays.map_err(|source| ExportError::Arrow {
                path: image.to_path_buf(),
                table: table.to_string(),
                source,
            })?;
            sinks.write_batch(&batch)
        };
        while let Some(row) = rows.next().map_err(sql_err)? {
            if let Some((path, w)) = &mut sinks.jsonl {
                let r = (|| -> io::Result<()> {
                    w.write_all(b"{")?;
                    for (i, key) in sinks.json_keys.iter().enumerate() {
                        if i > 0 {
                            w.write_all(b",")?;
                        }
                        w.write_all(key)?;
                        let v = row.get_ref(i).map_err(io::Error::other)?;
                        write_sqlite_json(w, v)?;
                    }
                    w.write_all(b"}\n")
                })();
                r.map_err(io_err(path))?;
            }
            if sinks.parquet.is_some() {
                for (i, b) in builders.iter_mut().enumerate() {
                    let v = row.get_ref(i).map_err(sql_err)?;
                    b.append(v).map_err(|class| ExportError::Changed {
                        path: image.to_path_buf(),
                        table: table.to_string(),
                        detail: format!(
                            "column {:?} holds {class}, not seen when profiling",
                            columns[i].name
                        ),
                    })?;
                }
                in_batch += 1;
                if in_batch == batch_rows {
                    flush(&mut builders, sinks)?;
                    in_batch = 0;
                }
            }
            rows_done += 1;
        }
        if in_batch > 0 {
            flush(&mut builders, sinks)?;
        }
        Ok(())
    })?;
    Ok(TableExport {
        table: table.to_string(),
        rows: rows_done,
        files,
    })
}

// ---------------------------------------------------------------------------------------
// DuckDB export

fn open_duckdb_image(image: &Path) -> Result<duckdb::Connection, ExportError> {
    let open_err = |source| ExportError::OpenDuckDb {
        kind: DbKind::DuckDb,
        path: image.to_path_buf(),
        source,
    };
    fs::metadata(image).map_err(io_err(image))?;
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .and_then(|c| c.enable_autoload_extension(false))
        .map_err(open_err)?;
    duckdb::Connection::open_with_flags(image, config).map_err(open_err)
}

/// Whether Parquet can store this type (the Parquet writer rejects or panics on the rest).
fn parquet_can_store(dt: &DataType) -> bool {
    match dt {
        DataType::Union(_, _) | DataType::Interval(IntervalUnit::MonthDayNano) => false,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => parquet_can_store(f.data_type()),
        DataType::Struct(fields) => fields.iter().all(|f| parquet_can_store(f.data_type())),
        DataType::Dictionary(_, v) => parquet_can_store(v),
        DataType::RunEndEncoded(_, v) => parquet_can_store(v.data_type()),
        _ => true,
    }
}

fn to_text_array(array: &dyn Array) -> Result<ArrayRef, ArrowError> {
    let opts = FormatOptions::default();
    let fmt = ArrayFormatter::try_new(array, &opts)?;
    let mut b = StringBuilder::with_capacity(array.len(), array.len() * 8);
    for i in 0..array.len() {
        if array.is_null(i) {
            b.append_null();
        } else {
            b.append_value(fmt.value(i).to_string());
        }
    }
    Ok(Arc::new(b.finish()))
}

fn duckdb_export(
    image: &Path,
    dest_dir: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    let conn = open_duckdb_image(image)?;
    let list_err = |source| ExportError::DuckDb {
        path: image.to_path_buf(),
        table: "(catalog)".to_string(),
        source,
    };
    let mut entries: Vec<(String, String)> = Vec::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT schema_name, table_name FROM duckdb_tables() \
                 WHERE database_name = current_database() AND NOT internal AND NOT temporary \
                 ORDER BY schema_name <> 'main', schema_name, table_name",
            )
            .map_err(list_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(list_err)?;
        for row in rows {
            entries.push(row.map_err(list_err)?);
        }
    }
    let display = |(s, t): &(String, String)| {
        if s == "main" {
            t.clone()
        } else {
            format!("{s}.{t}")
        }
    };
    let names: Vec<String> = entries.iter().map(display).collect();
    let by_name: HashMap<String, (String, String)> =
        names.iter().cloned().zip(entries.iter().cloned()).collect();
    let (tables, skipped) = select_tables(image, &names, &[], opts)?;
    let mut report = ExportReport {
        tables: Vec::new(),
        skipped,
    };
    for name in tables {
        let Some((schema, table)) = by_name.get(&name) else {
            continue;
        };
        report.tables.push(duckdb_export_table(
            &conn, image, &name, schema, table, dest_dir, opts,
        )?);
    }
    Ok(report)
}

fn duckdb_export_table(
    conn: &duckdb::Connection,
    image: &Path,
    name: &str,
    schema_name: &str,
    table: &str,
    dest_dir: &Path,
    opts: &ExportOptions,
) -> Result<TableExport, ExportError> {
    let db_err = |source| ExportError::DuckDb {
        path: image.to_path_buf(),
        table: name.to_string(),
        source,
    };
    let arrow_err = |source| ExportError::Arrow {
        path: image.to_path_buf(),
        table: name.to_string(),
        source,
    };
    let sql = format!(
        "SELECT * FROM {}.{}",
        quote_ident(schema_name),
        quote_ident(table)
    );
    let mut stmt = conn.prepare(&sql).map_err(db_err)?;
    let stream = stmt.stream_arrow([]).map_err(db_err)?;
    let source_schema = stream.get_schema();
    let as_text: Vec<bool> = source_schema
        .fields()
        .iter()
        .map(|f| !parquet_can_store(f.data_type()))
        .collect();
    let out_schema: SchemaRef = Arc::new(Schema::new(
        source_schema
            .fields()
            .iter()
            .zip(&as_text)
            .map(|(f, &text)| {
                if text {
                    Field::new(f.name().clone(), DataType::Utf8, true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect::<Vec<_>>(),
    ));
    let mut kv = vec![
        KeyValue::new("dbguard.format".to_string(), "1".to_string()),
        KeyValue::new("dbguard.source".to_string(), "duckdb".to_string()),
        KeyValue::new(META_TABLE.to_string(), name.to_string()),
    ];
    for (f, &text) in source_schema.fields().iter().zip(&as_text) {
        if text {
            kv.push(KeyValue::new(
                format!("{META_ENCODING_PREFIX}{}", f.name()),
                format!(
                    "text: DuckDB value of Arrow type {} rendered as text",
                    f.data_type()
                ),
            ));
        }
    }
    let sinks = TableSinks::open(dest_dir, name, &out_schema, kv, opts)?;
    let mut rows_done = 0u64;
    let files = with_sinks(sinks, |sinks| {
        for batch in stream {
            let batch = batch.map_err(db_err)?;
            let columns = batch
                .columns()
                .iter()
                .zip(&as_text)
                .map(|(c, &text)| {
                    if text {
                        to_text_array(c)
                    } else {
                        Ok(c.clone())
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(arrow_err)?;
            let out = RecordBatch::try_new(out_schema.clone(), columns).map_err(arrow_err)?;
            sinks.write_batch(&out)?;
            if let Some((path, w)) = &mut sinks.jsonl {
                // Use the original columns for JSON: nested types become arrays/objects.
                write_batch_jsonl(w, &sinks.json_keys, batch.columns()).map_err(io_err(path))?;
            }
            rows_done += batch.num_rows() as u64;
        }
        Ok(())
    })?;
    Ok(TableExport {
        table: name.to_string(),
        rows: rows_done,
        files,
    })
}

fn write_batch_jsonl<W: Write>(
    w: &mut W,
    keys: &[Vec<u8>],
    columns: &[ArrayRef],
) -> io::Result<()> {
    let rows = columns.first().map_or(0, |c| c.len());
    for row in 0..rows {
        w.write_all(b"{")?;
        for (i, (key, col)) in keys.iter().zip(columns).enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(key)?;
            write_arrow_json(w, col.as_ref(), row)?;
        }
        w.write_all(b"}\n")?;
    }
    Ok(())
}

fn write_formatted<W: Write>(w: &mut W, array: &dyn Array, row: usize) -> io::Result<()> {
    let opts = FormatOptions::default();
    let fmt = ArrayFormatter::try_new(array, &opts).map_err(io::Error::other)?;
    Ok(serde_json::to_writer(w, &fmt.value(row).to_string())?)
}

/// Writes one Arrow value as JSON (see the module docs for the encoding).
fn write_arrow_json<W: Write>(w: &mut W, array: &dyn Array, row: usize) -> io::Result<()> {
    if array.is_null(row) {
        return w.write_all(b"null");
    }
    match array.data_type() {
        DataType::Null => w.write_all(b"null"),
        DataType::Boolean => w.write_all(if array.as_boolean().value(row) {
            b"true"
        } else {
            b"false"
        }),
        DataType::Int8 => write!(w, "{}", array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => write!(w, "{}", array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => write!(w, "{}", array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => write!(w, "{}", array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => write!(w, "{}", array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => write!(w, "{}", array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => write!(w, "{}", array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => write!(w, "{}", array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => {
            write_json_f64(w, f64::from(array.as_primitive::<Float32Type>().value(row)))
        }
        DataType::Float64 => write_json_f64(w, array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Ok(serde_json::to_writer(
            w,
            array.as_string::<i32>().value(row),
        )?),
        DataType::LargeUtf8 => Ok(serde_json::to_writer(
            w,
            array.as_string::<i64>().value(row),
        )?),
        DataType::Utf8View => Ok(serde_json::to_writer(w, array.as_string_view().value(row))?),
        DataType::Binary => write_blob(w, array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => write_blob(w, array.as_binary::<i64>().value(row)),
        DataType::BinaryView => write_blob(w, array.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => write_blob(w, array.as_fixed_size_binary().value(row)),
        DataType::List(_) => write_json_list(w, array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => write_json_list(w, array.as_list::<i64>().value(row).as_ref()),
        DataType::FixedSizeList(_, _) => {
            write_json_list(w, array.as_fixed_size_list().value(row).as_ref())
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            w.write_all(b"{")?;
            for (i, (f, col)) in fields.iter().zip(s.columns()).enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut *w, f.name())?;
                w.write_all(b":")?;
                write_arrow_json(w, col.as_ref(), row)?;
            }
            w.write_all(b"}")
        }
        _ => write_formatted(w, array, row),
    }
}

fn write_blob<W: Write>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    write!(w, "{{\"$blob_b64\":\"{}\"}}", base64_encode(bytes))
}

fn write_json_list<W: Write>(w: &mut W, values: &dyn Array) -> io::Result<()> {
    w.write_all(b"[")?;
    for i in 0..values.len() {
        if i > 0 {
            w.write_all(b",")?;
        }
        write_arrow_json(w, values, i)?;
    }
    w.write_all(b"]")
}

// ---------------------------------------------------------------------------------------
// Import

/// An owned SQLite value that can bind TEXT bytes that are not valid UTF-8.
#[derive(Debug, Clone, PartialEq)]
enum SqlVal {
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
fn arrow_to_sql(array: &dyn Array, row: usize, numeric_float: bool) -> Result<SqlVal, String> {
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
        DataType::Struct(fields) if is_mixed_struct(fields) => {
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
            v
        }
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

/// Converts one JSON value (module-doc encoding) to a SQLite value.
fn json_to_sql(v: serde_json::Value) -> Result<SqlVal, String> {
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

enum FileFormat {
    Parquet,
    Jsonl,
    JsonlGzip,
    JsonlZstd,
}

fn sniff_file(path: &Path) -> Result<FileFormat, ExportError> {
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

/// The target table, ready for inserts.
struct Target<'c> {
    tx: rusqlite::Transaction<'c>,
    path: PathBuf,
    table: String,
    /// For each source column, whether it is inserted (false: generated in the target).
    insert_mask: Vec<bool>,
    sql: String,
}

impl<'c> Target<'c> {
    /// Creates the table if missing, empties it when `replace`, and checks the columns.
    fn prepare(
        tx: rusqlite::Transaction<'c>,
        path: &Path,
        table: &str,
        columns: &[(String, String)],
        replace: bool,
    ) -> Result<Self, ExportError> {
        let sql_err = |source| ExportError::Sqlite {
            path: path.to_path_buf(),
            table: table.to_string(),
            source,
        };
        let exists: bool = tx
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
                [table],
                |r| r.get(0),
            )
            .map_err(sql_err)?;
        if !exists {
            let cols: Vec<String> = columns
                .iter()
                .map(|(name, decl)| {
                    if decl.is_empty() {
                        quote_ident(name)
                    } else {
                        format!("{} {decl}", quote_ident(name))
                    }
                })
                .collect();
            tx.execute_batch(&format!(
                "CREATE TABLE main.{} ({})",
                quote_ident(table),
                cols.join(", ")
            ))
            .map_err(sql_err)?;
        } else if replace {
            tx.execute_batch(&format!("DELETE FROM main.{}", quote_ident(table)))
                .map_err(sql_err)?;
        }
        // Existing columns: name (lower-cased) → hidden.
        let mut target_cols: BTreeMap<String, i64> = BTreeMap::new();
        {
            let mut stmt = tx
                .prepare("SELECT name, hidden FROM pragma_table_xinfo(?1, 'main')")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([table], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(sql_err)?;
            for row in rows {
                let (n, h) = row.map_err(sql_err)?;
                target_cols.insert(n.to_lowercase(), h);
            }
        }
        let mut insert_mask = Vec::new();
        let mut names = Vec::new();
        for (name, _) in columns {
            match target_cols.get(&name.to_lowercase()) {
                None => {
                    return Err(ExportError::MissingColumn {
                        path: path.to_path_buf(),
                        table: table.to_string(),
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
            quote_ident(table),
            names.join(", "),
            placeholders.join(", ")
        );
        Ok(Target {
            tx,
            path: path.to_path_buf(),
            table: table.to_string(),
            insert_mask,
            sql,
        })
    }

    fn sql_err(&self) -> impl FnOnce(rusqlite::Error) -> ExportError + '_ {
        move |source| ExportError::Sqlite {
            path: self.path.clone(),
            table: self.table.clone(),
            source,
        }
    }
}

fn sqlite_import(
    file: &Path,
    target_db: &Path,
    table: &str,
    replace: bool,
) -> Result<u64, ExportError> {
    let format = sniff_file(file)?;
    let mut conn =
        rusqlite::Connection::open(target_db).map_err(|source| ExportError::OpenSqlite {
            kind: DbKind::Sqlite,
            path: target_db.to_path_buf(),
            source,
        })?;
    let sql_err = |source| ExportError::Sqlite {
        path: target_db.to_path_buf(),
        table: table.to_string(),
        source,
    };
    let tx = conn.transaction().map_err(sql_err)?;
    let (rows, target) = match format {
        FileFormat::Parquet => import_parquet(file, tx, target_db, table, replace)?,
        FileFormat::Jsonl => {
            let r = BufReader::new(File::open(file).map_err(io_err(file))?);
            import_jsonl(file, r, tx, target_db, table, replace)?
        }
        FileFormat::JsonlGzip => {
            let f = File::open(file).map_err(io_err(file))?;
            let r = BufReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)));
            import_jsonl(file, r, tx, target_db, table, replace)?
        }
        FileFormat::JsonlZstd => {
            let f = File::open(file).map_err(io_err(file))?;
            let r = BufReader::new(zstd::Decoder::new(f).map_err(io_err(file))?);
            import_jsonl(file, r, tx, target_db, table, replace)?
        }
    };
    target.tx.commit().map_err(sql_err)?;
    Ok(rows)
}

fn import_parquet<'c>(
    file: &Path,
    tx: rusqlite::Transaction<'c>,
    target_db: &Path,
    table: &str,
    replace: bool,
) -> Result<(u64, Target<'c>), ExportError> {
    let pq_err = |source| ExportError::Parquet {
        path: file.to_path_buf(),
        table: table.to_string(),
        source,
    };
    let f = File::open(file).map_err(io_err(file))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(pq_err)?;
    let kv: HashMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|k| Some((k.key.clone(), k.value.clone()?)))
                .collect()
        })
        .unwrap_or_default();
    let schema = builder.schema().clone();
    let columns: Vec<(String, String)> = schema
        .fields()
        .iter()
        .map(|f| {
            let decl = kv
                .get(&format!("dbguard.sqlite.decltype.{}", f.name()))
                .cloned()
                .unwrap_or_else(|| default_decltype(f.data_type()).to_string());
            (f.name().clone(), decl)
        })
        .collect();
    let numeric: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| {
            kv.get(&format!("{META_ENCODING_PREFIX}{}", f.name()))
                .is_some_and(|e| e == ENCODING_NUMERIC_FLOAT)
        })
        .collect();
    let target = Target::prepare(tx, target_db, table, &columns, replace)?;
    let reader = builder.with_batch_size(8192).build().map_err(pq_err)?;
    let mut rows = 0u64;
    {
        let mut stmt = target.tx.prepare(&target.sql).map_err(target.sql_err())?;
        let mut vals = Vec::with_capacity(columns.len());
        for batch in reader {
            let batch = batch.map_err(|source| ExportError::Arrow {
                path: file.to_path_buf(),
                table: table.to_string(),
                source,
            })?;
            for row in 0..batch.num_rows() {
                vals.clear();
                for (i, col) in batch.columns().iter().enumerate() {
                    if !target.insert_mask.get(i).copied().unwrap_or(false) {
                        continue;
                    }
                    let v =
                        arrow_to_sql(col.as_ref(), row, numeric.get(i).copied().unwrap_or(false))
                            .map_err(|reason| ExportError::Malformed {
                            path: file.to_path_buf(),
                            line: rows + 1,
                            reason,
                        })?;
                    vals.push(v);
                }
                stmt.execute(rusqlite::params_from_iter(vals.iter()))
                    .map_err(target.sql_err())?;
                rows += 1;
            }
        }
    }
    Ok((rows, target))
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

fn import_jsonl<'c, R: BufRead>(
    file: &Path,
    mut reader: R,
    tx: rusqlite::Transaction<'c>,
    target_db: &Path,
    table: &str,
    replace: bool,
) -> Result<(u64, Target<'c>), ExportError> {
    let malformed = |line: u64, reason: String| ExportError::Malformed {
        path: file.to_path_buf(),
        line,
        reason,
    };
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    let mut next_row =
        |buf: &mut Vec<u8>, line_no: &mut u64| -> Result<Option<OrderedRow>, ExportError> {
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', buf).map_err(io_err(file))?;
                if n == 0 {
                    return Ok(None);
                }
                *line_no += 1;
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice::<OrderedRow>(buf)
                    .map(Some)
                    .map_err(|e| malformed(*line_no, e.to_string()));
            }
        };
    let Some(first) = next_row(&mut buf, &mut line_no)? else {
        return Err(malformed(
            0,
            format!("empty file: no columns to load into table {table:?}"),
        ));
    };
    let columns: Vec<(String, String)> = first
        .0
        .iter()
        .map(|(k, _)| (k.clone(), String::new()))
        .collect();
    let target = Target::prepare(tx, target_db, table, &columns, replace)?;
    let mut rows = 0u64;
    {
        let mut stmt = target.tx.prepare(&target.sql).map_err(target.sql_err())?;
        let mut current = Some(first);
        let mut vals: Vec<SqlVal> = Vec::with_capacity(columns.len());
        while let Some(row) = current {
            if row.0.len() != columns.len()
                || row.0.iter().zip(&columns).any(|((k, _), (c, _))| k != c)
            {
                return Err(malformed(
                    line_no,
                    "keys differ from the first line".to_string(),
                ));
            }
            vals.clear();
            for (i, (_, v)) in row.0.into_iter().enumerate() {
                if target.insert_mask.get(i).copied().unwrap_or(false) {
                    vals.push(json_to_sql(v).map_err(|r| malformed(line_no, r))?);
                }
            }
            stmt.execute(rusqlite::params_from_iter(vals.iter()))
                .map_err(target.sql_err())?;
            rows += 1;
            current = next_row(&mut buf, &mut line_no)?;
        }
    }
    Ok((rows, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use rusqlite::Connection;
    use tempfile::TempDir;

    fn sqlite_file(dir: &Path, name: &str, sql: &str) -> PathBuf {
        let path = dir.join(name);
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(sql).expect("setup sql");
        path
    }

    fn dump(conn: &Connection, sql: &str) -> Vec<Vec<SqlVal>> {
        let mut stmt = conn.prepare(sql).expect("prepare");
        let n = stmt.column_count();
        let mut rows = stmt.query([]).expect("query");
        let mut out = Vec::new();
        while let Some(row) = rows.next().expect("row") {
            out.push(
                (0..n)
                    .map(|i| match row.get_ref(i).expect("get") {
                        ValueRef::Null => SqlVal::Null,
                        ValueRef::Integer(v) => SqlVal::Int(v),
                        ValueRef::Real(v) => SqlVal::Real(v),
                        ValueRef::Text(v) => SqlVal::Text(v.to_vec()),
                        ValueRef::Blob(v) => SqlVal::Blob(v.to_vec()),
                    })
                    .collect(),
            );
        }
        out
    }

    fn read_parquet(path: &Path) -> (Vec<RecordBatch>, HashMap<String, String>, usize) {
        let reader = SerializedFileReader::new(File::open(path).expect("open")).expect("parquet");
        let row_groups = reader.metadata().num_row_groups();
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open")).expect("pq");
        let kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kvs| {
                kvs.iter()
                    .filter_map(|k| Some((k.key.clone(), k.value.clone()?)))
                    .collect()
            })
            .unwrap_or_default();
        let batches = builder
            .build()
            .expect("reader")
            .collect::<Result<Vec<_>, _>>()
            .expect("batches");
        (batches, kv, row_groups)
    }

    fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
        let f = File::open(path).expect("open");
        let r: Box<dyn Read> = match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Box::new(flate2::read::MultiGzDecoder::new(f)),
            Some("zst") => Box::new(zstd::Decoder::new(f).expect("zstd")),
            _ => Box::new(f),
        };
        BufReader::new(r)
            .lines()
            .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
            .collect()
    }

    const MIXED_SETUP: &str = "
        CREATE TABLE t (id INTEGER PRIMARY KEY, c, i INTEGER, r REAL, s TEXT, b BLOB, n, num NUMERIC);
        INSERT INTO t (c, i, r, s, b, num) VALUES
            (42, 1, 0.5, 'a', x'00', 1),
            ('hello', 2, 1e300, 'ü', x'ff', 2.5),
            (1.5, NULL, NULL, NULL, NULL, NULL),
            (x'00ff10', 9223372036854775807, -2.25, '', x'', 7),
            (NULL, -9223372036854775808, 9e999, 'x\"y', x'0102', -3),
            (CAST(x'ff00fe' AS TEXT), 0, -9e999, 'z', NULL, 0.125),
            (9223372036854775807, 3, 0.1, 'q', x'aa', 9007199254740992),
            (0.1, 4, 1.0, 'w', x'bb', 4),
            (-0.0, 5, 2.0, 'e', x'cc', 5);
    ";

    /// The expected mixed-column values, in row order.
    fn expected_c() -> Vec<SqlVal> {
        vec![
            SqlVal::Int(42),
            SqlVal::Text(b"hello".to_vec()),
            SqlVal::Real(1.5),
            SqlVal::Blob(vec![0x00, 0xff, 0x10]),
            SqlVal::Null,
            SqlVal::Text(vec![0xff, 0x00, 0xfe]),
            SqlVal::Int(i64::MAX),
            SqlVal::Real(0.1),
            SqlVal::Real(-0.0),
        ]
    }

    #[test]
    fn mixed_column_round_trips_in_every_format_and_codec() {
        let tmp = TempDir::new().expect("tempdir");
        let image = sqlite_file(tmp.path(), "src.db", MIXED_SETUP);
        let src = Connection::open(&image).expect("open");
        let all_cols = "SELECT typeof(c), c, typeof(i), i, typeof(r), r, typeof(s), s, \
                        typeof(b), b, typeof(n), n, typeof(num), num FROM t ORDER BY id";
        let source_rows = dump(&src, all_cols);
        assert_eq!(
            dump(&src, "SELECT c FROM t ORDER BY id")
                .into_iter()
                .map(|mut r| r.remove(0))
                .collect::<Vec<_>>(),
            expected_c()
        );

        for (ci, compression) in [Compression::Zstd, Compression::Gzip, Compression::None]
            .into_iter()
            .enumerate()
        {
            let out = tmp.path().join(format!("out{ci}"));
            let opts = ExportOptions {
                compression,
                ..ExportOptions::default()
            };
            let report = export_image(DbKind::Sqlite, &image, &out, &opts).expect("export");
            assert!(report.skipped.is_empty());
            assert_eq!(report.tables.len(), 1);
            let t = &report.tables[0];
            assert_eq!((t.table.as_str(), t.rows), ("t", 9));
            assert_eq!(t.files.len(), 2);
            let pq = out.join("parquet/t.parquet");
            let jl = out.join(format!("jsonl/t.{}", jsonl_extension(compression)));
            assert_eq!(t.files, vec![pq.clone(), jl.clone()]);

            // Parquet: types per the profile, values exact.
            let (batches, kv, _) = read_parquet(&pq);
            assert_eq!(kv.get(META_TABLE).map(String::as_str), Some("t"));
            assert_eq!(
                kv.get("dbguard.encoding.c").map(String::as_str),
                Some(ENCODING_SQLITE_VALUE)
            );
            assert_eq!(
                kv.get("dbguard.encoding.num").map(String::as_str),
                Some(ENCODING_NUMERIC_FLOAT)
            );
            assert_eq!(
                kv.get("dbguard.encoding.n").map(String::as_str),
                Some(ENCODING_ALL_NULL)
            );
            let batch =
                arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
            let schema = batch.schema();
            let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
            assert_eq!(types[0], &DataType::Int64); // id
            assert!(matches!(types[1], DataType::Struct(f) if is_mixed_struct(f)));
            assert_eq!(types[2], &DataType::Int64);
            assert_eq!(types[3], &DataType::Float64);
            assert_eq!(types[4], &DataType::Utf8);
            assert_eq!(types[5], &DataType::Binary);
            assert_eq!(types[6], &DataType::Utf8);
            assert_eq!(types[7], &DataType::Float64);
            let c: Vec<SqlVal> = (0..batch.num_rows())
                .map(|r| arrow_to_sql(batch.column(1).as_ref(), r, false).expect("decode"))
                .collect();
            assert_eq!(c, expected_c());
            let i = batch.column(2).as_primitive::<Int64Type>();
            assert_eq!(i.value(3), i64::MAX);
            assert_eq!(i.value(4), i64::MIN);
            let r = batch.column(3).as_primitive::<Float64Type>();
            assert_eq!(r.value(4), f64::INFINITY);
            assert_eq!(r.value(5), f64::NEG_INFINITY);

            // JSONL: documented encoding.
            let lines = read_jsonl(&jl);
            assert_eq!(lines.len(), 9);
            let cs: Vec<&serde_json::Value> = lines.iter().map(|l| &l["c"]).collect();
            assert_eq!(cs[0], &serde_json::json!(42));
            assert_eq!(cs[1], &serde_json::json!("hello"));
            assert_eq!(cs[2], &serde_json::json!(1.5));
            assert_eq!(cs[3], &serde_json::json!({"$blob_b64": "AP8Q"}));
            assert_eq!(cs[4], &serde_json::Value::Null);
            assert_eq!(cs[5], &serde_json::json!({"$text_b64": "/wD+"}));
            assert_eq!(cs[6].as_i64(), Some(i64::MAX));
            assert_eq!(lines[4]["r"], serde_json::json!({"$real": "inf"}));
            assert_eq!(lines[5]["r"], serde_json::json!({"$real": "-inf"}));
            assert_eq!(lines[4]["i"].as_i64(), Some(i64::MIN));
            let decoded: Vec<SqlVal> = cs
                .iter()
                .map(|v| json_to_sql((*v).clone()).expect("decode"))
                .collect();
            assert_eq!(decoded, expected_c());

            // Import each file into a fresh database: identical storage classes and values.
            for (fi, file) in [&pq, &jl].into_iter().enumerate() {
                let target = tmp.path().join(format!("import{ci}_{fi}.db"));
                let n = import_table(DbKind::Sqlite, file, &target, "t", false).expect("import");
                assert_eq!(n, 9);
                let dst = Connection::open(&target).expect("open");
                assert_eq!(dump(&dst, all_cols), source_rows, "{}", file.display());
                // Again with replace: still 9 rows, not 18; without: appended.
                assert_eq!(
                    import_table(DbKind::Sqlite, file, &target, "t", true).expect("replace"),
                    9
                );
                assert_eq!(
                    dump(&dst, "SELECT count(*) FROM t"),
                    vec![vec![SqlVal::Int(9)]]
                );
            }
        }
    }

    #[test]
    fn large_table_is_streamed_in_batches() {
        let tmp = TempDir::new().expect("tempdir");
        let image = sqlite_file(
            tmp.path(),
            "big.db",
            "CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT, w REAL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
             INSERT INTO big SELECT i, 'row ' || i, i / 7.0 FROM n;",
        );
        let out = tmp.path().join("out");
        let opts = ExportOptions {
            compression: Compression::None,
            batch_rows: 50_000,
            ..ExportOptions::default()
        };
        let report = export_image(DbKind::Sqlite, &image, &out, &opts).expect("export");
        assert_eq!(report.tables[0].rows, 200_000);
        let (batches, _, row_groups) = read_parquet(&out.join("parquet/big.parquet"));
        assert_eq!(row_groups, 4);
        assert_eq!(
            batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            200_000
        );
        let jl = BufReader::new(File::open(out.join("jsonl/big.jsonl")).expect("open"));
        assert_eq!(jl.lines().count(), 200_000);

        let target = tmp.path().join("back.db");
        let n = import_table(
            DbKind::Sqlite,
            &out.join("parquet/big.parquet"),
            &target,
            "big",
            false,
        )
        .expect("import");
        assert_eq!(n, 200_000);
    }

    #[test]
    fn odd_names_empty_tables_virtual_tables_and_filters() {
        let tmp = TempDir::new().expect("tempdir");
        let image = sqlite_file(
            tmp.path(),
            "odd.db",
            r#"CREATE TABLE "my ""odd"" table" (x);
               INSERT INTO "my ""odd"" table" VALUES (1), ('two');
               CREATE TABLE "ünï/cødé.t" (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
               INSERT INTO "ünï/cødé.t" VALUES ('a', 1), ('b', x'00');
               CREATE TABLE empty (a INTEGER, b TEXT);
               CREATE TABLE "" (z);
               INSERT INTO "" VALUES (3);
               CREATE TABLE gen (a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) STORED);
               INSERT INTO gen (a) VALUES (21);
               CREATE VIRTUAL TABLE docs USING fts5(body);
               INSERT INTO docs VALUES ('hello world');
               CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, v);
               INSERT INTO seq (v) VALUES (1);"#,
        );
        let out = tmp.path().join("out");
        let report =
            export_image(DbKind::Sqlite, &image, &out, &ExportOptions::default()).expect("export");
        let names: Vec<(&str, u64)> = report
            .tables
            .iter()
            .map(|t| (t.table.as_str(), t.rows))
            .collect();
        assert_eq!(
            names,
            vec![
                ("my \"odd\" table", 2),
                ("ünï/cødé.t", 2),
                ("empty", 0),
                ("", 1),
                ("gen", 1),
                ("seq", 1)
            ]
        );
        assert!(
            report
                .skipped
                .iter()
                .any(|s| s.table == "docs" && s.reason.starts_with("virtual table"))
        );
        assert!(report.skipped.iter().any(|s| s.table == "docs_data"));
        for t in &report.tables {
            let pq = &t.files[0];
            let stem = pq
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".parquet"))
                .expect("stem");
            assert!(!stem.contains('/') && !stem.starts_with('.'));
            assert_eq!(
                table_name_from_stem(stem).as_deref(),
                Some(t.table.as_str())
            );
            let (batches, kv, _) = read_parquet(pq);
            assert_eq!(kv.get(META_TABLE), Some(&t.table));
            assert_eq!(
                batches.iter().map(RecordBatch::num_rows).sum::<usize>() as u64,
                t.rows
            );
            assert_eq!(read_jsonl(&t.files[1]).len() as u64, t.rows);
        }
        // Empty table: Parquet keeps the schema, so import creates the table.
        let target = tmp.path().join("t.db");
        let empty = &report.tables[2].files[0];
        assert_eq!(
            import_table(DbKind::Sqlite, empty, &target, "empty", false).expect("import"),
            0
        );
        let dst = Connection::open(&target).expect("open");
        assert_eq!(
            dump(
                &dst,
                "SELECT group_concat(name || ':' || type) FROM pragma_table_info('empty')"
            ),
            vec![vec![SqlVal::Text(b"a:INTEGER,b:TEXT".to_vec())]]
        );
        // Generated columns in an existing target are computed, not inserted.
        dst.execute_batch(
            "CREATE TABLE gen (a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) STORED)",
        )
        .expect("create");
        import_table(
            DbKind::Sqlite,
            &report.tables[4].files[1],
            &target,
            "gen",
            true,
        )
        .expect("import gen");
        assert_eq!(
            dump(&dst, "SELECT a, b FROM gen"),
            vec![vec![SqlVal::Int(21), SqlVal::Int(42)]]
        );
        // Odd name round trip through import.
        import_table(
            DbKind::Sqlite,
            &report.tables[1].files[0],
            &target,
            "ünï/cødé.t",
            false,
        )
        .expect("import odd");
        assert_eq!(
            dump(&dst, r#"SELECT k, v FROM "ünï/cødé.t" ORDER BY k"#),
            vec![
                vec![SqlVal::Text(b"a".to_vec()), SqlVal::Int(1)],
                vec![SqlVal::Text(b"b".to_vec()), SqlVal::Blob(vec![0])]
            ]
        );
        // An existing table lacking a column is an error naming it.
        dst.execute_batch("CREATE TABLE other (q)").expect("create");
        let err = import_table(DbKind::Sqlite, empty, &target, "other", false)
            .expect_err("missing column");
        assert!(matches!(&err, ExportError::MissingColumn { column, .. } if column == "a"));

        // Filter: only the named tables (case-insensitive like SQLite), virtual ones skipped.
        let out2 = tmp.path().join("out2");
        let opts = ExportOptions {
            tables: vec!["EMPTY".to_string(), "docs".to_string()],
            formats: vec![ExportFormat::Jsonl],
            ..ExportOptions::default()
        };
        let report = export_image(DbKind::Sqlite, &image, &out2, &opts).expect("filtered");
        assert_eq!(report.tables.len(), 1);
        assert_eq!(report.tables[0].table, "empty");
        assert_eq!(
            report.tables[0].files,
            vec![out2.join("jsonl/empty.jsonl.zst")]
        );
        assert_eq!(report.skipped.len(), 1);
        assert!(!out2.join("parquet").exists());

        let opts = ExportOptions {
            tables: vec!["empty".to_string(), "no such table".to_string()],
            ..ExportOptions::default()
        };
        let err = export_image(DbKind::Sqlite, &image, &tmp.path().join("out3"), &opts)
            .expect_err("unknown table");
        assert!(
            matches!(&err, ExportError::UnknownTable { table, .. } if table == "no such table")
        );
        assert!(err.to_string().contains("no such table"));
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let tmp = TempDir::new().expect("tempdir");
        let junk = tmp.path().join("junk.db");
        fs::write(&junk, b"this is not a database at all, not even close.....").expect("write");
        let out = tmp.path().join("out");
        let opts = ExportOptions::default();
        assert!(export_image(DbKind::Sqlite, &junk, &out, &opts).is_err());
        assert!(export_image(DbKind::DuckDb, &junk, &out, &opts).is_err());
        let missing = tmp.path().join("missing.db");
        assert!(matches!(
            export_image(DbKind::Sqlite, &missing, &out, &opts),
            Err(ExportError::Io { .. })
        ));
        let target = tmp.path().join("t.db");
        let bad = tmp.path().join("bad.jsonl");
        fs::write(&bad, "{\"a\": 1}\nnot json\n").expect("write");
        let err = import_table(DbKind::Sqlite, &bad, &target, "x", false).expect_err("bad");
        assert!(matches!(err, ExportError::Malformed { line: 2, .. }));
        // Nothing committed.
        let dst = Connection::open(&target).expect("open");
        assert_eq!(
            dump(&dst, "SELECT count(*) FROM sqlite_schema"),
            vec![vec![SqlVal::Int(0)]]
        );
        assert!(matches!(
            import_table(DbKind::DuckDb, &bad, &target, "x", false),
            Err(ExportError::Unsupported { .. })
        ));
    }

    #[test]
    fn duckdb_tables_export() {
        let tmp = TempDir::new().expect("tempdir");
        let image = tmp.path().join("d.duckdb");
        {
            let conn = duckdb::Connection::open(&image).expect("open duckdb");
            conn.execute_batch(
                "CREATE TABLE items (id INTEGER, name VARCHAR, price DOUBLE, ok BOOLEAN,
                     day DATE, ts TIMESTAMP, amount DECIMAL(10,2), raw BLOB, big HUGEINT,
                     span INTERVAL, tags VARCHAR[], big_u UBIGINT);
                 INSERT INTO items SELECT i, 'item ' || i, i * 1.5, i % 2 = 0,
                     DATE '2024-01-01' + i::INTEGER, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (i) SECOND,
                     (i / 100.0)::DECIMAL(10,2), '\\xAA\\x00'::BLOB, i::HUGEINT * 1000000000000,
                     INTERVAL (i) MINUTE, ['a', 'b'], 18446744073709551615
                 FROM range(5000) t(i);
                 INSERT INTO items (id) VALUES (NULL);
                 CREATE TABLE empty_t (a INTEGER);
                 CREATE SCHEMA s2;
                 CREATE TABLE s2.\"odd name\" (v VARCHAR);
                 INSERT INTO s2.\"odd name\" VALUES ('x'), (NULL);
                 CREATE VIEW v AS SELECT 1;",
            )
            .expect("setup");
        }
        let out = tmp.path().join("out");
        let opts = ExportOptions {
            batch_rows: 2048,
            ..ExportOptions::default()
        };
        let report = export_image(DbKind::DuckDb, &image, &out, &opts).expect("export");
        let names: Vec<(&str, u64)> = report
            .tables
            .iter()
            .map(|t| (t.table.as_str(), t.rows))
            .collect();
        assert_eq!(
            names,
            vec![("empty_t", 0), ("items", 5001), ("s2.odd name", 2)]
        );
        let items = &report.tables[1];
        let (batches, kv, row_groups) = read_parquet(&items.files[0]);
        assert!(row_groups > 1, "{row_groups} row groups");
        assert_eq!(
            batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            5001
        );
        assert_eq!(kv.get(META_TABLE).map(String::as_str), Some("items"));
        // INTERVAL arrives as a nanosecond interval, which Parquet cannot hold: text.
        assert!(
            kv.get("dbguard.encoding.span")
                .is_some_and(|e| e.starts_with("text:")),
            "{kv:?}"
        );
        let schema = batches[0].schema();
        assert_eq!(schema.field(0).data_type(), &DataType::Int32);
        assert_eq!(schema.field(2).data_type(), &DataType::Float64);
        let lines = read_jsonl(&items.files[1]);
        assert_eq!(lines.len(), 5001);
        let l = &lines[3];
        assert_eq!(l["id"], serde_json::json!(3));
        assert_eq!(l["name"], serde_json::json!("item 3"));
        assert_eq!(l["price"], serde_json::json!(4.5));
        assert_eq!(l["ok"], serde_json::json!(false));
        assert_eq!(l["day"], serde_json::json!("2024-01-04"));
        assert_eq!(l["ts"], serde_json::json!("2024-01-01T00:00:03"));
        assert_eq!(l["amount"], serde_json::json!("0.03"));
        assert_eq!(l["raw"], serde_json::json!({"$blob_b64": "qgA="}));
        assert_eq!(l["big"], serde_json::json!("3000000000000"));
        assert_eq!(l["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(l["big_u"].as_u64(), Some(u64::MAX));
        assert!(l["span"].is_string(), "{}", l["span"]);
        assert!(
            lines[5000]
                .as_object()
                .expect("obj")
                .values()
                .all(serde_json::Value::is_null)
        );

        // The Parquet export loads into SQLite.
        let target = tmp.path().join("t.db");
        assert_eq!(
            import_table(DbKind::Sqlite, &items.files[0], &target, "items", false).expect("import"),
            5001
        );
        assert_eq!(
            import_table(DbKind::Sqlite, &items.files[1], &target, "items2", false)
                .expect("import jsonl"),
            5001
        );

        let opts = ExportOptions {
            tables: vec!["s2.odd name".to_string()],
            ..ExportOptions::default()
        };
        let report =
            export_image(DbKind::DuckDb, &image, &tmp.path().join("o2"), &opts).expect("filtered");
        assert_eq!(report.tables.len(), 1);
        assert_eq!(report.tables[0].rows, 2);
        let opts = ExportOptions {
            tables: vec!["v".to_string()],
            ..ExportOptions::default()
        };
        assert!(matches!(
            export_image(DbKind::DuckDb, &image, &tmp.path().join("o3"), &opts),
            Err(ExportError::UnknownTable { .. })
        ));
    }

    #[test]
    fn stems_and_base64() {
        for name in [
            "plain", "", "a b", "%", "~x", "ünï", "../x", ".hidden", "a.b",
        ] {
            let stem = table_file_stem(name);
            assert!(!stem.contains('/') && !stem.starts_with('.'), "{stem}");
            assert_eq!(table_name_from_stem(&stem).as_deref(), Some(name));
        }
        let long = "é".repeat(200);
        let stem = table_file_stem(&long);
        assert!(stem.len() <= MAX_STEM_BYTES && stem.contains('~'));
        assert_ne!(stem, table_file_stem(&format!("{long}x")));
        for data in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0xff, 0x00, 0xfe]] {
            assert_eq!(base64_decode(&base64_encode(data)).as_deref(), Some(data));
        }
        assert_eq!(base64_encode(b"\xff\x00\xfe"), "/wD+");
        assert_eq!(base64_decode("a==="), None);
        assert_eq!(base64_decode("abc"), None);
    }
}
