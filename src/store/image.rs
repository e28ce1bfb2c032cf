//! Reading an image back out of the store into a file: from blocks in packs (each frame
//! decompressed once, its blocks written wherever the image holds them, on every core)
//! or from legacy chunk files, every piece checked against its hash and the whole against
//! the image digest.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::blocks::{FrameInfo, block_count, block_hash, blocks_digest, decode_manifest};
use super::catalog::ImageLayout;
use super::chunks::{ChunkError, chunk_list_digest};
use super::files::create_private;
use super::packs::{Packs, read_frame};
use super::{Progress, SnapshotInfo, Store, StoreError, io_err};
use crate::db::hex;

/// One frame's share of an image: which of its slots go where.
struct FrameWork<'a> {
    frame: &'a FrameInfo,
    pack_name: &'a str,
    /// (slot in the frame, block position in the image).
    placements: Vec<(usize, u64)>,
}

impl Store {
    /// Write the image of a snapshot to `dest` (created; must not exist), checking every
    /// piece's hash and the image digest. With `durable`, the file is fsynced before
    /// returning (a restore renames it over the user's file); a scratch copy that is read
    /// and deleted (export) skips that, which saves writing the whole image to disk.
    pub(crate) fn materialize(
        &self,
        snapshot: &SnapshotInfo,
        dest: &Path,
        durable: bool,
        progress: Progress<'_>,
    ) -> Result<(), StoreError> {
        let working = self.working(progress);
        let progress: Progress<'_> = &working;
        let file = create_private(dest).map_err(io_err(dest))?;
        let written = match self.catalog.image_layout(snapshot.image_id)? {
            ImageLayout::Chunks(hashes) => self.write_chunks(snapshot, &hashes, file, progress),
            ImageLayout::Blocks {
                block_size,
                manifest,
            } => self.write_blocks(snapshot, block_size, &manifest, &file, progress),
        };
        let file = match written {
            Ok(file) => file,
            Err(e) => {
                if matches!(e, StoreError::Chunk(_)) && !self.read_only {
                    // Found damaged: the next snapshot of this path must read the live
                    // file (and so rewrite what is damaged) instead of reusing this image.
                    let _ = self
                        .catalog
                        .forget_stat_cache_of_images(&[snapshot.image_id]);
                }
                return Err(e);
            }
        };
        if durable {
            file.sync_all().map_err(io_err(dest))?;
        }
        Ok(())
    }

    fn write_chunks(
        &self,
        snapshot: &SnapshotInfo,
        hashes: &[String],
        file: File,
        progress: Progress<'_>,
    ) -> Result<File, StoreError> {
        if chunk_list_digest(hashes, snapshot.size) != snapshot.image_digest {
            return Err(StoreError::DigestMismatch { id: snapshot.id });
        }
        let mut out = BufWriter::new(file);
        let mut written = 0u64;
        for hash in hashes {
            let plain = self.chunks.get(hash)?;
            out.write_all(&plain).map_err(io_err(&self.root))?;
            written += plain.len() as u64;
            progress(written);
        }
        if written != snapshot.size {
            return Err(StoreError::DigestMismatch { id: snapshot.id });
        }
        out.into_inner()
            .map_err(|e| io_err(&self.root)(e.into_error()))
    }

    fn write_blocks(
        &self,
        snapshot: &SnapshotInfo,
        block_size: usize,
        manifest: &[u8],
        file: &File,
        progress: Progress<'_>,
    ) -> Result<File, StoreError> {
        let mismatch = StoreError::DigestMismatch { id: snapshot.id };
        let count = block_count(snapshot.size, block_size);
        let ids = decode_manifest(manifest, count).ok_or(mismatch)?;
        let index = self.block_index()?;
        let packs: HashMap<i64, String> = self
            .catalog
            .packs()?
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect();
        let mut hashes = Vec::with_capacity(ids.len());
        let mut work: HashMap<i64, FrameWork<'_>> = HashMap::new();
        for (position, id) in ids.iter().enumerate() {
            let located = index
                .location(*id)
                .and_then(|(frame, slot)| Some((frame, slot, packs.get(&frame.pack)?)));
            let Some((frame, slot, pack_name)) = located else {
                return Err(StoreError::Chunk(ChunkError::Missing {
                    hash: format!("#{id}"),
                    path: self.packs.dir().to_path_buf(),
                }));
            };
            hashes.push(frame.hashes[slot]);
            work.entry(frame.id)
                .or_insert_with(|| FrameWork {
                    frame,
                    pack_name,
                    placements: Vec::new(),
                })
                .placements
                .push((slot, position as u64));
        }
        if blocks_digest(hashes.iter(), snapshot.size) != snapshot.image_digest {
            return Err(StoreError::DigestMismatch { id: snapshot.id });
        }
        file.set_len(snapshot.size).map_err(io_err(&self.root))?;
        // Frames in pack order, so each pack is read front to back.
        let mut queue: Vec<FrameWork<'_>> = work.into_values().collect();
        queue.sort_by(|a, b| (b.pack_name, b.frame.offset).cmp(&(a.pack_name, a.frame.offset)));
        let queue = Mutex::new(queue);
        let written = AtomicU64::new(0);
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let size = snapshot.size;
        let (packs, root) = (&self.packs, &self.root);
        let results: Vec<Result<(), FrameFailure<'_>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut open: Option<(String, File)> = None;
                        loop {
                            let Some(job) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                                return Ok(());
                            };
                            let result =
                                place_frame(packs, root, &job, &mut open, file, block_size, size);
                            if result.is_err() {
                                // Stop the others too: one error fails the whole image.
                                if let Ok(mut q) = queue.lock() {
                                    q.clear();
                                }
                                return result;
                            }
                            let bytes: u64 = job
                                .placements
                                .iter()
                                .map(|(slot, _)| job.frame.slot_range(*slot).len() as u64)
                                .sum();
                            progress(written.fetch_add(bytes, Ordering::Relaxed) + bytes);
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(FrameFailure {
                            error: io_err(root)(std::io::Error::other("a restore thread crashed")),
                            damaged: None,
                        })
                    })
                })
                .collect()
        });
        for result in results {
            if let Err(failure) = result {
                if let Some(frame) = failure.damaged {
                    self.mark_frame_damaged(frame)?;
                }
                return Err(failure.error);
            }
        }
        if written.into_inner() != snapshot.size {
            return Err(StoreError::DigestMismatch { id: snapshot.id });
        }
        file.try_clone().map_err(io_err(&self.root))
    }

    /// A frame could not be read back: no snapshot may reuse its blocks, and the next
    /// one that holds their bytes writes them again.
    fn mark_frame_damaged(&self, frame: &FrameInfo) -> Result<(), StoreError> {
        if self.read_only {
            return Ok(());
        }
        let ids: Vec<u64> = frame.members.iter().copied().filter(|m| *m != 0).collect();
        Ok(self.catalog.mark_damaged(&ids)?)
    }
}

/// Why a frame could not be placed, and the frame when its stored bytes are to blame.
struct FrameFailure<'a> {
    error: StoreError,
    damaged: Option<&'a FrameInfo>,
}

/// Decompress one frame and write its blocks where the image holds them.
fn place_frame<'a>(
    packs: &Packs,
    root: &Path,
    job: &FrameWork<'a>,
    open: &mut Option<(String, File)>,
    out: &File,
    block_size: usize,
    image_size: u64,
) -> Result<(), FrameFailure<'a>> {
    let path = packs.path(job.pack_name);
    let first_hash = hex(&job.frame.hashes[job.placements[0].0]);
    if open.as_ref().is_none_or(|(name, _)| name != job.pack_name) {
        let file = File::open(&path).map_err(|_| FrameFailure {
            error: StoreError::Chunk(ChunkError::Missing {
                hash: first_hash.clone(),
                path: path.clone(),
            }),
            damaged: Some(job.frame),
        })?;
        *open = Some((job.pack_name.to_string(), file));
    }
    let (_, pack) = open.as_ref().expect("opened above");
    let damaged = |hash: String, detail: String| FrameFailure {
        error: StoreError::Chunk(ChunkError::Damaged {
            hash,
            path: path.clone(),
            detail,
        }),
        damaged: Some(job.frame),
    };
    let plain = read_frame(pack, job.frame).map_err(|d| damaged(first_hash.clone(), d))?;
    let write = |run: &std::ops::Range<usize>, offset: u64| {
        out.write_all_at(&plain[run.clone()], offset)
            .map_err(|e| FrameFailure {
                error: io_err(root)(e),
                damaged: None,
            })
    };
    // Blocks that follow each other in the frame and in the image (most of them: a
    // database's pages are stored in order) go out in one write, not one per page.
    let mut run: Option<(std::ops::Range<usize>, u64)> = None;
    for &(slot, position) in &job.placements {
        let range = job.frame.slot_range(slot);
        let bytes = &plain[range.clone()];
        let offset = position * block_size as u64;
        let expected_len = (image_size - offset).min(block_size as u64);
        if bytes.len() as u64 != expected_len || block_hash(bytes) != job.frame.hashes[slot] {
            return Err(damaged(
                hex(&job.frame.hashes[slot]),
                "content does not match its hash".into(),
            ));
        }
        match &mut run {
            Some((pending, at))
                if pending.end == range.start && *at + pending.len() as u64 == offset =>
            {
                pending.end = range.end;
            }
            _ => {
                if let Some((pending, at)) = run.replace((range, offset)) {
                    write(&pending, at)?;
                }
            }
        }
    }
    if let Some((pending, at)) = run {
        write(&pending, at)?;
    }
    Ok(())
}
