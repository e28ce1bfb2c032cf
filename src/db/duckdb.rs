//! DuckDB: lock-aware consistent copies, census, and naming the process that holds a file.
//!
//! A read-write DuckDB process holds an exclusive POSIX lock on the file that also blocks
//! read-only opens from other processes. When the file is free we open it read-only (a
//! shared lock that keeps writers out), copy the file and its `.wal`, and checkpoint the
//! *copy*, so the user's file is never written. When another process holds it we can only
//! copy the main file, which is consistent as of its last checkpoint, and we keep that
//! copy only if DuckDB can open it.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use duckdb::{AccessMode, Config, Connection};

use super::{Census, Consistency, DbError, Missing, quote_ident};
use crate::clock;

fn err(path: &Path, reason: impl std::fmt::Display) -> DbError {
    DbError::DuckDb {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn io_err(path: &Path, source: io::Error) -> DbError {
    DbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn wal_path(path: &Path) -> PathBuf {
    super::sidecar_path(path, super::DUCKDB_WAL)
}

/// Who holds a DuckDB file, parsed from DuckDB's lock error
/// ("Conflicting lock is held in /usr/bin/python3 (PID 4242) by user …").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockHolder {
    pub(crate) pid: u32,
    pub(crate) program: Option<String>,
}

impl LockHolder {
    /// "process 4242 (/usr/bin/python3)".
    pub(crate) fn describe(&self) -> String {
        match &self.program {
            Some(program) => format!("process {} ({program})", self.pid),
            None => format!("process {}", self.pid),
        }
    }
}

/// "process 4242 (python3)", with the name from /proc when the process still runs.
pub(crate) fn describe_process(pid: u32) -> String {
    match fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(name) if !name.trim().is_empty() => format!("process {pid} ({})", name.trim()),
        _ => format!("process {pid}"),
    }
}

pub(crate) fn parse_lock_holder(message: &str) -> Option<LockHolder> {
    let at = message.find("(PID ")?;
    let digits: String = message[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let pid = digits.parse().ok()?;
    let program = message[..at]
        .rfind("held in ")
        .map(|start| message[start + 8..at].trim().to_string())
        .filter(|p| !p.is_empty());
    Some(LockHolder { pid, program })
}

fn open_read_only(path: &Path) -> Result<Connection, duckdb::Error> {
    let config = Config::default().access_mode(AccessMode::ReadOnly)?;
    Connection::open_with_flags(path, config)
}

/// Copy `source` (and its WAL) to `dest` as one consistent database file.
pub(crate) fn copy(source: &Path, dest: &Path) -> Result<(Consistency, Option<String>), DbError> {
    match open_read_only(source) {
        Ok(conn) => {
            // Keep our file handles open until the connection is closed: closing any fd of
            // the file drops every POSIX lock this process holds on it, DuckDB's included.
            let main = copy_file(source, dest)?;
            let wal = if wal_path(source).exists() {
                Some(copy_file(&wal_path(source), &wal_path(dest))?)
            } else {
                None
            };
            drop(conn);
            drop(main);
            drop(wal);
            checkpoint_copy(dest)?;
            Ok((Consistency::LockedCopy, None))
        }
        Err(error) => {
            let message = error.to_string();
            let Some(holder) = parse_lock_holder(&message) else {
                return Err(open_error(source, &message));
            };
            // We hold no DuckDB connection to `source` (the open failed), so reading it
            // with plain handles cannot drop a lock of ours.
            copy_live(source, dest, &holder)
        }
    }
}

/// Why DuckDB would not open a file: a storage version newer than ours is not damage.
fn open_error(path: &Path, message: &str) -> DbError {
    let line = first_line(message);
    if line.contains("version number") || line.contains("newer version of DuckDB") {
        DbError::NewerFormat {
            path: path.to_path_buf(),
            kind: super::DbKind::DuckDb,
            detail: line.to_string(),
        }
    } else {
        err(path, line)
    }
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

/// How many times a live copy is tried before settling for a partial one, and the
/// first pause between tries (doubled each time, at most [`MAX_BACKOFF`]).
const MAX_ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_millis(800);

fn backoff(retry: u32) -> Duration {
    (FIRST_BACKOFF * 2u32.saturating_pow(retry.saturating_sub(1))).min(MAX_BACKOFF)
}

/// `<db>.wal.checkpoint`: DuckDB >= 1.5 writes commits made during a checkpoint there and
/// renames it over the WAL when the checkpoint ends.
pub(crate) fn checkpoint_wal_path(path: &Path) -> PathBuf {
    super::sidecar_path(path, super::DUCKDB_CHECKPOINT_WAL)
}

/// The two database headers at 4096 and 8192 each start with a u64 checksum of the
/// rest of their 4 KiB block; the checkpoint iteration follows it (the higher is active).
const HEADER_OFFSETS: [usize; 2] = [4096, 8192];
const HEADER_SIZE: usize = 4096;

/// DuckDB's block checksum (`Checksum` in checksum.cpp) for a length that is a
/// multiple of 8, which header blocks are.
fn block_checksum(data: &[u8]) -> u64 {
    data.chunks_exact(8).fold(5381u64, |sum, word| {
        let word = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        sum ^ word.wrapping_mul(0xbf58_476d_1ce4_e5b9)
    })
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// The active checkpoint iteration, or why the headers cannot be trusted right now (a
/// checkpoint is writing one: its checksum does not match).
fn checkpoint_iteration(path: &Path) -> Result<Result<u64, String>, DbError> {
    let mut head = vec![0u8; HEADER_OFFSETS[1] + HEADER_SIZE];
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    if let Err(e) = file.read_exact_at(&mut head, 0) {
        return Ok(Err(format!("the headers could not be read ({e})")));
    }
    if &head[8..12] != super::DUCKDB_MAGIC {
        return Err(err(path, "no DuckDB header"));
    }
    let mut active = 0;
    for offset in HEADER_OFFSETS {
        let block = &head[offset..offset + HEADER_SIZE];
        if block.iter().all(|&b| b == 0) {
            continue; // never written yet
        }
        if block_checksum(&block[8..]) != u64_at(block, 0) {
            return Ok(Err(format!(
                "the database header at offset {offset} fails its checksum (a checkpoint is writing it)"
            )));
        }
        active = active.max(u64_at(block, 8));
    }
    Ok(Ok(active))
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// The WAL's first entry (not size-prefixed): field 100 = type 98 (version entry),
/// 101 = WAL version, then on v1.4+ storage 102 = database id (a list of bytes) and
/// 103 = the checkpoint iteration the WAL continues; `ff ff` ends it. Returns the end of
/// the entry and the iteration, if the WAL records one.
fn wal_header(bytes: &[u8]) -> Option<(usize, Option<u64>)> {
    let field = |at: &mut usize, id: u8| -> bool {
        if bytes.get(*at..*at + 2) == Some(&[id, 0]) {
            *at += 2;
            true
        } else {
            false
        }
    };
    let mut at = 0;
    if !field(&mut at, 100) || varint(bytes, &mut at)? != 98 || !field(&mut at, 101) {
        return None;
    }
    varint(bytes, &mut at)?;
    if field(&mut at, 102) {
        for _ in 0..varint(bytes, &mut at)? {
            varint(bytes, &mut at)?;
        }
    }
    let iteration = if field(&mut at, 103) {
        Some(varint(bytes, &mut at)?)
    } else {
        None
    };
    (bytes.get(at..at + 2) == Some(&[0xff, 0xff])).then_some((at + 2, iteration))
}

/// `WAL_FLUSH` entries (type 100) mark commits: count the complete ones in a WAL file.
/// Each entry after the header is u64 size, u64 checksum, then the payload, whose first
/// field (100) is the entry type.
fn count_wal_commits(path: &Path) -> Option<u64> {
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut head = vec![0u8; len.min(4096) as usize];
    file.read_exact_at(&mut head, 0).ok()?;
    let (start, _) = wal_header(&head)?;
    let mut at = start as u64;
    let mut commits = 0;
    let mut entry = [0u8; 19];
    while at + 16 <= len {
        file.read_exact_at(&mut entry[..16.min((len - at) as usize)], at)
            .ok()?;
        let size = u64_at(&entry, 0);
        if at + 16 + size > len {
            break; // cut short: not committed
        }
        let peek = size.min(3) as usize;
        file.read_exact_at(&mut entry[16..16 + peek], at + 16)
            .ok()?;
        let mut p = 16;
        if entry[16..18] == [100, 0] {
            p += 2;
            if varint(&entry[..16 + peek], &mut p) == Some(100) {
                commits += 1;
            }
        }
        at += 16 + size;
    }
    Some(commits)
}

/// File identity of the WAL as we copied it, to see whether it was replaced meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WalIdentity {
    dev: u64,
    ino: u64,
    copied: u64,
}

/// What one attempt gave: a copy to open, or why the files were not stable.
enum Attempt {
    Copied {
        instant: DateTime<Utc>,
        /// Iteration, WAL identity and main file size: the same again means the same bytes.
        signature: (u64, Option<WalIdentity>, u64),
    },
    Unstable(String),
}

/// One try at a live copy: WAL first, then the main file, between two reads of the
/// checkpoint iteration.
///
/// The order matters. DuckDB writes large inserts straight into free blocks of the
/// main file before the commit that the WAL then records ("optimistic writes"); a main
/// file copied before such a commit and a WAL copied after it would point at blocks the
/// copy does not have (measured: the copy opened as "Corrupted DICT_FSST segment"). With
/// the WAL copied first, every block its commits refer to was written before we read
/// the main file, and blocks written later are free as far as our copy is concerned.
fn copy_once(source: &Path, dest: &Path) -> Result<Attempt, DbError> {
    let checkpoint_wal = checkpoint_wal_path(source);
    if checkpoint_wal.exists() {
        return Ok(Attempt::Unstable(format!(
            "a checkpoint is running ({} exists)",
            checkpoint_wal.display()
        )));
    }
    let before = match checkpoint_iteration(source)? {
        Ok(iteration) => iteration,
        Err(reason) => return Ok(Attempt::Unstable(reason)),
    };
    let wal = wal_path(source);
    let wal_identity = match File::open(&wal) {
        Ok(mut input) => {
            let meta = input.metadata().map_err(|e| io_err(&wal, e))?;
            let mut output = File::create(wal_path(dest)).map_err(|e| io_err(dest, e))?;
            // Read to the end as it is now: a commit being appended is cut short, and
            // DuckDB replays exactly the complete commits before the cut.
            let copied = io::copy(&mut input, &mut output).map_err(|e| io_err(&wal, e))?;
            let mut head = [0u8; 512];
            let n = read_prefix(&wal_path(dest), &mut head);
            if let Some((_, Some(iteration))) = wal_header(&head[..n])
                && iteration != before
            {
                return Ok(Attempt::Unstable(format!(
                    "the WAL continues checkpoint {iteration} but the file is at {before}"
                )));
            }
            Some(WalIdentity {
                dev: meta.dev(),
                ino: meta.ino(),
                copied,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&wal, e)),
    };
    let instant = clock::now();
    drop(copy_file(source, dest)?);
    let after = match checkpoint_iteration(source)? {
        Ok(iteration) => iteration,
        Err(reason) => return Ok(Attempt::Unstable(reason)),
    };
    if after != before {
        return Ok(Attempt::Unstable(format!(
            "a checkpoint ran during the copy (iteration {before} -> {after})"
        )));
    }
    if checkpoint_wal.exists() {
        return Ok(Attempt::Unstable(
            "a checkpoint started during the copy".into(),
        ));
    }
    // The WAL we copied must still be the WAL, at least as long as we copied it: a
    // checkpoint renames a new one over it (DuckDB >= 1.5) or truncates it (older).
    let now = match fs::metadata(&wal) {
        Ok(meta) => Some((meta.dev(), meta.ino(), meta.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&wal, e)),
    };
    let same_wal = match (&wal_identity, now) {
        (Some(copied), Some((dev, ino, len))) => {
            copied.dev == dev && copied.ino == ino && len >= copied.copied
        }
        (Some(_), None) => false,
        // A WAL that appeared after we found none holds only later commits.
        (None, _) => true,
    };
    if !same_wal {
        return Ok(Attempt::Unstable(
            "the WAL was replaced or truncated during the copy".into(),
        ));
    }
    let size = fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    Ok(Attempt::Copied {
        instant,
        signature: (before, wal_identity, size),
    })
}

fn read_prefix(path: &Path, buf: &mut [u8]) -> usize {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

fn remove_copy(dest: &Path) {
    let _ = fs::remove_file(dest);
    let _ = fs::remove_file(wal_path(dest));
}

/// Another process holds the file read-write: copy WAL and main file while it runs,
/// retrying with a bounded backoff while checkpoints overlap the copy; open the copy
/// (DuckDB replays its WAL) and checkpoint it. When no complete copy can be made, keep
/// the main file as of its last checkpoint, labelled partial with what it lacks.
fn copy_live(
    source: &Path,
    dest: &Path,
    holder: &LockHolder,
) -> Result<(Consistency, Option<String>), DbError> {
    let mut reasons: Vec<String> = Vec::new();
    let mut failed_open: Option<(u64, Option<WalIdentity>, u64)> = None;
    let mut retries = 0;
    let mut tries = 0;
    for attempt in 0..MAX_ATTEMPTS {
        tries += 1;
        if attempt > 0 {
            retries += 1;
            std::thread::sleep(backoff(attempt));
        }
        remove_copy(dest);
        match copy_once(source, dest)? {
            Attempt::Unstable(reason) => reasons.push(reason),
            Attempt::Copied { instant, signature } => match checkpoint_copy(dest) {
                Ok(()) => {
                    let consistency = Consistency::LiveCopy {
                        instant,
                        retries,
                        pid: holder.pid,
                    };
                    let note = (retries > 0).then(|| {
                        format!(
                            "{}: {retries} {} overlapped a checkpoint of process {} and {} made again",
                            source.display(),
                            if retries == 1 { "copy" } else { "copies" },
                            holder.pid,
                            if retries == 1 { "was" } else { "were" },
                        )
                    });
                    return Ok((consistency, note));
                }
                Err(error) => {
                    reasons.push(format!("the copy did not open: {error}"));
                    // The same bytes fail the same way (a damaged WAL): stop retrying.
                    if failed_open.as_ref() == Some(&signature) {
                        break;
                    }
                    failed_open = Some(signature);
                }
            },
        }
    }
    remove_copy(dest);
    copy_as_of_checkpoint(source, dest, holder, tries, &reasons)
}

/// The fallback: the main file alone, copied between two agreeing iteration reads, is
/// the database as of its last checkpoint. Kept only if DuckDB opens and counts it.
fn copy_as_of_checkpoint(
    source: &Path,
    dest: &Path,
    holder: &LockHolder,
    tries: u32,
    reasons: &[String],
) -> Result<(Consistency, Option<String>), DbError> {
    let refused = || DbError::DuckDbLocked {
        path: source.to_path_buf(),
        pid: holder.pid,
        holder: holder.program.clone(),
    };
    let mut stable = false;
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(backoff(attempt));
        }
        let Ok(before) = checkpoint_iteration(source)? else {
            continue;
        };
        drop(copy_file(source, dest)?);
        if checkpoint_iteration(source)? == Ok(before) {
            stable = true;
            break;
        }
    }
    if !stable || census_file(dest).is_err() {
        remove_copy(dest);
        return Err(refused());
    }
    let wal = wal_path(source);
    let wal_meta = fs::metadata(&wal).ok();
    let missing = Missing {
        commits: count_wal_commits(&wal),
        wal_bytes: wal_meta.as_ref().map(|m| m.len()).unwrap_or(0),
        since: wal_meta
            .as_ref()
            .and_then(|m| m.created().ok())
            .map(DateTime::<Utc>::from),
        until: wal_meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .map(DateTime::<Utc>::from),
        holder_pid: Some(holder.pid),
    };
    let consistency = Consistency::Partial(missing);
    let why = reasons
        .last()
        .map(|r| format!(" (last try: {r})"))
        .unwrap_or_default();
    let warning = format!(
        "{} is open for writing in {}; no complete copy could be made in {tries} {}{why}",
        source.display(),
        holder.describe(),
        if tries == 1 { "try" } else { "tries" },
    );
    Ok((consistency, Some(warning)))
}

fn copy_file(from: &Path, to: &Path) -> Result<File, DbError> {
    let mut input = File::open(from).map_err(|e| io_err(from, e))?;
    let mut output = File::create(to).map_err(|e| io_err(to, e))?;
    io::copy(&mut input, &mut output).map_err(|e| io_err(from, e))?;
    Ok(input)
}

/// Fold the copied WAL into the copied file so the image is a single self-contained file.
///
/// The copy is scratch: the store makes the image durable when it ingests it. So DuckDB
/// is told not to fsync it (`fsync_mode = NONE`, DuckDB >= 2.0): its checkpoint would
/// otherwise force the whole freshly copied file to disk, which cost more than the copy.
fn checkpoint_copy(dest: &Path) -> Result<(), DbError> {
    let open = || {
        let config = Config::default().with("fsync_mode", "NONE")?;
        Connection::open_with_flags(dest, config)
    };
    let conn = open().map_err(|e| err(dest, first_line(&e.to_string())))?;
    conn.execute_batch("CHECKPOINT")
        .map_err(|e| err(dest, first_line(&e.to_string())))?;
    drop(conn);
    let _ = fs::remove_file(wal_path(dest));
    Ok(())
}

/// Census a DuckDB file opened read-only.
pub(crate) fn census_file(path: &Path) -> Result<Census, DbError> {
    let conn = open_read_only(path).map_err(|e| {
        let message = e.to_string();
        match parse_lock_holder(&message) {
            Some(holder) => DbError::DuckDbLocked {
                path: path.to_path_buf(),
                pid: holder.pid,
                holder: holder.program,
            },
            None => err(path, first_line(&message)),
        }
    })?;
    census_conn(&conn, path)
}

/// Verify a private copy and census it: DuckDB opens it (reading its metadata), counts
/// every table exactly, and reads every column of every row, which makes it check the
/// checksum of every data block on the way.
pub(crate) fn check_and_census(image: &Path) -> Result<Census, DbError> {
    let conn = open_read_only(image).map_err(|e| err(image, first_line(&e.to_string())))?;
    let census = census_conn(&conn, image)?;
    let tables: Vec<(String, String)> = conn
        .prepare(
            "SELECT schema_name, table_name FROM duckdb_tables() \
             WHERE database_name = current_database() AND NOT internal",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()
        })
        .map_err(|e| err(image, first_line(&e.to_string())))?;
    for (schema, table) in tables {
        // hash() of each column forces every segment of every column to be read.
        conn.execute_batch(&format!(
            "SELECT bit_xor(hash(COLUMNS(*))) FROM {}.{}",
            quote_ident(&schema),
            quote_ident(&table)
        ))
        .map_err(|e| DbError::Integrity {
            path: image.to_path_buf(),
            detail: format!(
                "reading every row of {table}: {}",
                first_line(&e.to_string())
            ),
        })?;
    }
    Ok(census)
}

fn census_conn(conn: &Connection, path: &Path) -> Result<Census, DbError> {
    let fail = |e: duckdb::Error| err(path, first_line(&e.to_string()));
    let mut stmt = conn
        .prepare(
            "SELECT schema_name, table_name, coalesce(sql, '') FROM duckdb_tables() \
             WHERE database_name = current_database() AND NOT internal \
             UNION ALL \
             SELECT schema_name, '(view) ' || view_name, coalesce(sql, '') FROM duckdb_views() \
             WHERE database_name = current_database() AND NOT internal \
             ORDER BY 1, 2",
        )
        .map_err(fail)?;
    let entries: Vec<(String, String, String)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .map_err(fail)?
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    let mut census = Census {
        schema: Census::fingerprint(entries.iter().map(|(_, _, sql)| sql.as_str())),
        ..Census::default()
    };
    for (schema, table, _) in entries.iter().filter(|e| !e.1.starts_with("(view) ")) {
        let rows: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM {}.{}",
                    quote_ident(schema),
                    quote_ident(table)
                ),
                [],
                |row| row.get(0),
            )
            .map_err(fail)?;
        let key = if schema == "main" {
            table.clone()
        } else {
            format!("{schema}.{table}")
        };
        census.tables.insert(key, rows.max(0) as u64);
    }
    Ok(census)
}

/// Whether another process holds the file (checked by trying a read-only open).
pub(crate) fn lock_holder(path: &Path) -> Option<LockHolder> {
    match open_read_only(path) {
        Ok(_) => None,
        Err(e) => parse_lock_holder(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lock_error() {
        let message = "IO Error: Could not set lock on file \"/x/a.duckdb\": Conflicting lock is held in /usr/bin/python3.11 (PID 4242) by user root. See also https://duckdb.org/docs/stable/connect/concurrency";
        assert_eq!(
            parse_lock_holder(message),
            Some(LockHolder {
                pid: 4242,
                program: Some("/usr/bin/python3.11".into())
            })
        );
        assert_eq!(parse_lock_holder("IO Error: no such file"), None);
    }

    #[test]
    fn reads_checkpoint_iteration_and_wal_commits_of_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.duckdb");
        let conn = Connection::open(&src).unwrap();
        conn.execute_batch(
            "SET checkpoint_threshold = '100GB'; CREATE TABLE t(i INT); CHECKPOINT;
             INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); INSERT INTO t VALUES (3);",
        )
        .unwrap();
        // Both headers pass their checksums; the active iteration is what the WAL continues.
        let iteration = checkpoint_iteration(&src).unwrap().unwrap();
        assert!(iteration >= 1);
        let wal = std::fs::read(wal_path(&src)).unwrap();
        let (_, wal_iteration) = wal_header(&wal).unwrap();
        assert_eq!(wal_iteration, Some(iteration));
        assert_eq!(count_wal_commits(&wal_path(&src)), Some(3));
        // A damaged header is noticed.
        let copy = dir.path().join("b.duckdb");
        std::fs::copy(&src, &copy).unwrap();
        let file = fs::OpenOptions::new().write(true).open(&copy).unwrap();
        file.write_all_at(&[0x5a; 8], 4096 + 100).unwrap();
        file.write_all_at(&[0x5a; 8], 8192 + 100).unwrap();
        assert!(checkpoint_iteration(&copy).unwrap().is_err());
        drop(conn);
    }

    #[test]
    fn copies_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.duckdb");
        {
            let conn = Connection::open(&src).unwrap();
            conn.execute_batch(
                "CREATE TABLE t AS SELECT range AS i FROM range(1234);
                 CREATE SCHEMA s; CREATE TABLE s.u(x INT); INSERT INTO s.u VALUES (1),(2);",
            )
            .unwrap();
        }
        let dest = dir.path().join("copy.img");
        let (consistency, warning) = copy(&src, &dest).unwrap();
        assert_eq!(consistency, Consistency::LockedCopy);
        assert!(warning.is_none());
        let census = census_file(&dest).unwrap();
        assert_eq!(census.tables["t"], 1234);
        assert_eq!(census.tables["s.u"], 2);
        assert!(!wal_path(&dest).exists());
    }
}
