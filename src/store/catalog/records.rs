//! The catalog's records: operations, snapshots with their census and completeness,
//! references to unchanged snapshots and the stat cache, as code and people read them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::schema::{
    COMPLETENESS_COLUMNS, COMPLETENESS_SET, argv_json, completeness_at, completeness_params,
};
use super::{Catalog, CatalogError, NewImage, legacy};
use crate::db::{Census, Completeness, DbKind};
use crate::git::redact::redact_argv;

/// What the stat cache remembers of a path: the snapshot to reuse and, when known, the
/// newest ctime among that image's chunk files at the time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatCacheHit {
    pub(crate) snapshot_id: i64,
    pub(crate) chunks_ctime_ns: Option<i64>,
}

/// One snapshot reduced to what `verify` needs to say which ones a damaged image breaks.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SnapshotRef {
    pub(crate) id: i64,
    pub(crate) worktree: String,
    pub(crate) path: String,
    #[serde(skip)]
    pub(crate) image_id: i64,
}

/// One snapshot as users see it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SnapshotInfo {
    pub(crate) id: i64,
    pub(crate) path: String,
    pub(crate) worktree: String,
    pub(crate) kind: DbKind,
    #[serde(serialize_with = "rfc3339")]
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) size: u64,
    /// How it was taken, for people.
    pub(crate) consistency: String,
    /// Whether it holds every commit, for code (and `--json`).
    #[serde(skip)]
    pub(crate) completeness: Completeness,
    pub(crate) git_state: String,
    pub(crate) reused: bool,
    pub(crate) message: Option<String>,
    pub(crate) operation: OperationInfo,
    pub(crate) census: Census,
    #[serde(skip)]
    pub(crate) image_id: i64,
    pub(crate) image_digest: String,
    /// Later operations that found the database unchanged and refer to this snapshot
    /// instead of adding an identical one, oldest first.
    pub(crate) unchanged: Vec<OperationRef>,
    /// `<store id>/<snapshot id>` of a snapshot fetched from another store; `None`: taken
    /// here. A fetched snapshot is never this clone's baseline.
    #[serde(skip)]
    pub(crate) origin: Option<String>,
    /// The snapshot whose rows git had just lost when this state was recorded (and the
    /// loss was not restored): such a state is never a baseline. See [`AfterLoss`].
    #[serde(skip)]
    pub(crate) after_loss_of: Option<i64>,
}

/// How a new snapshot stands towards a loss git caused: whether `status` may compare
/// the database with it, or must keep comparing with the state before the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterLoss {
    /// Recorded right after git lost rows of snapshot #N, and not restored.
    Of(i64),
    /// As the path's latest local snapshot says: a state after a loss stays one (its
    /// later snapshots too) until it is restored or the user accepts it.
    AsBefore,
    /// The user accepts this state (`dbguard snapshot PATH`, a table restore).
    Accepted,
}

impl SnapshotInfo {
    /// The last time this state was recorded as the database's current one: the newest
    /// operation that found it unchanged, else when the snapshot was taken.
    pub(crate) fn last_seen(&self) -> DateTime<Utc> {
        self.unchanged
            .last()
            .map_or(self.created_at, |r| r.created_at.max(self.created_at))
    }
}

/// An operation that found a database unchanged since a snapshot and refers to it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OperationRef {
    #[serde(serialize_with = "rfc3339")]
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) git_state: String,
    /// False when the stat cache vouched for the file without opening it.
    pub(crate) reopened: bool,
    pub(crate) message: Option<String>,
    pub(crate) operation: OperationInfo,
}

/// What the catalog needs to record that an operation found a database unchanged.
pub(crate) struct NewRef<'a> {
    pub(crate) operation_id: i64,
    pub(crate) snapshot_id: i64,
    pub(crate) worktree: &'a str,
    pub(crate) path: &'a str,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) git_state: &'a str,
    pub(crate) reopened: bool,
    pub(crate) message: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OperationInfo {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) argv: Vec<String>,
    pub(crate) head_before: Option<String>,
    pub(crate) head_after: Option<String>,
    pub(crate) exit_code: Option<i32>,
}

impl OperationInfo {
    /// "git pull --force" or "dbguard snapshot": how the log names what happened. A git
    /// command is shown whole (its options decide what it overwrote); a dbguard command
    /// by its subcommand, without `-C <dir>`, `--json` and the like.
    /// Whether a dbguard command took the snapshot on its own (`dbguard snapshot`,
    /// `install`, a schedule) rather than before a git command it guarded.
    pub(crate) fn is_dbguard_command(&self) -> bool {
        self.argv
            .first()
            .is_some_and(|program| program == "dbguard")
    }

    pub(crate) fn describe(&self) -> String {
        match self.argv.first().map(String::as_str) {
            None => self.kind.clone(),
            Some("dbguard") => match dbguard_subcommand(&self.argv[1..]) {
                Some(subcommand) => format!("dbguard {subcommand}"),
                None => "dbguard".into(),
            },
            Some(_) => self.argv.join(" "),
        }
    }
}

/// The subcommand of a recorded `dbguard …` command line: its first word that is not an
/// option or the directory of `-C`.
fn dbguard_subcommand(args: &[String]) -> Option<&str> {
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "-C" || word == "--color" {
            words.next();
        } else if !word.starts_with('-') {
            return Some(word);
        }
    }
    None
}

/// What the catalog needs to record a new snapshot.
pub(crate) struct NewSnapshot<'a> {
    pub(crate) operation_id: i64,
    pub(crate) image_id: i64,
    pub(crate) worktree: &'a str,
    pub(crate) path: &'a str,
    pub(crate) kind: DbKind,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) consistency: &'a str,
    pub(crate) completeness: &'a Completeness,
    pub(crate) git_state: &'a str,
    pub(crate) census: &'a Census,
    pub(crate) reused: bool,
    pub(crate) message: Option<&'a str>,
    /// See [`SnapshotInfo::after_loss_of`].
    pub(crate) after_loss_of: Option<i64>,
}

/// One snapshot's row and its rows per table (a snapshot taken here, or fetched from a
/// remote: `origin` is then `<store id>/<snapshot id>` there), inside `tx`.
pub(super) fn insert_snapshot_row(
    tx: &rusqlite::Transaction<'_>,
    snapshot: &NewSnapshot<'_>,
    image_id: i64,
    origin: Option<&str>,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO snapshots(operation_id, image_id, worktree, path, kind, created_at, \
         consistency, git_state, schema_hash, reused, message, origin, after_loss_of) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            snapshot.operation_id,
            image_id,
            snapshot.worktree,
            snapshot.path,
            snapshot.kind.as_str(),
            ts(&snapshot.created_at),
            snapshot.consistency,
            snapshot.git_state,
            snapshot.census.schema,
            snapshot.reused,
            snapshot.message,
            origin,
            snapshot.after_loss_of,
        ],
    )?;
    let snapshot_id = tx.last_insert_rowid();
    // The columns' defaults say "complete"; anything else is written next to them.
    if *snapshot.completeness != Completeness::default() {
        tx.execute(
            &format!("UPDATE snapshots SET {COMPLETENESS_SET} WHERE id = ?9"),
            rusqlite::params_from_iter(completeness_params(snapshot.completeness, snapshot_id)),
        )?;
    }
    let mut insert =
        tx.prepare("INSERT INTO snapshot_tables(snapshot_id, name, rows) VALUES (?1, ?2, ?3)")?;
    for (name, rows) in &snapshot.census.tables {
        insert.execute(params![snapshot_id, name, *rows as i64])?;
    }
    Ok(snapshot_id)
}

/// Inside a snapshot's or reference's transaction: cache the live file's stat signature
/// as vouching for `snapshot_id` (`Some`), or forget any cached one (`None`: the file was
/// racy or changed while it was copied).
pub(super) fn record_stat_cache(
    tx: &rusqlite::Transaction<'_>,
    worktree: &str,
    path: &str,
    snapshot_id: i64,
    stat_cache: Option<(&str, Option<i64>)>,
) -> rusqlite::Result<usize> {
    match stat_cache {
        Some((signature, chunks_ctime_ns)) => tx.execute(
            "INSERT OR REPLACE INTO stat_cache(worktree, path, signature, snapshot_id, \
             chunks_ctime_ns) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![worktree, path, signature, snapshot_id, chunks_ctime_ns],
        ),
        None => tx.execute(
            "DELETE FROM stat_cache WHERE worktree = ?1 AND path = ?2",
            params![worktree, path],
        ),
    }
}

pub(crate) fn ts(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// serde helper: timestamps as RFC 3339 text in JSON output.
pub(crate) fn rfc3339<S: serde::Serializer>(
    time: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&ts(time))
}

pub(super) fn parse_ts(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// The query behind [`SnapshotInfo`], for a catalog of schema `version` (an older one,
/// opened read-only, lacks the newer columns: NULL stands in for them).
pub(super) fn snapshot_select(version: i64) -> String {
    let origin = if version >= 5 { "s.origin" } else { "NULL" };
    let after_loss_of = if version >= 7 {
        "s.after_loss_of"
    } else {
        "NULL"
    };
    // Before 8, `row_to_info` reads completeness from the label (`legacy`).
    let completeness = COMPLETENESS_COLUMNS
        .map(|column| match version >= 8 {
            true => format!("s.{column}"),
            false => "NULL".to_string(),
        })
        .join(", ");
    format!(
        "SELECT s.id, s.path, s.worktree, s.kind, s.created_at, i.size, s.consistency, \
         s.git_state, s.reused, s.message, s.schema_hash, i.id, i.digest, \
         o.id, o.kind, o.argv, o.head_before, o.head_after, o.exit_code, {origin}, {after_loss_of}, \
         {completeness} \
         FROM snapshots s JOIN images i ON i.id = s.image_id JOIN operations o ON o.id = s.operation_id"
    )
}

impl Catalog {
    /// Record an operation; secrets in its command line never reach the catalog.
    pub(crate) fn begin_operation(
        &self,
        kind: &str,
        argv: &[String],
        head_before: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64, CatalogError> {
        self.writable()?;
        self.conn
            .execute(
                "INSERT INTO operations(created_at, kind, argv, head_before) VALUES (?1, ?2, ?3, ?4)",
                params![
                    ts(&now),
                    kind,
                    argv_json(argv),
                    head_before
                ],
            )
            .map_err(self.fail())?;
        Ok(self.conn.last_insert_rowid())
    }

    pub(crate) fn finish_operation(
        &self,
        id: i64,
        head_after: Option<&str>,
        exit_code: Option<i32>,
    ) -> Result<(), CatalogError> {
        self.writable()?;
        self.conn
            .execute(
                "UPDATE operations SET head_after = ?2, exit_code = ?3 WHERE id = ?1",
                params![id, head_after, exit_code],
            )
            .map_err(self.fail())?;
        Ok(())
    }

    /// Record an image and its chunk list (or find the identical one already recorded),
    /// and the snapshot that refers to it, in one transaction. `stat_cache` is the live
    /// file's stat signature and the newest ctime among the image's chunk files: the stat
    /// cache reuses the image only while no chunk file was written after that (`None`
    /// for the ctime makes the next snapshot read the file once).
    pub(crate) fn insert_snapshot(
        &mut self,
        snapshot: &NewSnapshot<'_>,
        image: Option<&NewImage<'_>>,
        stat_cache: Option<(&str, Option<i64>)>,
    ) -> Result<i64, CatalogError> {
        self.writable()?;
        let fail = self.fail_owned();
        let tx = self.conn.transaction().map_err(&fail)?;
        let image_id = match image {
            None => snapshot.image_id,
            Some(image) => Catalog::insert_image(&tx, image).map_err(&fail)?,
        };
        let snapshot_id = insert_snapshot_row(&tx, snapshot, image_id, None).map_err(&fail)?;
        record_stat_cache(
            &tx,
            snapshot.worktree,
            snapshot.path,
            snapshot_id,
            stat_cache,
        )
        .map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        Ok(snapshot_id)
    }

    /// Record that an operation found a database unchanged since `snapshot_id`, and the
    /// live file's stat signature as in [`Catalog::insert_snapshot`], in one transaction.
    pub(crate) fn insert_ref(
        &mut self,
        r: &NewRef<'_>,
        stat_cache: Option<(&str, Option<i64>)>,
    ) -> Result<(), CatalogError> {
        self.writable()?;
        let fail = self.fail_owned();
        let tx = self.conn.transaction().map_err(&fail)?;
        tx.execute(
            "INSERT INTO operation_refs(operation_id, snapshot_id, created_at, git_state, \
             reopened, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                r.operation_id,
                r.snapshot_id,
                ts(&r.created_at),
                r.git_state,
                r.reopened,
                r.message
            ],
        )
        .map_err(&fail)?;
        record_stat_cache(&tx, r.worktree, r.path, r.snapshot_id, stat_cache).map_err(&fail)?;
        tx.commit().map_err(&fail)
    }

    /// The snapshot whose stat signature is cached for this path, if the signature matches.
    pub(crate) fn stat_cache_hit(
        &self,
        worktree: &str,
        path: &str,
        signature: &str,
    ) -> Result<Option<StatCacheHit>, CatalogError> {
        self.conn
            .query_row(
                "SELECT snapshot_id, chunks_ctime_ns FROM stat_cache \
                 WHERE worktree = ?1 AND path = ?2 AND signature = ?3",
                params![worktree, path, signature],
                |r| {
                    Ok(StatCacheHit {
                        snapshot_id: r.get(0)?,
                        chunks_ctime_ns: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(self.fail())
    }

    /// Stop watching a path's stat signature (its snapshots stay): used once a vanished
    /// database has been reported, so that it is not reported again on every checkout.
    pub(crate) fn forget_stat_cache(&self, worktree: &str, path: &str) -> Result<(), CatalogError> {
        self.writable()?;
        self.conn
            .execute(
                "DELETE FROM stat_cache WHERE worktree = ?1 AND path = ?2",
                params![worktree, path],
            )
            .map_err(self.fail())?;
        Ok(())
    }

    /// Every path with a cached stat signature in this worktree, with its kind.
    pub(crate) fn stat_cache_entries(
        &self,
        worktree: &str,
    ) -> Result<Vec<(String, DbKind, String)>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.path, s.kind, c.signature FROM stat_cache c \
                 JOIN snapshots s ON s.id = c.snapshot_id WHERE c.worktree = ?1 ORDER BY c.path",
            )
            .map_err(self.fail())?;
        let entries = stmt
            .query_map([worktree], |r| {
                let kind: String = r.get(1)?;
                Ok((
                    r.get(0)?,
                    DbKind::parse(&kind).unwrap_or(DbKind::Sqlite),
                    r.get(2)?,
                ))
            })
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(entries)
    }

    /// Paths in this worktree that have at least one snapshot.
    pub(crate) fn snapshotted_paths(&self, worktree: &str) -> Result<Vec<String>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT path FROM snapshots WHERE worktree = ?1 ORDER BY path")
            .map_err(self.fail())?;
        let paths = stmt
            .query_map([worktree], |r| r.get(0))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(paths)
    }

    /// The operation whose columns (`o.id, o.kind, o.argv, o.head_before, o.head_after,
    /// o.exit_code`) start at column `first` of `row`.
    fn operation_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<OperationInfo> {
        let argv: String = row.get(first + 2)?;
        Ok(OperationInfo {
            id: row.get(first)?,
            kind: row.get(first + 1)?,
            // Redacted again on the way out: a catalog opened read-only is not migrated.
            argv: redact_argv(&serde_json::from_str::<Vec<String>>(&argv).unwrap_or_default()),
            head_before: row.get(first + 3)?,
            head_after: row.get(first + 4)?,
            exit_code: row.get(first + 5)?,
        })
    }

    fn row_to_info(row: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotInfo> {
        let consistency: String = row.get(6)?;
        // NULL `partial`: a catalog older than schema 8 opened read-only, not migrated.
        let completeness = match row.get::<_, Option<bool>>(21)? {
            Some(_) => completeness_at(row, 21)?,
            None => legacy::completeness_of_label(&consistency),
        };
        Ok(SnapshotInfo {
            id: row.get(0)?,
            path: row.get(1)?,
            worktree: row.get(2)?,
            kind: DbKind::parse(&row.get::<_, String>(3)?).unwrap_or(DbKind::Sqlite),
            created_at: parse_ts(&row.get::<_, String>(4)?),
            size: row.get::<_, i64>(5)? as u64,
            consistency,
            completeness,
            git_state: row.get(7)?,
            reused: row.get(8)?,
            message: row.get(9)?,
            census: Census {
                tables: BTreeMap::new(),
                schema: row.get(10)?,
            },
            image_id: row.get(11)?,
            image_digest: row.get(12)?,
            operation: Self::operation_at(row, 13)?,
            unchanged: Vec::new(),
            origin: row.get(19)?,
            after_loss_of: row.get(20)?,
        })
    }

    fn query_snapshots(
        &self,
        filter: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<SnapshotInfo>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare(&format!("{} {filter}", snapshot_select(self.version)))
            .map_err(self.fail())?;
        let mut snapshots: Vec<SnapshotInfo> = stmt
            .query_map(params, Self::row_to_info)
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        let mut tables = self
            .conn
            .prepare("SELECT name, rows FROM snapshot_tables WHERE snapshot_id = ?1 ORDER BY name")
            .map_err(self.fail())?;
        for snapshot in &mut snapshots {
            let rows = tables
                .query_map([snapshot.id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(self.fail())?;
            for row in rows {
                let (name, count) = row.map_err(self.fail())?;
                snapshot.census.tables.insert(name, count.max(0) as u64);
            }
        }
        if self.version >= 3 {
            let mut refs = self
                .conn
                .prepare(
                    "SELECT r.created_at, r.git_state, r.reopened, r.message, o.id, o.kind, o.argv, \
                     o.head_before, o.head_after, o.exit_code FROM operation_refs r \
                     JOIN operations o ON o.id = r.operation_id WHERE r.snapshot_id = ?1 ORDER BY r.id",
                )
                .map_err(self.fail())?;
            for snapshot in &mut snapshots {
                snapshot.unchanged = refs
                    .query_map([snapshot.id], |r| {
                        Ok(OperationRef {
                            created_at: parse_ts(&r.get::<_, String>(0)?),
                            git_state: r.get(1)?,
                            reopened: r.get(2)?,
                            message: r.get(3)?,
                            operation: Self::operation_at(r, 4)?,
                        })
                    })
                    .map_err(self.fail())?
                    .collect::<Result<_, _>>()
                    .map_err(self.fail())?;
            }
        }
        Ok(snapshots)
    }

    pub(crate) fn snapshot(&self, id: i64) -> Result<Option<SnapshotInfo>, CatalogError> {
        Ok(self
            .query_snapshots("WHERE s.id = ?1", &[&id])?
            .into_iter()
            .next())
    }

    /// Snapshots newest first, optionally for one worktree path.
    pub(crate) fn snapshots(
        &self,
        worktree: Option<&str>,
        path: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<SnapshotInfo>, CatalogError> {
        let limit = limit.map(|l| l as i64).unwrap_or(-1);
        self.query_snapshots(
            "WHERE (?1 IS NULL OR s.worktree = ?1) AND (?2 IS NULL OR s.path = ?2) \
             ORDER BY s.id DESC LIMIT ?3",
            &[&worktree, &path, &limit],
        )
    }

    /// The newest snapshot of a path taken by this store: what a new snapshot is
    /// compared with (unchanged since it?) and what the hooks measure a loss against. A
    /// snapshot fetched from another clone never stands for this clone's file.
    pub(crate) fn latest(
        &self,
        worktree: &str,
        path: &str,
    ) -> Result<Option<SnapshotInfo>, CatalogError> {
        self.newest_local(worktree, path, "")
    }

    /// The newest snapshot of a path taken here that is a baseline: not recorded right
    /// after a loss (see [`AfterLoss`]). What `status` compares the file with, so that a
    /// loss stays flagged until it is restored or accepted.
    pub(crate) fn baseline(
        &self,
        worktree: &str,
        path: &str,
    ) -> Result<Option<SnapshotInfo>, CatalogError> {
        let condition = if self.version >= 7 {
            "AND s.after_loss_of IS NULL"
        } else {
            ""
        };
        self.newest_local(worktree, path, condition)
    }

    fn newest_local(
        &self,
        worktree: &str,
        path: &str,
        condition: &str,
    ) -> Result<Option<SnapshotInfo>, CatalogError> {
        let local = if self.version >= 5 {
            "AND s.origin IS NULL"
        } else {
            ""
        };
        Ok(self
            .query_snapshots(
                &format!(
                    "WHERE s.worktree = ?1 AND s.path = ?2 {local} {condition} \
                     ORDER BY s.id DESC LIMIT 1"
                ),
                &[&worktree, &path],
            )?
            .into_iter()
            .next())
    }

    /// Ordered chunk hashes of an image.
    pub(crate) fn image_chunks(&self, image_id: i64) -> Result<Vec<String>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT hash FROM image_chunks WHERE image_id = ?1 ORDER BY seq")
            .map_err(self.fail())?;
        let hashes = stmt
            .query_map([image_id], |r| r.get(0))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(hashes)
    }

    /// (image id, digest, size) of every image.
    pub(crate) fn images(&self) -> Result<Vec<(i64, String, u64)>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, digest, size FROM images ORDER BY id")
            .map_err(self.fail())?;
        let images = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(images)
    }

    /// Every chunk hash some image refers to.
    pub(crate) fn referenced_chunks(
        &self,
    ) -> Result<std::collections::HashSet<String>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT hash FROM image_chunks")
            .map_err(self.fail())?;
        let hashes = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(hashes)
    }

    /// The plain bytes of every distinct chunk some image refers to (what
    /// [`super::Store::verify`] reads, each chunk once): `chunk_size` each, less for the
    /// last chunk of an image.
    pub(crate) fn distinct_chunk_bytes(&self, chunk_size: u64) -> Result<u64, CatalogError> {
        self.conn
            .query_row(
                "SELECT coalesce(sum(len), 0) FROM (SELECT max(min(?1, i.size - c.seq * ?1)) AS len \
                 FROM image_chunks AS c JOIN images AS i ON i.id = c.image_id GROUP BY c.hash)",
                [chunk_size as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(self.fail())
    }

    /// Delete snapshots, then images no snapshot refers to any more.
    pub(crate) fn delete_snapshots(&mut self, ids: &[i64]) -> Result<(), CatalogError> {
        self.writable()?;
        let fail = self.fail_owned();
        let tx = self.conn.transaction().map_err(&fail)?;
        for id in ids {
            tx.execute("DELETE FROM snapshots WHERE id = ?1", [id])
                .map_err(&fail)?;
        }
        tx.execute(
            "DELETE FROM images WHERE id NOT IN (SELECT image_id FROM snapshots)",
            [],
        )
        .map_err(&fail)?;
        // The snapshots' references went with them (ON DELETE CASCADE); an operation
        // that neither took nor refers to a snapshot any more goes too (prune lists them).
        tx.execute(
            "DELETE FROM operations WHERE id NOT IN (SELECT operation_id FROM snapshots) \
             AND id NOT IN (SELECT operation_id FROM operation_refs) \
             AND id NOT IN (SELECT max(id) FROM operations)",
            [],
        )
        .map_err(&fail)?;
        tx.commit().map_err(&fail)
    }

    /// Stop trusting the stat cache for paths whose cached snapshot uses one of these
    /// images (they are damaged): the next snapshot reads the file again, which also
    /// rewrites the damaged chunks from the live bytes. Returns how many entries went.
    pub(crate) fn forget_stat_cache_of_images(
        &self,
        image_ids: &[i64],
    ) -> Result<usize, CatalogError> {
        self.writable()?;
        let mut forgotten = 0;
        for image_id in image_ids {
            forgotten += self
                .conn
                .execute(
                    "DELETE FROM stat_cache WHERE snapshot_id IN \
                     (SELECT id FROM snapshots WHERE image_id = ?1)",
                    [image_id],
                )
                .map_err(self.fail())?;
        }
        Ok(forgotten)
    }

    /// Every snapshot with its image, oldest first.
    pub(crate) fn snapshot_refs(&self) -> Result<Vec<SnapshotRef>, CatalogError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, worktree, path, image_id FROM snapshots ORDER BY id")
            .map_err(self.fail())?;
        let refs = stmt
            .query_map([], |r| {
                Ok(SnapshotRef {
                    id: r.get(0)?,
                    worktree: r.get(1)?,
                    path: r.get(2)?,
                    image_id: r.get(3)?,
                })
            })
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(refs)
    }
}
