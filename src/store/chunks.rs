//! Legacy chunks (stores written before packs): fixed 1 MiB pieces of an image, one file
//! each under `objects/`, named by the sha256 of their plain bytes, zstd-compressed. New
//! snapshots never write them; they are read back, verified and pruned until no image
//! uses them.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::files::sha256_hex;
use crate::db::hex;

/// 1 MiB: the size of every legacy chunk but an image's last.
pub(crate) const CHUNK_SIZE: usize = 1 << 20;

/// Stored bytes that cannot be read back as they were written: a legacy chunk file or a
/// frame of a pack file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChunkError {
    #[error("chunk {hash} is missing from the store ({path})")]
    Missing { hash: String, path: PathBuf },
    #[error("chunk {hash} is damaged ({path}): {detail}")]
    Damaged {
        hash: String,
        path: PathBuf,
        detail: String,
    },
}

/// sha256 over the ordered chunk hashes and the image size: a legacy image's digest.
pub(crate) fn chunk_list_digest(chunks: &[String], size: u64) -> String {
    let mut hasher = Sha256::new();
    for chunk in chunks {
        hasher.update(chunk.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(size.to_string().as_bytes());
    hex(&hasher.finalize())
}

/// The `objects/` directory of a store.
pub(crate) struct Chunks {
    objects: PathBuf,
}

impl Chunks {
    pub(crate) fn new(objects: PathBuf) -> Chunks {
        Chunks { objects }
    }

    pub(crate) fn object_path(&self, hash: &str) -> PathBuf {
        let (prefix, _) = hash.split_at(2.min(hash.len()));
        self.objects.join(prefix).join(hash)
    }

    /// The chunk file's ctime in ns, if it exists: a later ctime than the one recorded
    /// when it was last known intact means something wrote to it since.
    pub(crate) fn ctime_ns(&self, hash: &str) -> Option<i128> {
        let meta = fs::symlink_metadata(self.object_path(hash)).ok()?;
        meta.is_file()
            .then(|| meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128)
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
    fn get_detects_damage_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = Chunks::new(dir.path().join("objects"));
        let data = vec![7u8; 5000];
        let hash = sha256_hex(&data);
        let path = chunks.object_path(&hash);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, zstd::bulk::compress(&data, 1).unwrap()).unwrap();
        assert_eq!(chunks.get(&hash).unwrap(), data);
        assert_eq!(chunks.list().unwrap(), vec![hash.clone()]);
        fs::write(&path, b"garbage").unwrap();
        assert!(matches!(chunks.get(&hash), Err(ChunkError::Damaged { .. })));
        let missing = "0".repeat(64);
        assert!(matches!(
            chunks.get(&missing),
            Err(ChunkError::Missing { .. })
        ));
    }
}
