//! `fetch`: bring snapshots from a remote into the local store (a fresh clone, a new
//! machine, a store that was lost). Three steps, so that a command can show progress and
//! the store's lock is held only for the last: [`FetchPlan::prepare`] reads the remote's
//! records and indexes and picks the packs to download; [`FetchPlan::download`] checks
//! each pack against its hash and every block in it, into `incoming/`; [`FetchPlan::import`]
//! renumbers the blocks into this store, checks each image's digest, moves the packs in
//! and records everything in one catalog transaction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    MAX_INDEX_BYTES, MAX_RECORD_BYTES, MIN_FETCHED_BLOCK, Namespace, PackIndex, RemoteLock,
    ReplicaError, SnapshotRecord, check_pack, check_record, from_runs, get_bounded, index_object,
    namespaces, pack_object, parse_json, snapshot_object,
};
use crate::db::{Census, DbKind};
use crate::remote::{Client, RemoteError};
use crate::store::blocks::{
    FRAME_MAX_PLAIN, Hash, NewFrame, block_count, blocks_digest, encode_manifest,
};
use crate::store::catalog::{self, Import, ImportedSnapshot, NewImage};
use crate::store::files::{create_private, create_private_dir};
use crate::store::packs::MAX_PACK_BYTES;
use crate::store::{Store, StoreError};

/// Where a remote block is: (pack, frame number in its index, slot).
type Location = (String, usize, usize);

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FetchedSnapshot {
    pub(crate) id: i64,
    pub(crate) origin: String,
    pub(crate) path: String,
    pub(crate) created_at: String,
}

#[derive(Debug, Default)]
pub(crate) struct FetchReport {
    pub(crate) imported: Vec<FetchedSnapshot>,
    /// Snapshots on the remote that this store has already.
    pub(crate) already: usize,
    /// `(origin, why)` for snapshots that cannot be fetched whole.
    pub(crate) incomplete: Vec<(String, String)>,
    pub(crate) packs_fetched: usize,
    pub(crate) bytes_fetched: u64,
}

/// One snapshot to fetch: its namespace, record and block numbers (the remote store's).
struct Wanted {
    space: String,
    record: SnapshotRecord,
    blocks: Vec<u64>,
}

/// A pack downloaded and checked: its file in `incoming/` and its blocks' hashes.
struct Downloaded {
    space: String,
    name: String,
    file: PathBuf,
    hashes: Vec<Vec<Hash>>,
}

pub(crate) struct FetchPlan {
    _lock: RemoteLock,
    store_root: PathBuf,
    incoming: PathBuf,
    wanted: Vec<Wanted>,
    /// Per namespace: each pack's index.
    indexes: HashMap<(String, String), PackIndex>,
    /// Per namespace: where each needed block is read from.
    locations: HashMap<String, HashMap<u64, Location>>,
    /// Packs to download: (namespace, name, size).
    downloads: Vec<(String, String, u64)>,
    downloaded: Vec<Downloaded>,
    report: FetchReport,
}

/// What the local store has: its id, pack names, fetched origins, own snapshot ids.
struct LocalState {
    store_id: Option<String>,
    packs: HashSet<String>,
    origins: HashSet<String>,
    own: HashSet<i64>,
}

fn local_state(store_root: &Path) -> Result<LocalState, StoreError> {
    let Some(store) = Store::open_existing(store_root)? else {
        return Ok(LocalState {
            store_id: None,
            packs: HashSet::new(),
            origins: HashSet::new(),
            own: HashSet::new(),
        });
    };
    let origins = store.catalog.origins()?;
    let own = store
        .catalog
        .snapshots(None, None, None)?
        .into_iter()
        .map(|s| s.id)
        .filter(|id| !origins.contains_key(id))
        .collect();
    Ok(LocalState {
        store_id: store.catalog.store_id()?,
        packs: store.catalog.packs()?.into_iter().map(|p| p.name).collect(),
        origins: origins.into_values().collect(),
        own,
    })
}

impl FetchPlan {
    /// Read what the remote has and decide what to download.
    pub(crate) fn prepare(store_root: &Path, client: &Client) -> Result<FetchPlan, ReplicaError> {
        let lock = RemoteLock::take(store_root, true)?;
        let local = local_state(store_root)?;
        let incoming = store_root.join("incoming");
        // We hold the remote lock: anything here is a cut-short fetch's.
        let _ = std::fs::remove_dir_all(&incoming);
        let mut plan = FetchPlan {
            _lock: lock,
            store_root: store_root.to_path_buf(),
            incoming,
            wanted: Vec::new(),
            indexes: HashMap::new(),
            locations: HashMap::new(),
            downloads: Vec::new(),
            downloaded: Vec::new(),
            report: FetchReport::default(),
        };
        let spaces = namespaces(&client.list("stores")?);
        let mut to_read = Vec::new();
        for (space_id, space) in &spaces {
            for &id in &space.snapshots {
                let origin = format!("{space_id}/{id}");
                let ours = local.store_id.as_deref() == Some(space_id) && local.own.contains(&id);
                if ours || local.origins.contains(&origin) {
                    plan.report.already += 1;
                } else {
                    to_read.push((space_id.clone(), id));
                }
            }
        }
        let records = client.parallel(
            to_read,
            |bucket, (space, id): (String, i64)| async move {
                let name = snapshot_object(&space, id);
                let record = get_bounded(&bucket, &name, MAX_RECORD_BYTES)
                    .await?
                    .and_then(|bytes| parse_json::<SnapshotRecord>(&bytes, &name));
                Ok((space, id, record))
            },
            |_| {},
        )?;
        let mut spaces_wanted = BTreeMap::new();
        for (space, id, record) in records {
            let origin = format!("{space}/{id}");
            match record {
                Ok(record) if record.store == space && record.id == id => {
                    if let Err(why) = check_record(&record) {
                        plan.report.incomplete.push((origin, why));
                        continue;
                    }
                    spaces_wanted
                        .entry(space.clone())
                        .or_insert_with(Vec::new)
                        .push(record);
                }
                Ok(_) => plan
                    .report
                    .incomplete
                    .push((origin, "its record names another snapshot".into())),
                Err(why) => plan.report.incomplete.push((origin, why)),
            }
        }
        for (space_id, records) in spaces_wanted {
            let space = &spaces[&space_id];
            plan.read_indexes(client, &space_id, space)?;
            plan.locate(&space_id, space, &local.packs, records);
        }
        Ok(plan)
    }

    /// Download and parse every index of a namespace.
    fn read_indexes(
        &mut self,
        client: &Client,
        space_id: &str,
        space: &Namespace,
    ) -> Result<(), ReplicaError> {
        let names: Vec<(String, String)> = space
            .indexed
            .iter()
            .map(|p| (space_id.to_string(), p.clone()))
            .collect();
        let indexes = client.parallel(
            names,
            |bucket, (space, pack): (String, String)| async move {
                let name = index_object(&space, &pack);
                let index = get_bounded(&bucket, &name, MAX_INDEX_BYTES)
                    .await?
                    .and_then(|bytes| parse_json::<PackIndex>(&bytes, &name));
                Ok((pack, index))
            },
            |_| {},
        )?;
        for (pack, index) in indexes {
            // A damaged index leaves its pack out; snapshots needing it say so below.
            if let Ok(index) = index
                && index.pack == pack
            {
                self.indexes.insert((space_id.to_string(), pack), index);
            }
        }
        Ok(())
    }

    /// Find every block of each wanted snapshot in the namespace's packs (those already
    /// here first) and list the packs to download.
    fn locate(
        &mut self,
        space_id: &str,
        space: &Namespace,
        local_packs: &HashSet<String>,
        records: Vec<SnapshotRecord>,
    ) {
        let mut locations: HashMap<u64, Location> = HashMap::new();
        let mut packs: Vec<&PackIndex> = self
            .indexes
            .iter()
            .filter(|((s, name), _)| s == space_id && space.packs.contains_key(name))
            .map(|(_, index)| index)
            .collect();
        packs.sort_by_key(|index| (!local_packs.contains(&index.pack), index.pack.clone()));
        for index in packs {
            for (frame, entry) in index.frames.iter().enumerate() {
                let Some(members) = from_runs(&entry.members, FRAME_MAX_PLAIN / MIN_FETCHED_BLOCK)
                else {
                    continue;
                };
                for (slot, block) in members.into_iter().enumerate() {
                    if block != 0 {
                        locations
                            .entry(block)
                            .or_insert_with(|| (index.pack.clone(), frame, slot));
                    }
                }
            }
        }
        let mut downloads: BTreeMap<String, u64> = BTreeMap::new();
        for record in records {
            let origin = format!("{space_id}/{}", record.id);
            let expected = block_count(record.image.size, record.image.block_size.max(1));
            let blocks = match from_runs(&record.image.manifest, expected) {
                Some(blocks) if blocks.len() == expected && record.image.block_size > 0 => blocks,
                _ => {
                    self.report
                        .incomplete
                        .push((origin, "its manifest is damaged".into()));
                    continue;
                }
            };
            let missing = blocks.iter().filter(|b| !locations.contains_key(b)).count();
            if missing > 0 {
                self.report.incomplete.push((
                    origin,
                    format!(
                        "{missing} of its chunks are in no complete pack on the remote (an interrupted push: push again from the store that took it)"
                    ),
                ));
                continue;
            }
            for block in &blocks {
                let pack = &locations[block].0;
                if !local_packs.contains(pack) {
                    downloads.insert(pack.clone(), space.packs[pack]);
                }
            }
            self.wanted.push(Wanted {
                space: space_id.to_string(),
                record,
                blocks,
            });
        }
        // A pack in two spaces (a fresh clone's push copied it on the remote) is
        // downloaded once; `import` maps the other space's blocks onto it.
        let scheduled: HashSet<String> = self
            .downloads
            .iter()
            .map(|(_, name, _)| name.clone())
            .collect();
        self.downloads.extend(
            downloads
                .into_iter()
                .filter(|(name, _)| !scheduled.contains(name))
                .map(|(name, size)| (space_id.to_string(), name, size)),
        );
        self.locations.insert(space_id.to_string(), locations);
    }

    pub(crate) fn download_bytes(&self) -> u64 {
        self.downloads.iter().map(|(_, _, size)| size).sum()
    }

    /// Download every needed pack into `incoming/`, checked against its name and index.
    pub(crate) fn download(
        &mut self,
        client: &Client,
        progress: &dyn Fn(u64),
    ) -> Result<(), ReplicaError> {
        if self.downloads.is_empty() {
            return Ok(());
        }
        create_private_dir(&self.incoming).map_err(|e| StoreError::Io {
            path: self.incoming.clone(),
            source: e,
        })?;
        let jobs: Vec<(String, String, u64, PackIndex, PathBuf)> = self
            .downloads
            .iter()
            .map(|(space, name, size)| {
                (
                    space.clone(),
                    name.clone(),
                    *size,
                    self.indexes[&(space.clone(), name.clone())].clone(),
                    self.incoming.join(format!("{name}.pack")),
                )
            })
            .collect();
        let mut fetched = 0u64;
        let results = client.parallel(
            jobs,
            |bucket, (space, name, size, index, file): (String, String, u64, PackIndex, PathBuf)| async move {
                let bytes = match get_bounded(&bucket, &pack_object(&space, &name), MAX_PACK_BYTES).await? {
                    Ok(bytes) => bytes,
                    Err(why) => return Ok((space, name, size, file, Err(why))),
                };
                let checked = check_pack(&name, &bytes, &index);
                if checked.is_ok() {
                    write_durably(&file, &bytes).map_err(|e| RemoteError::Local {
                        url: "the store".into(),
                        path: file.clone(),
                        detail: e.to_string(),
                    })?;
                }
                Ok((space, name, size, file, checked))
            },
            |(_, _, size, _, _)| {
                fetched += size;
                progress(fetched);
            },
        )?;
        for (space, name, size, file, checked) in results {
            match checked {
                Ok(hashes) => {
                    self.report.packs_fetched += 1;
                    self.report.bytes_fetched += size;
                    self.downloaded.push(Downloaded {
                        space,
                        name,
                        file,
                        hashes,
                    });
                }
                Err(why) => {
                    // Snapshots reading from this pack cannot be fetched.
                    let mut kept = Vec::new();
                    for wanted in self.wanted.drain(..) {
                        let uses = wanted.space == space
                            && wanted
                                .blocks
                                .iter()
                                .any(|b| self.locations[&space][b].0 == name);
                        if uses {
                            self.report.incomplete.push((
                                format!("{space}/{}", wanted.record.id),
                                format!("the remote's copy is damaged: {why}"),
                            ));
                        } else {
                            kept.push(wanted);
                        }
                    }
                    self.wanted = kept;
                }
            }
        }
        Ok(())
    }

    /// Record the fetched snapshots in the store (taking its lock), filed under
    /// `worktree`.
    pub(crate) fn import(mut self, worktree: &str) -> Result<FetchReport, ReplicaError> {
        if self.wanted.is_empty() {
            let _ = std::fs::remove_dir_all(&self.incoming);
            return Ok(self.report);
        }
        // Oldest first, so that local ids follow time as they do for snapshots taken here
        // (`log` lists by id, and `restore PATH` takes the highest): records arrive in
        // whatever order the downloads finished. `created_at` is RFC 3339 in UTC with
        // fixed precision (catalog::ts), so its text sorts by time.
        self.wanted.sort_by(|a, b| {
            (&a.record.created_at, &a.space, a.record.id).cmp(&(
                &b.record.created_at,
                &b.space,
                b.record.id,
            ))
        });
        let mut store = Store::open(&self.store_root)?;
        let index = store.block_index()?;
        let local_packs: HashMap<String, i64> = store
            .catalog
            .packs()?
            .into_iter()
            .map(|p| (p.name, p.id))
            .collect();
        // (namespace, pack, frame, slot) → (local block, hash), for every pack involved.
        let mut local_block: HashMap<(String, String, usize, usize), (u64, Hash)> = HashMap::new();
        let mut next_id = index.last_id + 1;
        let mut new_frames: Vec<(usize, NewFrame)> = Vec::new();
        let downloaded = std::mem::take(&mut self.downloaded);
        for (pack_number, pack) in downloaded.iter().enumerate() {
            let pack_index = &self.indexes[&(pack.space.clone(), pack.name.clone())];
            for (frame_number, (entry, hashes)) in
                pack_index.frames.iter().zip(&pack.hashes).enumerate()
            {
                let remote = from_runs(&entry.members, FRAME_MAX_PLAIN / MIN_FETCHED_BLOCK)
                    .unwrap_or_default();
                let members: Vec<u64> = remote
                    .iter()
                    .enumerate()
                    .map(|(slot, &block)| {
                        if block == 0 {
                            return 0;
                        }
                        let id = next_id;
                        next_id += 1;
                        local_block.insert(
                            (pack.space.clone(), pack.name.clone(), frame_number, slot),
                            (id, hashes[slot]),
                        );
                        id
                    })
                    .collect();
                new_frames.push((
                    pack_number,
                    NewFrame {
                        id: (),
                        pack: pack_number,
                        offset: entry.offset,
                        stored_len: entry.stored_len,
                        plain_len: entry.plain_len,
                        block_size: entry.block_size,
                        members,
                        hashes: hashes.clone(),
                    },
                ));
            }
        }
        // The same pack in another space (downloaded once, above): its blocks there are
        // the ones just numbered, frame by frame (same bytes, same offsets).
        let fetched_from: HashMap<&str, &str> = downloaded
            .iter()
            .map(|p| (p.name.as_str(), p.space.as_str()))
            .collect();
        for ((space, name), pack_index) in &self.indexes {
            let Some(&from) = fetched_from.get(name.as_str()) else {
                continue;
            };
            if from == space {
                continue;
            }
            let fetched_index = &self.indexes[&(from.to_string(), name.clone())];
            for (frame_number, entry) in pack_index.frames.iter().enumerate() {
                let Some(same) = fetched_index
                    .frames
                    .iter()
                    .position(|f| f.offset == entry.offset)
                else {
                    continue;
                };
                let slots = from_runs(&entry.members, FRAME_MAX_PLAIN / MIN_FETCHED_BLOCK)
                    .map_or(0, |members| members.len());
                for slot in 0..slots {
                    if let Some(&found) =
                        local_block.get(&(from.to_string(), name.clone(), same, slot))
                    {
                        local_block
                            .insert((space.clone(), name.clone(), frame_number, slot), found);
                    }
                }
            }
        }
        for ((space, name), pack_index) in &self.indexes {
            let Some(&pack_id) = local_packs.get(name) else {
                continue;
            };
            let frames = index.frames_of_pack(pack_id);
            for (frame_number, entry) in pack_index.frames.iter().enumerate() {
                if let Some(frame) = frames.iter().find(|f| f.offset == entry.offset) {
                    for (slot, (&id, hash)) in frame.members.iter().zip(&frame.hashes).enumerate() {
                        local_block.insert(
                            (space.clone(), name.clone(), frame_number, slot),
                            (id, *hash),
                        );
                    }
                }
            }
        }
        // Each wanted snapshot's manifest in local numbers, checked against its digest.
        let mut imports = Vec::new();
        let mut used_packs: HashSet<String> = HashSet::new();
        for wanted in &self.wanted {
            let origin = format!("{}/{}", wanted.space, wanted.record.id);
            let locations = &self.locations[&wanted.space];
            let mut ids = Vec::with_capacity(wanted.blocks.len());
            let mut hashes = Vec::with_capacity(wanted.blocks.len());
            let mut packs = HashSet::new();
            for block in &wanted.blocks {
                let (pack, frame, slot) = &locations[block];
                match local_block.get(&(wanted.space.clone(), pack.clone(), *frame, *slot)) {
                    Some(&(id, hash)) if id != 0 => {
                        ids.push(id);
                        hashes.push(hash);
                        packs.insert(pack.clone());
                    }
                    _ => break,
                }
            }
            let whole = ids.len() == wanted.blocks.len()
                && blocks_digest(hashes.iter(), wanted.record.image.size)
                    == wanted.record.image.digest;
            if !whole {
                self.report.incomplete.push((
                    origin,
                    "its chunks on the remote do not make up its image (damaged or mixed-up records)"
                        .into(),
                ));
                continue;
            }
            used_packs.extend(packs.iter().cloned());
            imports.push((wanted, origin, ids, packs));
        }
        // Move the packs in (durable), then record it all in one transaction.
        let mut finished = Vec::new();
        let mut renumber = HashMap::new();
        for (number, pack) in downloaded.iter().enumerate() {
            if used_packs.contains(&pack.name) && !local_packs.contains_key(&pack.name) {
                renumber.insert(number, finished.len());
                finished.push(store.packs.adopt(&pack.file, &pack.name).map_err(|e| {
                    StoreError::Io {
                        path: pack.file.clone(),
                        source: e,
                    }
                })?);
            }
        }
        let frames: Vec<NewFrame> = new_frames
            .into_iter()
            .filter_map(|(number, frame)| {
                renumber
                    .get(&number)
                    .map(|&pack| NewFrame { pack, ..frame })
            })
            .collect();
        let digests: Vec<String> = imports
            .iter()
            .map(|(w, ..)| w.record.image.digest.clone())
            .collect();
        let snapshots: Vec<ImportedSnapshot<'_>> = imports
            .iter()
            .zip(&digests)
            .map(|((wanted, origin, ids, packs), digest)| {
                let record = &wanted.record;
                ImportedSnapshot {
                    origin: origin.clone(),
                    worktree,
                    path: record.path.clone(),
                    // check_record let only known kinds through.
                    kind: DbKind::parse(&record.kind).unwrap_or(DbKind::Sqlite),
                    created_at: chrono::DateTime::parse_from_rfc3339(&record.created_at)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .unwrap_or_default(),
                    consistency: record.consistency.clone(),
                    completeness: record
                        .completeness
                        .clone()
                        .unwrap_or_else(|| catalog::completeness_of_label(&record.consistency)),
                    git_state: record.git_state.clone(),
                    census: Census {
                        tables: record.tables.clone(),
                        schema: record.schema_hash.clone(),
                    },
                    reused: record.reused,
                    message: record.message.clone(),
                    operation_kind: record.operation.kind.clone(),
                    argv: record.operation.argv.clone(),
                    head_before: record.operation.head_before.clone(),
                    head_after: record.operation.head_after.clone(),
                    exit_code: record.operation.exit_code,
                    image: NewImage {
                        digest,
                        size: record.image.size,
                        block_size: record.image.block_size,
                        manifest: encode_manifest(ids),
                        pack_ids: Vec::new(),
                    },
                    pack_names: packs.iter().cloned().collect(),
                }
            })
            .collect();
        let (ids, _) = store.catalog.record_import(&Import {
            packs: &finished,
            frames: &frames,
            snapshots: &snapshots,
        })?;
        for (snapshot, id) in snapshots.iter().zip(ids) {
            self.report.imported.push(FetchedSnapshot {
                id,
                origin: snapshot.origin.clone(),
                path: snapshot.path.clone(),
                created_at: super::super::catalog::ts(&snapshot.created_at),
            });
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&self.incoming);
        Ok(self.report)
    }
}

/// Write a file and fsync it (a fetched pack, before it is moved into `packs/`).
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = create_private(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
