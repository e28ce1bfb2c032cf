//! Copies of the store on a remote (`remote/` is the transport). Each store writes only
//! under its own id, so two clones or machines sharing a bucket never touch each other's
//! objects:
//!
//! ```text
//! stores/<store id>/store.json                   who owns the namespace (host, store path)
//! stores/<store id>/packs/<sha256>.pack          a pack file, byte for byte
//! stores/<store id>/packs/<sha256>.index.json    what its frames hold (block numbers);
//!                                                written after the pack: its commit mark
//! stores/<store id>/snapshots/<id>.json          one snapshot: census, operation, image
//!                                                manifest; written after every pack
//!                                                holding its blocks
//! ```
//!
//! Every object is written once with a conditional create and never changed (a pack
//! that another store's space holds whole is copied from there by the server: pack names
//! are the sha256 of their bytes); block numbers in indexes and manifests are the pushing
//! store's own. A fetch renumbers them
//! into the local store and checks every block's hash and every image's digest.

mod check;
mod fetch;
mod prune;
mod push;

pub(crate) use check::RemoteCheck;
pub(crate) use fetch::FetchPlan;
pub(crate) use fetch::{FetchReport, FetchedSnapshot};
pub(crate) use prune::{RemotePruneReport, prune_remote};
pub(crate) use push::{PushPlan, PushReport, push};

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::blocks::{FRAME_MAX_PLAIN, Hash, MAX_BLOCK_SIZE, block_count};
use super::packs::{FRAME_HEADER_BYTES, MAX_STORED_FRAME};
use crate::db::{Completeness, DbKind};
use crate::git::RepoPath;
use crate::remote::{Bucket, ObjectInfo, RemoteError};

/// The version of the records below; a reader refuses newer ones.
const FORMAT: u32 = 1;

/// Everything fetched is bounded by what a dbguard writes, whatever the remote says:
/// a snapshot record (its census and manifest runs) …
const MAX_RECORD_BYTES: u64 = 64 << 20;
/// … a pack's index (a few thousand frames at most) …
const MAX_INDEX_BYTES: u64 = 16 << 20;
/// … and the blocks of one image: 2^25 (128 GiB of 4 KiB pages, 256 MiB of block
/// numbers in memory while it is fetched).
const MAX_IMAGE_BLOCKS: u64 = 1 << 25;
/// The smallest block a frame's index may name (block numbers per frame are bounded by
/// `FRAME_MAX_PLAIN / MIN_FETCHED_BLOCK`).
const MIN_FETCHED_BLOCK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplicaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The remote's namespace for this store id belongs to another copy of the store.
    #[error(
        "the remote's space for this store (stores/{store_id}) belongs to {owner}: this store was copied from it"
    )]
    Claimed { store_id: String, owner: String },
    #[error("another dbguard process is pushing or fetching for this store")]
    Busy,
}

impl From<super::CatalogError> for ReplicaError {
    fn from(error: super::CatalogError) -> ReplicaError {
        ReplicaError::Store(error.into())
    }
}

fn store_dir(store_id: &str) -> String {
    format!("stores/{store_id}")
}

fn pack_object(store_id: &str, pack: &str) -> String {
    format!("stores/{store_id}/packs/{pack}.pack")
}

fn index_object(store_id: &str, pack: &str) -> String {
    format!("stores/{store_id}/packs/{pack}.index.json")
}

fn snapshot_object(store_id: &str, id: i64) -> String {
    format!("stores/{store_id}/snapshots/{id}.json")
}

fn owner_object(store_id: &str) -> String {
    format!("stores/{store_id}/store.json")
}

/// Block numbers as runs `[first, count]` (`first` 0: that many unused slots).
fn to_runs(ids: &[u64]) -> Vec<[u64; 2]> {
    let mut runs: Vec<[u64; 2]> = Vec::new();
    for &id in ids {
        match runs.last_mut() {
            Some([first, count]) if *first != 0 && id == *first + *count => *count += 1,
            Some([0, count]) if id == 0 => *count += 1,
            _ => runs.push([id, 1]),
        }
    }
    runs
}

/// The inverse of [`to_runs`]; `None` when the runs would hold more than `max` numbers.
fn from_runs(runs: &[[u64; 2]], max: usize) -> Option<Vec<u64>> {
    let mut ids = Vec::new();
    for &[first, count] in runs {
        if count == 0 || ids.len() as u64 + count > max as u64 {
            return None;
        }
        if first == 0 {
            ids.extend(std::iter::repeat_n(0, count as usize));
        } else {
            ids.extend(first..first.checked_add(count)?);
        }
    }
    Some(ids)
}

/// `packs/<name>.index.json`: the frames of one pack and the blocks in each.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PackIndex {
    format: u32,
    pack: String,
    size: u64,
    frames: Vec<FrameEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FrameEntry {
    offset: u64,
    stored_len: u64,
    plain_len: u64,
    block_size: usize,
    members: Vec<[u64; 2]>,
}

/// `snapshots/<id>.json`: everything the catalog records of one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotRecord {
    format: u32,
    store: String,
    id: i64,
    path: String,
    /// The worktree it was taken in, for people; a fetch files it under its own.
    worktree: String,
    kind: String,
    created_at: String,
    consistency: String,
    /// Absent in records pushed before catalog schema 8: read from `consistency` then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completeness: Option<Completeness>,
    git_state: String,
    schema_hash: String,
    reused: bool,
    message: Option<String>,
    tables: BTreeMap<String, u64>,
    operation: OperationRecord,
    image: ImageEntry,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OperationRecord {
    kind: String,
    argv: Vec<String>,
    head_before: Option<String>,
    head_after: Option<String>,
    exit_code: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImageEntry {
    digest: String,
    size: u64,
    block_size: usize,
    manifest: Vec<[u64; 2]>,
}

/// `store.json`: which store writes this namespace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct OwnerRecord {
    format: u32,
    host: String,
    store_path: String,
}

/// What one namespace on the remote holds, from a listing.
#[derive(Debug, Default)]
struct Namespace {
    /// Snapshot ids with records.
    snapshots: Vec<i64>,
    /// Pack name → size of the `.pack` object.
    packs: HashMap<String, u64>,
    /// Packs with an index (complete uploads).
    indexed: Vec<String>,
}

/// Group a listing of `stores/` by store id.
fn namespaces(listing: &[ObjectInfo]) -> BTreeMap<String, Namespace> {
    let mut spaces: BTreeMap<String, Namespace> = BTreeMap::new();
    for object in listing {
        let mut parts = object.name.splitn(4, '/');
        let (Some("stores"), Some(store), Some(kind)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        // A space with only its store.json (a push cut short after claiming it) counts.
        let space = spaces.entry(store.to_string()).or_default();
        let file = parts.next().unwrap_or_default();
        match kind {
            "snapshots" => {
                if let Some(id) = file.strip_suffix(".json").and_then(|n| n.parse().ok()) {
                    space.snapshots.push(id);
                }
            }
            "packs" => {
                if let Some(name) = file.strip_suffix(".index.json") {
                    space.indexed.push(name.to_string());
                } else if let Some(name) = file.strip_suffix(".pack") {
                    space.packs.insert(name.to_string(), object.size);
                }
            }
            _ => {}
        }
    }
    for space in spaces.values_mut() {
        space.snapshots.sort_unstable();
        space.indexed.sort();
    }
    spaces
}

/// Download an object that dbguard writes at most `limit` bytes of: `Ok(Err(why))` for
/// a larger one or one that does not open with an encrypted remote's key (damaged,
/// changed, or not dbguard's: reported with the snapshots it spoils),
/// `Err` when the remote itself fails.
async fn get_bounded(
    bucket: &Bucket,
    name: &str,
    limit: u64,
) -> Result<Result<bytes::Bytes, String>, RemoteError> {
    match bucket.get_at_most(name, limit).await {
        Ok(bytes) => Ok(Ok(bytes)),
        Err(damaged @ (RemoteError::TooLarge { .. } | RemoteError::Undecryptable { .. })) => {
            Ok(Err(damaged.to_string()))
        }
        Err(e) => Err(e),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("{what} is not valid JSON: {e}"))?;
    let format = value.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
    if format > u64::from(FORMAT) {
        return Err(format!(
            "{what} was written by a newer dbguard (format {format}); upgrade dbguard to read it"
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("{what} is not a dbguard record: {e}"))
}

/// One process at a time pushes, fetches or prunes a store's remotes: a lock file in the
/// store, held (not waited for) by whoever is transferring.
pub(crate) struct RemoteLock {
    _file: File,
}

impl RemoteLock {
    /// Take the lock of the store at `store_root`; `wait` for it, or fail with
    /// [`ReplicaError::Busy`] at once.
    pub(crate) fn take(store_root: &Path, wait: bool) -> Result<RemoteLock, ReplicaError> {
        std::fs::create_dir_all(store_root).map_err(|e| StoreError::Io {
            path: store_root.to_path_buf(),
            source: e,
        })?;
        let path = store_root.join("remote.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::Io {
                path: path.clone(),
                source: e,
            })?;
        let locked = if wait {
            file.lock().map_err(std::fs::TryLockError::Error)
        } else {
            file.try_lock()
        };
        match locked {
            Ok(()) => Ok(RemoteLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(ReplicaError::Busy),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(ReplicaError::Store(StoreError::Io { path, source: e }))
            }
        }
    }
}

/// Check a downloaded pack against its name and index: every frame's header, its
/// decompressed length and the hash of every block in it. Returns each frame's block
/// hashes (all zero for unused slots) or what is wrong.
fn check_pack(name: &str, bytes: &[u8], index: &PackIndex) -> Result<Vec<Vec<Hash>>, String> {
    use sha2::{Digest, Sha256};
    if crate::db::hex(&Sha256::digest(bytes)) != name {
        return Err(format!("pack {name} does not match its hash"));
    }
    let mut hashes = Vec::with_capacity(index.frames.len());
    for entry in &index.frames {
        check_frame_entry(entry, bytes.len() as u64)
            .map_err(|why| format!("pack {name}: {why}"))?;
        let members = from_runs(&entry.members, FRAME_MAX_PLAIN / MIN_FETCHED_BLOCK)
            .ok_or_else(|| format!("pack {name}: a frame's block list is damaged"))?;
        let frame = super::blocks::FrameInfo {
            id: 0,
            pack: 0,
            offset: entry.offset,
            stored_len: entry.stored_len,
            plain_len: entry.plain_len,
            block_size: entry.block_size,
            members: members.clone(),
            hashes: Vec::new(),
        };
        if members.len() != entry.plain_len.div_ceil(entry.block_size as u64) as usize {
            return Err(format!(
                "pack {name}: its index does not fit the pack (frame at offset {})",
                entry.offset
            ));
        }
        let plain =
            super::packs::decode_frame(bytes, &frame).map_err(|e| format!("pack {name}: {e}"))?;
        hashes.push(
            (0..members.len())
                .map(|slot| super::blocks::block_hash(&plain[frame.slot_range(slot)]))
                .collect(),
        );
    }
    Ok(hashes)
}

/// A frame of a fetched index within the limits of the frames dbguard writes and
/// inside a pack of `pack_len` bytes (checked before anything is decompressed).
fn check_frame_entry(entry: &FrameEntry, pack_len: u64) -> Result<(), String> {
    let at = entry.offset;
    if !(MIN_FETCHED_BLOCK..=MAX_BLOCK_SIZE).contains(&entry.block_size) {
        return Err(format!(
            "the frame at offset {at} has blocks of {} bytes",
            entry.block_size
        ));
    }
    if entry.plain_len == 0 || entry.plain_len > FRAME_MAX_PLAIN as u64 {
        return Err(format!(
            "the frame at offset {at} claims {} bytes, more than a frame ever holds ({FRAME_MAX_PLAIN})",
            entry.plain_len
        ));
    }
    let end = at
        .checked_add(FRAME_HEADER_BYTES)
        .and_then(|end| end.checked_add(entry.stored_len));
    if entry.stored_len > MAX_STORED_FRAME || end.is_none_or(|end| end > pack_len) {
        return Err(format!(
            "its index does not fit the pack (frame at offset {at})"
        ));
    }
    Ok(())
}

/// A fetched snapshot record that this store can hold: a path inside a working tree
/// (never `../x` or `/abs`: status and the hooks open what records name), a known kind
/// and time, and an image within the limits of what dbguard takes.
fn check_record(record: &SnapshotRecord) -> Result<(), String> {
    if RepoPath::new(&record.path).is_err() {
        return Err(format!(
            "its path {:?} is not a path inside a working tree",
            record.path
        ));
    }
    if DbKind::parse(&record.kind).is_none() {
        return Err(format!("its kind {:?} is not a database kind", record.kind));
    }
    if chrono::DateTime::parse_from_rfc3339(&record.created_at).is_err() {
        return Err(format!("its time {:?} is not a time", record.created_at));
    }
    let image = &record.image;
    if !(MIN_FETCHED_BLOCK..=MAX_BLOCK_SIZE).contains(&image.block_size)
        || block_count(image.size, image.block_size) as u64 > MAX_IMAGE_BLOCKS
    {
        return Err(format!(
            "its image ({} bytes in blocks of {}) is outside what dbguard stores",
            image.size, image.block_size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// u64s as a remote may send them: small, near the limits, or anything.
    fn claimed() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..70_000,
            (FRAME_MAX_PLAIN as u64 - 2)..(FRAME_MAX_PLAIN as u64 + 2),
            Just(u64::from(u32::MAX)),
            any::<u64>(),
        ]
    }

    fn frame_entry() -> impl Strategy<Value = FrameEntry> {
        (
            claimed(),
            claimed(),
            claimed(),
            claimed(),
            proptest::collection::vec([claimed(), claimed()], 0..4),
        )
            .prop_map(
                |(offset, stored_len, plain_len, block_size, members)| FrameEntry {
                    offset,
                    stored_len,
                    plain_len,
                    block_size: block_size as usize,
                    members,
                },
            )
    }

    /// Paths a record may name: plain ones and the ways out of a worktree.
    fn record_path() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,8}(/[a-z]{1,8}){0,2}\\.db",
            "(\\.\\./)+[a-z]{1,8}\\.db",
            "/[a-z]{1,8}(/[a-z]{1,8})?",
            "[a-z]{1,4}/\\.\\./\\.\\./[a-z]{1,4}",
            "\\.git/[a-z]{1,8}",
            any::<String>(),
        ]
    }

    fn record(path: String, kind: String, size: u64, block_size: u64) -> SnapshotRecord {
        SnapshotRecord {
            format: FORMAT,
            store: "s".into(),
            id: 1,
            path,
            worktree: "/w".into(),
            kind,
            created_at: "2026-12-07T03:00:00.000Z".into(),
            consistency: "online-backup".into(),
            completeness: Some(Completeness::default()),
            git_state: "untracked".into(),
            schema_hash: String::new(),
            reused: false,
            message: None,
            tables: BTreeMap::new(),
            operation: OperationRecord {
                kind: "snapshot".into(),
                argv: Vec::new(),
                head_before: None,
                head_after: None,
                exit_code: None,
            },
            image: ImageEntry {
                digest: String::new(),
                size,
                block_size: block_size as usize,
                manifest: Vec::new(),
            },
        }
    }

    proptest! {
        /// Any index against any pack: its hashes or a reason, never a panic, and only
        /// frames within the local limits are ever decompressed.
        #[test]
        fn fuzz_pack_indexes_are_checked_not_trusted(
            frames in proptest::collection::vec(frame_entry(), 0..4),
            pack in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let name = crate::db::hex(&<sha2::Sha256 as sha2::Digest>::digest(&pack));
            let index = PackIndex { format: FORMAT, pack: name.clone(), size: pack.len() as u64, frames };
            if let Ok(hashes) = check_pack(&name, &pack, &index) {
                prop_assert_eq!(hashes.len(), index.frames.len());
                for entry in &index.frames {
                    prop_assert!(check_frame_entry(entry, pack.len() as u64).is_ok());
                }
            }
            // The same index as JSON, cut anywhere: parsed or refused.
            let json = serde_json::to_vec(&index).unwrap();
            for cut in [json.len(), json.len() / 2, 1] {
                let _ = parse_json::<PackIndex>(&json[..cut], "index");
            }
        }

        /// Any bytes as a record or an index: a parse error, never a panic.
        #[test]
        fn fuzz_record_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(record) = parse_json::<SnapshotRecord>(&bytes, "record") {
                let _ = check_record(&record);
            }
            let _ = parse_json::<PackIndex>(&bytes, "index");
        }

        /// A record is accepted only with a path inside a worktree, a known kind and an
        /// image within the limits.
        #[test]
        fn fuzz_snapshot_records_name_only_worktree_paths(
            path in record_path(),
            kind in prop_oneof![Just("sqlite".to_string()), Just("duckdb".to_string()), any::<String>()],
            size in claimed(),
            block_size in claimed(),
        ) {
            let record = record(path, kind, size, block_size);
            if check_record(&record).is_ok() {
                prop_assert!(RepoPath::new(&record.path).is_ok());
                prop_assert!(!record.path.split('/').any(|p| p == ".."));
                prop_assert!(!record.path.starts_with('/'));
                prop_assert!(DbKind::parse(&record.kind).is_some());
                prop_assert!(block_count(size, block_size as usize) as u64 <= MAX_IMAGE_BLOCKS);
            }
        }

        /// Block runs expand to at most `max` numbers, whatever they claim.
        #[test]
        fn fuzz_runs_expand_within_their_bound(
            runs in proptest::collection::vec([claimed(), claimed()], 0..6),
            max in 0usize..2048,
        ) {
            if let Some(ids) = from_runs(&runs, max) {
                prop_assert!(ids.len() <= max);
                prop_assert_eq!(to_runs(&ids).iter().map(|r| r[1]).sum::<u64>(), ids.len() as u64);
            }
        }
    }

    #[test]
    fn runs_round_trip_with_unused_slots() {
        let ids = vec![5, 6, 7, 0, 0, 9, 3, 4, 0];
        let runs = to_runs(&ids);
        assert_eq!(runs, vec![[5, 3], [0, 2], [9, 1], [3, 2], [0, 1]]);
        assert_eq!(from_runs(&runs, 100).unwrap(), ids);
        assert!(from_runs(&runs, 5).is_none(), "too many");
        assert!(from_runs(&[[1, 0]], 5).is_none(), "empty run");
        assert_eq!(from_runs(&to_runs(&[]), 0).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn listings_group_by_store() {
        let object = |name: &str, size| ObjectInfo {
            name: name.into(),
            size,
        };
        let spaces = namespaces(&[
            object("stores/aa/packs/p1.pack", 10),
            object("stores/aa/packs/p1.index.json", 1),
            object("stores/aa/packs/p2.pack", 20),
            object("stores/aa/snapshots/3.json", 1),
            object("stores/aa/snapshots/12.json", 1),
            object("stores/bb/store.json", 1),
            object("elsewhere/x", 1),
        ]);
        assert_eq!(spaces["aa"].snapshots, vec![3, 12]);
        assert_eq!(spaces["aa"].indexed, vec!["p1".to_string()]);
        assert_eq!(spaces["aa"].packs.len(), 2);
        assert!(spaces["bb"].snapshots.is_empty());
        assert_eq!(spaces.len(), 2);
    }

    /// A record pushed before catalog schema 8 has no `completeness`: the fetch reads it
    /// from the label then. A record's own completeness is checked by its types.
    #[test]
    fn records_carry_completeness_and_older_ones_lack_it() {
        let mut value =
            serde_json::to_value(record("a.db".into(), "duckdb".into(), 0, 4096)).unwrap();
        value["completeness"] = serde_json::json!({
            "partial": true,
            "missing": {"commits": 3, "wal_bytes": 900, "since": "2026-12-01T19:50:01.123Z",
                        "until": null, "holder_pid": 77}
        });
        let read: SnapshotRecord = parse_json(value.to_string().as_bytes(), "r").unwrap();
        let missing = read.completeness.unwrap().missing.unwrap();
        assert_eq!(
            (missing.commits, missing.wal_bytes, missing.holder_pid),
            (Some(3), 900, Some(77))
        );
        assert!(missing.since.is_some());
        value["completeness"]["missing"]["since"] = "yesterday".into();
        let error = parse_json::<SnapshotRecord>(value.to_string().as_bytes(), "r").unwrap_err();
        assert!(error.contains("not an RFC 3339 time"), "{error}");
        value.as_object_mut().unwrap().remove("completeness");
        let older: SnapshotRecord = parse_json(value.to_string().as_bytes(), "r").unwrap();
        assert!(older.completeness.is_none());
    }

    #[test]
    fn newer_records_are_refused_with_advice() {
        let error = parse_json::<OwnerRecord>(br#"{"format": 9}"#, "store.json").unwrap_err();
        assert!(error.contains("upgrade dbguard"), "{error}");
    }
}
