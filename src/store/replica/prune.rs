//! `prune --remote`: the remote's copy of this store follows the local retention. Only
//! this store's own namespace is touched; other clones' snapshots (and the snapshots this
//! store fetched from them) stay. The caller pushes first, so that packs rewritten by a
//! local prune are on the remote before the ones they replace go.

use std::collections::HashSet;

use super::{
    PushPlan, RemoteLock, ReplicaError, index_object, namespaces, pack_object, snapshot_object,
    store_dir,
};
use crate::remote::Client;

#[derive(Debug, Default)]
pub(crate) struct RemotePruneReport {
    /// Snapshot records deleted: snapshots this store no longer has.
    pub(crate) snapshots: Vec<i64>,
    pub(crate) packs: usize,
    pub(crate) bytes: u64,
    /// Packs kept because not every pack the store uses now is on the remote yet.
    pub(crate) kept_until_pushed: usize,
}

/// Delete from the remote what this store has pruned: records of snapshots it no longer
/// has, then packs it no longer has (and unindexed debris), but packs only once every
/// pack it does have is on the remote.
/// The caller holds the store's remote lock, taken before `plan` was read. `removed`:
/// the snapshots the local prune removed, or would remove in a dry run (whose plan still
/// has them); the packs such a prune would free locally are not known before it runs.
pub(crate) fn prune_remote(
    client: &Client,
    plan: &PushPlan,
    _lock: &RemoteLock,
    dry_run: bool,
    removed: &[i64],
) -> Result<RemotePruneReport, ReplicaError> {
    let store_id = &plan.store_id;
    let listing = client.list(&store_dir(store_id))?;
    let spaces = namespaces(&listing);
    let mut report = RemotePruneReport::default();
    let Some(space) = spaces.get(store_id.as_str()) else {
        return Ok(report);
    };
    let local_snapshots: HashSet<i64> = plan
        .snapshots
        .iter()
        .map(|s| s.id)
        .chain(plan.legacy.iter().copied())
        .filter(|id| !removed.contains(id))
        .collect();
    let local_packs: HashSet<&str> = plan.packs.iter().map(|p| p.name.as_str()).collect();
    for &id in &space.snapshots {
        if !local_snapshots.contains(&id) {
            report.snapshots.push(id);
        }
    }
    let all_up = plan
        .packs
        .iter()
        .all(|p| space.indexed.binary_search(&p.name).is_ok());
    let mut stale: Vec<(&String, u64)> = space
        .packs
        .iter()
        .filter(|(name, _)| !local_packs.contains(name.as_str()))
        .map(|(name, size)| (name, *size))
        .collect();
    stale.sort();
    let stale_indexes: Vec<&String> = space
        .indexed
        .iter()
        .filter(|name| !local_packs.contains(name.as_str()) && !space.packs.contains_key(*name))
        .collect();
    if !all_up {
        report.kept_until_pushed = stale.len();
        stale.clear();
    }
    if dry_run {
        report.packs = stale.len();
        report.bytes = stale.iter().map(|(_, size)| size).sum();
        return Ok(report);
    }
    // Records first: a record never names blocks whose pack is gone.
    for id in &report.snapshots {
        client.delete(&snapshot_object(store_id, *id))?;
    }
    for (name, size) in &stale {
        // The index first: a pack without one is debris, never read.
        client.delete(&index_object(store_id, name))?;
        client.delete(&pack_object(store_id, name))?;
        report.packs += 1;
        report.bytes += size;
    }
    if all_up {
        for name in stale_indexes {
            client.delete(&index_object(store_id, name))?;
        }
    }
    Ok(report)
}
