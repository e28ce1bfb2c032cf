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
use std::path::{Path, PathBuf};

use duckdb::{AccessMode, Config, Connection};

use super::{Census, Consistency, DbError, quote_ident};

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

pub fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
}

/// Who holds a DuckDB file, parsed from DuckDB's lock error
/// ("Conflicting lock is held in /usr/bin/python3 (PID 4242) by user …").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    pub program: Option<String>,
}

pub fn parse_lock_holder(message: &str) -> Option<LockHolder> {
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
pub fn copy(source: &Path, dest: &Path) -> Result<(Consistency, Option<String>), DbError> {
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
            copy_main_file_while_locked(source, dest, holder)
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

/// Another process writes the database: the main file alone is consistent as of the
/// last checkpoint. Keep it only if DuckDB can open it and count every table.
fn copy_main_file_while_locked(
    source: &Path,
    dest: &Path,
    holder: LockHolder,
) -> Result<(Consistency, Option<String>), DbError> {
    let refused = || DbError::DuckDbLocked {
        path: source.to_path_buf(),
        pid: holder.pid,
        holder: holder.program.clone(),
    };
    drop(copy_file(source, dest)?);
    if census_file(dest).is_err() {
        let _ = fs::remove_file(dest);
        let _ = fs::remove_file(wal_path(dest));
        return Err(refused());
    }
    let wal_bytes = fs::metadata(wal_path(source)).map(|m| m.len()).unwrap_or(0);
    let program = holder
        .program
        .as_deref()
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    let warning = format!(
        "{} is open for writing in process {}{program}; stored a verified copy as of its last checkpoint{}",
        source.display(),
        holder.pid,
        if wal_bytes > 0 {
            format!(" (without {wal_bytes} bytes of WAL written since)")
        } else {
            String::new()
        }
    );
    Ok((Consistency::AsOfLastCheckpoint { wal_bytes }, Some(warning)))
}

fn copy_file(from: &Path, to: &Path) -> Result<File, DbError> {
    let mut input = File::open(from).map_err(|e| io_err(from, e))?;
    let mut output = File::create(to).map_err(|e| io_err(to, e))?;
    io::copy(&mut input, &mut output).map_err(|e| io_err(from, e))?;
    Ok(input)
}

/// Fold the copied WAL into the copied file so the image is a single self-contained file.
fn checkpoint_copy(dest: &Path) -> Result<(), DbError> {
    let conn = Connection::open(dest).map_err(|e| err(dest, first_line(&e.to_string())))?;
    conn.execute_batch("CHECKPOINT")
        .map_err(|e| err(dest, first_line(&e.to_string())))?;
    drop(conn);
    let _ = fs::remove_file(wal_path(dest));
    Ok(())
}

/// Census a DuckDB file opened read-only.
pub fn census_file(path: &Path) -> Result<Census, DbError> {
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
pub fn lock_holder(path: &Path) -> Option<LockHolder> {
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
