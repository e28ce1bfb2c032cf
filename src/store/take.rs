//! Taking a new image of a live database into the store: for SQLite, its pages streamed
//! out of SQLite straight into the packs; otherwise (DuckDB, a SQLite hot journal, a
//! build without `sqlite_dbpage`) a consistent copy in staging, read back. Then the image
//! is checked, counted and recorded.

use std::io;
use std::path::Path;
use std::sync::mpsc::sync_channel;

use chrono::{DateTime, Utc};

use super::blocks::encode_manifest;
use super::catalog::{NewImage, NewSnapshot};
use super::ingest::{self, PageReader, SEGMENT_BYTES};
use super::{
    Progress, SnapshotOutcome, SnapshotRequest, StatSignature, Store, StoreError, is_disk_full,
    now_ns, stat_signature, write_err,
};
use crate::db::sqlite::{StreamFailure, StreamedImage};
use crate::db::{self, Census, Consistency, CopyReport, DbError};

/// An image stored in packs, not recorded yet: how it was taken, and what it holds.
struct TakenImage {
    copied: CopyReport,
    census: Census,
    ingested: ingest::Ingested,
}

impl Store {
    /// Snapshot a live SQLite database by reading its pages through SQLite in one read
    /// transaction and storing them as they come: no staging copy to write and read back.
    /// `Ok(None)`: not possible for this database (nothing was stored); make a copy.
    pub(super) fn snapshot_via_stream(
        &mut self,
        request: &SnapshotRequest<'_>,
        live: &Path,
        started: DateTime<Utc>,
        before: &StatSignature,
        progress: Progress<'_>,
    ) -> Result<Option<SnapshotOutcome>, StoreError> {
        let timer = crate::timing::start();
        // Damaged blocks must not be reused: find them before deduplicating against them.
        self.check_packs()?;
        let index = self.block_index()?;
        let (root, packs, reads) = (&self.root, &self.packs, self.live_reads);
        let (page_size_tx, page_size_rx) = sync_channel::<usize>(1);
        let (runs_tx, runs_rx) = sync_channel::<Vec<u8>>(2);
        // SQLite reads the pages (then counts the rows) on one thread and checks the
        // database on another, while this one hands the pages to the ingest's hashing and
        // compressing workers.
        let (streamed, ingested) = std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                db::sqlite::stream_pages(
                    live,
                    reads,
                    SEGMENT_BYTES,
                    |page_size| page_size_tx.send(page_size).is_ok(),
                    |run| runs_tx.send(run).is_ok(),
                )
            });
            let ingested = page_size_rx.recv().ok().map(|page_size| {
                let block_size = ingest::block_size_for_page_size(page_size);
                let mut pages = PageReader::new(runs_rx);
                ingest::ingest(root, packs, index, &mut pages, live, block_size, progress)
            });
            let streamed = reader.join().unwrap_or_else(|_| {
                Err(StreamFailure::Db(DbError::Sqlite {
                    path: live.to_path_buf(),
                    reason: "the thread reading its pages crashed".into(),
                }))
            });
            (streamed, ingested)
        });
        timer.done("pages streamed, checked, counted and stored");
        let ingested = match (streamed, ingested) {
            (Err(StreamFailure::Unavailable), None) => return Ok(None),
            // The store failed to take the pages: its error says why.
            (Err(StreamFailure::Stopped), Some(Err(e))) => return Err(e),
            (Ok(streamed), Some(Ok(ingested))) if ingested.size == streamed.size => {
                (streamed, ingested)
            }
            (streamed, ingested) => {
                if let Some(Ok(ingested)) = &ingested {
                    // Refused or cut short: nothing will refer to the packs it wrote.
                    for pack in &ingested.packs {
                        let _ = self.packs.remove(&pack.name);
                    }
                }
                return Err(match (streamed, ingested) {
                    (Err(StreamFailure::Db(e)), _) => StoreError::Db(e),
                    (_, Some(Err(e))) => e,
                    _ => StoreError::Io {
                        path: live.to_path_buf(),
                        source: io::Error::other("not every page of the database was stored"),
                    },
                });
            }
        };
        let (StreamedImage { census, .. }, ingested) = ingested;
        let copied = CopyReport {
            consistency: Consistency::ReadTransaction,
            warning: None,
        };
        let taken = TakenImage {
            copied,
            census,
            ingested,
        };
        self.record_image(request, live, started, before, taken)
            .map(Some)
    }

    /// Snapshot a live database through a consistent copy in staging at `image_path`.
    pub(super) fn snapshot_via_copy(
        &mut self,
        request: &SnapshotRequest<'_>,
        live: &Path,
        image_path: &Path,
        started: DateTime<Utc>,
        before: &StatSignature,
        progress: Progress<'_>,
    ) -> Result<SnapshotOutcome, StoreError> {
        let copy_timer = crate::timing::start();
        let copied = db::copy(request.kind, live, image_path)
            .map_err(|e| self.staging_error(e, image_path))?;
        copy_timer.done("copy");
        // Damaged blocks must not be reused: find them before deduplicating against them.
        self.check_packs()?;
        let block_size = ingest::block_size_for(request.kind, image_path);
        let index = self.block_index()?;
        let (root, packs) = (&self.root, &self.packs);
        // Integrity check + census on one core while the others hash and compress.
        let (census, ingested) = std::thread::scope(|scope| {
            let census = scope.spawn(|| {
                let timer = crate::timing::start();
                let result = db::check_and_census(request.kind, image_path);
                timer.done("check+census");
                result
            });
            let timer = crate::timing::start();
            let ingested = std::fs::File::open(image_path)
                .map_err(super::io_err(image_path))
                .and_then(|mut image| {
                    ingest::ingest(
                        root, packs, index, &mut image, image_path, block_size, progress,
                    )
                });
            timer.done("ingest");
            let census = census.join().unwrap_or_else(|_| {
                Err(DbError::Integrity {
                    path: image_path.to_path_buf(),
                    detail: "the integrity check crashed".into(),
                })
            });
            (census, ingested)
        });
        let ingested = ingested?;
        let census = match census {
            Ok(census) => census,
            Err(e) => {
                // The copy is refused: nothing will refer to the packs it wrote.
                for pack in &ingested.packs {
                    let _ = self.packs.remove(&pack.name);
                }
                return Err(match self.staging_error(e, image_path) {
                    StoreError::Db(e) => StoreError::Db(relabel(e, live)),
                    other => other,
                });
            }
        };
        let taken = TakenImage {
            copied,
            census,
            ingested,
        };
        self.record_image(request, live, started, before, taken)
    }

    /// Record a stored image as the path's snapshot (or, when it is the same state as the
    /// path's latest snapshot, refer the operation to that one).
    fn record_image(
        &mut self,
        request: &SnapshotRequest<'_>,
        live: &Path,
        started: DateTime<Utc>,
        before: &StatSignature,
        taken: TakenImage,
    ) -> Result<SnapshotOutcome, StoreError> {
        let TakenImage {
            copied,
            census,
            ingested,
        } = taken;
        let timer = crate::timing::start();
        let pack_ids = self.record_packs(&ingested)?;
        timer.done("record packs");
        // Trust the stat cache next time only if the file did not change while we copied
        // it and its last write is safely older than the copy.
        let after = stat_signature(live, request.kind).ok();
        let trusted = after.as_ref() == Some(before)
            && before.newest_ns + before.granularity_ns < now_ns(started);
        let digest = ingested.digest.clone();
        let chunks_ctime_ns = if trusted {
            self.newest_pack_ctime(&pack_ids)
        } else {
            None
        };
        let consistency = copied.consistency.label();
        let completeness = copied.consistency.completeness();
        let worktree = request.worktree.to_string_lossy();
        let stat_cache = chunks_ctime_ns.map(|ctime| (before.text.as_str(), Some(ctime)));
        let mut warning = copied.warning;
        if !ingested.repaired.is_empty() {
            let one = ingested.repaired.len() == 1;
            let repaired = format!(
                "rewrote {} damaged chunk{} in the store from {} (older snapshots that use {} are whole again)",
                ingested.repaired.len(),
                if one { "" } else { "s" },
                request.path,
                if one { "it" } else { "them" },
            );
            warning = Some(match warning {
                Some(w) => format!("{w}; {repaired}"),
                None => repaired,
            });
        }
        let after_loss_of = self.after_loss_of(request, &worktree)?;
        // The same image as the path's latest snapshot, both complete (and both after a
        // loss, or neither): the operation refers to that snapshot instead of recording
        // an identical one.
        if let Some(latest) = self.catalog.latest(&worktree, request.path)?
            && latest.after_loss_of == after_loss_of
            && latest.image_digest == digest
            && latest.kind == request.kind
            && latest.census == census
            && !latest.completeness.partial
            && !completeness.partial
        {
            self.catalog.insert_ref(
                &request.reference(&worktree, latest.id, started, true),
                stat_cache,
            )?;
            return Ok(SnapshotOutcome {
                id: latest.id,
                census: latest.census,
                size: latest.size,
                new_bytes: ingested.new_bytes,
                reused: false,
                unchanged_since: Some(latest.created_at),
                consistency: latest.consistency,
                completeness: latest.completeness,
                warning,
            });
        }
        let id = self.catalog.insert_snapshot(
            &NewSnapshot {
                operation_id: request.operation_id,
                image_id: 0,
                worktree: &worktree,
                path: request.path,
                kind: request.kind,
                created_at: started,
                consistency: &consistency,
                completeness: &completeness,
                git_state: request.git_state,
                census: &census,
                reused: false,
                message: request.message,
                after_loss_of,
            },
            Some(&NewImage {
                digest: &digest,
                size: ingested.size,
                block_size: ingested.block_size,
                manifest: encode_manifest(&ingested.block_ids),
                pack_ids,
            }),
            stat_cache,
        )?;
        Ok(SnapshotOutcome {
            id,
            census,
            size: ingested.size,
            new_bytes: ingested.new_bytes,
            reused: false,
            unchanged_since: None,
            consistency,
            completeness,
            warning,
        })
    }

    /// A failure while copying into (or reading back) our staging image: when the cause
    /// is the store's disk or permissions, say so instead of blaming the user's database.
    fn staging_error(&self, error: DbError, image: &Path) -> StoreError {
        let full = |detail: String| StoreError::Full {
            path: self.root.clone(),
            detail,
        };
        match error {
            DbError::Io { path, source }
                if path.starts_with(&self.tmp) || is_disk_full(&source) =>
            {
                write_err(&self.root, &path)(source)
            }
            DbError::Sqlite { reason, .. } | DbError::DuckDb { reason, .. }
                if reason.contains("database or disk is full")
                    || reason.contains("No space left on device") =>
            {
                full(reason)
            }
            DbError::Sqlite {
                ref path,
                ref reason,
            }
            | DbError::DuckDb {
                ref path,
                ref reason,
            } if path == image && reason.contains("Read-only file system") => {
                StoreError::ReadOnly {
                    path: self.root.clone(),
                }
            }
            other => StoreError::Db(other),
        }
    }

    /// Record an ingest's packs and frames in the catalog and the block index; returns
    /// the packs the image's blocks live in.
    fn record_packs(&mut self, ingested: &ingest::Ingested) -> Result<Vec<i64>, StoreError> {
        let (_, frames) = self.catalog.add_packs(ingested)?;
        self.block_index()?;
        let index = self.index.get_mut().expect("loaded above");
        for id in &ingested.repaired {
            index.damaged.remove(id);
        }
        for frame in frames {
            index.add_frame(frame);
        }
        Ok(index.packs_of(&ingested.block_ids))
    }

    /// The newest ctime among these packs' files, `None` when one is missing.
    fn newest_pack_ctime(&self, pack_ids: &[i64]) -> Option<i64> {
        let packs = self.catalog.packs().ok()?;
        let mut newest = i64::MIN;
        for id in pack_ids {
            let pack = packs.iter().find(|p| p.id == *id)?;
            newest = newest.max(self.packs.ctime_ns(&pack.name)?);
        }
        Some(newest)
    }
}

/// The copy failed its check: name the user's file, not our staging path.
fn relabel(error: DbError, live: &Path) -> DbError {
    match error {
        DbError::Integrity { detail, .. } => DbError::Integrity {
            path: live.to_path_buf(),
            detail,
        },
        DbError::Sqlite { reason, .. } => DbError::Sqlite {
            path: live.to_path_buf(),
            reason,
        },
        DbError::DuckDb { reason, .. } => DbError::DuckDb {
            path: live.to_path_buf(),
            reason,
        },
        other => other,
    }
}
