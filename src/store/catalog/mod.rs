//! The catalog: a SQLite database (WAL) recording operations, images, snapshots, their
//! census and the stat cache, and where the bytes are (packs, frames). Packs hold bytes;
//! the catalog says what they mean. This file opens it; `schema` migrates it, `records`
//! reads and writes operations and snapshots, `packs` the packs and frames, `replica`
//! what remotes need, `legacy` what older catalogs kept only as text.

mod legacy;
mod packs;
mod records;
mod replica;
mod schema;
pub(crate) use legacy::completeness_of_label;
pub(crate) use packs::{ImageLayout, ImageRecord, NewImage, PackRecord, Repacked};
#[cfg(test)]
pub(crate) use records::OperationRef;
pub(crate) use records::{
    AfterLoss, NewRef, NewSnapshot, OperationInfo, SnapshotInfo, SnapshotRef, rfc3339, ts,
};
pub(crate) use replica::{Import, ImportedSnapshot};
pub(crate) use schema::SCHEMA_VERSION;

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rusqlite::Connection;

use crate::db::sqlite::uri;
use crate::db::{SQLITE_SHM, SQLITE_WAL, sidecar_path};

#[derive(Debug, thiserror::Error)]
pub(crate) enum CatalogError {
    #[error("the snapshot catalog {path} cannot be used: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the snapshot catalog {path} was written by a newer dbguard (schema {found}, this one knows {SCHEMA_VERSION})"
    )]
    TooNew { path: String, found: i64 },
    #[error("the snapshot catalog {path} is read-only")]
    ReadOnly { path: String },
}

impl CatalogError {
    /// Whether SQLite refused because the catalog or its directory cannot be written.
    pub(crate) fn is_read_only(&self) -> bool {
        match self {
            CatalogError::ReadOnly { .. } => true,
            CatalogError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ReadOnly)
            ),
            CatalogError::TooNew { .. } => false,
        }
    }

    /// Whether SQLite failed because the disk is full.
    pub(crate) fn is_disk_full(&self) -> bool {
        matches!(self, CatalogError::Sqlite { source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull))
    }
}

pub(crate) struct Catalog {
    conn: Connection,
    path: String,
    read_only: bool,
    /// The schema version: older than [`SCHEMA_VERSION`] only for a catalog opened
    /// read-only, which is never migrated (schema 3 added `operation_refs`, 4 packs).
    version: i64,
}

impl Catalog {
    pub(crate) fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let display = path.display().to_string();
        let fail = |source| CatalogError::Sqlite {
            path: display.clone(),
            source,
        };
        // SQLite gives the -wal and -shm files the mode of the database file: make that
        // private before SQLite creates them (mkdir/open modes, never the umask, which
        // git's children inherit).
        let private = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path);
        match private {
            Ok(file) => {
                let narrow = file
                    .metadata()
                    .is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
                if narrow {
                    let _ = file.set_permissions(fs::Permissions::from_mode(0o600));
                }
            }
            Err(e) if crate::store::files::is_read_only(&e) => {
                return Err(CatalogError::ReadOnly { path: display });
            }
            // SQLite's own open says what is wrong.
            Err(_) => {}
        }
        for suffix in [SQLITE_WAL, SQLITE_SHM] {
            let sidecar = sidecar_path(path, suffix);
            if fs::metadata(&sidecar).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                let _ = fs::set_permissions(&sidecar, fs::Permissions::from_mode(0o600));
            }
        }
        let conn = Connection::open(path).map_err(fail)?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(CatalogError::ReadOnly { path: display });
        }
        conn.busy_timeout(std::time::Duration::from_secs(60))
            .map_err(fail)?;
        conn.execute_batch(
            // 16 KiB pages for a new catalog: a frame's record (its chunks' hashes) is about
            // 2 KiB, and 4 KiB pages hold only one of them (half the catalog empty). An
            // existing catalog keeps its page size (SQLite ignores the pragma then).
            "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
             PRAGMA foreign_keys=ON;",
        )
        .map_err(fail)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(CatalogError::TooNew {
                path: display,
                found: version,
            });
        }
        if version < SCHEMA_VERSION {
            schema::migrate(&conn, version).map_err(fail)?;
        }
        Ok(Catalog {
            conn,
            path: display,
            read_only: false,
            version: SCHEMA_VERSION,
        })
    }

    /// Open the catalog of a store that cannot be written (a read-only mount, or a store
    /// that is not ours): nothing is created, migrated or locked. SQLite reads a WAL
    /// database read-only only while its -wal and -shm exist; with `immutable=1` it
    /// would ignore the -wal, and with it the last commits of a writer that was killed.
    /// So: read-only in place when SQLite can; else, when a -wal holds commits, from a
    /// copy of the catalog and its -wal in `scratch`; else (no -wal) immutable.
    pub(crate) fn open_read_only(path: &Path, scratch: &Path) -> Result<Catalog, CatalogError> {
        let display = path.display().to_string();
        let fail = |source| CatalogError::Sqlite {
            path: display.clone(),
            source,
        };
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let usable = |conn: Connection| -> Result<(Connection, i64), rusqlite::Error> {
            conn.busy_timeout(std::time::Duration::from_secs(60))?;
            // Opening is lazy: read the schema to find out whether SQLite can read it.
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })?;
            let version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            Ok((conn, version))
        };
        let wal = sidecar_path(path, SQLITE_WAL);
        let opened = Connection::open_with_flags(uri(path, "mode=ro"), flags).and_then(usable);
        let (conn, version) = match opened {
            Ok(opened) => opened,
            Err(_) if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) => {
                let copy = scratch.join("catalog.db");
                let copy_wal = sidecar_path(&copy, SQLITE_WAL);
                let copied = fs::copy(path, &copy).and_then(|_| fs::copy(&wal, &copy_wal));
                if let Err(e) = copied {
                    return Err(fail(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                        Some(format!(
                            "cannot copy it to {} to read it: {e}",
                            scratch.display()
                        )),
                    )));
                }
                Connection::open(&copy)
                    .and_then(|conn| {
                        conn.execute_batch("PRAGMA query_only=ON")?;
                        Ok(conn)
                    })
                    .and_then(usable)
                    .map_err(fail)?
            }
            Err(_) => Connection::open_with_flags(uri(path, "immutable=1"), flags)
                .and_then(usable)
                .map_err(fail)?,
        };
        if version > SCHEMA_VERSION {
            return Err(CatalogError::TooNew {
                path: display,
                found: version,
            });
        }
        Ok(Catalog {
            conn,
            path: display,
            read_only: true,
            version,
        })
    }

    /// Refuse a write up front on a read-only catalog (SQLite's own message would say
    /// "attempt to write a readonly database", which names no way out).
    fn writable(&self) -> Result<(), CatalogError> {
        if self.read_only {
            return Err(CatalogError::ReadOnly {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Rewrite the catalog without its free pages when they are more than a quarter of
    /// it (prune deleted many records): SQLite keeps a file's size otherwise.
    pub(crate) fn compact(&self) -> Result<(), CatalogError> {
        self.writable()?;
        let pages: i64 = self
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(self.fail())?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .map_err(self.fail())?;
        if free * 4 > pages {
            self.conn.execute_batch("VACUUM").map_err(self.fail())?;
        }
        Ok(())
    }

    /// Fold the WAL back into the catalog and empty it, so that the store is complete in
    /// catalog.db alone (a store later mounted read-only, copied or backed up file by
    /// file loses nothing). Best effort: a busy reader only delays it.
    pub(crate) fn checkpoint(&self) {
        if !self.read_only {
            // TRUNCATE waits for readers through the busy handler: not for long.
            let _ = self
                .conn
                .busy_timeout(std::time::Duration::from_millis(200));
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }

    /// Read one state of the catalog until [`Catalog::end_read`] (a read transaction):
    /// a reader that looks at several tables while writers go on (verify, a push plan)
    /// sees each snapshot written meanwhile whole or not at all.
    pub(crate) fn begin_read(&self) -> Result<(), CatalogError> {
        self.conn
            .execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
            .map_err(self.fail())
    }

    /// End [`Catalog::begin_read`]'s transaction (before writing).
    pub(crate) fn end_read(&self) -> Result<(), CatalogError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("COMMIT").map_err(self.fail())
    }

    fn fail(&self) -> impl Fn(rusqlite::Error) -> CatalogError + '_ {
        move |source| CatalogError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// [`Catalog::fail`] for use while a transaction borrows the connection.
    fn fail_owned(&self) -> impl Fn(rusqlite::Error) -> CatalogError + use<> {
        let path = self.path.clone();
        move |source| CatalogError::Sqlite {
            path: path.clone(),
            source,
        }
    }
    /// SQLite's own integrity check of the catalog file.
    pub(crate) fn integrity_problems(&self) -> Result<Vec<String>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(self.fail())?;
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(lines.into_iter().filter(|l| l != "ok").collect())
    }
}

#[cfg(test)]
mod tests;
