//! SQLite: consistent images of a live database (its pages streamed out of one read
//! transaction, or a copy through the online backup API), census and integrity checks.
//!
//! The live file is only ever read through SQLite itself: a plain file handle on a
//! database that this process also has a connection to would drop SQLite's POSIX locks
//! when it is closed.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{Census, Consistency, DbError, quote_ident};

/// How long to wait for a writer that holds the database exclusively.
const BUSY_WAIT: Duration = Duration::from_secs(30);

fn err(path: &Path, reason: impl std::fmt::Display) -> DbError {
    DbError::Sqlite {
        path: path.to_path_buf(),
        reason: friendly(&reason.to_string()),
    }
}

/// An error writing the copy at `dest` (a private staging file): it is about the disk the
/// copy is written to, never about the database being copied, so it carries `dest` and an
/// I/O error that the caller can classify (disk full, say) instead of a SQLite reason.
fn dest_err(dest: &Path, error: rusqlite::Error) -> DbError {
    let kind = match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => std::io::ErrorKind::StorageFull,
        Some(rusqlite::ErrorCode::ReadOnly) => std::io::ErrorKind::ReadOnlyFilesystem,
        Some(rusqlite::ErrorCode::PermissionDenied) => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::Other,
    };
    DbError::Io {
        path: dest.to_path_buf(),
        source: std::io::Error::new(kind, error.to_string()),
    }
}

/// Whether a failed backup step failed writing the destination: the source is only read,
/// so a full disk or a failed write, sync or truncate is the copy's.
fn is_write_failure(error: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    match error {
        rusqlite::Error::SqliteFailure(e, _) => {
            e.code == rusqlite::ErrorCode::DiskFull
                || matches!(
                    e.extended_code,
                    ffi::SQLITE_IOERR_WRITE | ffi::SQLITE_IOERR_FSYNC | ffi::SQLITE_IOERR_TRUNCATE
                )
        }
        _ => false,
    }
}

/// SQLite's messages are terse; say what they mean for a file on disk.
fn friendly(reason: &str) -> String {
    if reason.contains("file is not a database") || reason.contains("malformed") {
        format!("{reason} (the file is truncated or corrupt)")
    } else {
        reason.to_string()
    }
}

/// A `file:` URI for `path` with query parameters, naming that file whatever bytes its
/// path holds: `%`, `?`, `#`, spaces, control characters and non-ASCII bytes are
/// percent-encoded (SQLite decodes `%XX` in the path), and a path starting with `//` gets
/// an empty authority so SQLite does not read its first component as a host.
pub(crate) fn uri(path: &Path, params: &str) -> String {
    let bytes = path.as_os_str().as_encoded_bytes();
    let mut out = String::from("file:");
    if bytes.starts_with(b"//") {
        out.push_str("//");
    }
    for &byte in bytes {
        if byte.is_ascii_graphic() && !matches!(byte, b'%' | b'?' | b'#') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if params.is_empty() {
        out
    } else {
        format!("{out}?{params}")
    }
}

/// Open a private copy (an image) read-only, without locks or sidecar files. The header
/// is read here, so a file that is not a database fails now rather than at first use.
pub(crate) fn open_image(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(
        uri(path, "immutable=1"),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| err(path, e))?;
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| err(path, e))?;
    Ok(conn)
}

/// Open a live database for reading. Read-only first, so the user's file is never
/// modified; a WAL database in a directory we cannot create `-shm` in may need read-write.
fn open_live(path: &Path) -> Result<Connection, DbError> {
    let read_only = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match Connection::open_with_flags(path, read_only) {
        Ok(conn) => conn,
        Err(_) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| err(path, e))?,
    };
    conn.busy_timeout(BUSY_WAIT).map_err(|e| err(path, e))?;
    Ok(conn)
}

/// Copy `source` to `dest` as one transactionally consistent state, even while other
/// processes write. A database a crashed writer left with a hot journal cannot be read
/// without rolling that journal back, which we never do to the user's files: the rollback
/// happens in a private copy instead.
pub(crate) fn copy(source: &Path, dest: &Path) -> Result<Consistency, DbError> {
    match backup(source, dest) {
        Err(error) if has_hot_journal(source) => {
            let _ = fs::remove_file(dest);
            copy_rolling_back(source, dest).map_err(|rollback_error| match rollback_error {
                // Nothing better to say than why the plain backup failed.
                RollbackError::Changing => error,
                RollbackError::Db(error) => error,
            })
        }
        other => other,
    }
}

/// The first 8 bytes of a rollback journal that holds pages to play back.
const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

fn journal_path(path: &Path) -> PathBuf {
    super::sidecar_path(path, super::SQLITE_JOURNAL)
}

/// A journal whose header is intact: a transaction was under way. When no live process
/// holds the database's write lock, SQLite calls it hot and must roll it back first.
fn has_hot_journal(database: &Path) -> bool {
    let mut header = [0u8; 8];
    fs::File::open(journal_path(database))
        .and_then(|mut file| file.read_exact(&mut header))
        .is_ok_and(|()| header == JOURNAL_MAGIC)
}

enum RollbackError {
    /// The files kept changing while we copied them (another process recovered it).
    Changing,
    Db(DbError),
}

/// Copy the database and its hot journal byte for byte, let SQLite roll the journal back
/// in the copy, then take the usual backup of the result. The user's files are only read,
/// and only while no connection of ours is open on them (closing a plain handle would drop
/// SQLite's locks). If another process recovers the database meanwhile, the files change
/// under us and we start again.
fn copy_rolling_back(source: &Path, dest: &Path) -> Result<Consistency, RollbackError> {
    let scratch = {
        let mut name = dest.as_os_str().to_owned();
        name.push(".rollback");
        PathBuf::from(name)
    };
    let result = (|| {
        for _ in 0..5 {
            let before = file_states(source);
            let copied = fs::copy(source, &scratch)
                .and_then(|_| fs::copy(journal_path(source), journal_path(&scratch)));
            if copied.is_err() || file_states(source) != before {
                let _ = fs::remove_file(&scratch);
                let _ = fs::remove_file(journal_path(&scratch));
                if !has_hot_journal(source) {
                    // Recovered by someone else: the plain backup works now.
                    return backup(source, dest).map_err(RollbackError::Db);
                }
                sleep(Duration::from_millis(50));
                continue;
            }
            {
                // Opening the private copy read-write plays its journal back.
                let conn =
                    Connection::open(&scratch).map_err(|e| RollbackError::Db(err(source, e)))?;
                conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(|e| RollbackError::Db(err(source, e)))?;
            }
            if has_hot_journal(&scratch) {
                return Err(RollbackError::Db(err(
                    source,
                    "its hot journal (left by a writer that crashed) could not be rolled back in a copy",
                )));
            }
            backup(&scratch, dest).map_err(RollbackError::Db)?;
            return Ok(Consistency::RolledBackHotJournal);
        }
        Err(RollbackError::Changing)
    })();
    let _ = fs::remove_file(&scratch);
    let _ = fs::remove_file(journal_path(&scratch));
    result
}

/// Size, mtime (s, ns) and ctime (s, ns) of one file.
type FileState = (u64, i64, i64, i64, i64);

/// Size, mtime and ctime of a database and its journal: equal before and after a copy
/// means nobody wrote them while we read.
fn file_states(database: &Path) -> Vec<Option<FileState>> {
    use std::os::unix::fs::MetadataExt;
    [database.to_path_buf(), journal_path(database)]
        .iter()
        .map(|path| {
            fs::metadata(path).ok().map(|m| {
                (
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                )
            })
        })
        .collect()
}

/// Copy `source` to `dest` with the online backup API in a single step, so the copy is
/// one transactionally consistent state even while other processes write. (A stepwise
/// backup restarts every time a writer commits and may never finish.)
fn backup(source: &Path, dest: &Path) -> Result<Consistency, DbError> {
    let src = open_live(source)?;
    let mut dst = Connection::open(dest).map_err(|e| dest_err(dest, e))?;
    // The copy is private staging: the chunks made from it are what gets fsynced, so
    // neither a journal nor a sync of the 400 MB copy buys anything.
    dst.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
        .map_err(|e| dest_err(dest, e))?;
    {
        let backup = Backup::new(&src, &mut dst).map_err(|e| err(source, e))?;
        backup_in_one_step(&backup, BUSY_WAIT).map_err(|stop| match stop {
            BackupStop::Failed(e) if is_write_failure(&e) => dest_err(dest, e),
            BackupStop::Failed(e) => err(source, e),
            BackupStop::Locked => err(source, "another process kept the database locked for 30 s"),
        })?;
    }
    dst.close().map_err(|(_, e)| dest_err(dest, e))?;
    drop(src);
    Ok(Consistency::OnlineBackup)
}

/// Why [`backup_in_one_step`] stopped before the copy was complete.
pub(crate) enum BackupStop {
    /// A step failed; the caller knows which side it was about.
    Failed(rusqlite::Error),
    /// Another connection kept a lock for longer than the patience allowed.
    Locked,
}

/// Run an online backup to the end with `step(-1)`, so that the destination receives one
/// consistent state, waiting while another connection holds a lock for up to `patience`.
/// (Both snapshot copies and restores into an open database go through here.)
pub(crate) fn backup_in_one_step(
    backup: &Backup<'_, '_>,
    patience: Duration,
) -> Result<(), BackupStop> {
    let deadline = Instant::now() + patience;
    loop {
        match backup.step(-1).map_err(BackupStop::Failed)? {
            StepResult::Done => return Ok(()),
            StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                sleep(Duration::from_millis(20));
            }
            StepResult::Busy | StepResult::Locked => return Err(BackupStop::Locked),
            _ => continue,
        }
    }
}

/// `PRAGMA quick_check` plus the census, both on a private copy, each on its own
/// connection and core: both read every page of the big tables, so together they take
/// about as long as the slower one. Both map the image instead of reading it a page per
/// `pread` (measured on the 376 MiB seed-shaped database: copying pages out of the page
/// cache was a third of a restore's CPU time). The image is private, so nothing else can
/// cut it short while it is mapped.
pub(crate) fn check_and_census(image: &Path) -> Result<Census, DbError> {
    let open_mapped = || -> Result<Connection, DbError> {
        let conn = open_image(image)?;
        conn.execute_batch(&format!("PRAGMA mmap_size = {STREAM_MMAP_BYTES}"))
            .map_err(|e| err(image, e))?;
        Ok(conn)
    };
    let check_conn = open_mapped()?;
    let counting_conn = open_mapped()?;
    let stop_check = check_conn.get_interrupt_handle();
    std::thread::scope(|scope| {
        let check = scope.spawn(move || quick_check(&check_conn, image));
        let census = census_conn(&counting_conn, image);
        if census.is_err() {
            stop_check.interrupt();
        }
        let checked = check_outcome(check, image);
        // A damaged image is reported as damaged, whichever of the two noticed first.
        checked?;
        census
    })
}

/// How a [`quick_check`] on its own thread ended; a thread that panicked failed the check.
fn check_outcome(
    check: std::thread::ScopedJoinHandle<'_, Result<(), DbError>>,
    path: &Path,
) -> Result<(), DbError> {
    check.join().unwrap_or_else(|_| {
        Err(DbError::Integrity {
            path: path.to_path_buf(),
            detail: "the integrity check crashed".into(),
        })
    })
}

/// `PRAGMA quick_check` on an open database: its problems (the first three) as an error.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), DbError> {
    let mut problems = Vec::new();
    let mut stmt = conn
        .prepare("PRAGMA quick_check")
        .map_err(|e| err(path, e))?;
    let rows = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(|e| err(path, e))?;
    for row in rows {
        let line = row.map_err(|e| err(path, e))?;
        if line != "ok" {
            problems.push(line);
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.truncate(3);
    Err(DbError::Integrity {
        path: path.to_path_buf(),
        detail: problems.join("; "),
    })
}

/// Why [`stream_pages`] produced no image.
#[derive(Debug)]
pub(crate) enum StreamFailure {
    /// Not this way (a hot journal to roll back, a SQLite built without `sqlite_dbpage`, a
    /// database that does not open): nothing was handed out; make a copy instead, which
    /// deals with each of these or says what is wrong.
    Unavailable,
    /// The receiver of the pages stopped taking them (it knows why).
    Stopped,
    /// Reading, checking or counting the database failed after pages were handed out.
    Db(DbError),
}

/// A live database's image as [`stream_pages`] handed it out.
#[derive(Debug)]
pub(crate) struct StreamedImage {
    /// Bytes handed out: every page, in order.
    pub(crate) size: u64,
    pub(crate) census: Census,
}

/// How much of the live file a streaming connection maps instead of reading it a page per
/// `pread` (SQLite caps it at its compile-time maximum, 2 GiB). Measured on the 376 MiB
/// seed-shaped database: a first snapshot took 1.10 s mapped against 1.34 s with
/// `pread`s (median of 5; system time 0.2 s against 0.6 s). The price, as for any SQLite
/// connection with mmap: an I/O error of the disk, or a program other than SQLite cutting
/// the file short while it is mapped, ends the process with SIGBUS rather than an error.
/// Nothing is lost by that: the store is crash-safe (an unrecorded pack is debris), and a
/// guarded git command has not run yet.
const STREAM_MMAP_BYTES: i64 = 1 << 40;

/// How [`stream_pages`] reads the live file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LiveReads {
    /// Through a memory map: the faster way (see [`STREAM_MMAP_BYTES`]).
    Mapped,
    /// A page per `pread`: slower, but the process's resident memory stays independent
    /// of the database's size (every mapped page it reads counts as resident, once per
    /// connection: an export's peak went from 250 MB to 860 MB on the 376 MiB database
    /// whenever its snapshot had to read the file).
    PagePerRead,
}

/// Begin a read transaction on `conn` and take its read lock (rollback journal) or WAL
/// read mark with a first read: the state it sees is fixed until the transaction ends.
fn begin_read(conn: &Connection, reads: LiveReads) -> rusqlite::Result<()> {
    if reads == LiveReads::Mapped {
        conn.execute_batch(&format!("PRAGMA mmap_size = {STREAM_MMAP_BYTES}"))?;
    }
    conn.execute_batch("BEGIN")?;
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(())
}

/// Read one consistent state of the live database at `source` page by page through SQLite
/// itself and hand it out: `start(page_size)` first, then the pages in order, in runs of
/// about `run_bytes`, to `send` (either returning false stops the stream). The census
/// is counted in the same read transaction, so it describes exactly the bytes handed out.
///
/// The pages come from the `sqlite_dbpage` virtual table inside one read transaction: the
/// committed state as of its start, from the WAL where it holds newer pages, while writers
/// go on (WAL) or wait on the read lock as for a backup (rollback journal). No plain file
/// handle touches the live file and nothing is written to disk. (The pending-byte page of
/// a database over 1 GiB comes back as zeros, as a backup writes it.)
///
/// `PRAGMA quick_check` runs meanwhile on a second connection, on another core, whose read
/// transaction begins while the first one's is open: with a rollback journal that is the
/// same state (no writer can commit while our read lock is held); in WAL mode it is that
/// state or one a few microseconds newer, which tells the same about the database's
/// health.
pub(crate) fn stream_pages(
    source: &Path,
    reads: LiveReads,
    run_bytes: usize,
    start: impl FnOnce(usize) -> bool,
    mut send: impl FnMut(Vec<u8>) -> bool,
) -> Result<StreamedImage, StreamFailure> {
    if has_hot_journal(source) {
        // Reading would need the journal rolled back, which we never do to the user's
        // files: the copy rolls it back in private.
        return Err(StreamFailure::Unavailable);
    }
    let opened = (|| {
        let pages_conn = open_live(source).ok()?;
        let check_conn = open_live(source).ok()?;
        begin_read(&pages_conn, reads).ok()?;
        begin_read(&check_conn, reads).ok()?;
        let page_size: i64 = pages_conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .ok()?;
        let pages: i64 = pages_conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .ok()?;
        // Without SQLITE_ENABLE_DBPAGE_VTAB (see .cargo/config.toml) this fails; cached,
        // so that reading the pages does not prepare it again.
        pages_conn
            .prepare_cached("SELECT data FROM sqlite_dbpage('main')")
            .ok()?;
        let page_size = usize::try_from(page_size).ok().filter(|n| *n > 0)?;
        Some((pages_conn, check_conn, page_size, pages.max(0) as u64))
    })();
    let Some((pages_conn, check_conn, page_size, pages)) = opened else {
        return Err(StreamFailure::Unavailable);
    };
    if !start(page_size) {
        return Err(StreamFailure::Stopped);
    }
    let stop_check = check_conn.get_interrupt_handle();
    std::thread::scope(|scope| {
        let timer = crate::timing::start();
        let check = scope.spawn(move || {
            let checked = quick_check(&check_conn, source);
            timer.done("quick_check done");
            checked
        });
        let streamed = send_pages(&pages_conn, source, page_size, pages, run_bytes, &mut send)
            .and_then(|size| {
                timer.done("pages read");
                let census = census_conn(&pages_conn, source).map_err(StreamFailure::Db)?;
                Ok(StreamedImage { size, census })
            });
        if streamed.is_err() {
            // No image: its check is moot.
            stop_check.interrupt();
        }
        let checked = check_outcome(check, source);
        let streamed = streamed?;
        checked.map_err(StreamFailure::Db)?;
        Ok(streamed)
    })
}

/// Hand out every page of `conn`'s database (in a read transaction) in runs; returns the
/// bytes handed out.
fn send_pages(
    conn: &Connection,
    source: &Path,
    page_size: usize,
    pages: u64,
    run_bytes: usize,
    send: &mut impl FnMut(Vec<u8>) -> bool,
) -> Result<u64, StreamFailure> {
    let failed = |e: rusqlite::Error| StreamFailure::Db(err(source, e));
    let run_pages = run_bytes.div_ceil(page_size).max(1);
    let mut stmt = conn
        .prepare_cached("SELECT data FROM sqlite_dbpage('main')")
        .map_err(failed)?;
    let mut rows = stmt.query([]).map_err(failed)?;
    let mut run = Vec::with_capacity(run_pages * page_size);
    let mut sent = 0u64;
    while let Some(row) = rows.next().map_err(failed)? {
        let page = row.get_ref(0).map_err(failed)?;
        let page = page.as_blob().map_err(|e| failed(e.into()))?;
        if page.len() != page_size {
            return Err(StreamFailure::Db(err(
                source,
                format!(
                    "page {} has {} bytes, not {page_size}",
                    sent + 1,
                    page.len()
                ),
            )));
        }
        run.extend_from_slice(page);
        sent += 1;
        if run.len() >= run_pages * page_size {
            let full = std::mem::replace(&mut run, Vec::with_capacity(run_pages * page_size));
            if !send(full) {
                return Err(StreamFailure::Stopped);
            }
        }
    }
    if !run.is_empty() && !send(run) {
        return Err(StreamFailure::Stopped);
    }
    if sent != pages {
        return Err(StreamFailure::Db(err(
            source,
            format!("read {sent} of its {pages} pages"),
        )));
    }
    Ok(sent * page_size as u64)
}

/// Census a database file opened read-only (a live file or an image).
pub(crate) fn census_file(path: &Path) -> Result<Census, DbError> {
    let conn = open_live(path)?;
    census_conn(&conn, path)
}

fn census_conn(conn: &Connection, path: &Path) -> Result<Census, DbError> {
    let mut schema_rows: Vec<String> = Vec::new();
    let mut tables = Vec::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema \
                 ORDER BY type, name",
            )
            .map_err(|e| err(path, e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })
            .map_err(|e| err(path, e))?;
        for row in rows {
            let (kind, name, table, sql) = row.map_err(|e| err(path, e))?;
            schema_rows.push(format!("{kind}\t{name}\t{table}\t{sql}"));
            let virtual_table = sql
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("CREATE VIRTUAL");
            if kind == "table" && !name.starts_with("sqlite_") && !virtual_table {
                tables.push(name);
            }
        }
    }
    let mut census = Census {
        schema: Census::fingerprint(schema_rows.iter().map(String::as_str)),
        ..Census::default()
    };
    for table in tables {
        let rows: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {}", quote_ident(&table)),
                [],
                |row| row.get(0),
            )
            .map_err(|e| err(path, e))?;
        census.tables.insert(table, rows.max(0) as u64);
    }
    Ok(census)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_escapes_reserved_and_unicode() {
        let u = uri(Path::new("/tmp/a b/ü?#%.db"), "immutable=1");
        assert_eq!(u, "file:/tmp/a%20b/%C3%BC%3F%23%25.db?immutable=1");
    }

    #[test]
    fn images_open_whatever_their_path_holds() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a b%20?#ü\tx&y=1");
        fs::create_dir(&odd).unwrap();
        let path = odd.join("posts?mode=rwc#%41.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);")
            .unwrap();
        // `//tmp/…` names the same file on Linux; SQLite must not take `tmp` for a host.
        let double_slash = PathBuf::from(format!("/{}", path.display()));
        assert!(uri(&double_slash, "").starts_with("file:////"));
        for path in [&path, &double_slash] {
            let conn = open_image(path).unwrap();
            let rows: i64 = conn
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(rows, 3, "{}", path.display());
        }
    }

    #[test]
    fn images_that_are_not_databases_fail_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.img");
        fs::write(&junk, [0x8f; 4096]).unwrap();
        assert!(matches!(open_image(&junk), Err(DbError::Sqlite { .. })));
    }

    #[test]
    fn copy_and_census_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src db ü.db");
        let conn = Connection::open(&src).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE posts(id INTEGER PRIMARY KEY, body TEXT);
             CREATE TABLE \"odd \"\"name\"\"\"(x);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500)
             INSERT INTO posts(body) SELECT 'post ' || i FROM n;",
        )
        .unwrap();
        let dest = dir.path().join("copy.img");
        assert_eq!(copy(&src, &dest).unwrap(), Consistency::OnlineBackup);
        let census = check_and_census(&dest).unwrap();
        assert_eq!(census.tables["posts"], 500);
        assert_eq!(census.tables["odd \"name\""], 0);
        assert_eq!(census, census_file(&src).unwrap());
    }

    /// Pages still in the WAL (never checkpointed while a connection keeps it open) are
    /// part of the streamed image; the image is a database with exactly the live rows.
    #[test]
    fn streamed_pages_hold_what_only_the_wal_has() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("live.db");
        let writer = Connection::open(&src).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
                 CREATE TABLE posts(id INTEGER PRIMARY KEY, body TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)
                 INSERT INTO posts(body) SELECT printf('post %d %s', i, hex(randomblob(40))) FROM n;",
            )
            .unwrap();
        let wal = crate::db::sidecar_path(&src, crate::db::SQLITE_WAL);
        assert!(
            fs::metadata(wal).unwrap().len() > 0,
            "the rows are in the WAL only"
        );
        let mut image = Vec::new();
        let page_size = std::cell::Cell::new(0);
        let streamed = stream_pages(
            &src,
            LiveReads::Mapped,
            64 * 1024,
            |size| {
                page_size.set(size);
                true
            },
            |run| {
                assert_eq!(run.len() % page_size.get(), 0);
                image.extend_from_slice(&run);
                true
            },
        )
        .unwrap();
        assert_eq!(streamed.size, image.len() as u64);
        assert_eq!(page_size.get(), 4096);
        assert_eq!(streamed.census.tables["posts"], 3000);
        // Read a page per pread (an export's snapshot), the same state comes out.
        let mut unmapped = Vec::new();
        let streamed_unmapped = stream_pages(
            &src,
            LiveReads::PagePerRead,
            64 * 1024,
            |_| true,
            |run| {
                unmapped.extend_from_slice(&run);
                true
            },
        )
        .unwrap();
        assert!(unmapped == image, "the two ways read different bytes");
        assert_eq!(streamed_unmapped.census, streamed.census);
        let copy = dir.path().join("image.db");
        fs::write(&copy, &image).unwrap();
        assert_eq!(check_and_census(&copy).unwrap(), streamed.census);
        let conn = open_image(&copy).unwrap();
        let last: String = conn
            .query_row("SELECT body FROM posts WHERE id = 3000", [], |r| r.get(0))
            .unwrap();
        let live: String = writer
            .query_row("SELECT body FROM posts WHERE id = 3000", [], |r| r.get(0))
            .unwrap();
        assert_eq!(last, live);
    }

    /// A database whose table `t` holds 2,000 blobs of 500 bytes: about 250 pages.
    fn make_blob_table(path: &Path) {
        Connection::open(path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t(x);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000)
                 INSERT INTO t SELECT randomblob(500) FROM n;",
            )
            .unwrap();
    }

    #[test]
    fn a_damaged_image_fails_its_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.db");
        make_blob_table(&path);
        assert_eq!(check_and_census(&path).unwrap().tables["t"], 2000);
        // A page in the middle of the table's b-tree, overwritten with garbage.
        let mut bytes = fs::read(&path).unwrap();
        let page = 4096 * (bytes.len() / 4096 / 2);
        bytes[page..page + 4096].fill(0x5a);
        fs::write(&path, &bytes).unwrap();
        let checked = check_and_census(&path);
        assert!(checked.is_err(), "{checked:?}");
    }

    #[test]
    fn a_stopped_receiver_stops_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("live.db");
        make_blob_table(&src);
        let mut runs = 0;
        let stopped = stream_pages(
            &src,
            LiveReads::PagePerRead,
            4096,
            |_| true,
            |_| {
                runs += 1;
                runs < 3
            },
        );
        assert!(
            matches!(stopped, Err(StreamFailure::Stopped)),
            "{stopped:?}"
        );
        assert_eq!(runs, 3);
        // A file that is not a database is left to the copy, which says what is wrong.
        fs::write(&src, [0x8f; 8192]).unwrap();
        let junk = stream_pages(&src, LiveReads::Mapped, 4096, |_| true, |_| true);
        assert!(matches!(junk, Err(StreamFailure::Unavailable)), "{junk:?}");
    }
}
