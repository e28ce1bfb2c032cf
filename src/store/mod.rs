//! The snapshot store under `<git common dir>/dbguard/`: open and lock it, turn a live
//! database into a deduplicated snapshot, read images back, verify and prune.

pub(crate) mod catalog;
pub(crate) mod chunks;
mod records;
pub(crate) use records::parse_snapshot_id;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::clock;
use crate::db::{self, Census, Completeness, DbError, DbKind, hex};
pub(crate) use catalog::{Catalog, CatalogError, NewRef, NewSnapshot, SnapshotInfo, SnapshotRef};
use chunks::{
    CHUNK_SIZE, ChunkError, ChunkState, Chunks, create_private, create_private_dir, is_disk_full,
    is_read_only, sha256_hex, sync_dir, temp_path,
};

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
        match error {
            // A failed write is about the store's disk, never about a damaged snapshot.
            ChunkError::Write { path, source } => {
                let objects = path.parent().and_then(Path::parent).unwrap_or(&path);
                let root = objects.parent().unwrap_or(objects).to_path_buf();
                write_err(&root, &path)(source)
            }
            other => StoreError::Chunk(other),
        }
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
    pub(crate) chunks: Chunks,
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

/// sha256 over the ordered chunk hashes and the image size: identifies an image without a
/// second full pass over its bytes.
pub(crate) fn image_digest(chunks: &[String], size: u64) -> String {
    let mut hasher = Sha256::new();
    for chunk in chunks {
        hasher.update(chunk.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(size.to_string().as_bytes());
    hex(&hasher.finalize())
}

/// Result of cutting an image into chunks.
struct Ingested {
    chunks: Vec<String>,
    size: u64,
    new_bytes: u64,
    new_chunks: usize,
    repaired_chunks: usize,
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
        for dir in [root.to_path_buf(), root.join("objects"), tmp.clone()] {
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
            chunks: Chunks::new(root.join("objects"), tmp.clone()),
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
            chunks: Chunks::new(root.join("objects"), scratch.path().to_path_buf()),
            tmp: scratch.path().to_path_buf(),
            catalog,
            _lock: lock,
            read_only: true,
            _scratch: Some(scratch),
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.root.clone(),
            });
        }
        Ok(())
    }

    /// The newest ctime among an image's chunk files, or `None` when one is missing.
    fn newest_chunk_ctime(&self, hashes: &[String]) -> Option<i64> {
        let mut newest = i64::MIN;
        for hash in hashes {
            newest = newest.max(i64::try_from(self.chunks.ctime_ns(hash)?).ok()?);
        }
        Some(newest)
    }

    /// Whether every chunk of an image is still the file that was there when the stat
    /// cache entry was recorded: present, and not written since (a later ctime). One stat
    /// per MiB keeps the unchanged-file path fast; `verify` reads the bytes.
    fn image_untouched_since(
        &self,
        image_id: i64,
        chunks_ctime_ns: i64,
    ) -> Result<bool, StoreError> {
        let hashes = self.catalog.image_chunks(image_id)?;
        Ok(hashes.iter().all(|hash| {
            self.chunks
                .ctime_ns(hash)
                .is_some_and(|ctime| ctime <= chunks_ctime_ns as i128)
        }))
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

        let image_path = temp_path(&self.tmp, ".img");
        // Created private here, before SQLite or DuckDB write into it (they would create
        // it 0644, or wider under `umask 000`); an existing empty file is a fine target.
        drop(create_private(&image_path).map_err(write_err(&self.root, &image_path))?);
        let result =
            self.snapshot_via_copy(request, &live, &image_path, started, &before, progress);
        db::remove_image_files(&image_path);
        result
    }

    fn snapshot_via_copy(
        &mut self,
        request: &SnapshotRequest<'_>,
        live: &Path,
        image_path: &Path,
        started: DateTime<Utc>,
        before: &StatSignature,
        progress: Progress<'_>,
    ) -> Result<SnapshotOutcome, StoreError> {
        let timing = crate::env::timing();
        let t0 = Instant::now();
        let copied = db::copy(request.kind, live, image_path)
            .map_err(|e| self.staging_error(e, image_path))?;
        if timing {
            eprintln!("timing: copy {:?}", t0.elapsed());
        }
        // Integrity check + census on one core while the other hashes and compresses.
        let chunks = &self.chunks;
        let (census, ingested) = std::thread::scope(|scope| {
            let census = scope.spawn(|| {
                let t = Instant::now();
                let result = db::check_and_census(request.kind, image_path);
                if timing {
                    eprintln!("timing: check+census {:?}", t.elapsed());
                }
                result
            });
            let t = Instant::now();
            let ingested = ingest(chunks, image_path, progress);
            if timing {
                eprintln!("timing: ingest {:?}", t.elapsed());
            }
            let census = census.join().unwrap_or_else(|_| {
                Err(DbError::Integrity {
                    path: image_path.to_path_buf(),
                    detail: "the integrity check crashed".into(),
                })
            });
            (census, ingested)
        });
        let census = census.map_err(|e| match self.staging_error(e, image_path) {
            StoreError::Db(e) => StoreError::Db(relabel(e, live)),
            other => other,
        })?;
        let ingested = ingested?;
        // Trust the stat cache next time only if the file did not change while we copied
        // it and its last write is safely older than the copy.
        let after = stat_signature(live, request.kind).ok();
        let trusted = after.as_ref() == Some(before)
            && before.newest_ns + before.granularity_ns < now_ns(started);
        let digest = image_digest(&ingested.chunks, ingested.size);
        let chunks_ctime_ns = if trusted {
            self.newest_chunk_ctime(&ingested.chunks)
        } else {
            None
        };
        let consistency = copied.consistency.label();
        let worktree = request.worktree.to_string_lossy();
        let stat_cache = chunks_ctime_ns.map(|ctime| (before.text.as_str(), Some(ctime)));
        let mut warning = copied.warning;
        if ingested.repaired_chunks > 0 {
            let one = ingested.repaired_chunks == 1;
            let repaired = format!(
                "rewrote {} damaged chunk{} in the store from {} (older snapshots that use {} are whole again)",
                ingested.repaired_chunks,
                if one { "" } else { "s" },
                request.path,
                if one { "it" } else { "them" },
            );
            warning = Some(match warning {
                Some(w) => format!("{w}; {repaired}"),
                None => repaired,
            });
        }
        // The same image as the path's latest snapshot, both complete: the operation
        // refers to that snapshot instead of recording an identical one.
        if let Some(latest) = self.catalog.latest(&worktree, request.path)?
            && latest.image_digest == digest
            && latest.kind == request.kind
            && latest.census == census
            && !Completeness::of_label(&latest.consistency).partial
            && !Completeness::of_label(&consistency).partial
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
                git_state: request.git_state,
                census: &census,
                reused: false,
                message: request.message,
            },
            Some((&digest, ingested.size, &ingested.chunks)),
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

    /// Write the image of a snapshot to `dest` (created; must not exist), checking every
    /// chunk's hash and the image digest. With `durable`, the file is fsynced before
    /// returning (a restore renames it over the user's file); a scratch copy that is read
    /// and deleted (export) skips that, which saves writing the whole image to disk.
    pub(crate) fn materialize(
        &self,
        snapshot: &SnapshotInfo,
        dest: &Path,
        durable: bool,
        progress: Progress<'_>,
    ) -> Result<(), StoreError> {
        let hashes = self.catalog.image_chunks(snapshot.image_id)?;
        if image_digest(&hashes, snapshot.size) != snapshot.image_digest {
            return Err(StoreError::DigestMismatch { id: snapshot.id });
        }
        let file = chunks::create_private(dest).map_err(io_err(dest))?;
        let mut out = BufWriter::new(file);
        let mut written = 0u64;
        for hash in &hashes {
            let plain = self.chunks.get(hash).inspect_err(|_| {
                // Found damaged: the next snapshot of this path must read the live file
                // (and so rewrite the chunk) instead of reusing this image.
                if !self.read_only {
                    let _ = self
                        .catalog
                        .forget_stat_cache_of_images(&[snapshot.image_id]);
                }
            })?;
            out.write_all(&plain).map_err(io_err(dest))?;
            written += plain.len() as u64;
            progress(written);
        }
        if written != snapshot.size {
            return Err(StoreError::DigestMismatch { id: snapshot.id });
        }
        let file = out.into_inner().map_err(|e| io_err(dest)(e.into_error()))?;
        if durable {
            file.sync_all().map_err(io_err(dest))?;
        }
        Ok(())
    }

    /// Re-read every chunk and check every image. Returns the problems found, which
    /// snapshots each one breaks and which snapshots remain restorable. On a writable
    /// store, the stat cache stops trusting damaged images, so that the next snapshot
    /// reads the live file and rewrites the damaged chunks from it.
    /// The bytes [`Store::verify`] reads, for a progress display.
    pub(crate) fn verify_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.catalog.distinct_chunk_bytes(CHUNK_SIZE as u64)?)
    }

    pub(crate) fn verify(&self, progress: Progress<'_>) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport {
            read_only: self.read_only,
            ..VerifyReport::default()
        };
        report.problems.extend(
            self.catalog
                .integrity_problems()?
                .into_iter()
                .map(|p| format!("catalog: {p}")),
        );
        let mut good: HashSet<String> = HashSet::new();
        // Damaged or missing chunk -> its problem and the images that use it.
        let mut bad: HashMap<String, (String, Vec<i64>)> = HashMap::new();
        let mut bad_order: Vec<String> = Vec::new();
        // Image problems that are not about one chunk (chunk list, size).
        let mut image_damage: Vec<(String, i64)> = Vec::new();
        for (image_id, digest, size) in self.catalog.images()? {
            report.images += 1;
            let hashes = self.catalog.image_chunks(image_id)?;
            if image_digest(&hashes, size) != digest {
                image_damage.push((
                    format!("image {digest:.12}: chunk list does not match its digest"),
                    image_id,
                ));
            }
            for hash in &hashes {
                if let Some((_, images)) = bad.get_mut(hash) {
                    if images.last() != Some(&image_id) {
                        images.push(image_id);
                    }
                    continue;
                }
                if !good.contains(hash) {
                    match self.chunks.get(hash) {
                        Ok(plain) => {
                            report.bytes += plain.len() as u64;
                            progress(report.bytes);
                            good.insert(hash.clone());
                        }
                        Err(e) => {
                            bad.insert(hash.clone(), (e.to_string(), vec![image_id]));
                            bad_order.push(hash.clone());
                        }
                    }
                }
            }
            let expected_chunks = size.div_ceil(CHUNK_SIZE as u64);
            if hashes.len() as u64 != expected_chunks {
                image_damage.push((
                    format!(
                        "image {digest:.12}: {} chunks recorded for {size} bytes",
                        hashes.len()
                    ),
                    image_id,
                ));
            }
        }
        report.chunks = good.len() + bad.len();
        let snapshots = self.catalog.snapshot_refs()?;
        let ids_of = |images: &[i64]| -> Vec<i64> {
            snapshots
                .iter()
                .filter(|s| images.contains(&s.image_id))
                .map(|s| s.id)
                .collect()
        };
        let mut broken_images: HashSet<i64> = HashSet::new();
        for hash in &bad_order {
            let (problem, images) = &bad[hash];
            broken_images.extend(images);
            report.damage.push(Damage {
                problem: problem.clone(),
                snapshots: ids_of(images),
            });
        }
        for (problem, image_id) in image_damage {
            broken_images.insert(image_id);
            report.damage.push(Damage {
                problem,
                snapshots: ids_of(&[image_id]),
            });
        }
        report
            .problems
            .extend(report.damage.iter().map(|d| d.problem.clone()));
        for snapshot in snapshots {
            if broken_images.contains(&snapshot.image_id) {
                report.broken.push(snapshot);
            } else {
                report.restorable.push(snapshot);
            }
        }
        if !self.read_only && !broken_images.is_empty() {
            let images: Vec<i64> = broken_images.into_iter().collect();
            report.stat_cache_cleared = self.catalog.forget_stat_cache_of_images(&images)?;
        }
        let referenced = self.catalog.referenced_chunks()?;
        let on_disk = self.chunks.list().map_err(io_err(&self.root))?;
        report.unreferenced = on_disk.iter().filter(|h| !referenced.contains(*h)).count();
        Ok(report)
    }

    /// Delete chunks no image refers to. Returns (chunks removed, bytes freed).
    pub(crate) fn remove_unreferenced_chunks(&self) -> Result<(usize, u64), StoreError> {
        self.writable()?;
        let referenced = self.catalog.referenced_chunks()?;
        let mut removed = 0;
        let mut freed = 0;
        for hash in self.chunks.list().map_err(io_err(&self.root))? {
            if !referenced.contains(&hash) {
                freed += self.chunks.stored_size(&hash);
                self.chunks
                    .remove(&hash)
                    .map_err(io_err(&self.chunks.object_path(&hash)))?;
                removed += 1;
            }
        }
        Ok((removed, freed))
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

#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct VerifyReport {
    pub(crate) images: usize,
    pub(crate) chunks: usize,
    pub(crate) bytes: u64,
    pub(crate) unreferenced: usize,
    pub(crate) problems: Vec<String>,
    /// Each damaged or missing chunk, or inconsistent image, with the snapshots it breaks.
    pub(crate) damage: Vec<Damage>,
    /// Snapshots that cannot be restored, oldest first.
    pub(crate) broken: Vec<SnapshotRef>,
    /// Snapshots whose every chunk is intact, oldest first.
    pub(crate) restorable: Vec<SnapshotRef>,
    /// Stat cache entries dropped so that the next snapshot re-reads those files.
    pub(crate) stat_cache_cleared: usize,
    pub(crate) read_only: bool,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct Damage {
    pub(crate) problem: String,
    /// Ids of the snapshots that cannot be restored because of it.
    pub(crate) snapshots: Vec<i64>,
}

/// Cut an image into 1 MiB chunks, hash them and store the new ones. A second thread
/// compresses, fsyncs and publishes new chunks, so that work overlaps with hashing;
/// directories that gained entries are fsynced once at the end, before the catalog commit.
fn ingest(chunks: &Chunks, image: &Path, progress: Progress<'_>) -> Result<Ingested, StoreError> {
    let mut file = File::open(image).map_err(io_err(image))?;
    let mut buffer = vec![0u8; CHUNK_SIZE];
    let mut result = Ingested {
        chunks: Vec::new(),
        size: 0,
        new_bytes: 0,
        new_chunks: 0,
        repaired_chunks: 0,
    };
    // A few chunks in flight at most: memory stays bounded whatever the database size.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<(String, Vec<u8>)>(4);
    let (new_bytes, new_chunks, repaired) =
        (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        let publisher = scope.spawn(|| {
            let mut dirty_dirs = BTreeSet::new();
            let mut seen: HashSet<String> = HashSet::new();
            for (hash, plain) in receiver {
                if !seen.insert(hash.clone()) {
                    continue;
                }
                // Dedup never trusts a file for its name alone: an existing chunk is
                // reused only if it decompresses to exactly these bytes; a damaged one
                // is replaced with them (which repairs every snapshot that uses it).
                let staged = match chunks.check(&hash, &plain) {
                    ChunkState::Intact => continue,
                    ChunkState::Missing => chunks.stage(&hash, &plain)?,
                    ChunkState::Damaged => {
                        repaired.fetch_add(1, Ordering::Relaxed);
                        Some(chunks.stage_replacement(&hash, &plain)?)
                    }
                };
                if let Some(staged) = staged {
                    new_bytes.fetch_add(staged.size, Ordering::Relaxed);
                    new_chunks.fetch_add(1, Ordering::Relaxed);
                    chunks.publish(&staged, &mut dirty_dirs)?;
                }
            }
            for dir in &dirty_dirs {
                sync_dir(dir).map_err(io_err(dir))?;
            }
            Ok::<(), StoreError>(())
        });
        let staging = (|| {
            loop {
                let filled = read_full(&mut file, &mut buffer).map_err(io_err(image))?;
                if filled == 0 {
                    break;
                }
                let plain = &buffer[..filled];
                let hash = sha256_hex(plain);
                // Checking, compression and the fsync happen on the publisher thread.
                if sender.send((hash.clone(), plain.to_vec())).is_err() {
                    // The publisher stopped on an error; it reports it below.
                    break;
                }
                result.chunks.push(hash);
                result.size += filled as u64;
                progress(result.size);
                if filled < CHUNK_SIZE {
                    break;
                }
            }
            Ok::<(), StoreError>(())
        })();
        drop(sender);
        let published = publisher.join().unwrap_or_else(|_| {
            Err(StoreError::Io {
                path: image.to_path_buf(),
                source: io::Error::other("the chunk writer thread crashed"),
            })
        });
        staging.and(published)
    })?;
    result.new_bytes = new_bytes.into_inner();
    result.new_chunks = new_chunks.into_inner() as usize;
    result.repaired_chunks = repaired.into_inner() as usize;
    Ok(result)
}

fn read_full(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
