//! Checking what the store holds: `verify` re-reads every pack frame and legacy chunk,
//! checks every block against its hash and every image against its manifest and digest,
//! and says which snapshots each problem breaks. Before a snapshot deduplicates against
//! the store, packs written to since they were last known intact are checked the same
//! way, so that damaged bytes are never reused.

use std::collections::{HashMap, HashSet};
use std::fs::File;

use super::blocks::{
    BlockIndex, FrameInfo, NO_BLOCK, block_count, block_hash, blocks_digest, decode_manifest,
};
use super::catalog::{ImageLayout, PackRecord, SnapshotRef};
use super::chunks::{CHUNK_SIZE, chunk_list_digest};
use super::packs::{Packs, read_frame};
use super::{Progress, Store, StoreError, io_err};
use crate::db::hex;

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

/// What reading one pack found: its bad blocks with the problem of each, and the plain
/// bytes it checked.
#[derive(Default)]
struct PackCheck {
    bad: Vec<(u64, String)>,
    bytes: u64,
}

/// Read every frame of a pack and check every block that lives in it.
fn check_pack(
    packs: &Packs,
    index: &BlockIndex,
    pack: &PackRecord,
    progress: &mut dyn FnMut(u64),
) -> PackCheck {
    let mut check = PackCheck::default();
    let path = packs.path(&pack.name);
    let frames = index.frames_of_pack(pack.id);
    let live = |frame: &FrameInfo| -> Vec<(usize, u64)> {
        frame
            .members
            .iter()
            .enumerate()
            .filter(|(slot, id)| **id != NO_BLOCK && index.lives_at(**id, frame.id, *slot))
            .map(|(slot, id)| (slot, *id))
            .collect()
    };
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) => {
            let problem = format!("pack {} is unreadable: {e}", path.display());
            for frame in frames {
                check
                    .bad
                    .extend(live(frame).into_iter().map(|(_, id)| (id, problem.clone())));
            }
            return check;
        }
    };
    for frame in frames {
        let blocks = live(frame);
        if blocks.is_empty() {
            continue;
        }
        match read_frame(&file, frame) {
            Err(detail) => {
                let problem = format!("pack {}: {detail}", path.display());
                check
                    .bad
                    .extend(blocks.into_iter().map(|(_, id)| (id, problem.clone())));
            }
            Ok(plain) => {
                for (slot, id) in blocks {
                    let hash = &frame.hashes[slot];
                    if block_hash(&plain[frame.slot_range(slot)]) != *hash {
                        check.bad.push((
                            id,
                            format!(
                                "chunk {} is damaged ({}): content does not match its hash",
                                hex(hash),
                                path.display()
                            ),
                        ));
                    }
                }
                check.bytes += plain.len() as u64;
                progress(plain.len() as u64);
            }
        }
    }
    check
}

impl Store {
    /// Before deduplicating against the store: a pack whose file is missing, or was
    /// written to since it was last known intact, is read again, and the blocks found bad
    /// are recorded as damaged (never reused; the next snapshot holding their bytes
    /// writes them again). One stat per pack when nothing happened.
    pub(super) fn check_packs(&mut self) -> Result<(), StoreError> {
        let packs = self.catalog.packs()?;
        let suspect: Vec<&PackRecord> = packs
            .iter()
            .filter(|p| self.packs.ctime_ns(&p.name).is_none_or(|c| c > p.ctime_ns))
            .collect();
        if suspect.is_empty() {
            return Ok(());
        }
        self.block_index()?;
        let mut damaged = Vec::new();
        for pack in suspect {
            let index = self.index.get().expect("loaded above");
            let check = check_pack(&self.packs, index, pack, &mut |_| {});
            if check.bad.is_empty() {
                if let Some(ctime) = self.packs.ctime_ns(&pack.name) {
                    self.catalog.set_pack_ctime(pack.id, ctime)?;
                }
            } else {
                damaged.extend(check.bad.into_iter().map(|(id, _)| id));
            }
        }
        self.catalog.mark_damaged(&damaged)?;
        self.index
            .get_mut()
            .expect("loaded above")
            .damaged
            .extend(damaged);
        Ok(())
    }

    /// Hold one state of the catalog for [`Store::verify_bytes`] and [`Store::verify`]:
    /// snapshots written meanwhile (verify takes no writer lock) are seen whole or not
    /// at all, never as blocks in no pack.
    pub(crate) fn begin_verify(&mut self) -> Result<(), StoreError> {
        self.catalog.begin_read()?;
        // Loaded again, from that state.
        self.index.take();
        Ok(())
    }

    /// The bytes [`Store::verify`] reads, for a progress display.
    pub(crate) fn verify_bytes(&self) -> Result<u64, StoreError> {
        // The frames verify reads: those in which some block lives.
        let index = self.block_index()?;
        let frames: u64 = index
            .frames
            .values()
            .filter(|f| {
                f.members
                    .iter()
                    .enumerate()
                    .any(|(slot, id)| *id != NO_BLOCK && index.lives_at(*id, f.id, slot))
            })
            .map(|f| f.plain_len)
            .sum();
        Ok(frames + self.catalog.distinct_chunk_bytes(CHUNK_SIZE as u64)?)
    }

    /// Re-read every chunk and check every image. Returns the problems found, which
    /// snapshots each one breaks and which snapshots remain restorable. On a writable
    /// store, damaged blocks are recorded and the stat cache stops trusting damaged
    /// images, so that the next snapshot reads the live file and rewrites them from it.
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
        // A problem -> the images it breaks, in the order found.
        let mut damage: Vec<(String, Vec<i64>)> = Vec::new();
        let mut note =
            |problem: String, image: i64| match damage.iter_mut().find(|(p, _)| *p == problem) {
                Some((_, images)) if images.contains(&image) => {}
                Some((_, images)) => images.push(image),
                None => damage.push((problem, vec![image])),
            };
        let mut done = 0u64;
        let mut advance = |bytes: u64| {
            done += bytes;
            progress(done);
        };

        // Packs: every frame once, every block that lives in it.
        let index = self.block_index()?;
        let mut bad_blocks: HashMap<u64, String> = HashMap::new();
        let mut intact_packs = Vec::new();
        let recorded = self.catalog.packs()?;
        for pack in &recorded {
            let check = check_pack(&self.packs, index, pack, &mut advance);
            report.bytes += check.bytes;
            if check.bad.is_empty() {
                intact_packs.push(pack);
            }
            bad_blocks.extend(check.bad);
        }

        // Legacy chunks: each once.
        let mut good_chunks: HashSet<String> = HashSet::new();
        let mut bad_chunks: HashMap<String, String> = HashMap::new();
        let mut used_blocks: HashSet<u64> = HashSet::new();
        let images = self.catalog.image_records()?;
        for image in &images {
            report.images += 1;
            match &image.layout {
                ImageLayout::Chunks(hashes) => {
                    if chunk_list_digest(hashes, image.size) != image.digest {
                        note(
                            format!(
                                "image {:.12}: chunk list does not match its digest",
                                image.digest
                            ),
                            image.id,
                        );
                    }
                    if hashes.len() as u64 != image.size.div_ceil(CHUNK_SIZE as u64) {
                        note(
                            format!(
                                "image {:.12}: {} chunks recorded for {} bytes",
                                image.digest,
                                hashes.len(),
                                image.size
                            ),
                            image.id,
                        );
                    }
                    for hash in hashes {
                        if let Some(problem) = bad_chunks.get(hash) {
                            note(problem.clone(), image.id);
                        } else if !good_chunks.contains(hash) {
                            match self.chunks.get(hash) {
                                Ok(plain) => {
                                    report.bytes += plain.len() as u64;
                                    advance(plain.len() as u64);
                                    good_chunks.insert(hash.clone());
                                }
                                Err(e) => {
                                    bad_chunks.insert(hash.clone(), e.to_string());
                                    note(e.to_string(), image.id);
                                }
                            }
                        }
                    }
                }
                ImageLayout::Blocks {
                    block_size,
                    manifest,
                } => {
                    let count = block_count(image.size, *block_size);
                    let Some(ids) = decode_manifest(manifest, count) else {
                        note(
                            format!("image {:.12}: its manifest is damaged", image.digest),
                            image.id,
                        );
                        continue;
                    };
                    let mut hashes = Vec::with_capacity(ids.len());
                    let mut unknown = false;
                    for (position, id) in ids.iter().enumerate() {
                        used_blocks.insert(*id);
                        if let Some(problem) = bad_blocks.get(id) {
                            note(problem.clone(), image.id);
                        }
                        match index.location(*id) {
                            Some((frame, slot)) => {
                                hashes.push(frame.hashes[slot]);
                                let expected = (image.size - position as u64 * *block_size as u64)
                                    .min(*block_size as u64);
                                if frame.slot_range(slot).len() as u64 != expected {
                                    unknown = true;
                                }
                            }
                            None => unknown = true,
                        }
                    }
                    if unknown {
                        note(
                            format!(
                                "image {:.12}: some of its chunks are in no pack",
                                image.digest
                            ),
                            image.id,
                        );
                    } else if blocks_digest(hashes.iter(), image.size) != image.digest {
                        note(
                            format!(
                                "image {:.12}: chunk list does not match its digest",
                                image.digest
                            ),
                            image.id,
                        );
                    }
                }
            }
        }
        report.chunks = good_chunks.len() + bad_chunks.len() + used_blocks.len();

        let snapshots = self.catalog.snapshot_refs()?;
        let ids_of = |images: &[i64]| -> Vec<i64> {
            snapshots
                .iter()
                .filter(|s| images.contains(&s.image_id))
                .map(|s| s.id)
                .collect()
        };
        let mut broken_images: HashSet<i64> = HashSet::new();
        for (problem, images) in damage {
            broken_images.extend(&images);
            report.damage.push(Damage {
                problem,
                snapshots: ids_of(&images),
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
        // What it found is recorded outside the state it read.
        self.catalog.end_read()?;
        if !self.read_only {
            let bad: Vec<u64> = bad_blocks.keys().copied().collect();
            self.catalog.set_damaged(&bad)?;
            for pack in intact_packs {
                if let Some(ctime) = self.packs.ctime_ns(&pack.name) {
                    self.catalog.set_pack_ctime(pack.id, ctime)?;
                }
            }
            if !broken_images.is_empty() {
                let images: Vec<i64> = broken_images.into_iter().collect();
                report.stat_cache_cleared = self.catalog.forget_stat_cache_of_images(&images)?;
            }
        }
        let referenced = self.catalog.referenced_chunks()?;
        let on_disk = self.chunks.list().map_err(io_err(&self.root))?;
        let known_packs: HashSet<&str> = recorded.iter().map(|p| p.name.as_str()).collect();
        let orphan_packs = self
            .packs
            .list()
            .map_err(io_err(&self.root))?
            .into_iter()
            .filter(|(name, _)| !known_packs.contains(name.as_str()))
            .count();
        let dead_blocks = index
            .frames
            .values()
            .flat_map(|f| {
                f.members
                    .iter()
                    .enumerate()
                    .filter(move |(slot, id)| **id != NO_BLOCK && index.lives_at(**id, f.id, *slot))
                    .map(|(_, id)| *id)
            })
            .filter(|id| !used_blocks.contains(id))
            .count();
        report.unreferenced = on_disk.iter().filter(|h| !referenced.contains(*h)).count()
            + dead_blocks
            + orphan_packs;
        Ok(report)
    }
}
