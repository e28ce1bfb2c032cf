//! Checking what the store holds: `verify` re-reads every pack frame and legacy chunk,
//! checks every block against its hash and every image against its manifest and digest,
//! and says which snapshots each problem breaks. It reads in phases that change nothing
//! (packs, images, attribution to snapshots) and then records what it found in one step,
//! as restic's checker does. Before a snapshot deduplicates against the store, packs
//! written to since they were last known intact are checked the same way, so that
//! damaged bytes are never reused.

use std::collections::{HashMap, HashSet};
use std::fs::File;

use super::blocks::{
    BlockIndex, FrameInfo, NO_BLOCK, block_count, block_hash, blocks_digest, decode_manifest,
};
use super::catalog::{ImageLayout, ImageRecord, PackRecord, SnapshotRef};
use super::chunks::{CHUNK_SIZE, chunk_list_digest};
use super::packs::{Packs, read_frame};
use super::{Progress, Store, StoreError, io_err};
use crate::db::hex;

/// One thing `verify` found wrong. Its text is what users and `--json` see; equal
/// problems (one damaged pack breaking many images) are reported once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    /// SQLite's `PRAGMA integrity_check` of the catalog, one line of it.
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("pack {pack} is unreadable: {detail}")]
    PackUnreadable { pack: String, detail: String },
    /// A frame that cannot be read or decompressed.
    #[error("pack {pack}: {detail}")]
    FrameUnreadable { pack: String, detail: String },
    #[error("chunk {hash} is damaged ({pack}): content does not match its hash")]
    BlockDamaged { hash: String, pack: String },
    /// A legacy chunk file that cannot be read back whole (the store's own words).
    #[error("{0}")]
    ChunkUnreadable(String),
    #[error("image {digest:.12}: chunk list does not match its digest")]
    DigestMismatch { digest: String },
    #[error("image {digest:.12}: {recorded} chunks recorded for {size} bytes")]
    ChunkCount {
        digest: String,
        recorded: usize,
        size: u64,
    },
    #[error("image {digest:.12}: its manifest is damaged")]
    ManifestDamaged { digest: String },
    #[error("image {digest:.12}: some of its chunks are in no pack")]
    BlocksInNoPack { digest: String },
}

/// As its text: the JSON report's `problems` are the lines users read.
impl serde::Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct VerifyReport {
    pub(crate) images: usize,
    pub(crate) chunks: usize,
    pub(crate) bytes: u64,
    pub(crate) unreferenced: usize,
    pub(crate) problems: Vec<Problem>,
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
    pub(crate) problem: Problem,
    /// Ids of the snapshots that cannot be restored because of it.
    pub(crate) snapshots: Vec<i64>,
}

/// What reading one pack found: its bad blocks with the problem of each, and the plain
/// bytes it checked.
#[derive(Default)]
struct PackCheck {
    bad: Vec<(u64, Problem)>,
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
            let problem = Problem::PackUnreadable {
                pack: path.display().to_string(),
                detail: e.to_string(),
            };
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
                let problem = Problem::FrameUnreadable {
                    pack: path.display().to_string(),
                    detail: detail.to_string(),
                };
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
                            Problem::BlockDamaged {
                                hash: hex(hash),
                                pack: path.display().to_string(),
                            },
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
                .map(Problem::Catalog),
        );
        let mut done = 0u64;
        let mut advance = |bytes: u64| {
            done += bytes;
            progress(done);
        };
        let index = self.block_index()?;
        let recorded = self.catalog.packs()?;
        let packs = read_every_pack(&self.packs, index, &recorded, &mut advance);
        let images = self.catalog.image_records()?;
        let checked = self.check_every_image(index, &images, &packs.bad_blocks, &mut advance);
        report.images = images.len();
        report.bytes = packs.bytes + checked.bytes;
        report.chunks = checked.chunks;
        let snapshots = self.catalog.snapshot_refs()?;
        let broken_images = attribute(&mut report, checked.damage, snapshots);
        // What it found is recorded outside the state it read.
        self.catalog.end_read()?;
        if !self.read_only {
            report.stat_cache_cleared =
                self.record_findings(&packs.bad_blocks, &packs.intact, &broken_images)?;
        }
        report.unreferenced = self.count_unreferenced(index, &recorded, &checked.used_blocks)?;
        Ok(report)
    }

    /// Every image against its chunk list or manifest: legacy chunks are read (each
    /// once), pack blocks were read by [`read_every_pack`] and are looked up.
    fn check_every_image(
        &self,
        index: &BlockIndex,
        images: &[ImageRecord],
        bad_blocks: &HashMap<u64, Problem>,
        advance: &mut dyn FnMut(u64),
    ) -> ImageCheck {
        let mut check = ImageCheck::default();
        let mut good_chunks: HashSet<String> = HashSet::new();
        let mut bad_chunks: HashMap<String, Problem> = HashMap::new();
        for image in images {
            let mut note = |problem: Problem| note_damage(&mut check.damage, problem, image.id);
            match &image.layout {
                ImageLayout::Chunks(hashes) => {
                    if chunk_list_digest(hashes, image.size) != image.digest {
                        note(Problem::DigestMismatch {
                            digest: image.digest.clone(),
                        });
                    }
                    if hashes.len() as u64 != image.size.div_ceil(CHUNK_SIZE as u64) {
                        note(Problem::ChunkCount {
                            digest: image.digest.clone(),
                            recorded: hashes.len(),
                            size: image.size,
                        });
                    }
                    for hash in hashes {
                        if let Some(problem) = bad_chunks.get(hash) {
                            note(problem.clone());
                        } else if !good_chunks.contains(hash) {
                            match self.chunks.get(hash) {
                                Ok(plain) => {
                                    check.bytes += plain.len() as u64;
                                    advance(plain.len() as u64);
                                    good_chunks.insert(hash.clone());
                                }
                                Err(e) => {
                                    let problem = Problem::ChunkUnreadable(e.to_string());
                                    bad_chunks.insert(hash.clone(), problem.clone());
                                    note(problem);
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
                        note(Problem::ManifestDamaged {
                            digest: image.digest.clone(),
                        });
                        continue;
                    };
                    let mut hashes = Vec::with_capacity(ids.len());
                    let mut unknown = false;
                    for (position, id) in ids.iter().enumerate() {
                        check.used_blocks.insert(*id);
                        if let Some(problem) = bad_blocks.get(id) {
                            note(problem.clone());
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
                        note(Problem::BlocksInNoPack {
                            digest: image.digest.clone(),
                        });
                    } else if blocks_digest(hashes.iter(), image.size) != image.digest {
                        note(Problem::DigestMismatch {
                            digest: image.digest.clone(),
                        });
                    }
                }
            }
        }
        check.chunks = good_chunks.len() + bad_chunks.len() + check.used_blocks.len();
        check
    }

    /// The one step of `verify` that writes: bad blocks are recorded as damaged (never
    /// reused), intact packs remembered as such, and the stat cache of broken images
    /// dropped. Returns how many stat cache entries were dropped.
    fn record_findings(
        &self,
        bad_blocks: &HashMap<u64, Problem>,
        intact_packs: &[&PackRecord],
        broken_images: &HashSet<i64>,
    ) -> Result<usize, StoreError> {
        let bad: Vec<u64> = bad_blocks.keys().copied().collect();
        self.catalog.set_damaged(&bad)?;
        for pack in intact_packs {
            if let Some(ctime) = self.packs.ctime_ns(&pack.name) {
                self.catalog.set_pack_ctime(pack.id, ctime)?;
            }
        }
        if broken_images.is_empty() {
            return Ok(0);
        }
        let images: Vec<i64> = broken_images.iter().copied().collect();
        Ok(self.catalog.forget_stat_cache_of_images(&images)?)
    }

    /// What `prune` would remove: legacy chunks no image names, blocks no image uses,
    /// and pack files the catalog does not know.
    fn count_unreferenced(
        &self,
        index: &BlockIndex,
        recorded: &[PackRecord],
        used_blocks: &HashSet<u64>,
    ) -> Result<usize, StoreError> {
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
        Ok(
            on_disk.iter().filter(|h| !referenced.contains(*h)).count()
                + dead_blocks
                + orphan_packs,
        )
    }
}

/// What reading every pack found.
#[derive(Default)]
struct PacksRead<'a> {
    bad_blocks: HashMap<u64, Problem>,
    intact: Vec<&'a PackRecord>,
    bytes: u64,
}

/// Every frame of every recorded pack once, every block that lives in it.
fn read_every_pack<'a>(
    packs: &Packs,
    index: &BlockIndex,
    recorded: &'a [PackRecord],
    advance: &mut dyn FnMut(u64),
) -> PacksRead<'a> {
    let mut read = PacksRead::default();
    for pack in recorded {
        let check = check_pack(packs, index, pack, advance);
        read.bytes += check.bytes;
        if check.bad.is_empty() {
            read.intact.push(pack);
        }
        read.bad_blocks.extend(check.bad);
    }
    read
}

/// What checking every image found.
#[derive(Default)]
struct ImageCheck {
    /// Each problem with the images it breaks, in the order found.
    damage: Vec<(Problem, Vec<i64>)>,
    used_blocks: HashSet<u64>,
    chunks: usize,
    bytes: u64,
}

/// Add `image` to the images `problem` breaks (a problem is listed once).
fn note_damage(damage: &mut Vec<(Problem, Vec<i64>)>, problem: Problem, image: i64) {
    match damage.iter_mut().find(|(known, _)| *known == problem) {
        Some((_, images)) if images.contains(&image) => {}
        Some((_, images)) => images.push(image),
        None => damage.push((problem, vec![image])),
    }
}

/// From broken images to the snapshots they break: fills the report's damage, problems,
/// broken and restorable lists; returns the broken images.
fn attribute(
    report: &mut VerifyReport,
    damage: Vec<(Problem, Vec<i64>)>,
    snapshots: Vec<SnapshotRef>,
) -> HashSet<i64> {
    let mut broken_images: HashSet<i64> = HashSet::new();
    for (problem, images) in damage {
        broken_images.extend(&images);
        report.problems.push(problem.clone());
        report.damage.push(Damage {
            problem,
            snapshots: snapshots
                .iter()
                .filter(|s| images.contains(&s.image_id))
                .map(|s| s.id)
                .collect(),
        });
    }
    for snapshot in snapshots {
        if broken_images.contains(&snapshot.image_id) {
            report.broken.push(snapshot);
        } else {
            report.restorable.push(snapshot);
        }
    }
    broken_images
}
