//! Giving space back once prune has deleted snapshots: legacy chunk files no image uses
//! are deleted; a pack none of whose blocks is used any more is deleted; a pack with more
//! than a tenth of its bytes unused is rewritten with only the blocks still used. New packs
//! are durable before the catalog switches to them in one transaction, and old files go
//! only after it: a crash at any point leaves every snapshot whole (at worst an extra
//! pack file, which the next prune deletes).
//!
//! It works a few packs at a time ([`Store::reclaim_space_in_steps`]): each step holds
//! the writer lock and `packs.lock` exclusively for a moment, then lets a waiting
//! snapshot (the one a git command waits for) or reader in before the next.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::blocks::{
    BlockIndex, FrameInfo, NO_BLOCK, NewFrame, block_count, block_hash, decode_manifest,
};
use super::catalog::{ImageLayout, ImageRecord, Repacked};
use super::files::sync_dir;
use super::packs::{
    FRAME_HEADER_BYTES, FinishedPack, PACK_HEADER_BYTES, PACK_TARGET_BYTES, PackSequence,
    read_frame,
};
use super::{Store, StoreError, io_err, lock, write_err};

/// zstd level for rewritten frames: prune is rare and not on a git command's path.
const REPACK_ZSTD_LEVEL: i32 = 3;

/// A pack is rewritten once more than 1/REWRITE_WHEN_DEAD_ABOVE of its plain bytes are
/// unused.
const REWRITE_WHEN_DEAD_ABOVE: u64 = 10;

/// Packs rewritten or deleted per step: a step of a few MiB each holds the store for
/// tens of milliseconds.
const PACKS_PER_STEP: usize = 4;

/// The pause between steps: longer than a waiter's poll (10 ms), so that a snapshot
/// waiting for the store gets it before the next step.
const BETWEEN_STEPS: Duration = Duration::from_millis(50);

/// What one pack holds, slot by slot, against what the remaining images use.
struct PackUse<'a> {
    frames: Vec<(&'a FrameInfo, Vec<usize>)>,
    plain: u64,
    live_plain: u64,
}

fn pack_use<'a>(index: &'a BlockIndex, pack_id: i64, live: &HashSet<u64>) -> PackUse<'a> {
    let mut usage = PackUse {
        frames: Vec::new(),
        plain: 0,
        live_plain: 0,
    };
    for frame in index.frames_of_pack(pack_id) {
        let mut live_slots = Vec::new();
        for (slot, id) in frame.members.iter().enumerate() {
            if *id != NO_BLOCK && index.lives_at(*id, frame.id, slot) && live.contains(id) {
                live_slots.push(slot);
                usage.live_plain += frame.slot_range(slot).len() as u64;
            }
        }
        usage.plain += frame.plain_len;
        usage.frames.push((frame, live_slots));
    }
    usage
}

/// The blocks the images use.
fn used_blocks(images: &[ImageRecord]) -> HashSet<u64> {
    let mut used = HashSet::new();
    for image in images {
        if let ImageLayout::Blocks {
            block_size,
            manifest,
        } = &image.layout
            && let Some(ids) = decode_manifest(manifest, block_count(image.size, *block_size))
        {
            used.extend(ids);
        }
    }
    used
}

/// Where rewritten frames go: into new pack files, or, for a dry run, only counted the
/// way they would be written (so that a dry run predicts the bytes exactly).
enum Sink<'a> {
    Write(PackSequence<'a>),
    Count {
        current: Option<u64>,
        finished: Vec<u64>,
    },
}

impl Sink<'_> {
    /// Append a frame; returns (index of its new pack, offset in it).
    fn append(&mut self, compressed: &[u8], plain_len: usize) -> io::Result<(usize, u64)> {
        match self {
            Sink::Write(sequence) => sequence.append(compressed, plain_len),
            Sink::Count { current, finished } => {
                let len = current.get_or_insert(PACK_HEADER_BYTES);
                let placed = (finished.len(), *len);
                *len += FRAME_HEADER_BYTES + compressed.len() as u64;
                if *len >= PACK_TARGET_BYTES {
                    finished.push(*len);
                    *current = None;
                }
                Ok(placed)
            }
        }
    }

    /// Close the last pack; returns the packs written (none for a count) and the new
    /// packs' sizes.
    fn finish(self) -> io::Result<(Vec<FinishedPack>, Vec<u64>)> {
        match self {
            Sink::Write(sequence) => {
                let written = sequence.finish()?;
                let sizes = written.iter().map(|p| p.size).collect();
                Ok((written, sizes))
            }
            Sink::Count {
                current,
                mut finished,
            } => {
                finished.extend(current);
                Ok((Vec::new(), finished))
            }
        }
    }

    /// A prune step ends here: it closes the pack it was writing, and the next step
    /// writes into a new one. A count follows the steps a real prune takes, so that a
    /// dry run predicts its bytes exactly; a real step ends with its sequence.
    fn end_step(&mut self) {
        if let Sink::Count { current, finished } = self
            && let Some(len) = current.take()
        {
            finished.push(len);
        }
    }

    /// Planning failed: delete what was written.
    fn abandon(self) {
        if let Sink::Write(sequence) = self {
            sequence.abandon();
        }
    }
}

/// What reclaiming space takes: the files to delete and the packs to rewrite.
#[derive(Default)]
struct Plan {
    legacy_chunks: Vec<String>,
    legacy_bytes: u64,
    orphan_packs: Vec<(String, u64)>,
    new_frames: Vec<NewFrame>,
    new_pack_sizes: Vec<u64>,
    dropped_frames: Vec<i64>,
    /// (id, name, size) of packs that go.
    dropped_packs: Vec<(i64, String, u64)>,
    /// Blocks that moved, to the new pack they moved to.
    moved: HashMap<u64, usize>,
    dead_blocks: Vec<u64>,
    /// Packs to delete or rewrite are left beyond this step's budget.
    more: bool,
}

impl Plan {
    fn chunks_removed(&self) -> usize {
        self.legacy_chunks.len() + self.dead_blocks.len()
    }

    fn bytes_freed(&self) -> u64 {
        let gone = self.legacy_bytes
            + self.orphan_packs.iter().map(|(_, s)| s).sum::<u64>()
            + self.dropped_packs.iter().map(|(_, _, s)| s).sum::<u64>();
        gone.saturating_sub(self.new_pack_sizes.iter().sum())
    }
}

impl Store {
    /// (chunks, bytes) that deleting the images in `removed` would free: exactly what
    /// [`Store::reclaim_space`] would delete and write after that.
    pub(crate) fn reclaimable(&self, removed: &HashSet<i64>) -> Result<(usize, u64), StoreError> {
        let mut sink = Sink::Count {
            current: None,
            finished: Vec::new(),
        };
        let (mut plan, _) = self.plan(removed, &mut sink, usize::MAX)?;
        let pack_fail = write_err(&self.root, self.packs.dir());
        plan.new_pack_sizes = sink.finish().map_err(pack_fail)?.1;
        Ok((plan.chunks_removed(), plan.bytes_freed()))
    }

    /// Delete what no snapshot uses any more (after [`Store::delete_snapshots`]), a step
    /// at a time: each step opens the store for writing, takes `packs.lock`
    /// exclusively (only when no reader holds it: a prune waits for readers, never the
    /// other way round) and handles a few packs. Returns (chunks removed, bytes freed).
    pub(crate) fn reclaim_space_in_steps(root: &Path) -> Result<(usize, u64), StoreError> {
        let (mut chunks, mut bytes) = (0, 0);
        let mut patience = Instant::now() + lock::STALL_LIMIT;
        loop {
            let mut store = Store::open(root)?;
            let exclusive = match &store._packs {
                Some(packs) => packs
                    .try_upgrade()
                    .map_err(io_err(&lock::packs_path(root)))?,
                None => false,
            };
            if !exclusive {
                // A reader is in the middle of reading packs: let it finish.
                drop(store);
                if Instant::now() >= patience {
                    return Err(StoreError::Locked {
                        path: root.to_path_buf(),
                        holder: "a dbguard process reading the snapshots".into(),
                    });
                }
                std::thread::sleep(BETWEEN_STEPS);
                continue;
            }
            let (step_chunks, step_bytes, more) = store.reclaim_space(PACKS_PER_STEP)?;
            chunks += step_chunks;
            bytes += step_bytes;
            if !more {
                // Deleted records leave free pages in the catalog; give them back too.
                store.catalog.compact()?;
                return Ok((chunks, bytes));
            }
            drop(store);
            patience = Instant::now() + lock::STALL_LIMIT;
            std::thread::sleep(BETWEEN_STEPS);
        }
    }

    /// One step of [`Store::reclaim_space_in_steps`]: delete unused legacy chunks and
    /// unknown pack files, and delete or rewrite at most `budget` packs. Returns (chunks
    /// removed, bytes freed, whether packs are left for another step).
    fn reclaim_space(&mut self, budget: usize) -> Result<(usize, u64, bool), StoreError> {
        self.writable()?;
        let mut sink = Sink::Write(PackSequence::new(&self.packs));
        let planned = self.plan(&HashSet::new(), &mut sink, budget);
        let (mut plan, image_packs) = match planned {
            Ok(planned) => planned,
            Err(e) => {
                sink.abandon();
                return Err(e);
            }
        };
        let (new_packs, sizes) = sink
            .finish()
            .map_err(write_err(&self.root, self.packs.dir()))?;
        plan.new_pack_sizes = sizes;
        for hash in &plan.legacy_chunks {
            self.chunks
                .remove(hash)
                .map_err(io_err(&self.chunks.object_path(hash)))?;
        }
        // Pack files the catalog does not know: a crash left them before or after a
        // commit; we hold the store's lock, so no snapshot is writing one now.
        for (name, _) in &plan.orphan_packs {
            self.packs
                .remove(name)
                .map_err(write_err(&self.root, &self.packs.path(name)))?;
        }
        if !plan.dropped_packs.is_empty() {
            let dropped_packs: Vec<i64> = plan.dropped_packs.iter().map(|(id, _, _)| *id).collect();
            let recorded = self.catalog.record_repack(&Repacked {
                packs: &new_packs,
                frames: &plan.new_frames,
                dropped_frames: &plan.dropped_frames,
                dropped_packs: &dropped_packs,
                dead_blocks: &plan.dead_blocks,
                image_packs: &image_packs,
            });
            if let Err(e) = recorded {
                for pack in &new_packs {
                    let _ = self.packs.remove(&pack.name);
                }
                return Err(e.into());
            }
            for (_, name, _) in &plan.dropped_packs {
                self.packs
                    .remove(name)
                    .map_err(write_err(&self.root, &self.packs.path(name)))?;
            }
            sync_dir(self.packs.dir()).map_err(io_err(self.packs.dir()))?;
            // The index describes packs that are gone: load it again when next needed.
            self.index.take();
        }
        Ok((plan.chunks_removed(), plan.bytes_freed(), plan.more))
    }

    /// Work out what reclaiming space takes once the images in `removed` are gone, for at
    /// most `budget` packs (`plan.more` says whether more are left), writing rewritten
    /// packs' frames into `sink` (the caller finishes it). Also returns, for every image
    /// whose packs change, the packs it will live in.
    #[allow(clippy::type_complexity)]
    fn plan(
        &self,
        removed: &HashSet<i64>,
        sink: &mut Sink<'_>,
        budget: usize,
    ) -> Result<(Plan, Vec<(i64, Vec<i64>)>), StoreError> {
        let mut plan = Plan::default();
        let images: Vec<ImageRecord> = self
            .catalog
            .image_records()?
            .into_iter()
            .filter(|i| !removed.contains(&i.id))
            .collect();
        let mut still_used: HashSet<&str> = HashSet::new();
        for image in &images {
            if let ImageLayout::Chunks(hashes) = &image.layout {
                still_used.extend(hashes.iter().map(String::as_str));
            }
        }
        for hash in self.chunks.list().map_err(io_err(&self.root))? {
            if !still_used.contains(hash.as_str()) {
                plan.legacy_bytes += self.chunks.stored_size(&hash);
                plan.legacy_chunks.push(hash);
            }
        }
        let recorded = self.catalog.packs()?;
        let known: HashSet<&str> = recorded.iter().map(|p| p.name.as_str()).collect();
        plan.orphan_packs = self
            .packs
            .list()
            .map_err(io_err(&self.root))?
            .into_iter()
            .filter(|(name, _)| !known.contains(name.as_str()))
            .collect();
        let live = used_blocks(&images);
        let index = self.block_index()?;
        let pack_fail = |e: io::Error| write_err(&self.root, self.packs.dir())(e);
        for pack in &recorded {
            let usage = pack_use(index, pack.id, &live);
            let dead_plain = usage.plain - usage.live_plain;
            let rewrite =
                usage.live_plain > 0 && dead_plain * REWRITE_WHEN_DEAD_ABOVE > usage.plain;
            if usage.live_plain > 0 && !rewrite {
                continue;
            }
            if plan.dropped_packs.len() == budget {
                plan.more = true;
                break;
            }
            if !plan.dropped_packs.is_empty() && plan.dropped_packs.len() % PACKS_PER_STEP == 0 {
                sink.end_step();
            }
            let mut kept = Vec::new();
            if rewrite {
                let Some(frames) = self.rewrite_live(&pack.name, &usage)? else {
                    // Damaged: left as it is, for verify to report.
                    continue;
                };
                kept = frames;
            }
            for (frame, plain, ids, hashes) in kept {
                let compressed =
                    zstd::bulk::compress(&plain, REPACK_ZSTD_LEVEL).map_err(pack_fail)?;
                let (new_pack, offset) =
                    sink.append(&compressed, plain.len()).map_err(pack_fail)?;
                for id in &ids {
                    plan.moved.insert(*id, new_pack);
                }
                plan.new_frames.push(NewFrame {
                    id: (),
                    pack: new_pack,
                    offset,
                    stored_len: compressed.len() as u64,
                    plain_len: plain.len() as u64,
                    block_size: frame.block_size,
                    members: ids,
                    hashes,
                });
            }
            for (frame, live_slots) in &usage.frames {
                for (slot, id) in frame.members.iter().enumerate() {
                    if *id != NO_BLOCK
                        && !live_slots.contains(&slot)
                        && index.lives_at(*id, frame.id, slot)
                    {
                        plan.dead_blocks.push(*id);
                    }
                }
                plan.dropped_frames.push(frame.id);
            }
            plan.dropped_packs
                .push((pack.id, pack.name.clone(), pack.size));
        }
        let image_packs = self.image_packs_after(&images, index, &plan.moved);
        Ok((plan, image_packs))
    }

    /// The live blocks of a pack, checked against their hashes, as new frames' contents:
    /// (old frame, plain bytes, block numbers, hashes). `None` when the pack cannot be
    /// read back whole.
    #[allow(clippy::type_complexity)]
    fn rewrite_live<'a>(
        &self,
        name: &str,
        usage: &PackUse<'a>,
    ) -> Result<Option<Vec<(&'a FrameInfo, Vec<u8>, Vec<u64>, Vec<super::blocks::Hash>)>>, StoreError>
    {
        let Ok(file) = File::open(self.packs.path(name)) else {
            return Ok(None);
        };
        let mut frames = Vec::new();
        for (frame, live_slots) in &usage.frames {
            if live_slots.is_empty() {
                continue;
            }
            let Ok(plain) = read_frame(&file, frame) else {
                return Ok(None);
            };
            let mut kept = Vec::new();
            let mut ids = Vec::new();
            let mut hashes = Vec::new();
            for &slot in live_slots {
                let bytes = &plain[frame.slot_range(slot)];
                if block_hash(bytes) != frame.hashes[slot] {
                    return Ok(None);
                }
                // A short block (an image's last) stays its frame's last: slots are
                // read as multiples of the block size.
                kept.extend_from_slice(bytes);
                ids.push(frame.members[slot]);
                hashes.push(frame.hashes[slot]);
            }
            frames.push((*frame, kept, ids, hashes));
        }
        Ok(Some(frames))
    }

    /// For every block image whose packs change: the packs it will live in (a negative
    /// number -(k+1) names the k-th new pack).
    fn image_packs_after(
        &self,
        images: &[ImageRecord],
        index: &BlockIndex,
        moved: &HashMap<u64, usize>,
    ) -> Vec<(i64, Vec<i64>)> {
        let mut changes = Vec::new();
        for image in images {
            let ImageLayout::Blocks {
                block_size,
                manifest,
            } = &image.layout
            else {
                continue;
            };
            let Some(ids) = decode_manifest(manifest, block_count(image.size, *block_size)) else {
                continue;
            };
            let before: HashSet<i64> = index.packs_of(&ids).into_iter().collect();
            let after: HashSet<i64> = ids
                .iter()
                .filter_map(|id| match moved.get(id) {
                    Some(k) => Some(-(*k as i64) - 1),
                    None => index.location(*id).map(|(f, _)| f.pack),
                })
                .collect();
            if before != after {
                let mut packs: Vec<i64> = after.into_iter().collect();
                packs.sort_unstable();
                changes.push((image.id, packs));
            }
        }
        changes
    }
}
