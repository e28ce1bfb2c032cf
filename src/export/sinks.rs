//! The output files of one table: a Parquet writer and a JSON Lines writer (plain, gzip or
//! zstd), each running on its own thread behind a bounded queue so that encoding and
//! compression use the second core while rows are read; partial files are removed when
//! the export of the table fails.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::naming::{PARQUET_EXTENSION, jsonl_extension, table_file_stem};
use super::{Compression, ExportError, ExportFormat, ExportOptions, io_err};

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
                flate2::Compression::new(GZIP_LEVEL),
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

/// The gzip level of JSON Lines files and of Parquet pages. Measured with zlib-rs on the
/// JSON Lines of the 376 MiB seed-shaped database: level 6 (zlib's default) spent 14.7 s
/// of CPU per 200 MB where level 2 spends 4.2 s, for output 17% larger (20.7% of the
/// input against 17.7%); level 1 is faster again (2.3 s) but 54% larger, level 3 hardly
/// smaller than 2 (19.9%) at 1.7x its time. gzip was two thirds of an export's CPU time
/// at level 6.
const GZIP_LEVEL: u32 = 2;

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
pub(super) struct BackgroundJsonl {
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
pub(super) struct TableSinks {
    table: String,
    parquet: Option<(PathBuf, BackgroundParquet)>,
    jsonl: Option<(PathBuf, BackgroundJsonl)>,
    /// JSON-encoded column names, each followed by `:`.
    json_keys: Vec<Vec<u8>>,
}

impl TableSinks {
    /// Creates the files `opts.formats` asks for, under `dest_dir/parquet` and
    /// `dest_dir/jsonl`; `kv` goes into the Parquet file's key-value metadata.
    pub(super) fn open(
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
            json_keys: json_keys(schema),
        };
        if opts.formats.contains(&ExportFormat::Parquet) {
            sinks.parquet = Some(open_parquet(dest_dir, &stem, table, schema, kv, opts)?);
        }
        if opts.formats.contains(&ExportFormat::Jsonl) {
            sinks.jsonl = Some(open_jsonl(dest_dir, &stem, opts.compression)?);
        }
        Ok(sinks)
    }

    /// Whether a Parquet file is written (only it needs record batches).
    pub(super) fn wants_parquet(&self) -> bool {
        self.parquet.is_some()
    }

    pub(super) fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        if let Some((path, writer)) = &mut self.parquet {
            writer.write(batch).map_err(|source| ExportError::Parquet {
                path: path.clone(),
                table: self.table.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Lets `write` append JSON lines, given the JSON Lines writer and the encoded column
    /// keys; nothing happens when no JSON Lines file is written.
    pub(super) fn write_jsonl(
        &mut self,
        write: impl FnOnce(&mut BackgroundJsonl, &[Vec<u8>]) -> io::Result<()>,
    ) -> Result<(), ExportError> {
        match &mut self.jsonl {
            Some((path, writer)) => write(writer, &self.json_keys).map_err(io_err(path)),
            None => Ok(()),
        }
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

/// Each column name JSON-encoded and followed by `:`, ready to start a value.
fn json_keys(schema: &SchemaRef) -> Vec<Vec<u8>> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let mut k = serde_json::to_vec(f.name()).unwrap_or_else(|_| b"\"\"".to_vec());
            k.push(b':');
            k
        })
        .collect()
}

fn open_parquet(
    dest_dir: &Path,
    stem: &str,
    table: &str,
    schema: &SchemaRef,
    kv: Vec<KeyValue>,
    opts: &ExportOptions,
) -> Result<(PathBuf, BackgroundParquet), ExportError> {
    let dir = dest_dir.join("parquet");
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(format!("{stem}.{PARQUET_EXTENSION}"));
    let file = File::create(&path).map_err(io_err(&path))?;
    let compression = match opts.compression {
        Compression::Zstd => PqCompression::ZSTD(ZstdLevel::default()),
        Compression::Gzip => {
            PqCompression::GZIP(GzipLevel::try_new(GZIP_LEVEL).map_err(|source| {
                ExportError::Parquet {
                    path: path.clone(),
                    table: table.to_string(),
                    source,
                }
            })?)
        }
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
    Ok((path, BackgroundParquet::start(writer)))
}

fn open_jsonl(
    dest_dir: &Path,
    stem: &str,
    compression: Compression,
) -> Result<(PathBuf, BackgroundJsonl), ExportError> {
    let dir = dest_dir.join("jsonl");
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(format!("{stem}.{}", jsonl_extension(compression)));
    let sink = JsonlSink::create(&path, compression).map_err(io_err(&path))?;
    Ok((path, BackgroundJsonl::start(sink)))
}

/// Runs `body` with freshly opened sinks; on error removes the partial files.
pub(super) fn with_sinks<F>(mut sinks: TableSinks, body: F) -> Result<Vec<PathBuf>, ExportError>
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
