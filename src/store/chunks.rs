//! Content-addressed chunks: fixed 1 MiB pieces of an image, named by the sha256 of their
//! plain bytes, zstd-compressed, written atomically and durably.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::db::hex;

/// 1 MiB: a multiple of every SQLite page size and of DuckDB's block size, so a changed
/// page changes exactly one chunk.
pub(crate) const CHUNK_SIZE: usize = 1 << 20;

/// zstd level 1: SQLite pages compress well already at the fastest level, and snapshots
/// sit on the path of every guarded git command.
const ZSTD_LEVEL: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ChunkError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("chunk {hash} is missing from the store ({path})")]
    Missing { hash: String, path: PathBuf },
    #[error("chunk {hash} is damaged ({path}): {detail}")]
    Damaged {
        hash: String,
        path: PathBuf,
        detail: String,
    },
}

/// The sha256 of `bytes` as lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A compressed chunk written to `tmp/`, not yet durable nor visible.
pub(crate) struct Staged {
    temp: PathBuf,
    final_path: PathBuf,
    pub(crate) size: u64,
}

/// The `objects/` directory of a store.
pub(crate) struct Chunks {
    objects: PathBuf,
    tmp: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique file name in `dir` for this process.
pub(crate) fn temp_path(dir: &Path, suffix: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{}-{n}{suffix}", std::process::id()))
}

/// Create a file readable only by its owner.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Create a directory (and missing parents) readable only by its owner. The mode is given
/// to mkdir itself, so it is never wider, even for a moment or under `umask 000`; an
/// existing directory is narrowed only when it is not private already (chmod fails on a
/// read-only mount even when nothing would change).
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o777 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Whether an I/O error means the disk (or the user's quota) is full.
pub(crate) fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT)
    ) || matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Whether an I/O error means the place cannot be written at all (read-only mount, or
/// not ours to write).
pub(crate) fn is_read_only(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
    ) || matches!(
        error.kind(),
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
    )
}

/// What an existing chunk file holds compared with the plain bytes it should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkState {
    Intact,
    Missing,
    Damaged,
}

/// fsync a directory so a rename inside it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Chunks {
    pub(crate) fn new(objects: PathBuf, tmp: PathBuf) -> Chunks {
        Chunks { objects, tmp }
    }

    pub(crate) fn object_path(&self, hash: &str) -> PathBuf {
        let (prefix, _) = hash.split_at(2.min(hash.len()));
        self.objects.join(prefix).join(hash)
    }

    /// Compare the stored chunk `hash` with `plain`, the bytes it must decompress to.
    /// Dedup relies on this: a chunk is reused only when it really holds these bytes, so
    /// a damaged file is never referenced by a new snapshot. Decompressing and comparing
    /// costs less than hashing the result again.
    pub(crate) fn check(&self, hash: &str, plain: &[u8]) -> ChunkState {
        let path = self.object_path(hash);
        let mut compressed = Vec::new();
        match File::open(&path).and_then(|mut f| f.read_to_end(&mut compressed)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return ChunkState::Missing,
            Err(_) => return ChunkState::Damaged,
        }
        match zstd::bulk::decompress(&compressed, CHUNK_SIZE) {
            Ok(stored) if stored == plain => ChunkState::Intact,
            _ => ChunkState::Damaged,
        }
    }

    /// The chunk file's ctime in ns, if it exists: a later ctime than the one recorded
    /// when it was last known intact means something wrote to it since.
    pub(crate) fn ctime_ns(&self, hash: &str) -> Option<i128> {
        let meta = fs::symlink_metadata(self.object_path(hash)).ok()?;
        meta.is_file()
            .then(|| meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128)
    }

    /// Compress `plain` into a temp file for `hash`, unless the chunk already exists.
    /// The chunk becomes visible only through [`Chunks::publish`], after an fsync.
    pub(crate) fn stage(&self, hash: &str, plain: &[u8]) -> Result<Option<Staged>, ChunkError> {
        if self.object_path(hash).is_file() {
            return Ok(None);
        }
        self.stage_replacement(hash, plain).map(Some)
    }

    /// Compress `plain` into a temp file for `hash` whether or not a chunk file exists:
    /// publishing it replaces a damaged file atomically with the right bytes.
    pub(crate) fn stage_replacement(&self, hash: &str, plain: &[u8]) -> Result<Staged, ChunkError> {
        let final_path = self.object_path(hash);
        let write_err = |source| ChunkError::Write {
            path: final_path.clone(),
            source,
        };
        let compressed = zstd::bulk::compress(plain, ZSTD_LEVEL).map_err(write_err)?;
        let temp = temp_path(&self.tmp, ".chunk");
        let written = create_private(&temp).and_then(|mut file| file.write_all(&compressed));
        if let Err(source) = written {
            let _ = fs::remove_file(&temp);
            return Err(write_err(source));
        }
        Ok(Staged {
            temp,
            final_path,
            size: compressed.len() as u64,
        })
    }

    /// fsync a staged chunk and rename it into place. Returns the directory that gained an
    /// entry (to fsync once per snapshot); the objects dir too when a prefix dir is new.
    pub(crate) fn publish(
        &self,
        staged: &Staged,
        dirty_dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<(), ChunkError> {
        let write_err = |source| ChunkError::Write {
            path: staged.final_path.clone(),
            source,
        };
        let dir = staged
            .final_path
            .parent()
            .unwrap_or(&self.objects)
            .to_path_buf();
        let result = (|| {
            File::open(&staged.temp)?.sync_all()?;
            if !dir.is_dir() {
                create_private_dir(&dir)?;
                dirty_dirs.insert(self.objects.clone());
            }
            fs::rename(&staged.temp, &staged.final_path)
        })();
        if let Err(source) = result {
            let _ = fs::remove_file(&staged.temp);
            return Err(write_err(source));
        }
        dirty_dirs.insert(dir);
        Ok(())
    }

    /// Stage and publish in one go (tests; the store pipelines the two).
    #[cfg(test)]
    pub(crate) fn put(
        &self,
        hash: &str,
        plain: &[u8],
        dirty_dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<u64, ChunkError> {
        match self.stage(hash, plain)? {
            None => Ok(0),
            Some(staged) => {
                self.publish(&staged, dirty_dirs)?;
                Ok(staged.size)
            }
        }
    }

    /// Read a chunk back, decompress it and check it against its name.
    pub(crate) fn get(&self, hash: &str) -> Result<Vec<u8>, ChunkError> {
        let path = self.object_path(hash);
        let mut compressed = Vec::new();
        match File::open(&path).and_then(|mut f| f.read_to_end(&mut compressed)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ChunkError::Missing {
                    hash: hash.to_string(),
                    path,
                });
            }
            Err(e) => {
                return Err(ChunkError::Damaged {
                    hash: hash.to_string(),
                    path,
                    detail: e.to_string(),
                });
            }
        }
        let damaged = |detail: String| ChunkError::Damaged {
            hash: hash.to_string(),
            path: path.clone(),
            detail,
        };
        let plain = zstd::bulk::decompress(&compressed, CHUNK_SIZE)
            .map_err(|e| damaged(format!("does not decompress: {e}")))?;
        if sha256_hex(&plain) != hash {
            return Err(damaged("content does not match its hash".into()));
        }
        Ok(plain)
    }

    /// Every chunk hash present on disk (for pruning and orphan reports).
    pub(crate) fn list(&self) -> io::Result<Vec<String>> {
        let mut hashes = Vec::new();
        let Ok(prefixes) = fs::read_dir(&self.objects) else {
            return Ok(hashes);
        };
        for prefix in prefixes {
            let prefix = prefix?;
            if !prefix.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(prefix.path())? {
                let name = entry?.file_name();
                if let Some(name) = name.to_str()
                    && name.len() == 64
                    && name.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    hashes.push(name.to_string());
                }
            }
        }
        Ok(hashes)
    }

    /// Compressed size on disk of one chunk.
    pub(crate) fn stored_size(&self, hash: &str) -> u64 {
        fs::metadata(self.object_path(hash))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    pub(crate) fn remove(&self, hash: &str) -> io::Result<()> {
        fs::remove_file(self.object_path(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_detect_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (objects, tmp) = (dir.path().join("objects"), dir.path().join("tmp"));
        fs::create_dir_all(&tmp).unwrap();
        let chunks = Chunks::new(objects, tmp);
        let data = vec![7u8; 5000];
        let hash = sha256_hex(&data);
        let mut dirty = BTreeSet::new();
        assert!(chunks.put(&hash, &data, &mut dirty).unwrap() > 0);
        assert_eq!(chunks.put(&hash, &data, &mut dirty).unwrap(), 0);
        assert_eq!(chunks.get(&hash).unwrap(), data);
        assert_eq!(chunks.list().unwrap(), vec![hash.clone()]);
        let mode = fs::metadata(chunks.object_path(&hash))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(chunks.check(&hash, &data), ChunkState::Intact);
        assert_eq!(chunks.check(&hash, &[7u8; 4999]), ChunkState::Damaged);
        fs::write(chunks.object_path(&hash), b"garbage").unwrap();
        assert!(matches!(chunks.get(&hash), Err(ChunkError::Damaged { .. })));
        assert_eq!(chunks.check(&hash, &data), ChunkState::Damaged);
        // A replacement is written atomically over the damaged file.
        let staged = chunks.stage_replacement(&hash, &data).unwrap();
        chunks.publish(&staged, &mut dirty).unwrap();
        assert_eq!(chunks.get(&hash).unwrap(), data);
        let missing = "0".repeat(64);
        assert!(matches!(
            chunks.get(&missing),
            Err(ChunkError::Missing { .. })
        ));
        assert_eq!(chunks.check(&missing, &data), ChunkState::Missing);
    }
}
