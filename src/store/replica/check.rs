//! `verify --remote`: read the whole remote back. Every pack is checked against its name
//! and every block against its hash; every snapshot record's manifest must find all its
//! blocks and reproduce the image's digest. Names each snapshot that a fetch could not
//! bring back whole.

use std::collections::{BTreeMap, HashMap};

use super::{
    MAX_INDEX_BYTES, MAX_RECORD_BYTES, MIN_FETCHED_BLOCK, Namespace, PackIndex, SnapshotRecord,
    check_pack, check_record, from_runs, get_bounded, index_object, namespaces, pack_object,
    parse_json, snapshot_object,
};
use crate::remote::Client;
use crate::store::blocks::{FRAME_MAX_PLAIN, Hash, block_count, blocks_digest};
use crate::store::packs::MAX_PACK_BYTES;

use super::ReplicaError;

#[derive(Debug, Default)]
pub(crate) struct RemoteVerifyReport {
    pub(crate) stores: usize,
    pub(crate) snapshots: usize,
    pub(crate) packs: usize,
    pub(crate) bytes: u64,
    /// Packs without an index: left by a push that was cut short, unused.
    pub(crate) unindexed: usize,
    pub(crate) problems: Vec<String>,
    /// `<store id>/<snapshot id>` of every snapshot that cannot be fetched whole.
    pub(crate) broken: Vec<String>,
}

/// The remote's listing, read before the check so that a command can show the bytes.
pub(crate) struct RemoteCheck {
    spaces: BTreeMap<String, Namespace>,
}

impl RemoteCheck {
    pub(crate) fn list(client: &Client) -> Result<RemoteCheck, ReplicaError> {
        Ok(RemoteCheck {
            spaces: namespaces(&client.list("stores")?),
        })
    }

    /// Bytes of the packs to read.
    pub(crate) fn bytes(&self) -> u64 {
        self.spaces
            .values()
            .flat_map(|s| s.indexed.iter().filter_map(|p| s.packs.get(p)))
            .sum()
    }

    pub(crate) fn run(
        self,
        client: &Client,
        progress: &dyn Fn(u64),
    ) -> Result<RemoteVerifyReport, ReplicaError> {
        let mut report = RemoteVerifyReport {
            stores: self.spaces.len(),
            ..RemoteVerifyReport::default()
        };
        let mut done = 0u64;
        for (space_id, space) in &self.spaces {
            let hashes = check_space(client, space_id, space, &mut report, &mut |n| {
                done += n;
                progress(done);
            })?;
            check_records(client, space_id, space, &hashes, &mut report)?;
        }
        Ok(report)
    }
}

/// Read every indexed pack of a namespace: the hash of every block found intact.
fn check_space(
    client: &Client,
    space_id: &str,
    space: &Namespace,
    report: &mut RemoteVerifyReport,
    progress: &mut dyn FnMut(u64),
) -> Result<HashMap<u64, Hash>, ReplicaError> {
    report.unindexed += space
        .packs
        .keys()
        .filter(|p| space.indexed.binary_search(p).is_err())
        .count();
    let mut jobs = Vec::new();
    for pack in &space.indexed {
        match space.packs.get(pack) {
            Some(&size) => jobs.push((space_id.to_string(), pack.clone(), size)),
            None => report.problems.push(format!(
                "{}: the pack is missing",
                pack_object(space_id, pack)
            )),
        }
    }
    let results = client.parallel(
        jobs,
        |bucket, (space, pack, size): (String, String, u64)| async move {
            let name = index_object(&space, &pack);
            let index = get_bounded(&bucket, &name, MAX_INDEX_BYTES)
                .await?
                .and_then(|bytes| parse_json::<PackIndex>(&bytes, &name));
            let bytes = get_bounded(&bucket, &pack_object(&space, &pack), MAX_PACK_BYTES).await?;
            let checked = index.and_then(|index| {
                let hashes = check_pack(&pack, &bytes?, &index)?;
                Ok((index, hashes))
            });
            Ok((pack, size, checked))
        },
        |(_, size, _)| progress(*size),
    )?;
    let mut hashes = HashMap::new();
    for (pack, size, checked) in results {
        report.packs += 1;
        report.bytes += size;
        match checked {
            Ok((index, frame_hashes)) => {
                for (entry, frame_hashes) in index.frames.iter().zip(frame_hashes) {
                    let members = from_runs(&entry.members, FRAME_MAX_PLAIN / MIN_FETCHED_BLOCK)
                        .unwrap_or_default();
                    for (block, hash) in members.into_iter().zip(frame_hashes) {
                        if block != 0 {
                            hashes.insert(block, hash);
                        }
                    }
                }
            }
            Err(why) => report
                .problems
                .push(format!("{}: {why}", pack_object(space_id, &pack))),
        }
    }
    Ok(hashes)
}

/// Check every snapshot record of a namespace against the blocks found intact.
fn check_records(
    client: &Client,
    space_id: &str,
    space: &Namespace,
    hashes: &HashMap<u64, Hash>,
    report: &mut RemoteVerifyReport,
) -> Result<(), ReplicaError> {
    let ids: Vec<(String, i64)> = space
        .snapshots
        .iter()
        .map(|&id| (space_id.to_string(), id))
        .collect();
    let records = client.parallel(
        ids,
        |bucket, (space, id): (String, i64)| async move {
            let name = snapshot_object(&space, id);
            let record = get_bounded(&bucket, &name, MAX_RECORD_BYTES)
                .await?
                .and_then(|bytes| parse_json::<SnapshotRecord>(&bytes, &name))
                .and_then(|record| check_record(&record).map(|()| record));
            Ok((id, record))
        },
        |_| {},
    )?;
    for (id, record) in records {
        report.snapshots += 1;
        let origin = format!("{space_id}/{id}");
        let problem = match record {
            Err(why) => Some(why),
            Ok(record) => {
                let expected = block_count(record.image.size, record.image.block_size.max(1));
                match from_runs(&record.image.manifest, expected) {
                    Some(blocks) if blocks.len() == expected => {
                        let found: Vec<Hash> = blocks
                            .iter()
                            .filter_map(|b| hashes.get(b).copied())
                            .collect();
                        if found.len() < blocks.len() {
                            Some(format!(
                                "{} of its {} chunks are missing or damaged",
                                blocks.len() - found.len(),
                                blocks.len()
                            ))
                        } else if blocks_digest(found.iter(), record.image.size)
                            != record.image.digest
                        {
                            Some("its chunks do not reproduce its image's digest".into())
                        } else {
                            None
                        }
                    }
                    _ => Some("its manifest is damaged".into()),
                }
            }
        };
        if let Some(problem) = problem {
            report
                .problems
                .push(format!("{}: {problem}", snapshot_object(space_id, id)));
            report.broken.push(origin);
        }
    }
    Ok(())
}
