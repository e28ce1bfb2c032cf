//! The catalog's records of pack files, their frames and damaged blocks, and of each
//! image's layout (a legacy chunk list or a block manifest).

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};

use super::{Catalog, CatalogError};
use crate::store::blocks::{FrameInfo, Hash, NewFrame, decode_members, encode_members};
use crate::store::ingest::Ingested;
use crate::store::packs::FinishedPack;

/// One pack file as the catalog records it.
#[derive(Debug, Clone)]
pub(crate) struct PackRecord {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) size: u64,
    /// The file's ctime when it was last known intact (written or verified).
    pub(crate) ctime_ns: i64,
}

/// How an image's bytes are stored.
#[derive(Debug, Clone)]
pub(crate) enum ImageLayout {
    /// Legacy: 1 MiB chunk files under `objects/`, by hash, in order.
    Chunks(Vec<String>),
    /// Blocks in packs: the block size and the manifest (`blocks::decode_manifest`).
    Blocks {
        block_size: usize,
        manifest: Vec<u8>,
    },
}

/// One image with what verify and prune need of it.
#[derive(Debug, Clone)]
pub(crate) struct ImageRecord {
    pub(crate) id: i64,
    pub(crate) digest: String,
    pub(crate) size: u64,
    pub(crate) layout: ImageLayout,
}

/// A new image to record with its snapshot.
pub(crate) struct NewImage<'a> {
    pub(crate) digest: &'a str,
    pub(crate) size: u64,
    pub(crate) block_size: usize,
    pub(crate) manifest: Vec<u8>,
    /// The packs its blocks live in.
    pub(crate) pack_ids: Vec<i64>,
}

/// A repack's result to record in one transaction: new packs and frames replace old
/// frames; packs left without frames go.
pub(crate) struct Repacked<'a> {
    pub(crate) packs: &'a [FinishedPack],
    pub(crate) frames: &'a [NewFrame],
    pub(crate) dropped_frames: &'a [i64],
    pub(crate) dropped_packs: &'a [i64],
    /// Blocks no image uses any more: their damage records go.
    pub(crate) dead_blocks: &'a [u64],
    /// (image, the packs its blocks live in now) for every image whose packs changed.
    pub(crate) image_packs: &'a [(i64, Vec<i64>)],
}

fn hashes_blob(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

pub(super) fn insert_packs_and_frames(
    tx: &rusqlite::Transaction<'_>,
    packs: &[FinishedPack],
    frames: &[NewFrame],
) -> rusqlite::Result<(Vec<i64>, Vec<FrameInfo>)> {
    let mut pack_ids = Vec::with_capacity(packs.len());
    for pack in packs {
        tx.execute(
            "INSERT INTO packs(name, size, ctime_ns) VALUES (?1, ?2, ?3)",
            params![pack.name, pack.size as i64, pack.ctime_ns],
        )?;
        pack_ids.push(tx.last_insert_rowid());
    }
    let mut insert = tx.prepare(
        "INSERT INTO frames(pack_id, pack_offset, stored_len, plain_len, block_size, members, \
         hashes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut infos = Vec::with_capacity(frames.len());
    for frame in frames {
        let pack_id = pack_ids[frame.pack];
        insert.execute(params![
            pack_id,
            frame.offset as i64,
            frame.stored_len as i64,
            frame.plain_len as i64,
            frame.block_size as i64,
            encode_members(&frame.members),
            hashes_blob(&frame.hashes),
        ])?;
        infos.push(FrameInfo {
            id: tx.last_insert_rowid(),
            pack: pack_id,
            offset: frame.offset,
            stored_len: frame.stored_len,
            plain_len: frame.plain_len,
            block_size: frame.block_size,
            members: frame.members.clone(),
            hashes: frame.hashes.clone(),
        });
    }
    Ok((pack_ids, infos))
}

impl Catalog {
    /// Whether the catalog has the pack tables (a catalog older than schema 4 opened
    /// read-only has none).
    fn has_packs(&self) -> bool {
        self.version >= 4
    }

    /// Every frame, oldest first.
    pub(crate) fn frames(&self) -> Result<Vec<FrameInfo>, CatalogError> {
        if !self.has_packs() {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, pack_id, pack_offset, stored_len, plain_len, block_size, members, \
                 hashes FROM frames ORDER BY id",
            )
            .map_err(self.fail())?;
        let rows = stmt
            .query_map([], |r| {
                let members: Vec<u8> = r.get(6)?;
                let hashes: Vec<u8> = r.get(7)?;
                Ok(FrameInfo {
                    id: r.get(0)?,
                    pack: r.get(1)?,
                    offset: r.get::<_, i64>(2)? as u64,
                    stored_len: r.get::<_, i64>(3)? as u64,
                    plain_len: r.get::<_, i64>(4)? as u64,
                    block_size: r.get::<_, i64>(5)? as usize,
                    // A damaged record lists no blocks: verify reports what it breaks.
                    members: decode_members(&members).unwrap_or_default(),
                    hashes: hashes
                        .chunks_exact(32)
                        .map(|h| h.try_into().unwrap_or([0; 32]))
                        .collect(),
                })
            })
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(rows)
    }

    pub(crate) fn damaged_blocks(&self) -> Result<HashSet<u64>, CatalogError> {
        if !self.has_packs() {
            return Ok(HashSet::new());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT block FROM damaged_blocks")
            .map_err(self.fail())?;
        let ids = stmt
            .query_map([], |r| r.get::<_, i64>(0).map(|id| id as u64))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(ids)
    }

    pub(crate) fn packs(&self) -> Result<Vec<PackRecord>, CatalogError> {
        if !self.has_packs() {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, size, ctime_ns FROM packs ORDER BY id")
            .map_err(self.fail())?;
        let packs = stmt
            .query_map([], |r| {
                Ok(PackRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    ctime_ns: r.get(3)?,
                })
            })
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(packs)
    }

    /// Record an ingest's packs and frames (durable already), and that the blocks it
    /// wrote again are whole. Returns the new frames with their ids.
    pub(crate) fn add_packs(
        &mut self,
        ingested: &Ingested,
    ) -> Result<(Vec<i64>, Vec<FrameInfo>), CatalogError> {
        self.writable()?;
        let fail = self.fail_owned();
        let tx = self.conn.transaction().map_err(&fail)?;
        let added =
            insert_packs_and_frames(&tx, &ingested.packs, &ingested.frames).map_err(&fail)?;
        for id in &ingested.repaired {
            tx.execute("DELETE FROM damaged_blocks WHERE block = ?1", [*id as i64])
                .map_err(&fail)?;
        }
        tx.commit().map_err(&fail)?;
        Ok(added)
    }

    /// Remember blocks found damaged or missing, so that no snapshot reuses them.
    pub(crate) fn mark_damaged(&self, ids: &[u64]) -> Result<(), CatalogError> {
        self.writable()?;
        for id in ids {
            self.conn
                .execute(
                    "INSERT OR IGNORE INTO damaged_blocks(block) VALUES (?1)",
                    [*id as i64],
                )
                .map_err(self.fail())?;
        }
        Ok(())
    }

    /// Exactly these blocks are damaged (what `verify` found, reading every one).
    pub(crate) fn set_damaged(&self, ids: &[u64]) -> Result<(), CatalogError> {
        self.writable()?;
        let fail = self.fail_owned();
        let tx = self.conn.unchecked_transaction().map_err(&fail)?;
        tx.execute("DELETE FROM damaged_blocks", [])
            .map_err(&fail)?;
        for id in ids {
            tx.execute(
                "INSERT INTO damaged_blocks(block) VALUES (?1)",
                [*id as i64],
            )
            .map_err(&fail)?;
        }
        tx.commit().map_err(&fail)
    }

    /// A pack was read and found intact with this ctime.
    pub(crate) fn set_pack_ctime(&self, pack_id: i64, ctime_ns: i64) -> Result<(), CatalogError> {
        self.writable()?;
        self.conn
            .execute(
                "UPDATE packs SET ctime_ns = ?2 WHERE id = ?1",
                params![pack_id, ctime_ns],
            )
            .map_err(self.fail())?;
        Ok(())
    }

    /// How the image's bytes are stored.
    pub(crate) fn image_layout(&self, image_id: i64) -> Result<ImageLayout, CatalogError> {
        if self.has_packs() {
            let blocks: Option<(Option<i64>, Option<Vec<u8>>)> = self
                .conn
                .query_row(
                    "SELECT block_size, manifest FROM images WHERE id = ?1",
                    [image_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(self.fail())?;
            if let Some((Some(block_size), manifest)) = blocks {
                return Ok(ImageLayout::Blocks {
                    block_size: block_size as usize,
                    manifest: manifest.unwrap_or_default(),
                });
            }
        }
        self.image_chunks(image_id).map(ImageLayout::Chunks)
    }

    /// Every image with its layout, by id.
    pub(crate) fn image_records(&self) -> Result<Vec<ImageRecord>, CatalogError> {
        let mut records = Vec::new();
        for (id, digest, size) in self.images()? {
            records.push(ImageRecord {
                id,
                digest,
                size,
                layout: self.image_layout(id)?,
            });
        }
        Ok(records)
    }

    /// (id, name) of the packs an image's blocks live in.
    pub(crate) fn image_packs(&self, image_id: i64) -> Result<Vec<(i64, String)>, CatalogError> {
        if !self.has_packs() {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT p.id, p.name FROM image_packs i JOIN packs p ON p.id = i.pack_id \
                 WHERE i.image_id = ?1 ORDER BY p.id",
            )
            .map_err(self.fail())?;
        let packs = stmt
            .query_map([image_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(packs)
    }

    /// Inside a snapshot's transaction: the image row (new or existing, by digest).
    pub(super) fn insert_image(
        tx: &rusqlite::Transaction<'_>,
        image: &NewImage<'_>,
    ) -> rusqlite::Result<i64> {
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM images WHERE digest = ?1",
                [image.digest],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Ok(id);
        }
        tx.execute(
            "INSERT INTO images(digest, size, block_size, manifest) VALUES (?1, ?2, ?3, ?4)",
            params![
                image.digest,
                image.size as i64,
                image.block_size as i64,
                image.manifest
            ],
        )?;
        let id = tx.last_insert_rowid();
        for pack_id in &image.pack_ids {
            tx.execute(
                "INSERT INTO image_packs(image_id, pack_id) VALUES (?1, ?2)",
                params![id, pack_id],
            )?;
        }
        Ok(id)
    }

    /// Record a repack in one transaction (its packs are durable already).
    pub(crate) fn record_repack(
        &mut self,
        repacked: &Repacked<'_>,
    ) -> Result<(Vec<i64>, Vec<FrameInfo>), CatalogError> {
        self.writable()?;
        let fail = self.fail_owned();
        let tx = self.conn.transaction().map_err(&fail)?;
        let added = insert_packs_and_frames(&tx, repacked.packs, repacked.frames).map_err(&fail)?;
        let (new_pack_ids, _) = &added;
        for (image_id, packs) in repacked.image_packs {
            tx.execute("DELETE FROM image_packs WHERE image_id = ?1", [image_id])
                .map_err(&fail)?;
            for pack in packs {
                // A negative id names one of this repack's packs by its index.
                let pack = if *pack < 0 {
                    new_pack_ids[(-pack - 1) as usize]
                } else {
                    *pack
                };
                tx.execute(
                    "INSERT OR IGNORE INTO image_packs(image_id, pack_id) VALUES (?1, ?2)",
                    params![image_id, pack],
                )
                .map_err(&fail)?;
            }
        }
        for frame in repacked.dropped_frames {
            tx.execute("DELETE FROM frames WHERE id = ?1", [frame])
                .map_err(&fail)?;
        }
        for pack in repacked.dropped_packs {
            tx.execute("DELETE FROM image_packs WHERE pack_id = ?1", [pack])
                .map_err(&fail)?;
            tx.execute("DELETE FROM packs WHERE id = ?1", [pack])
                .map_err(&fail)?;
        }
        for block in repacked.dead_blocks {
            tx.execute(
                "DELETE FROM damaged_blocks WHERE block = ?1",
                [*block as i64],
            )
            .map_err(&fail)?;
        }
        tx.commit().map_err(&fail)?;
        Ok(added)
    }
}
