//! Blocks, the store's unit of deduplication: page-aligned pieces of an image (the
//! database's page size, at least 4 KiB), named by a number and checked by the sha256 of
//! their plain bytes. Blocks are compressed together in frames inside pack files
//! (`packs.rs`); this module holds the in-memory index of where each block lives and the
//! compact encodings the catalog stores: an image's manifest (its block numbers in order,
//! as runs) and a frame's members.
//!
//! Users see blocks as "chunks": the word the store's messages have always used for the
//! pieces of an image.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

use crate::db::hex;

pub(crate) type Hash = [u8; 32];

/// The smallest block: SQLite pages below 4 KiB are grouped, so that a database with
/// 512-byte pages does not cost a catalog entry per 512 bytes.
pub(crate) const MIN_BLOCK_SIZE: usize = 4096;

/// The largest block: SQLite's largest page.
pub(crate) const MAX_BLOCK_SIZE: usize = 65536;

/// Blocks per frame at most, and plain bytes per frame at most: enough context for zstd
/// to compress pages together, small enough that restoring one block reads little.
pub(crate) const FRAME_MAX_BLOCKS: usize = 64;
pub(crate) const FRAME_MAX_PLAIN: usize = 256 * 1024;

/// A frame member slot whose bytes no block uses (a page repeated within one image).
pub(crate) const NO_BLOCK: u64 = 0;

pub(crate) fn block_hash(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// sha256 over an image's block hashes and its size: identifies an image without a second
/// pass over its bytes. The prefix keeps it apart from legacy chunk-list digests.
pub(crate) fn blocks_digest<'a>(hashes: impl Iterator<Item = &'a Hash>, size: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"blocks\n");
    hasher.update(size.to_string().as_bytes());
    hasher.update(b"\n");
    for hash in hashes {
        hasher.update(hash);
    }
    hex(&hasher.finalize())
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A list of block numbers as runs of consecutive numbers: (start as a zigzag delta from
/// the previous run's end, length). A fresh image is one run; one that changed in k places
/// about 2k+1.
fn encode_runs(ids: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, ids.len() as u64);
    let mut previous_end = 0i64;
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut len = 1;
        while i + len < ids.len() && ids[i + len] == start + len as u64 {
            len += 1;
        }
        let delta = start as i64 - previous_end;
        put_varint(&mut out, ((delta << 1) ^ (delta >> 63)) as u64);
        put_varint(&mut out, len as u64);
        previous_end = (start + len as u64) as i64;
        i += len;
    }
    out
}

/// The inverse of [`encode_runs`]; `None` when the bytes are not such a list or would
/// hold more than `max_len` numbers.
fn decode_runs(bytes: &[u8], max_len: usize) -> Option<Vec<u64>> {
    let mut pos = 0;
    let count = usize::try_from(get_varint(bytes, &mut pos)?).ok()?;
    if count > max_len {
        return None;
    }
    let mut ids = Vec::with_capacity(count);
    let mut previous_end = 0i64;
    while ids.len() < count {
        let zigzag = get_varint(bytes, &mut pos)?;
        let delta = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        let start = previous_end.checked_add(delta)?;
        let len = usize::try_from(get_varint(bytes, &mut pos)?).ok()?;
        if start < 0 || len == 0 || len > count - ids.len() {
            return None;
        }
        ids.extend((0..len as u64).map(|k| start as u64 + k));
        previous_end = start + len as i64;
    }
    (pos == bytes.len()).then_some(ids)
}

/// An image's manifest as the catalog stores it: its block numbers as runs, compressed.
pub(crate) fn encode_manifest(ids: &[u64]) -> Vec<u8> {
    let runs = encode_runs(ids);
    zstd::bulk::compress(&runs, 3).unwrap_or(runs)
}

/// An image's block numbers, in order; `None` when the manifest is damaged or does not
/// have `expected` entries.
pub(crate) fn decode_manifest(blob: &[u8], expected: usize) -> Option<Vec<u64>> {
    // Each run takes at least 2 bytes and there are at most `expected` runs.
    let plain = zstd::bulk::decompress(blob, 16 + expected.saturating_mul(20)).ok()?;
    decode_runs(&plain, expected).filter(|ids| ids.len() == expected)
}

/// A frame's members (block numbers in slot order, [`NO_BLOCK`] for unused slots).
pub(crate) fn encode_members(ids: &[u64]) -> Vec<u8> {
    encode_runs(ids)
}

pub(crate) fn decode_members(blob: &[u8]) -> Option<Vec<u64>> {
    decode_runs(blob, FRAME_MAX_PLAIN / 512)
}

/// How many blocks an image of `size` bytes has.
pub(crate) fn block_count(size: u64, block_size: usize) -> usize {
    size.div_ceil(block_size as u64) as usize
}

/// A frame: where it is and what it holds. `Id` and `Pack` name it and its pack: by
/// catalog ids once recorded ([`FrameInfo`]), or, while its pack is being written, with
/// no id yet and the pack by its place among the packs being written ([`NewFrame`]).
#[derive(Debug, Clone)]
pub(crate) struct Frame<Id, Pack> {
    pub(crate) id: Id,
    pub(crate) pack: Pack,
    /// Offset of the frame's header in its pack.
    pub(crate) offset: u64,
    pub(crate) stored_len: u64,
    pub(crate) plain_len: u64,
    pub(crate) block_size: usize,
    pub(crate) members: Vec<u64>,
    pub(crate) hashes: Vec<Hash>,
}

/// A frame as the catalog records it.
pub(crate) type FrameInfo = Frame<i64, i64>;

/// A frame written into a pack that is not recorded yet.
pub(crate) type NewFrame = Frame<(), usize>;

impl<Id, Pack> Frame<Id, Pack> {
    /// Byte range of slot `slot` in the frame's plain bytes.
    pub(crate) fn slot_range(&self, slot: usize) -> std::ops::Range<usize> {
        let start = slot * self.block_size;
        start..(start + self.block_size).min(self.plain_len as usize)
    }
}

/// Where a block lives: a frame and a slot in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockLoc {
    pub(crate) frame_id: i64,
    pub(crate) slot: usize,
}

/// Every frame of the store and, derived from them, where each block lives and which
/// block holds given bytes. A block listed by two frames (rewritten after damage, or
/// copied by a repack that was interrupted before it committed) lives in the newer one.
#[derive(Debug, Default)]
pub(crate) struct BlockIndex {
    pub(crate) frames: HashMap<i64, FrameInfo>,
    locations: HashMap<u64, BlockLoc>,
    by_hash: HashMap<Hash, u64>,
    /// Blocks found damaged or missing: never reused, rewritten by the next snapshot that
    /// holds their bytes.
    pub(crate) damaged: HashSet<u64>,
    /// The highest block number in use: new blocks count on from here.
    pub(crate) last_id: u64,
}

impl BlockIndex {
    pub(crate) fn new(frames: Vec<FrameInfo>, damaged: HashSet<u64>) -> BlockIndex {
        let mut index = BlockIndex {
            damaged,
            ..BlockIndex::default()
        };
        let mut frames = frames;
        frames.sort_by_key(|f| f.id);
        for frame in frames {
            index.add_frame(frame);
        }
        index
    }

    /// Add a frame (newer than every frame already in the index).
    pub(crate) fn add_frame(&mut self, frame: FrameInfo) {
        for (slot, (&id, hash)) in frame.members.iter().zip(&frame.hashes).enumerate() {
            if id == NO_BLOCK {
                continue;
            }
            self.last_id = self.last_id.max(id);
            self.locations.insert(
                id,
                BlockLoc {
                    frame_id: frame.id,
                    slot,
                },
            );
            self.by_hash.insert(*hash, id);
        }
        self.frames.insert(frame.id, frame);
    }

    /// The block that holds exactly these bytes and can be trusted to give them back.
    pub(crate) fn reusable(&self, hash: &Hash) -> Option<u64> {
        self.by_hash
            .get(hash)
            .copied()
            .filter(|id| !self.damaged.contains(id))
    }

    /// A damaged block that holds these bytes: writing them again repairs it.
    pub(crate) fn damaged_with(&self, hash: &Hash) -> Option<u64> {
        self.by_hash
            .get(hash)
            .copied()
            .filter(|id| self.damaged.contains(id))
    }

    pub(crate) fn location(&self, id: u64) -> Option<(&FrameInfo, usize)> {
        let loc = self.locations.get(&id)?;
        Some((self.frames.get(&loc.frame_id)?, loc.slot))
    }

    /// Whether block `id` lives in slot `slot` of frame `frame_id` (and not in a newer
    /// frame that supersedes that slot).
    pub(crate) fn lives_at(&self, id: u64, frame_id: i64, slot: usize) -> bool {
        self.locations.get(&id) == Some(&BlockLoc { frame_id, slot })
    }

    /// The frames of a pack, by offset.
    pub(crate) fn frames_of_pack(&self, pack_id: i64) -> Vec<&FrameInfo> {
        let mut frames: Vec<&FrameInfo> =
            self.frames.values().filter(|f| f.pack == pack_id).collect();
        frames.sort_by_key(|f| f.offset);
        frames
    }

    /// The pack each of these blocks lives in, each pack once.
    pub(crate) fn packs_of(&self, ids: &[u64]) -> Vec<i64> {
        let mut packs: Vec<i64> = ids
            .iter()
            .filter_map(|id| self.location(*id).map(|(f, _)| f.pack))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        packs.sort_unstable();
        packs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip_and_stay_small() {
        let fresh: Vec<u64> = (1..=100_000).collect();
        let blob = encode_manifest(&fresh);
        assert!(blob.len() < 64, "{}", blob.len());
        assert_eq!(decode_manifest(&blob, fresh.len()).unwrap(), fresh);
        // 1% of the blocks replaced by new ones at the end of the numbering.
        let mut churned = fresh.clone();
        for (k, i) in (0..churned.len()).step_by(100).enumerate() {
            churned[i] = 200_000 + k as u64;
        }
        let blob = encode_manifest(&churned);
        assert!(blob.len() < 20_000, "{}", blob.len());
        assert_eq!(decode_manifest(&blob, churned.len()).unwrap(), churned);
        let members = vec![5, 6, NO_BLOCK, 9, 3, 4];
        assert_eq!(decode_members(&encode_members(&members)).unwrap(), members);
        assert_eq!(
            decode_manifest(&encode_manifest(&[]), 0).unwrap(),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn damaged_manifests_are_refused() {
        let ids: Vec<u64> = (1..=1000).collect();
        let blob = encode_manifest(&ids);
        assert!(decode_manifest(&blob, 999).is_none(), "wrong count");
        assert!(decode_manifest(&blob[..blob.len() - 1], 1000).is_none());
        assert!(decode_manifest(b"garbage", 1000).is_none());
        assert!(
            decode_runs(&[5, 0, 10], 5).is_none(),
            "runs longer than the count"
        );
    }

    #[test]
    fn a_newer_frame_supersedes_an_older_one() {
        let frame = |id, members: Vec<u64>| FrameInfo {
            id,
            pack: id,
            offset: 0,
            stored_len: 1,
            plain_len: 4096 * members.len() as u64,
            block_size: 4096,
            hashes: members.iter().map(|m| [*m as u8; 32]).collect(),
            members,
        };
        let mut damaged = HashSet::new();
        damaged.insert(2);
        let mut index = BlockIndex::new(vec![frame(1, vec![1, 2, 3])], damaged);
        assert_eq!(index.reusable(&[1; 32]), Some(1));
        assert_eq!(index.reusable(&[2; 32]), None);
        assert_eq!(index.damaged_with(&[2; 32]), Some(2));
        index.damaged.remove(&2);
        index.add_frame(frame(7, vec![2]));
        assert!(index.lives_at(2, 7, 0));
        assert!(!index.lives_at(2, 1, 1));
        assert_eq!(index.last_id, 3);
        assert_eq!(index.packs_of(&[1, 2, 3]), vec![1, 7]);
    }
}
