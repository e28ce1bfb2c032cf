//! The snapshot store under `<git common dir>/dbguard/`: open and lock it, turn a live
//! database into a deduplicated snapshot, read images back, verify and prune.

pub mod catalog;
pub mod chunks;

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::clock;
use crate::db::{self, Census, DbError, DbKind, hex};
pub use catalog::{Catalog, CatalogError, NewSnapshot, OperationInfo, SnapshotInfo};
use chunks::{CHUNK_SIZE, ChunkError, Chunks, create_private_dir, sha256_hex, sync_dir, temp_path};

/// How long a dbguard process waits for another one to release the store.
const LOCK_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the snapshot store at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another dbguard process has held the snapshot store at {path} for {} s", LOCK_WAIT.as_secs())]
    Locked { path: PathBuf },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Chunk(#[from] ChunkError),
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

/// What one snapshot of one database produced.
#[derive(Debug, Clone)]
pub struct SnapshotOutcome {
    pub id: i64,
    pub census: Census,
    pub size: u64,
    /// Compressed bytes this snapshot added to the store.
    pub new_bytes: u64,
    pub new_chunks: usize,
    /// True when the stat cache showed the file unchanged and it was not opened at all.
    pub reused: bool,
    pub consistency: String,
    pub warning: Option<String>,
}

/// Where and why a database is snapshotted.
pub struct SnapshotRequest<'a> {
    pub worktree: &'a Path,
    /// Worktree-relative path with `/` separators.
    pub path: &'a str,
    pub kind: DbKind,
    pub git_state: &'a str,
    pub operation_id: i64,
    pub message: Option<&'a str>,
}

pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    pub catalog: Catalog,
    pub chunks: Chunks,
    _lock: File,
}

/// File identity and timestamps of a database and its WAL: unchanged signature means
/// unchanged content, provided the signature was not taken within the timestamp
/// granularity of a write ("racy" in git's terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatSignature {
    pub text: String,
    /// Latest mtime/ctime among the files, in ns since the epoch.
    pub newest_ns: i128,
    /// The filesystem's timestamp resolution as far as we can tell.
    pub granularity_ns: i128,
}

pub fn stat_signature(path: &Path, kind: DbKind) -> io::Result<StatSignature> {
    let mut text = String::new();
    let mut newest_ns = 0i128;
    let mut whole_seconds = true;
    let mut wal = path.as_os_str().to_owned();
    wal.push(kind.wal_suffix());
    for (label, file) in [("db", path.to_path_buf()), ("wal", PathBuf::from(wal))] {
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
pub fn image_digest(chunks: &[String], size: u64) -> String {
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
}

/// Progress callback: bytes done so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

impl Store {
    /// Open (creating if needed) the store at `root` for writing, waiting for any other
    /// dbguard process to finish with it, and clear debris a crash left in `tmp/`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let tmp = root.join("tmp");
        for dir in [root.to_path_buf(), root.join("objects"), tmp.clone()] {
            create_private_dir(&dir).map_err(io_err(&dir))?;
        }
        let lock_path = root.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
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
        let _ = fs::set_permissions(
            root.join("catalog.db"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        );
        Ok(Store {
            root: root.to_path_buf(),
            chunks: Chunks::new(root.join("objects"), tmp.clone()),
            tmp,
            catalog,
            _lock: lock,
        })
    }

    /// Open the store only if it exists (for read-only commands); `None` when there is none.
    pub fn open_existing(root: &Path) -> Result<Option<Store>, StoreError> {
        if !root.join("catalog.db").is_file() {
            return Ok(None);
        }
        Store::open(root).map(Some)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Snapshot one live database: reuse the last image if the stat cache says the file is
    /// unchanged (without opening it), else copy it consistently, check and census the
    /// copy while cutting it into chunks, and record everything in one transaction.
    pub fn snapshot(
        &mut self,
        request: &SnapshotRequest<'_>,
        progress: Progress<'_>,
    ) -> Result<SnapshotOutcome, StoreError> {
        let live = request.worktree.join(request.path);
        let worktree = request.worktree.to_string_lossy();
        let started = clock::now();
        let before = stat_signature(&live, request.kind).map_err(|e| {
            StoreError::Db(DbError::Io {
                path: live.clone(),
                source: e,
            })
        })?;
        if let Some(previous) =
            self.catalog
                .stat_cache_hit(&worktree, request.path, &before.text)?
            && let Some(previous) = self.catalog.snapshot(previous)?
        {
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
                Some(&before.text),
            )?;
            return Ok(SnapshotOutcome {
                id,
                census: previous.census,
                size: previous.size,
                new_bytes: 0,
                new_chunks: 0,
                reused: true,
                consistency: previous.consistency,
                warning: None,
            });
        }

        let image_path = temp_path(&self.tmp, ".img");
        let result =
            self.snapshot_via_copy(request, &live, &image_path, started, &before, progress);
        let _ = fs::remove_file(&image_path);
        for suffix in ["-wal", "-shm", "-journal", ".wal"] {
            let mut sidecar = image_path.as_os_str().to_owned();
            sidecar.push(suffix);
            let _ = fs::remove_file(PathBuf::from(sidecar));
        }
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
        let timing = std::env::var_os("DBGUARD_TIMING").is_some();
        let t0 = Instant::now();
        let copied = db::copy(request.kind, live, image_path)?;
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
        let census = census.map_err(|e| relabel(e, live))?;
        let ingested = ingested?;
        // Trust the stat cache next time only if the file did not change while we copied
        // it and its last write is safely older than the copy.
        let after = stat_signature(live, request.kind).ok();
        let trusted = after.as_ref() == Some(before)
            && before.newest_ns + before.granularity_ns < now_ns(started);
        let digest = image_digest(&ingested.chunks, ingested.size);
        let consistency = copied.consistency.label();
        let worktree = request.worktree.to_string_lossy();
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
            trusted.then_some(before.text.as_str()),
        )?;
        Ok(SnapshotOutcome {
            id,
            census,
            size: ingested.size,
            new_bytes: ingested.new_bytes,
            new_chunks: ingested.new_chunks,
            reused: false,
            consistency,
            warning: copied.warning,
        })
    }

    /// Write the image of a snapshot to `dest` (created; must not exist), checking every
    /// chunk's hash and the image digest. With `durable`, the file is fsynced before
    /// returning (a restore renames it over the user's file); a scratch copy that is read
    /// and deleted (export) skips that, which saves writing the whole image to disk.
    pub fn materialize(
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
            let plain = self.chunks.get(hash)?;
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

    /// Check that every chunk of a snapshot is present and intact, without writing it.
    pub fn check_snapshot(&self, snapshot: &SnapshotInfo) -> Result<(), StoreError> {
        let hashes = self.catalog.image_chunks(snapshot.image_id)?;
        if image_digest(&hashes, snapshot.size) != snapshot.image_digest {
            return Err(StoreError::DigestMismatch { id: snapshot.id });
        }
        for hash in &hashes {
            self.chunks.get(hash)?;
        }
        Ok(())
    }

    /// Re-read every chunk and check every image. Returns the problems found.
    pub fn verify(&self, progress: Progress<'_>) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        report.problems.extend(
            self.catalog
                .integrity_problems()?
                .into_iter()
                .map(|p| format!("catalog: {p}")),
        );
        let mut good: HashSet<String> = HashSet::new();
        let mut bad: HashSet<String> = HashSet::new();
        for (image_id, digest, size) in self.catalog.images()? {
            report.images += 1;
            let hashes = self.catalog.image_chunks(image_id)?;
            if image_digest(&hashes, size) != digest {
                report.problems.push(format!(
                    "image {digest:.12}: chunk list does not match its digest"
                ));
            }
            for hash in &hashes {
                if bad.contains(hash) {
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
                            report.problems.push(e.to_string());
                            bad.insert(hash.clone());
                        }
                    }
                }
            }
            let expected_chunks = size.div_ceil(CHUNK_SIZE as u64);
            if hashes.len() as u64 != expected_chunks {
                report.problems.push(format!(
                    "image {digest:.12}: {} chunks recorded for {size} bytes",
                    hashes.len()
                ));
            }
        }
        report.chunks = good.len() + bad.len();
        let referenced = self.catalog.referenced_chunks()?;
        let on_disk = self.chunks.list().map_err(io_err(&self.root))?;
        report.unreferenced = on_disk.iter().filter(|h| !referenced.contains(*h)).count();
        Ok(report)
    }

    /// Delete chunks no image refers to. Returns (chunks removed, bytes freed).
    pub fn remove_unreferenced_chunks(&self) -> Result<(usize, u64), StoreError> {
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
pub struct VerifyReport {
    pub images: usize,
    pub chunks: usize,
    pub bytes: u64,
    pub unreferenced: usize,
    pub problems: Vec<String>,
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
    };
    // A few chunks in flight at most: memory stays bounded whatever the database size.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<(String, Vec<u8>)>(4);
    let (new_bytes, new_chunks) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        let publisher = scope.spawn(|| {
            let mut dirty_dirs = BTreeSet::new();
            for (hash, plain) in receiver {
                if let Some(staged) = chunks.stage(&hash, &plain)? {
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
                // Compression and the fsync happen on the publisher thread.
                if !chunks.contains(&hash) && sender.send((hash.clone(), plain.to_vec())).is_err() {
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
