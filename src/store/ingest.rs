//! Cutting an image into blocks and storing the new ones in pack files, on every core:
//! one thread reads the image in segments, workers hash each block and compress the
//! blocks the store does not hold yet into frames, and one writer numbers the blocks in
//! image order and appends the frames to packs. Nothing is visible until the caller
//! records the packs in the catalog. The image comes from any reader: a private copy on
//! disk, or pages streamed out of a live database (`PageReader`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::blocks::{
    BlockIndex, FRAME_MAX_BLOCKS, FRAME_MAX_PLAIN, Hash, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, NO_BLOCK,
    NewFrame, block_count, block_hash, blocks_digest,
};
use super::packs::{FRAME_HEADER_BYTES, FinishedPack, PackSequence, Packs};
use super::{Progress, StoreError, io_err, write_err};
use crate::db::DbKind;

/// Bytes read and handed to a worker at a time.
pub(super) const SEGMENT_BYTES: usize = 4 << 20;

/// zstd level 1: the fastest of the standard levels; SQLite pages compress well at it,
/// and snapshots sit on the path of every guarded git command.
const ZSTD_LEVEL: i32 = 1;

/// The dedup unit for an image: SQLite's page size (from the header, at least 4 KiB, so
/// that a changed page changes one block); 4 KiB for DuckDB, whose headers are 4 KiB and
/// whose 256 KiB blocks start at a multiple of 4 KiB.
pub(super) fn block_size_for(kind: DbKind, image: &Path) -> usize {
    if kind != DbKind::Sqlite {
        return MIN_BLOCK_SIZE;
    }
    let mut header = [0u8; 18];
    let page_size = File::open(image)
        .and_then(|mut f| f.read_exact(&mut header))
        .map(|()| match u16::from_be_bytes([header[16], header[17]]) {
            1 => 65536,
            n => usize::from(n),
        })
        .unwrap_or(MIN_BLOCK_SIZE);
    block_size_for_page_size(page_size)
}

/// The dedup unit for a SQLite database of `page_size`: its page, within the block sizes
/// the store knows.
pub(super) fn block_size_for_page_size(page_size: usize) -> usize {
    if page_size.is_power_of_two() {
        page_size.clamp(MIN_BLOCK_SIZE, MAX_BLOCK_SIZE)
    } else {
        MIN_BLOCK_SIZE
    }
}

/// What storing an image produced.
pub(crate) struct Ingested {
    pub(crate) size: u64,
    pub(crate) block_size: usize,
    /// The image's blocks in order, and their hashes.
    pub(crate) block_ids: Vec<u64>,
    pub(crate) hashes: Vec<Hash>,
    pub(crate) digest: String,
    pub(crate) packs: Vec<FinishedPack>,
    pub(crate) frames: Vec<NewFrame>,
    /// Compressed bytes written (frames and their headers).
    pub(crate) new_bytes: u64,
    /// Damaged blocks written again from this image's bytes.
    pub(crate) repaired: Vec<u64>,
}

/// One segment's blocks as a worker left them: every hash, and the new blocks
/// compressed into frames (`None`: compression failed, the ingest stops).
struct Segment {
    seq: usize,
    hashes: Vec<Hash>,
    frames: Option<Vec<CompressedFrame>>,
}

struct CompressedFrame {
    compressed: Vec<u8>,
    plain_len: usize,
    /// The segment's block numbers (0-based) it holds, in order.
    slots: Vec<usize>,
}

/// Store the image that `source` reads (named `image` in errors) in blocks of
/// `block_size`, deduplicated against `index`.
pub(super) fn ingest(
    root: &Path,
    packs: &Packs,
    index: &BlockIndex,
    source: &mut dyn Read,
    image: &Path,
    block_size: usize,
    progress: Progress<'_>,
) -> Result<Ingested, StoreError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    // A few segments in flight at most: memory stays bounded whatever the database size.
    let (work_tx, work_rx) = sync_channel::<(usize, Vec<u8>)>(workers * 2);
    let (done_tx, done_rx) = sync_channel::<Segment>(workers * 2);
    // Shared by the workers only: when the last one stops (the writer failed, say on a
    // full disk, or compression failed), the receiving end goes with it, and the reader's
    // next send fails instead of blocking forever on a full queue.
    let work_rx = Arc::new(Mutex::new(work_rx));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let work_rx = Arc::clone(&work_rx);
            scope.spawn(move || compress_segments(&work_rx, done_tx, index, block_size));
        }
        drop(done_tx);
        drop(work_rx);
        let writer = scope.spawn(|| write_segments(done_rx, root, packs, index, block_size));
        let read = read_segments(source, work_tx, block_size, progress).map_err(io_err(image));
        let written = writer.join().unwrap_or_else(|_| {
            Err(StoreError::Io {
                path: image.to_path_buf(),
                source: io::Error::other("the pack writer thread crashed"),
            })
        });
        match (read, written) {
            (Ok(size), Ok(ingested))
                if ingested.block_ids.len() != block_count(size, block_size) =>
            {
                // A worker that could not start leaves segments out: never record that.
                for pack in &ingested.packs {
                    let _ = packs.remove(&pack.name);
                }
                Err(StoreError::Io {
                    path: image.to_path_buf(),
                    source: io::Error::other("not every block of the image was stored"),
                })
            }
            (Ok(size), Ok(mut ingested)) => {
                ingested.size = size;
                ingested.digest = blocks_digest(ingested.hashes.iter(), size);
                Ok(ingested)
            }
            (Err(e), written) => {
                if let Ok(ingested) = &written {
                    // Nothing refers to these packs yet: take them back.
                    for pack in &ingested.packs {
                        let _ = packs.remove(&pack.name);
                    }
                }
                Err(e)
            }
            // The writer took back its own packs.
            (Ok(_), Err(e)) => Err(e),
        }
    })
}

/// Read the image segment by segment and hand the segments out; returns its size.
fn read_segments(
    file: &mut dyn Read,
    work: SyncSender<(usize, Vec<u8>)>,
    block_size: usize,
    progress: Progress<'_>,
) -> io::Result<u64> {
    let segment_bytes = SEGMENT_BYTES.div_ceil(block_size) * block_size;
    let mut size = 0u64;
    for seq in 0.. {
        let mut buffer = vec![0u8; segment_bytes];
        let filled = read_full(file, &mut buffer)?;
        if filled == 0 {
            break;
        }
        buffer.truncate(filled);
        if work.send((seq, buffer)).is_err() {
            // Every worker stopped (the writer failed, and they with it): the writer
            // reports why.
            break;
        }
        size += filled as u64;
        progress(size);
        if filled < segment_bytes {
            break;
        }
    }
    Ok(size)
}

fn compress_segments(
    work: &Mutex<Receiver<(usize, Vec<u8>)>>,
    done: SyncSender<Segment>,
    index: &BlockIndex,
    block_size: usize,
) {
    let Ok(mut compressor) = zstd::bulk::Compressor::new(ZSTD_LEVEL) else {
        return;
    };
    loop {
        let next = work.lock().map(|rx| rx.recv());
        let Ok(Ok((seq, bytes))) = next else {
            return;
        };
        let hashes: Vec<Hash> = bytes.chunks(block_size).map(block_hash).collect();
        let mut frames = Vec::new();
        let mut seen: HashSet<&Hash> = HashSet::new();
        let mut plain: Vec<u8> = Vec::with_capacity(FRAME_MAX_PLAIN);
        let mut slots: Vec<usize> = Vec::new();
        let mut flush = |plain: &mut Vec<u8>, slots: &mut Vec<usize>| {
            if slots.is_empty() {
                return true;
            }
            let Ok(compressed) = compressor.compress(plain) else {
                return false;
            };
            frames.push(CompressedFrame {
                compressed,
                plain_len: plain.len(),
                slots: std::mem::take(slots),
            });
            plain.clear();
            true
        };
        let mut ok = true;
        for (slot, block) in bytes.chunks(block_size).enumerate() {
            let hash = &hashes[slot];
            if index.reusable(hash).is_some() || !seen.insert(hash) {
                continue;
            }
            if slots.len() == FRAME_MAX_BLOCKS || plain.len() + block.len() > FRAME_MAX_PLAIN {
                ok &= flush(&mut plain, &mut slots);
            }
            plain.extend_from_slice(block);
            slots.push(slot);
        }
        ok &= flush(&mut plain, &mut slots);
        let segment = Segment {
            seq,
            hashes,
            frames: ok.then_some(frames),
        };
        if done.send(segment).is_err() || !ok {
            return;
        }
    }
}

/// Number blocks in image order and append new frames to packs.
fn write_segments(
    done: Receiver<Segment>,
    root: &Path,
    packs: &Packs,
    index: &BlockIndex,
    block_size: usize,
) -> Result<Ingested, StoreError> {
    let mut out = Ingested {
        size: 0,
        block_size,
        block_ids: Vec::new(),
        hashes: Vec::new(),
        digest: String::new(),
        packs: Vec::new(),
        frames: Vec::new(),
        new_bytes: 0,
        repaired: Vec::new(),
    };
    let mut pending: BTreeMap<usize, Segment> = BTreeMap::new();
    let mut next_seq = 0;
    let mut assigned: HashMap<Hash, u64> = HashMap::new();
    let mut next_id = index.last_id + 1;
    let mut sequence = PackSequence::new(packs);
    let pack_dir = packs.dir().to_path_buf();
    let fail = |e: io::Error| write_err(root, &pack_dir)(e);
    let worker_stopped = || StoreError::Io {
        path: root.to_path_buf(),
        source: io::Error::other("a compression worker stopped"),
    };
    let result = (|| {
        for segment in done {
            pending.insert(segment.seq, segment);
            while let Some(segment) = pending.remove(&next_seq) {
                next_seq += 1;
                let frames = segment.frames.as_ref().ok_or_else(worker_stopped)?;
                let mut ids = vec![NO_BLOCK; segment.hashes.len()];
                for frame in frames {
                    let mut members = Vec::with_capacity(frame.slots.len());
                    for &slot in &frame.slots {
                        let hash = segment.hashes[slot];
                        let member = if let Some(&id) = assigned.get(&hash) {
                            ids[slot] = id;
                            NO_BLOCK
                        } else {
                            let id = match index.damaged_with(&hash) {
                                Some(id) => {
                                    out.repaired.push(id);
                                    id
                                }
                                None => {
                                    next_id += 1;
                                    next_id - 1
                                }
                            };
                            assigned.insert(hash, id);
                            ids[slot] = id;
                            id
                        };
                        members.push(member);
                    }
                    if members.iter().all(|m| *m == NO_BLOCK) {
                        continue;
                    }
                    let (pack, offset) = sequence
                        .append(&frame.compressed, frame.plain_len)
                        .map_err(fail)?;
                    out.new_bytes += FRAME_HEADER_BYTES + frame.compressed.len() as u64;
                    out.frames.push(NewFrame {
                        id: (),
                        pack,
                        offset,
                        stored_len: frame.compressed.len() as u64,
                        plain_len: frame.plain_len as u64,
                        block_size,
                        hashes: frame.slots.iter().map(|s| segment.hashes[*s]).collect(),
                        members,
                    });
                }
                for (slot, hash) in segment.hashes.iter().enumerate() {
                    if ids[slot] == NO_BLOCK {
                        ids[slot] = index
                            .reusable(hash)
                            .or_else(|| assigned.get(hash).copied())
                            .ok_or_else(|| StoreError::Io {
                                path: root.to_path_buf(),
                                source: io::Error::other("a block was neither stored nor known"),
                            })?;
                    }
                }
                out.block_ids.extend(ids);
                out.hashes.extend(segment.hashes);
            }
        }
        if !pending.is_empty() {
            return Err(worker_stopped());
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            out.packs = sequence.finish().map_err(fail)?;
            Ok(out)
        }
        Err(e) => {
            sequence.abandon();
            Err(e)
        }
    }
}

fn read_full(file: &mut dyn Read, buffer: &mut [u8]) -> io::Result<usize> {
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

/// An image as a stream of byte runs sent by another thread (pages read out of a live
/// database): the end of the stream is the end of the image. Whoever sends says whether
/// the stream was complete; this reader cannot tell a finished stream from a broken one.
pub(super) struct PageReader {
    runs: Receiver<Vec<u8>>,
    current: Vec<u8>,
    read: usize,
}

impl PageReader {
    pub(super) fn new(runs: Receiver<Vec<u8>>) -> PageReader {
        PageReader {
            runs,
            current: Vec::new(),
            read: 0,
        }
    }
}

impl Read for PageReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.read == self.current.len() {
            match self.runs.recv() {
                Ok(run) => {
                    self.current = run;
                    self.read = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buffer.len().min(self.current.len() - self.read);
        buffer[..n].copy_from_slice(&self.current[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}
