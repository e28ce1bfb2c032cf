//! The catalog's side of remotes: the store's id (its namespace on every remote), which
//! snapshots came from a remote (their origin), and recording fetched packs, frames and
//! snapshots in one transaction.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::records::insert_snapshot_row;
use super::schema::argv_json;
use super::{Catalog, CatalogError, NewImage, NewSnapshot, ts};
use crate::db::{Census, Completeness, DbKind};
use crate::store::blocks::{FrameInfo, NewFrame};
use crate::store::packs::FinishedPack;

use super::packs::insert_packs_and_frames;

/// A fresh random store id: 20 hex digits from the kernel's random source (the clock and
/// process id if that cannot be read: unique enough to keep two stores apart).
pub(super) fn new_store_id() -> String {
    let mut bytes = [0u8; 10];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        let digest = crate::store::blocks::block_hash(seed.as_bytes());
        bytes.copy_from_slice(&digest[..10]);
    }
    crate::db::hex(&bytes)
}

/// One fetched snapshot to record.
pub(crate) struct ImportedSnapshot<'a> {
    /// `<store id>/<snapshot id>` on the remote.
    pub(crate) origin: String,
    pub(crate) worktree: &'a str,
    pub(crate) path: String,
    pub(crate) kind: DbKind,
    pub(crate) created_at: chrono::DateTime<chrono::Utc>,
    pub(crate) consistency: String,
    pub(crate) completeness: Completeness,
    pub(crate) git_state: String,
    pub(crate) census: Census,
    pub(crate) reused: bool,
    pub(crate) message: Option<String>,
    pub(crate) operation_kind: String,
    pub(crate) argv: Vec<String>,
    pub(crate) head_before: Option<String>,
    pub(crate) head_after: Option<String>,
    pub(crate) exit_code: Option<i32>,
    /// The image, its manifest in this store's block numbers; `pack_ids` is ignored:
    /// `pack_names` says which packs (new or already here) hold its blocks.
    pub(crate) image: NewImage<'a>,
    pub(crate) pack_names: Vec<String>,
}

/// A fetch's result: new packs (durable already) and their frames, and the snapshots.
pub(crate) struct Import<'a> {
    pub(crate) packs: &'a [FinishedPack],
    pub(crate) frames: &'a [NewFrame],
    pub(crate) snapshots: &'a [ImportedSnapshot<'a>],
}

impl Catalog {
    /// This store's id; `None` only for a catalog older than schema 5 opened read-only.
    pub(crate) fn store_id(&self) -> Result<Option<String>, CatalogError> {
        if self.version < 5 {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT value FROM store_meta WHERE key = 'store_id'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.fail())
    }

    /// A new random id for this store (see `Store::new_identity`).
    pub(crate) fn reset_store_id(&self) -> Result<String, CatalogError> {
        self.writable()?;
        let id = new_store_id();
        self.conn
            .execute(
                "INSERT OR REPLACE INTO store_meta(key, value) VALUES ('store_id', ?1)",
                [&id],
            )
            .map_err(self.fail())?;
        Ok(id)
    }

    /// Snapshots whose records on remotes were written with secrets that the catalog
    /// has since redacted (schema 6): a push replaces those records.
    pub(crate) fn redacted_snapshots(&self) -> Result<Vec<i64>, CatalogError> {
        let listed: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM store_meta WHERE key = 'redacted_snapshots'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.fail())?;
        Ok(listed
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default())
    }

    /// The origin of every fetched snapshot, by snapshot id.
    pub(crate) fn origins(&self) -> Result<HashMap<i64, String>, CatalogError> {
        if self.version < 5 {
            return Ok(HashMap::new());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, origin FROM snapshots WHERE origin IS NOT NULL")
            .map_err(self.fail())?;
        let origins = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.fail())?
            .collect::<Result<_, _>>()
            .map_err(self.fail())?;
        Ok(origins)
    }

    /// Record a fetch in one transaction; returns the new snapshots' ids and frames.
    pub(crate) fn record_import(
        &mut self,
        import: &Import<'_>,
    ) -> Result<(Vec<i64>, Vec<FrameInfo>), CatalogError> {
        self.writable()?;
        let fail = self.fail_owned();
        let tx = self.conn.transaction().map_err(&fail)?;
        let (_, frames) =
            insert_packs_and_frames(&tx, import.packs, import.frames).map_err(&fail)?;
        let mut ids = Vec::with_capacity(import.snapshots.len());
        for snapshot in import.snapshots {
            let mut pack_ids = Vec::with_capacity(snapshot.pack_names.len());
            for name in &snapshot.pack_names {
                let id: i64 = tx
                    .query_row("SELECT id FROM packs WHERE name = ?1", [name], |r| r.get(0))
                    .map_err(&fail)?;
                pack_ids.push(id);
            }
            let image = NewImage {
                pack_ids,
                manifest: snapshot.image.manifest.clone(),
                ..snapshot.image
            };
            let image_id = Catalog::insert_image(&tx, &image).map_err(&fail)?;
            tx.execute(
                "INSERT INTO operations(created_at, kind, argv, head_before, head_after, \
                 exit_code) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    ts(&snapshot.created_at),
                    snapshot.operation_kind,
                    // A remote's record may come from a dbguard that kept secrets.
                    argv_json(&snapshot.argv),
                    snapshot.head_before,
                    snapshot.head_after,
                    snapshot.exit_code
                ],
            )
            .map_err(&fail)?;
            let operation_id = tx.last_insert_rowid();
            let row = NewSnapshot {
                operation_id,
                image_id,
                worktree: snapshot.worktree,
                path: &snapshot.path,
                kind: snapshot.kind,
                created_at: snapshot.created_at,
                consistency: &snapshot.consistency,
                completeness: &snapshot.completeness,
                git_state: &snapshot.git_state,
                census: &snapshot.census,
                reused: snapshot.reused,
                message: snapshot.message.as_deref(),
                // Never a baseline here whatever it was there: `origin` keeps it out.
                after_loss_of: None,
            };
            let snapshot_id =
                insert_snapshot_row(&tx, &row, image_id, Some(&snapshot.origin)).map_err(&fail)?;
            ids.push(snapshot_id);
        }
        tx.commit().map_err(&fail)?;
        Ok((ids, frames))
    }
}
