//! The snapshot store under `<git common dir>/dbguard/`: open and lock it, turn a live
//! database into a deduplicated snapshot, read images back, verify and prune.

pub(crate) mod blocks;
/// The catalog is the store's own: what others need of it is re-exported below.
mod catalog;
pub(crate) mod chunks;
pub(crate) mod files;
mod image;
mod ingest;
mod lock;
mod packs;
mod reclaim;
mod records;
pub(crate) mod replica;
mod take;
mod verify;
pub(crate) use records::parse_snapshot_id;
pub(crate) use verify::{Problem, VerifyReport};

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::clock;
use crate::db::{self, Census, Completeness, DbError, DbKind};
use blocks::BlockIndex;
#[cfg(test)]
pub(crate) use catalog::OperationRef;
pub(crate) use catalog::{
    AfterLoss, Catalog, CatalogError, NewRef, NewSnapshot, OperationInfo,
    SCHEMA_VERSION as CATALOG_SCHEMA, SnapshotInfo, SnapshotRef, rfc3339,
};
use catalog::{ImageLayout, NewImage};
use chunks::{ChunkError, Chunks};
use files::{create_private, create_private_dir, is_disk_full, is_read_only, temp_path};
use packs::Packs;

/// Staging left behind by a reader that crashed is removed once it is this old (a live
/// reader's staging is younger: readers hold the store for one command).
const STALE_READER_STAGING: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("cannot use the snapshot store at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{holder} has held the snapshot store at {path} without any progress for {} s", lock::STALL_LIMIT.as_secs())]
    Locked { path: PathBuf, holder: String },
    #[error(transparent)]
    Catalog(CatalogError),
    #[error(transparent)]
    Chunk(ChunkError),
    /// The store cannot be written (read-only mount, or not ours): reading commands still
    /// work, writing ones cannot.
    #[error("the snapshot store at {path} is read-only")]
    ReadOnly { path: PathBuf },
    /// Writing into the store failed for lack of space: the store's disk, not the
    /// database being snapshotted.
    #[error("the disk holding the snapshot store at {path} is full ({detail})")]
    Full { path: PathBuf, detail: String },
    #[error("the snapshot store path {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("snapshot #{0} does not exist")]
    NoSuchSnapshot(i64),
    #[error("image of snapshot #{id} does not match its recorded digest")]
    DigestMismatch { id: i64 },
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An I/O error while writing `path` inside the store at `root`: say that the store is
/// full or read-only when that is what happened.
fn write_err<'a>(root: &'a Path, path: &'a Path) -> impl Fn(io::Error) -> StoreError + 'a {
    move |source| {
        if is_disk_full(&source) {
            StoreError::Full {
                path: root.to_path_buf(),
                detail: source.to_string(),
            }
        } else if is_read_only(&source) {
            StoreError::ReadOnly {
                path: root.to_path_buf(),
            }
        } else if source.kind() == io::ErrorKind::NotADirectory && !root.is_dir() {
            StoreError::NotADirectory {
                path: root.to_path_buf(),
            }
        } else {
            StoreError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// The store root of a catalog path (`<root>/catalog.db`).
fn catalog_root(catalog: &str) -> PathBuf {
    Path::new(catalog)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

impl From<CatalogError> for StoreError {
    fn from(error: CatalogError) -> StoreError {
        match &error {
            CatalogError::ReadOnly { path } => StoreError::ReadOnly {
                path: catalog_root(path),
            },
            CatalogError::Sqlite { path, source } if error.is_disk_full() => StoreError::Full {
                path: catalog_root(path),
                detail: source.to_string(),
            },
            _ if error.is_read_only() => match &error {
                CatalogError::Sqlite { path, .. } => StoreError::ReadOnly {
                    path: catalog_root(path),
                },
                _ => StoreError::Catalog(error),
            },
            _ => StoreError::Catalog(error),
        }
    }
}

impl From<ChunkError> for StoreError {
    fn from(error: ChunkError) -> StoreError {
        StoreError::Chunk(error)
    }
}

/// What one snapshot of one database produced.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotOutcome {
    pub(crate) id: i64,
    pub(crate) census: Census,
    pub(crate) size: u64,
    /// Compressed bytes this snapshot added to the store.
    pub(crate) new_bytes: u64,
    /// True when the stat cache showed the file unchanged and it was not opened at all.
    pub(crate) reused: bool,
    /// `Some(when snapshot `id` was taken)` when the database was unchanged since its
    /// latest snapshot `id`: no new snapshot was recorded, the operation refers to it.
    pub(crate) unchanged_since: Option<DateTime<Utc>>,
    /// How it was taken, for people.
    pub(crate) consistency: String,
    /// Whether it holds every commit, for code.
    pub(crate) completeness: Completeness,
    pub(crate) warning: Option<String>,
}

/// Where and why a database is snapshotted.
pub(crate) struct SnapshotRequest<'a> {
    pub(crate) worktree: &'a Path,
    /// Worktree-relative path with `/` separators.
    pub(crate) path: &'a str,
    pub(crate) kind: DbKind,
    pub(crate) git_state: &'a str,
    pub(crate) operation_id: i64,
    pub(crate) message: Option<&'a str>,
    /// Whether the state recorded may be a baseline (see [`AfterLoss`]).
    pub(crate) after_loss: AfterLoss,
}

impl SnapshotRequest<'_> {
    /// The catalog record saying this request's operation found the database unchanged
    /// since snapshot `snapshot_id`; `reopened` when the file was read to be sure.
    fn reference<'b>(
        &'b self,
        worktree: &'b str,
        snapshot_id: i64,
        created_at: DateTime<Utc>,
        reopened: bool,
    ) -> NewRef<'b> {
        NewRef {
            operation_id: self.operation_id,
            snapshot_id,
            worktree,
            path: self.path,
            created_at,
            git_state: self.git_state,
            reopened,
            message: self.message,
        }
    }
}

pub(crate) struct Store {
    root: PathBuf,
    /// Staging: the store's `tmp/`, or a private directory in the system temp dir when
    /// the store is read-only.
    tmp: PathBuf,
    catalog: Catalog,
    /// Legacy chunk files (stores written before packs).
    chunks: Chunks,
    packs: Packs,
    /// Where every block lives, loaded when first needed.
    index: std::cell::OnceCell<BlockIndex>,
    /// The writer lock (see [`lock`]): `None` for a store opened to read.
    writer: Option<lock::Held>,
    /// `packs.lock`, shared: no prune deletes a pack while this store is open (`None`
    /// only for a read-only store whose lock file cannot be opened).
    _packs: Option<lock::Held>,
    read_only: bool,
    /// How snapshots read a live SQLite file (see [`crate::db::sqlite::LiveReads`]).
    live_reads: crate::db::sqlite::LiveReads,
    /// Declared last: removed only after the catalog (which may live in it) is closed.
    _scratch: Option<tempfile::TempDir>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.catalog.checkpoint();
    }
}

/// File identity and timestamps of a database and its WAL: unchanged signature means
/// unchanged content, provided the signature was not taken within the timestamp
/// granularity of a write ("racy" in git's terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatSignature {
    pub(crate) text: String,
    /// Latest mtime/ctime among the files, in ns since the epoch.
    pub(crate) newest_ns: i128,
    /// The filesystem's timestamp resolution as far as we can tell.
    pub(crate) granularity_ns: i128,
}

pub(crate) fn stat_signature(path: &Path, kind: DbKind) -> io::Result<StatSignature> {
    let mut text = String::new();
    let mut newest_ns = 0i128;
    let mut whole_seconds = true;
    let wal = db::sidecar_path(path, kind.wal_suffix());
    for (label, file) in [("db", path.to_path_buf()), ("wal", wal)] {
        let meta = match fs::symlink_metadata(&file) {
            Ok(meta) => meta,
            Err(e) if label == "wal" && e.kind() == io::ErrorKind::NotFound => {
                text.push_str("|wal:none");
                continue;
            }
            Err(e) => return Err(e),
        };
        if label == "wal" && meta.len() == 0 {
            // An empty WAL holds nothing; readers create and delete it freely.
            text.push_str("|wal:none");
            continue;
        }
        let mtime = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
        let ctime = meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128;
        whole_seconds &= meta.mtime_nsec() == 0 && meta.ctime_nsec() == 0;
        newest_ns = newest_ns.max(mtime).max(ctime);
        if label == "wal" {
            text.push('|');
        }
        text.push_str(&format!(
            "{label}:{}:{}:{}:{mtime}:{ctime}",
            meta.dev(),
            meta.ino(),
            meta.len()
        ));
    }
    Ok(StatSignature {
        text,
        newest_ns,
        // Whole-second timestamps suggest a coarse filesystem (FAT has 2 s); otherwise the
        // kernel's coarse clock ticks at most every 10 ms.
        granularity_ns: if whole_seconds {
            2_000_000_000
        } else {
            50_000_000
        },
    })
}

fn now_ns(now: DateTime<Utc>) -> i128 {
    now.timestamp_nanos_opt().unwrap_or(i64::MAX) as i128
}

/// Progress callback: bytes done so far.
pub(crate) type Progress<'a> = &'a (dyn Fn(u64) + Sync);

impl Store {
    /// Open (creating if needed) the store at `root` for writing, waiting while another
    /// writer works (see [`lock`]), and clear debris a crash left in `tmp/`.
    pub(crate) fn open(root: &Path) -> Result<Store, StoreError> {
        if fs::metadata(root).is_ok_and(|m| !m.is_dir()) {
            return Err(StoreError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        let tmp = root.join("tmp");
        for dir in [root.to_path_buf(), root.join("packs"), tmp.clone()] {
            create_private_dir(&dir).map_err(write_err(root, &dir))?;
        }
        let writer = Store::take_lock(root, &lock::writer_path(root), lock::Mode::Exclusive)?;
        let packs = Store::take_lock(root, &lock::packs_path(root), lock::Mode::Shared)?;
        // Only writers stage directly in tmp/, one at a time: a file there now is debris.
        // Readers stage in a directory of their own, removed when they finish.
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let path = entry.path();
                if !path.is_dir() {
                    let _ = fs::remove_file(&path);
                    continue;
                }
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > STALE_READER_STAGING);
                if stale {
                    let _ = fs::remove_dir_all(&path);
                }
            }
        }
        let catalog = Catalog::open(&root.join("catalog.db"))?;
        Ok(Store::assemble(
            root,
            tmp,
            catalog,
            Some(writer),
            Some(packs),
            None,
        ))
    }

    /// The census of the live database at `path` (in `worktree`) without opening it, when
    /// the stat cache vouches that the file is unchanged since a snapshot: that snapshot's
    /// census. `None` when it cannot vouch (changed, never cached, unreadable).
    pub(crate) fn census_if_unchanged(
        &self,
        worktree: &str,
        path: &str,
        kind: DbKind,
    ) -> Option<Census> {
        let signature = stat_signature(&Path::new(worktree).join(path), kind).ok()?;
        let hit = self
            .catalog
            .stat_cache_hit(worktree, path, &signature.text)
            .ok()??;
        Some(self.catalog.snapshot(hit.snapshot_id).ok()??.census)
    }

    /// Snapshots read live SQLite files a page per `pread` instead of through a memory
    /// map: a little slower, for a caller whose memory peak must not grow with the
    /// database (an export).
    pub(crate) fn read_live_files_unmapped(&mut self) {
        self.live_reads = crate::db::sqlite::LiveReads::PagePerRead;
    }

    /// A store over `root` staging in `tmp`, holding the locks it was opened with (and
    /// the reader's own staging directory, removed when the store is dropped).
    fn assemble(
        root: &Path,
        tmp: PathBuf,
        catalog: Catalog,
        writer: Option<lock::Held>,
        packs: Option<lock::Held>,
        scratch: Option<tempfile::TempDir>,
    ) -> Store {
        Store {
            root: root.to_path_buf(),
            chunks: Chunks::new(root.join("objects")),
            packs: Packs::new(root.join("packs"), tmp.clone()),
            index: std::cell::OnceCell::new(),
            tmp,
            catalog,
            writer,
            _packs: packs,
            read_only: false,
            live_reads: crate::db::sqlite::LiveReads::Mapped,
            _scratch: scratch,
        }
    }

    /// Take one of the store's locks (creating its file), waiting while its holder works.
    fn take_lock(root: &Path, path: &Path, mode: lock::Mode) -> Result<lock::Held, StoreError> {
        let file = lock::open(path, true).map_err(write_err(root, path))?;
        Store::wait_for(root, file, path, mode)
    }

    fn wait_for(
        root: &Path,
        file: fs::File,
        path: &Path,
        mode: lock::Mode,
    ) -> Result<lock::Held, StoreError> {
        lock::acquire(file, path, mode).map_err(|failure| match failure {
            lock::LockFailure::Stalled { holder } => StoreError::Locked {
                path: root.to_path_buf(),
                holder,
            },
            lock::LockFailure::Io(e) => io_err(path)(e),
        })
    }

    /// Open an existing store to read it (and record what readers record: damage found,
    /// a vanished database's stat entry): no writer lock, so a snapshot is never held up
    /// by it. A store that cannot be written is opened read-only.
    fn open_reader(root: &Path) -> Result<Store, StoreError> {
        let packs = match Store::take_lock(root, &lock::packs_path(root), lock::Mode::Shared) {
            Ok(packs) => packs,
            Err(StoreError::ReadOnly { .. }) => return Store::open_read_only(root),
            Err(e) => return Err(e),
        };
        let catalog = match Catalog::open(&root.join("catalog.db")) {
            Ok(catalog) => catalog,
            Err(e) if e.is_read_only() => return Store::open_read_only(root),
            Err(e) => return Err(e.into()),
        };
        // Staging of its own inside tmp/, so that a writer's clean-up leaves it alone.
        let tmp_root = root.join("tmp");
        let scratch = create_private_dir(&tmp_root)
            .and_then(|()| {
                tempfile::Builder::new()
                    .prefix("read-")
                    .tempdir_in(&tmp_root)
            })
            .map_err(write_err(root, &tmp_root))?;
        let tmp = scratch.path().to_path_buf();
        Ok(Store::assemble(
            root,
            tmp,
            catalog,
            None,
            Some(packs),
            Some(scratch),
        ))
    }

    /// `None` when there is no store at `root` yet; an error when something else is there.
    fn exists(root: &Path) -> Result<bool, StoreError> {
        match fs::metadata(root) {
            Ok(meta) if !meta.is_dir() => Err(StoreError::NotADirectory {
                path: root.to_path_buf(),
            }),
            Ok(_) => Ok(root.join("catalog.db").is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(root)(e)),
        }
    }

    /// Open the store only if it exists, for reading; `None` when there is none. A store
    /// that cannot be written (read-only mount, another user's) is opened read-only.
    /// Readers take no writer lock: see [`lock`].
    pub(crate) fn open_existing(root: &Path) -> Result<Option<Store>, StoreError> {
        if !Store::exists(root)? {
            return Ok(None);
        }
        Store::open_reader(root).map(Some)
    }

    /// Open the store only if it exists, for a command that writes to it (prune,
    /// restore in place): a read-only store is an error that says so.
    pub(crate) fn open_existing_for_writing(root: &Path) -> Result<Option<Store>, StoreError> {
        if !Store::exists(root)? {
            return Ok(None);
        }
        Store::open(root).map(Some)
    }

    /// Open a store that cannot be written: nothing is created or cleaned up, staging
    /// (e.g. `restore --to`) happens in a private directory in the system temp dir.
    pub(crate) fn open_read_only(root: &Path) -> Result<Store, StoreError> {
        let scratch = tempfile::Builder::new()
            .prefix("dbguard-read-")
            .tempdir()
            .map_err(io_err(&std::env::temp_dir()))?;
        // A shared lock keeps a prune (when there can be one: a store that is only not
        // ours) from deleting packs under us; a lock file we cannot open on a read-only
        // mount means nobody can write there either.
        let packs_path = lock::packs_path(root);
        let packs = match lock::open(&packs_path, false) {
            Ok(file) => Some(Store::wait_for(
                root,
                file,
                &packs_path,
                lock::Mode::Shared,
            )?),
            Err(_) => None,
        };
        let catalog = Catalog::open_read_only(&root.join("catalog.db"), scratch.path())?;
        let tmp = scratch.path().to_path_buf();
        let mut store = Store::assemble(root, tmp, catalog, None, packs, Some(scratch));
        store.read_only = true;
        Ok(store)
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.root.clone(),
            });
        }
        debug_assert!(
            self.writer.is_some(),
            "a store opened to read does not write snapshots or packs"
        );
        Ok(())
    }

    /// Where every block lives (loaded from the catalog once per open).
    fn block_index(&self) -> Result<&BlockIndex, StoreError> {
        if self.index.get().is_none() {
            let index = BlockIndex::new(self.catalog.frames()?, self.catalog.damaged_blocks()?);
            let _ = self.index.set(index);
        }
        Ok(self.index.get().expect("set above"))
    }

    /// The newest ctime among the files that hold an image's bytes (its packs, or its
    /// legacy chunk files), or `None` when one is missing.
    fn newest_image_file_ctime(&self, image_id: i64) -> Result<Option<i64>, StoreError> {
        let mut newest = i64::MIN;
        match self.catalog.image_layout(image_id)? {
            ImageLayout::Chunks(hashes) => {
                for hash in &hashes {
                    let Some(ctime) = self.chunks.ctime_ns(hash) else {
                        return Ok(None);
                    };
                    newest = newest.max(i64::try_from(ctime).unwrap_or(i64::MAX));
                }
            }
            ImageLayout::Blocks { .. } => {
                for (_, name) in self.catalog.image_packs(image_id)? {
                    let Some(ctime) = self.packs.ctime_ns(&name) else {
                        return Ok(None);
                    };
                    newest = newest.max(ctime);
                }
            }
        }
        Ok(Some(newest))
    }

    /// Whether every file holding an image's bytes is still the file that was there when
    /// the stat cache entry was recorded: present, and not written since (a later ctime).
    /// A stat per pack keeps the unchanged-file path fast; `verify` reads the bytes.
    fn image_untouched_since(
        &self,
        image_id: i64,
        chunks_ctime_ns: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .newest_image_file_ctime(image_id)?
            .is_some_and(|ctime| ctime <= chunks_ctime_ns))
    }

    /// `progress`, and with it, for a store holding the writer lock, a touch of the lock
    /// file: processes waiting for the store see that this one is working, not stuck
    /// (see [`lock`]). Called for every segment stored or read back.
    fn working<'a>(&self, progress: Progress<'a>) -> impl Fn(u64) + Sync + use<'a> {
        let toucher = self.writer.as_ref().and_then(lock::Held::toucher);
        move |done: u64| {
            if let Some(file) = &toucher {
                let _ = file.set_modified(SystemTime::now());
            }
            progress(done);
        }
    }

    /// The loss mark a snapshot for `request` records (see [`AfterLoss`]).
    fn after_loss_of(
        &self,
        request: &SnapshotRequest<'_>,
        worktree: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(match request.after_loss {
            AfterLoss::Of(id) => Some(id),
            AfterLoss::Accepted => None,
            AfterLoss::AsBefore => self
                .catalog
                .latest(worktree, request.path)?
                .and_then(|latest| latest.after_loss_of),
        })
    }

    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Snapshot one live database: reuse the last image if the stat cache says the file is
    /// unchanged (without opening it), else copy it consistently, check and census the
    /// copy while cutting it into chunks, and record everything in one transaction.
    pub(crate) fn snapshot(
        &mut self,
        request: &SnapshotRequest<'_>,
        progress: Progress<'_>,
    ) -> Result<SnapshotOutcome, StoreError> {
        self.writable()?;
        let working = self.working(progress);
        let progress: Progress<'_> = &working;
        let live = request.worktree.join(request.path);
        let worktree = request.worktree.to_string_lossy();
        let started = clock::now();
        let before = stat_signature(&live, request.kind).map_err(|e| {
            StoreError::Db(DbError::Io {
                path: live.clone(),
                source: e,
            })
        })?;
        let after_loss_of = self.after_loss_of(request, &worktree)?;
        if let Some(hit) = self
            .catalog
            .stat_cache_hit(&worktree, request.path, &before.text)?
            && let Some(chunks_ctime_ns) = hit.chunks_ctime_ns
            && let Some(previous) = self.catalog.snapshot(hit.snapshot_id)?
            && self.image_untouched_since(previous.image_id, chunks_ctime_ns)?
        {
            let latest = self.catalog.latest(&worktree, request.path)?;
            if let Some(latest) =
                latest.filter(|l| same_state(l, &previous) && l.after_loss_of == after_loss_of)
            {
                self.catalog.insert_ref(
                    &request.reference(&worktree, latest.id, started, false),
                    Some((&before.text, Some(chunks_ctime_ns))),
                )?;
                return Ok(SnapshotOutcome {
                    id: latest.id,
                    census: latest.census,
                    size: latest.size,
                    new_bytes: 0,
                    reused: true,
                    unchanged_since: Some(latest.created_at),
                    consistency: latest.consistency,
                    completeness: latest.completeness,
                    warning: None,
                });
            }
            let id = self.catalog.insert_snapshot(
                &NewSnapshot {
                    operation_id: request.operation_id,
                    image_id: previous.image_id,
                    worktree: &worktree,
                    path: request.path,
                    kind: request.kind,
                    created_at: started,
                    consistency: &previous.consistency,
                    completeness: &previous.completeness,
                    git_state: request.git_state,
                    census: &previous.census,
                    reused: true,
                    message: request.message,
                    after_loss_of,
                },
                None,
                Some((&before.text, Some(chunks_ctime_ns))),
            )?;
            return Ok(SnapshotOutcome {
                id,
                census: previous.census,
                size: previous.size,
                new_bytes: 0,
                reused: true,
                unchanged_since: None,
                consistency: previous.consistency,
                completeness: previous.completeness,
                warning: None,
            });
        }

        if request.kind == DbKind::Sqlite
            && let Some(outcome) =
                self.snapshot_via_stream(request, &live, started, &before, progress)?
        {
            return Ok(outcome);
        }
        let image_path = temp_path(&self.tmp, ".img");
        // Created private here, before SQLite or DuckDB write into it (they would create
        // it 0644, or wider under `umask 000`); an existing empty file is a fine target.
        drop(create_private(&image_path).map_err(write_err(&self.root, &image_path))?);
        let result =
            self.snapshot_via_copy(request, &live, &image_path, started, &before, progress);
        db::remove_image_files(&image_path);
        result
    }
}

/// Whether `latest` (a path's newest snapshot) holds exactly the state of `previous` (the
/// snapshot the stat cache vouches for), complete: a partial copy lacks commits, so
/// it is never the same state as another snapshot, whatever its bytes.
fn same_state(latest: &SnapshotInfo, previous: &SnapshotInfo) -> bool {
    latest.image_id == previous.image_id
        && latest.kind == previous.kind
        && latest.census == previous.census
        && !latest.completeness.partial
        && !previous.completeness.partial
}
