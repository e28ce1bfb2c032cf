//! Pack files: the bytes of many blocks in a few files. A pack is
//! `packs/<sha256 of the file>.pack`: an 8-byte magic, then frames, each a 12-byte header
//! (magic, compressed length, plain length, little-endian u32s) and zstd-compressed
//! blocks. A pack is written once, into `tmp/`, fsynced and renamed into `packs/`, and
//! never modified: prune writes the blocks it keeps into new packs. What each frame holds
//! is in the catalog (`blocks.rs` has the index).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::blocks::{FRAME_MAX_PLAIN, FrameInfo};
use super::files::{create_private, create_private_dir, sync_dir, temp_path};
use crate::db::hex;

/// A pack is closed once it holds this many bytes: a few files per GiB stored, and each
/// small enough to rewrite quickly when prune reclaims space in it.
pub(crate) const PACK_TARGET_BYTES: u64 = 8 << 20;

const PACK_MAGIC: &[u8; 8] = b"DBGPACK1";
pub(crate) const PACK_HEADER_BYTES: u64 = PACK_MAGIC.len() as u64;
const FRAME_MAGIC: &[u8; 4] = b"DBGF";
pub(crate) const FRAME_HEADER_BYTES: u64 = 12;

/// The most bytes a frame takes in a pack: zstd's bound for [`FRAME_MAX_PLAIN`] bytes
/// that do not compress, with room to spare.
pub(crate) const MAX_STORED_FRAME: u64 = FRAME_MAX_PLAIN as u64 + (64 << 10);

/// The largest pack file dbguard writes: a pack is closed after the frame that takes it
/// past [`PACK_TARGET_BYTES`]. Anything larger from a remote is not one of ours.
pub(crate) const MAX_PACK_BYTES: u64 = PACK_TARGET_BYTES + FRAME_HEADER_BYTES + MAX_STORED_FRAME;

/// The `packs/` directory of a store.
pub(crate) struct Packs {
    dir: PathBuf,
    tmp: PathBuf,
}

/// A pack file that is durable under its final name.
#[derive(Debug, Clone)]
pub(crate) struct FinishedPack {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) ctime_ns: i64,
}

pub(crate) fn ctime_ns(meta: &fs::Metadata) -> i64 {
    meta.ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.ctime_nsec())
}

impl Packs {
    pub(crate) fn new(dir: PathBuf, tmp: PathBuf) -> Packs {
        Packs { dir, tmp }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pack"))
    }

    /// The ctime of a pack file, `None` when it is missing: a later ctime than the one
    /// recorded when the pack was last known intact means something wrote to it.
    pub(crate) fn ctime_ns(&self, name: &str) -> Option<i64> {
        let meta = fs::symlink_metadata(self.path(name)).ok()?;
        meta.is_file().then(|| ctime_ns(&meta))
    }

    /// (name, size) of every pack file on disk.
    pub(crate) fn list(&self) -> io::Result<Vec<(String, u64)>> {
        let mut packs = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(packs),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".pack"))
                && stem.len() == 64
                && stem.bytes().all(|b| b.is_ascii_hexdigit())
            {
                packs.push((stem.to_string(), entry.metadata()?.len()));
            }
        }
        packs.sort();
        Ok(packs)
    }

    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.path(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Move a verified pack file (a fetched one, durable already) into `packs/` under
    /// its name, durably.
    pub(crate) fn adopt(&self, file: &Path, name: &str) -> io::Result<FinishedPack> {
        create_private_dir(&self.dir)?;
        let path = self.path(name);
        fs::rename(file, &path)?;
        sync_dir(&self.dir)?;
        let meta = fs::metadata(&path)?;
        Ok(FinishedPack {
            name: name.to_string(),
            size: meta.len(),
            ctime_ns: ctime_ns(&meta),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn writer(&self) -> io::Result<PackWriter> {
        PackWriter::create(&self.tmp)
    }
}

/// A pack being written in `tmp/`.
pub(crate) struct PackWriter {
    temp: PathBuf,
    file: BufWriter<File>,
    hasher: Sha256,
    len: u64,
}

impl PackWriter {
    fn create(tmp: &Path) -> io::Result<PackWriter> {
        let temp = temp_path(tmp, ".pack");
        let file = create_private(&temp)?;
        let mut writer = PackWriter {
            temp,
            file: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            len: 0,
        };
        writer.write(PACK_MAGIC)?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Append one frame; returns its offset in the pack.
    pub(crate) fn append(&mut self, compressed: &[u8], plain_len: usize) -> io::Result<u64> {
        let offset = self.len;
        let mut header = [0u8; FRAME_HEADER_BYTES as usize];
        header[..4].copy_from_slice(FRAME_MAGIC);
        header[4..8].copy_from_slice(&(compressed.len() as u32).to_le_bytes());
        header[8..].copy_from_slice(&(plain_len as u32).to_le_bytes());
        self.write(&header)?;
        self.write(compressed)?;
        Ok(offset)
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// fsync the pack and rename it into `packs/` under the hash of its bytes (the
    /// directory entry is fsynced too: the catalog may refer to it right after).
    pub(crate) fn finish(self, packs: &Packs) -> io::Result<FinishedPack> {
        let PackWriter {
            temp,
            file,
            hasher,
            len,
        } = self;
        let result = (|| {
            let file = file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            let name = hex(&hasher.finalize());
            create_private_dir(&packs.dir)?;
            let path = packs.path(&name);
            fs::rename(&temp, &path)?;
            sync_dir(&packs.dir)?;
            let meta = fs::metadata(&path)?;
            Ok(FinishedPack {
                name,
                size: len,
                ctime_ns: ctime_ns(&meta),
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Give up on the pack (the snapshot failed): its temp file goes.
    pub(crate) fn abandon(self) {
        let _ = fs::remove_file(&self.temp);
    }
}

/// Frames appended to a run of new packs: a pack is opened when the first frame comes
/// and closed (fsynced, renamed into place) once it reaches [`PACK_TARGET_BYTES`].
/// Snapshots and prune both write this way.
pub(crate) struct PackSequence<'a> {
    packs: &'a Packs,
    current: Option<PackWriter>,
    finished: Vec<FinishedPack>,
}

impl<'a> PackSequence<'a> {
    pub(crate) fn new(packs: &'a Packs) -> PackSequence<'a> {
        PackSequence {
            packs,
            current: None,
            finished: Vec::new(),
        }
    }

    /// Append a frame; returns (index of its pack in this sequence, offset in it).
    pub(crate) fn append(
        &mut self,
        compressed: &[u8],
        plain_len: usize,
    ) -> io::Result<(usize, u64)> {
        let out = match &mut self.current {
            Some(out) => out,
            None => self.current.insert(self.packs.writer()?),
        };
        let placed = (self.finished.len(), out.append(compressed, plain_len)?);
        if out.len() >= PACK_TARGET_BYTES
            && let Some(full) = self.current.take()
        {
            self.finished.push(full.finish(self.packs)?);
        }
        Ok(placed)
    }

    /// Close the last pack; returns every pack of the sequence, durable.
    pub(crate) fn finish(mut self) -> io::Result<Vec<FinishedPack>> {
        if let Some(last) = self.current.take() {
            match last.finish(self.packs) {
                Ok(pack) => self.finished.push(pack),
                Err(e) => {
                    self.abandon();
                    return Err(e);
                }
            }
        }
        Ok(std::mem::take(&mut self.finished))
    }

    /// Nothing will refer to these packs: delete what was written.
    pub(crate) fn abandon(mut self) {
        if let Some(unfinished) = self.current.take() {
            unfinished.abandon();
        }
        for pack in &self.finished {
            let _ = self.packs.remove(&pack.name);
        }
    }
}

/// Read one frame of an open pack and decompress it: its plain bytes, or what is wrong
/// with it.
pub(crate) fn read_frame(pack: &File, frame: &FrameInfo) -> Result<Vec<u8>, String> {
    if frame.stored_len > MAX_STORED_FRAME {
        return Err(format!(
            "the frame at offset {} claims {} stored bytes, more than a frame ever takes",
            frame.offset, frame.stored_len
        ));
    }
    let mut stored = vec![0u8; (FRAME_HEADER_BYTES + frame.stored_len) as usize];
    pack.read_exact_at(&mut stored, frame.offset)
        .map_err(|e| format!("cannot read the frame at offset {}: {e}", frame.offset))?;
    decode_stored(&stored, frame)
}

/// [`read_frame`] from a whole pack in memory (one downloaded from a remote).
pub(crate) fn decode_frame(pack: &[u8], frame: &FrameInfo) -> Result<Vec<u8>, String> {
    let end = frame
        .offset
        .checked_add(FRAME_HEADER_BYTES)
        .and_then(|end| end.checked_add(frame.stored_len))
        .and_then(|end| usize::try_from(end).ok())
        .ok_or_else(|| format!("no frame at offset {}", frame.offset))?;
    let stored = pack
        .get(usize::try_from(frame.offset).unwrap_or(usize::MAX)..end)
        .ok_or_else(|| format!("no frame at offset {}", frame.offset))?;
    decode_stored(stored, frame)
}

/// A frame's header and compressed bytes → its plain bytes, checked against `frame`.
/// Never more than [`FRAME_MAX_PLAIN`] bytes, whatever a header or an index claims.
pub(crate) fn decode_stored(stored: &[u8], frame: &FrameInfo) -> Result<Vec<u8>, String> {
    if frame.plain_len > FRAME_MAX_PLAIN as u64 {
        return Err(format!(
            "the frame at offset {} claims {} bytes, more than a frame ever holds ({FRAME_MAX_PLAIN})",
            frame.offset, frame.plain_len
        ));
    }
    if stored.len() < FRAME_HEADER_BYTES as usize {
        return Err(format!("no frame header at offset {}", frame.offset));
    }
    let (header, compressed) = stored.split_at(FRAME_HEADER_BYTES as usize);
    let stored_len = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
    let plain_len = u32::from_le_bytes(header[8..].try_into().unwrap_or_default());
    if &header[..4] != FRAME_MAGIC
        || u64::from(stored_len) != frame.stored_len
        || u64::from(plain_len) != frame.plain_len
    {
        return Err(format!("no frame header at offset {}", frame.offset));
    }
    let plain = decompress(compressed, frame.plain_len as usize).map_err(|e| {
        format!(
            "the frame at offset {} does not decompress: {e}",
            frame.offset
        )
    })?;
    if plain.len() as u64 != frame.plain_len {
        return Err(format!(
            "the frame at offset {} holds {} bytes, not {}",
            frame.offset,
            plain.len(),
            frame.plain_len
        ));
    }
    Ok(plain)
}

thread_local! {
    /// One zstd decompression context per thread, kept between frames: creating one per
    /// frame (and its tables) was 4% of a restore's CPU time.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// zstd-decompress `compressed` into at most `capacity` bytes.
fn decompress(compressed: &[u8], capacity: usize) -> io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(decompressor) => decompressor,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(compressed, capacity)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_at(offset: u64, stored_len: u64, plain_len: u64, block_size: usize) -> FrameInfo {
        FrameInfo {
            id: 1,
            pack: 1,
            offset,
            stored_len,
            plain_len,
            block_size,
            members: Vec::new(),
            hashes: Vec::new(),
        }
    }

    /// A pack holding one frame of `plain`, as `PackWriter` lays it out.
    fn one_frame_pack(plain: &[u8]) -> (Vec<u8>, FrameInfo) {
        let compressed = zstd::bulk::compress(plain, 1).unwrap();
        let mut pack = PACK_MAGIC.to_vec();
        pack.extend_from_slice(FRAME_MAGIC);
        pack.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        pack.extend_from_slice(&(plain.len() as u32).to_le_bytes());
        pack.extend_from_slice(&compressed);
        let frame = frame_at(
            PACK_HEADER_BYTES,
            compressed.len() as u64,
            plain.len() as u64,
            4096,
        );
        (pack, frame)
    }

    proptest! {
        /// Whatever a pack's bytes and its index claim, decoding a frame ends in its
        /// bytes or an error, never a panic, and never yields (or reserves) more than a
        /// frame holds.
        #[test]
        fn fuzz_frames_decode_within_bounds(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            offset in prop_oneof![0u64..64, any::<u64>()],
            stored_len in prop_oneof![0u64..600, any::<u64>()],
            plain_len in prop_oneof![0u64..(1 << 19), any::<u64>()],
        ) {
            let frame = frame_at(offset, stored_len, plain_len, 4096);
            if let Ok(plain) = decode_frame(&bytes, &frame) {
                prop_assert!(plain.len() <= FRAME_MAX_PLAIN);
                prop_assert_eq!(plain.len() as u64, plain_len);
            }
        }

        /// A real frame with bytes flipped, cut or its header's lengths changed: the
        /// plain bytes come back only when they are the original's.
        #[test]
        fn fuzz_damaged_frames_are_errors(
            plain in proptest::collection::vec(0u8..4, 1..20_000),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..), 0..4),
            cut in prop_oneof![Just(None), any::<prop::sample::Index>().prop_map(Some)],
            claimed_plain in prop_oneof![Just(None), any::<u32>().prop_map(Some)],
        ) {
            let (mut pack, mut frame) = one_frame_pack(&plain);
            for (at, mask) in &flips {
                let at = at.index(pack.len());
                pack[at] ^= mask;
            }
            if let Some(claimed) = claimed_plain {
                frame.plain_len = u64::from(claimed);
                pack[16..20].copy_from_slice(&claimed.to_le_bytes());
            }
            if let Some(cut) = cut {
                pack.truncate(cut.index(pack.len()));
            }
            if let Ok(read) = decode_frame(&pack, &frame) {
                prop_assert!(read.len() <= FRAME_MAX_PLAIN);
                if claimed_plain.is_none() && flips.is_empty() && cut.is_none() {
                    prop_assert_eq!(read, plain);
                }
            }
        }
    }

    #[test]
    fn a_frame_claiming_more_than_a_frame_holds_is_refused_before_decompressing() {
        // zstd's encoding of 64 MiB of zeros, claimed whole: nothing is allocated for it.
        let zeros = vec![0u8; 64 << 20];
        let compressed = zstd::bulk::compress(&zeros, 1).unwrap();
        let mut pack = PACK_MAGIC.to_vec();
        pack.extend_from_slice(FRAME_MAGIC);
        pack.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        pack.extend_from_slice(&(zeros.len() as u32).to_le_bytes());
        pack.extend_from_slice(&compressed);
        let frame = frame_at(
            PACK_HEADER_BYTES,
            compressed.len() as u64,
            zeros.len() as u64,
            4096,
        );
        let error = decode_frame(&pack, &frame).unwrap_err();
        assert!(error.contains("more than a frame ever holds"), "{error}");
    }

    #[test]
    fn a_pack_is_named_by_its_bytes_and_frames_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let packs = Packs::new(dir.path().join("packs"), tmp);
        let plain = vec![3u8; 8192];
        let compressed = zstd::bulk::compress(&plain, 1).unwrap();
        let mut writer = packs.writer().unwrap();
        let offset = writer.append(&compressed, plain.len()).unwrap();
        let finished = writer.finish(&packs).unwrap();
        let bytes = fs::read(packs.path(&finished.name)).unwrap();
        assert_eq!(finished.name, hex(&Sha256::digest(&bytes)));
        assert_eq!(
            packs.list().unwrap(),
            vec![(finished.name.clone(), finished.size)]
        );
        let frame = FrameInfo {
            id: 1,
            pack: 1,
            offset,
            stored_len: compressed.len() as u64,
            plain_len: plain.len() as u64,
            block_size: 4096,
            members: vec![1, 2],
            hashes: vec![[0; 32]; 2],
        };
        let file = File::open(packs.path(&finished.name)).unwrap();
        assert_eq!(read_frame(&file, &frame).unwrap(), plain);
        let mut damaged = bytes.clone();
        let last = damaged.len() - 3;
        damaged[last] ^= 0xff;
        fs::write(packs.path(&finished.name), &damaged).unwrap();
        let file = File::open(packs.path(&finished.name)).unwrap();
        // Frames carry no checksum of their own: a damaged frame may decode, to other
        // bytes, and the block hashes every reader checks catch those (tests/it/packs.rs
        // restores from a damaged pack). Here: never the original bytes, never a panic.
        if let Ok(read) = read_frame(&file, &frame) {
            let hashes = |bytes: &[u8]| -> Vec<_> {
                bytes
                    .chunks(4096)
                    .map(crate::store::blocks::block_hash)
                    .collect()
            };
            assert_ne!(
                hashes(&read),
                hashes(&plain),
                "a damaged frame read back with the original's block hashes: unnoticed"
            );
        }
        let wrong = FrameInfo {
            offset: offset + 1,
            ..frame
        };
        assert!(read_frame(&file, &wrong).is_err());
    }
}
