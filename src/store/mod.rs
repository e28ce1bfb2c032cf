//! The snapshot store under `<git common dir>/dbguard/`: open and lock it, turn a live
//! database into a deduplicated snapshot, read images back, verify and prune.

pub(crate) mod blocks;
pub(crate) mod catalog;
pub(crate) mod chunks;
pub(crate) mod files;
mod image;
mod ingest;
mod packs;
mod reclaim;
mod records;
pub(crate) mod replica;
mod take;
mod verify;
pub(crate) use records::parse_snapshot_id;
pub(crate) use verify::VerifyReport;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::clock;
use crate::db::{self, Census, Completeness, DbError, DbKind};
use blocks::BlockIndex;
pub(crate) use catalog::{Catalog, CatalogError, NewRef, NewSnapshot, SnapshotInfo, SnapshotRef};
use catalog::{ImageLayout, NewImage};
use chunks::{ChunkError, Chunks};
use files::{create_private, create_private_dir, is_disk_full, is_read_only, temp_path};
use packs::Packs;

/// How long a dbguard process waits for another one to release the store.
const LOCK_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("cannot use the snapshot store at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another dbguard process has held the snapshot store at {path} for {} s", LOCK_WAIT.as_secs())]
    Locked { path: PathBuf },
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
    pub(crate) consistency: String,
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
    /// Exclusive for writers; shared (when the lock file can be read) for a read-only
    /// open, so that no prune deletes chunks while they are read.
    _lock: Option<File>,
    read_only: bool,
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
    /// Open (creating if needed) the store at `root` for writing, waiting for any other
    /// dbguard process to finish with it, and clear debris a crash left in `tmp/`.
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
        let lock_path = root.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(write_err(root, &lock_path))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Locked {
                        path: root.to_path_buf(),
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
            }
        }
        // We hold the lock, so nobody else is staging: anything in tmp/ is debris.
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        let catalog = Catalog::open(&root.join("catalog.db"))?;
        Ok(Store {
            root: root.to_path_buf(),
            chunks: Chunks::new(root.join("objects")),
            packs: Packs::new(root.join("packs"), tmp.clone()),
            index: std::cell::OnceCell::new(),
            tmp,
            catalog,
            _lock: Some(lock),
            read_only: false,
            _scratch: None,
        })
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
    pub(crate) fn open_existing(root: &Path) -> Result<Option<Store>, StoreError> {
        if !Store::exists(root)? {
            return Ok(None);
        }
        match Store::open(root) {
            Err(StoreError::ReadOnly { .. }) => Store::open_read_only(root).map(Some),
            other => other.map(Some),
        }
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
        // A shared lock keeps a writer (when there can be one: a store that is only not
        // ours) from pruning chunks under us; a lock we cannot take on a read-only mount
        // means nobody can write there either.
        let lock = File::open(root.join("lock")).ok().and_then(|lock| {
            let deadline = Instant::now() + LOCK_WAIT;
            loop {
                match lock.try_lock_shared() {
                    Ok(()) => return Some(Ok(lock)),
                    Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(fs::TryLockError::WouldBlock) => return Some(Err(())),
                    Err(fs::TryLockError::Error(_)) => return None,
                }
            }
        });
        let lock = match lock {
            Some(Ok(lock)) => Some(lock),
            Some(Err(())) => {
                return Err(StoreError::Locked {
                    path: root.to_path_buf(),
                });
            }
            None => None,
        };
        let catalog = Catalog::open_read_only(&root.join("catalog.db"), scratch.path())?;
        Ok(Store {
            root: root.to_path_buf(),
            chunks: Chunks::new(root.join("objects")),
            packs: Packs::new(root.join("packs"), scratch.path().to_path_buf()),
            index: std::cell::OnceCell::new(),
            tmp: scratch.path().to_path_buf(),
            catalog,
            _lock: lock,
            read_only: true,
            _scratch: Some(scratch),
        })
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.root.clone(),
            });
        }
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
        let live = request.worktree.join(request.path);
        let worktree = request.worktree.to_string_lossy();
        let started = clock::now();
        let before = stat_signature(&live, request.kind).map_err(|e| {
            StoreError::Db(DbError::Io {
                path: live.clone(),
                source: e,
            })
        })?;
        if let Some(hit) = self
            .catalog
            .stat_cache_hit(&worktree, request.path, &before.text)?
            && let Some(chunks_ctime_ns) = hit.chunks_ctime_ns
            && let Some(previous) = self.catalog.snapshot(hit.snapshot_id)?
            && self.image_untouched_since(previous.image_id, chunks_ctime_ns)?
        {
            let latest = self.catalog.latest(&worktree, request.path)?;
            if let Some(latest) = latest.filter(|l| same_state(l, &previous)) {
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
                    git_state: request.git_state,
                    census: &previous.census,
                    reused: true,
                    message: request.message,
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
        && !Completeness::of_label(&latest.consistency).partial
        && !Completeness::of_label(&previous.consistency).partial
}
