//! `push`: upload what the remote lacks of this store. The plan is read from the catalog
//! under the store's lock and the lock released before any byte goes out, so hooks never
//! wait on the network. Then, per pack: the pack, then its index; then the record of
//! every snapshot whose packs are all there. Each object is a conditional create: a
//! push that was cut short and is run again sends only what is still missing. A pack
//! that another store's space on the remote holds whole (a fresh clone's snapshots of
//! data it fetched) is copied there by the server, not sent again.
//!
//! To an encrypted remote a push is append-only: it never replaces or deletes an object
//! (so credentials without `s3:DeleteObject`, or a bucket under Object Lock, do): a moved
//! clone's owner record stays as it was, a damaged pack is left for `verify --remote`
//! and `prune --remote`, and records are never rewritten (none predates redaction).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::{
    FORMAT, FrameEntry, ImageEntry, OperationRecord, OwnerRecord, PackIndex, RemoteLock,
    ReplicaError, SnapshotRecord, index_object, owner_object, pack_object, parse_json,
    snapshot_object, store_dir, to_runs,
};
use crate::remote::{Client, PutOutcome, RemoteError};
use crate::store::blocks::{block_count, decode_manifest};
use crate::store::catalog::ImageLayout;
use crate::store::{Store, StoreError};
use bytes::Bytes;

/// One pack to make sure of on the remote.
#[derive(Debug, Clone)]
pub(super) struct PackToPush {
    pub(super) name: String,
    path: PathBuf,
    size: u64,
    index: Vec<u8>,
}

/// What the remote's listing showed of a pack whose index it lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PackOnRemote {
    Missing,
    /// Sent whole by a push cut short before the index: only the index is missing.
    Whole,
    /// Cut short mid-object (a server that keeps partial writes): sent again.
    WrongSize,
    /// Complete (index and all) in another store's space, e.g. the one a fresh clone
    /// fetched from: copied from there on the remote, not sent.
    Elsewhere,
}

/// One snapshot to make sure of on the remote.
#[derive(Debug, Clone)]
pub(super) struct SnapshotToPush {
    pub(super) id: i64,
    record: Vec<u8>,
    packs: Vec<String>,
    /// Its record on a remote may hold a command line with secrets (pushed before
    /// schema 6 redacted them): replaced when it differs.
    rewrite: bool,
}

/// What the store holds that a remote should: read under the store's lock, used after.
#[derive(Debug)]
pub(crate) struct PushPlan {
    pub(super) store_id: String,
    pub(super) store_root: PathBuf,
    pub(super) packs: Vec<PackToPush>,
    pub(super) snapshots: Vec<SnapshotToPush>,
    /// Snapshots in the format before packs (1 MiB chunk files): not pushed.
    pub(crate) legacy: Vec<i64>,
    /// Snapshots fetched from a remote: already there, under their own store's id.
    pub(crate) fetched: usize,
}

#[derive(Debug, Default)]
pub(crate) struct PushReport {
    pub(crate) store_id: String,
    /// Snapshots whose records this push wrote.
    pub(crate) pushed: Vec<i64>,
    /// Snapshots the remote had already.
    pub(crate) already: usize,
    /// Snapshots whose records on the remote held secrets, replaced by redacted ones.
    pub(crate) rewritten: Vec<i64>,
    pub(crate) packs_sent: usize,
    pub(crate) packs_already: usize,
    /// Packs copied on the remote from another store's space instead of being sent.
    pub(crate) packs_copied: usize,
    pub(crate) bytes_sent: u64,
    /// Snapshots not pushed because a pack of theirs went (pruned meanwhile).
    pub(crate) left_out: Vec<i64>,
    /// Packs of another size on an encrypted (append-only) remote: not replaced.
    pub(crate) damaged_packs: Vec<String>,
    pub(crate) legacy: Vec<i64>,
    pub(crate) fetched: usize,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

impl Store {
    /// What to push: every snapshot taken here (in packs), the packs holding them, and
    /// each pack's index, from one state of the catalog (snapshots taken meanwhile are
    /// in it whole, with their packs, or not at all).
    pub(crate) fn push_plan(&self) -> Result<PushPlan, StoreError> {
        self.catalog.begin_read()?;
        let plan = self.push_plan_now();
        self.catalog.end_read()?;
        plan
    }

    fn push_plan_now(&self) -> Result<PushPlan, StoreError> {
        let Some(store_id) = self.catalog.store_id()? else {
            // Only a catalog older than schema 5 opened read-only has no id yet.
            return Err(StoreError::ReadOnly {
                path: self.root.clone(),
            });
        };
        let origins = self.catalog.origins()?;
        let rewrite: HashSet<i64> = self.catalog.redacted_snapshots()?.into_iter().collect();
        let records = self.catalog.packs()?;
        let pack_names: HashMap<i64, (String, u64)> = records
            .iter()
            .map(|p| (p.id, (p.name.clone(), p.size)))
            .collect();
        let mut plan = PushPlan {
            store_id: store_id.clone(),
            store_root: self.root.clone(),
            packs: Vec::new(),
            snapshots: Vec::new(),
            legacy: Vec::new(),
            fetched: 0,
        };
        let mut needed_packs = BTreeSet::new();
        let mut snapshots = self.catalog.snapshots(None, None, None)?;
        snapshots.reverse();
        for snapshot in snapshots {
            if origins.contains_key(&snapshot.id) {
                plan.fetched += 1;
                continue;
            }
            let ImageLayout::Blocks {
                block_size,
                manifest,
            } = self.catalog.image_layout(snapshot.image_id)?
            else {
                plan.legacy.push(snapshot.id);
                continue;
            };
            let Some(ids) = decode_manifest(&manifest, block_count(snapshot.size, block_size))
            else {
                // verify names a damaged manifest; the remote gets the others.
                plan.legacy.push(snapshot.id);
                continue;
            };
            let packs: Vec<String> = self
                .catalog
                .image_packs(snapshot.image_id)?
                .into_iter()
                .map(|(_, name)| name)
                .collect();
            needed_packs.extend(packs.iter().cloned());
            let record = SnapshotRecord {
                format: FORMAT,
                store: store_id.clone(),
                id: snapshot.id,
                path: snapshot.path.clone(),
                worktree: snapshot.worktree.clone(),
                kind: snapshot.kind.as_str().to_string(),
                created_at: super::super::catalog::ts(&snapshot.created_at),
                consistency: snapshot.consistency.clone(),
                completeness: Some(snapshot.completeness.clone()),
                git_state: snapshot.git_state.clone(),
                schema_hash: snapshot.census.schema.clone(),
                reused: snapshot.reused,
                message: snapshot.message.clone(),
                tables: snapshot.census.tables.clone(),
                operation: OperationRecord {
                    kind: snapshot.operation.kind.clone(),
                    argv: snapshot.operation.argv.clone(),
                    head_before: snapshot.operation.head_before.clone(),
                    head_after: snapshot.operation.head_after.clone(),
                    exit_code: snapshot.operation.exit_code,
                },
                image: ImageEntry {
                    digest: snapshot.image_digest.clone(),
                    size: snapshot.size,
                    block_size,
                    manifest: to_runs(&ids),
                },
            };
            plan.snapshots.push(SnapshotToPush {
                id: snapshot.id,
                record: serde_json::to_vec_pretty(&record).unwrap_or_default(),
                packs,
                rewrite: rewrite.contains(&snapshot.id),
            });
        }
        let index = self.block_index()?;
        for (id, (name, size)) in &pack_names {
            if !needed_packs.contains(name) {
                continue;
            }
            let frames = index
                .frames_of_pack(*id)
                .into_iter()
                .map(|f| FrameEntry {
                    offset: f.offset,
                    stored_len: f.stored_len,
                    plain_len: f.plain_len,
                    block_size: f.block_size,
                    members: to_runs(&f.members),
                })
                .collect();
            let pack_index = PackIndex {
                format: FORMAT,
                pack: name.clone(),
                size: *size,
                frames,
            };
            plan.packs.push(PackToPush {
                name: name.clone(),
                path: self.packs.path(name),
                size: *size,
                index: serde_json::to_vec(&pack_index).unwrap_or_default(),
            });
        }
        plan.packs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(plan)
    }

    /// Give this store a new id: its snapshots go to a new space on every remote (for a
    /// copy of a store whose original pushes to the same remote).
    pub(crate) fn new_identity(&self) -> Result<String, StoreError> {
        self.writable()?;
        Ok(self.catalog.reset_store_id()?)
    }
}

impl PushPlan {
    /// Bytes of the packs it names (an upper bound on what a push sends).
    pub(crate) fn pack_bytes(&self) -> u64 {
        self.packs.iter().map(|p| p.size).sum()
    }
}

/// Make sure `stores/<id>/` is this store's: claim it when new, take it over when the
/// owner was this host's store at a path that no longer exists (a moved clone), refuse
/// when another copy of the store writes there.
fn claim(client: &Client, plan: &PushPlan, listed: bool) -> Result<(), ReplicaError> {
    let ours = OwnerRecord {
        format: FORMAT,
        host: host_name(),
        store_path: plan.store_root.display().to_string(),
    };
    let name = owner_object(&plan.store_id);
    let bytes = Bytes::from(serde_json::to_vec_pretty(&ours).unwrap_or_default());
    if !listed && client.put_new(&name, bytes.clone())? == PutOutcome::Created {
        return Ok(());
    }
    let theirs: OwnerRecord = match client.get(&name) {
        Ok(found) => parse_json(&found, &name).map_err(|detail| RemoteError::Other {
            url: name.clone(),
            detail,
        })?,
        Err(e) if e.is_missing() => {
            client.put_new(&name, bytes)?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if theirs == ours {
        return Ok(());
    }
    if theirs.host == ours.host && !Path::new(&theirs.store_path).exists() {
        // Append-only: the old record keeps naming a path that is gone, which passes
        // this same check on every push.
        if !client.is_encrypted() {
            client.replace(&name, bytes)?;
        }
        return Ok(());
    }
    Err(ReplicaError::Claimed {
        store_id: plan.store_id.clone(),
        owner: format!("the store at {} on {}", theirs.store_path, theirs.host),
    })
}

/// Upload what the remote lacks. `progress` sees the bytes sent so far.
/// The caller holds the store's remote lock (`lock`), taken before the plan was read.
pub(crate) fn push(
    client: &Client,
    plan: &PushPlan,
    _lock: &RemoteLock,
    progress: &dyn Fn(u64),
) -> Result<PushReport, ReplicaError> {
    let listing = client.list(&store_dir(&plan.store_id))?;
    let present: HashMap<&str, u64> = listing.iter().map(|o| (o.name.as_str(), o.size)).collect();
    claim(
        client,
        plan,
        present.contains_key(owner_object(&plan.store_id).as_str()),
    )?;
    let mut report = PushReport {
        store_id: plan.store_id.clone(),
        legacy: plan.legacy.clone(),
        fetched: plan.fetched,
        ..PushReport::default()
    };
    // Packs whose index is there are complete on the remote.
    let mut on_remote: HashSet<String> = HashSet::new();
    let mut to_send = Vec::new();
    let append_only = client.is_encrypted();
    for pack in &plan.packs {
        if present.contains_key(index_object(&plan.store_id, &pack.name).as_str()) {
            on_remote.insert(pack.name.clone());
            report.packs_already += 1;
        } else {
            let state = match present.get(pack_object(&plan.store_id, &pack.name).as_str()) {
                None => PackOnRemote::Missing,
                Some(size) if *size == pack.size => PackOnRemote::Whole,
                // Never replaced on an append-only remote: its snapshots wait.
                Some(_) if append_only => {
                    report.damaged_packs.push(pack.name.clone());
                    continue;
                }
                Some(_) => PackOnRemote::WrongSize,
            };
            to_send.push((pack.clone(), state));
        }
    }
    // Encrypted objects are bound to their names (a copy under another name would not
    // open), so only a plain remote copies a pack another space holds.
    let elsewhere = if append_only {
        HashMap::new()
    } else {
        packs_elsewhere(client, plan, &to_send)?
    };
    for (pack, state) in &mut to_send {
        if *state == PackOnRemote::Missing && elsewhere.contains_key(&pack.name) {
            *state = PackOnRemote::Elsewhere;
        }
    }
    let store_id = plan.store_id.clone();
    let mut sent_bytes = 0u64;
    let results = client.parallel(
        to_send,
        |bucket, (pack, state): (PackToPush, PackOnRemote)| {
            let store_id = store_id.clone();
            let source = elsewhere.get(&pack.name).cloned();
            async move {
                let mut sent = 0;
                if let (PackOnRemote::Elsewhere, Some(source)) = (state, source) {
                    bucket
                        .copy(&source, &pack_object(&store_id, &pack.name))
                        .await?;
                } else if state != PackOnRemote::Whole {
                    let bytes = match tokio::fs::read(&pack.path).await {
                        Ok(bytes) => Bytes::from(bytes),
                        // Pruned since the plan was read: its snapshots wait for next time.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            return Ok((pack.name, None));
                        }
                        Err(e) => {
                            return Err(RemoteError::Local {
                                url: "the store".into(),
                                path: pack.path.clone(),
                                detail: e.to_string(),
                            });
                        }
                    };
                    let object = pack_object(&store_id, &pack.name);
                    if state == PackOnRemote::WrongSize {
                        // Pack names are content hashes in this store's own space: an
                        // object of another size there is a damaged copy, never theirs.
                        bucket.replace(&object, bytes).await?;
                        sent = pack.size;
                    } else if bucket.put_new(&object, bytes).await? == PutOutcome::Created {
                        sent = pack.size;
                    }
                }
                bucket
                    .put_new(
                        &index_object(&store_id, &pack.name),
                        Bytes::from(pack.index.clone()),
                    )
                    .await?;
                Ok((pack.name, Some((sent, state == PackOnRemote::Elsewhere))))
            }
        },
        |(_, sent)| {
            sent_bytes += sent.map_or(0, |(bytes, _)| bytes);
            progress(sent_bytes);
        },
    )?;
    for (name, sent) in results {
        match sent {
            Some((_, true)) => report.packs_copied += 1,
            Some((bytes, false)) => {
                report.packs_sent += 1;
                report.bytes_sent += bytes;
            }
            None => continue,
        }
        on_remote.insert(name);
    }
    for snapshot in &plan.snapshots {
        let object = snapshot_object(&plan.store_id, snapshot.id);
        if present.contains_key(object.as_str()) {
            if snapshot.rewrite && !append_only && client.get(&object)? != snapshot.record {
                client.replace(&object, Bytes::from(snapshot.record.clone()))?;
                report.rewritten.push(snapshot.id);
            } else {
                report.already += 1;
            }
            continue;
        }
        if !snapshot.packs.iter().all(|p| on_remote.contains(p)) {
            report.left_out.push(snapshot.id);
            continue;
        }
        match client.put_new(&object, Bytes::from(snapshot.record.clone()))? {
            PutOutcome::Created => report.pushed.push(snapshot.id),
            PutOutcome::AlreadyThere => report.already += 1,
        }
    }
    Ok(report)
}

/// For each pack about to be sent: the name of the same pack, complete, in another
/// store's space on the remote (its index there, and the size it has here). Pack names
/// are the sha256 of their bytes, so such a pack is byte for byte the one to send. One
/// listing of the remote, made only when something is to be sent.
fn packs_elsewhere(
    client: &Client,
    plan: &PushPlan,
    to_send: &[(PackToPush, PackOnRemote)],
) -> Result<HashMap<String, String>, ReplicaError> {
    let mut found = HashMap::new();
    if !to_send
        .iter()
        .any(|(_, state)| *state == PackOnRemote::Missing)
    {
        return Ok(found);
    }
    let listing = client.list("stores")?;
    let sizes: HashMap<&str, u64> = listing.iter().map(|o| (o.name.as_str(), o.size)).collect();
    for (pack, _) in to_send {
        let source = listing.iter().find_map(|object| {
            let parts: Vec<&str> = object.name.split('/').collect();
            let ["stores", space, "packs", file] = parts.as_slice() else {
                return None;
            };
            let complete = *space != plan.store_id
                && file.strip_suffix(".index.json") == Some(pack.name.as_str())
                && sizes.get(pack_object(space, &pack.name).as_str()) == Some(&pack.size);
            complete.then(|| pack_object(space, &pack.name))
        });
        if let Some(source) = source {
            found.insert(pack.name.clone(), source);
        }
    }
    Ok(found)
}

impl PushPlan {
    /// The id of the store this plan pushes from: its space on a remote is `stores/<id>/`.
    pub(crate) fn store_id(&self) -> &str {
        &self.store_id
    }
}
