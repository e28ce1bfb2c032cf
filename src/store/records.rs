//! The catalog's records as the store's API (operations, snapshot lookups, the stat
//! cache, deletion), so that nothing outside the store reaches into its catalog and
//! every failure arrives as a `StoreError`.

use chrono::{DateTime, Utc};

use super::{NewSnapshot, SnapshotInfo, Store, StoreError};
use crate::db::DbKind;

/// The snapshot id a user typed: `14` or `#14` (the one spelling every command accepts).
pub(crate) fn parse_snapshot_id(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('#').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Store {
    /// Record the start of an operation (a guarded git command, a `snapshot`, a hook);
    /// the snapshots it takes refer to it.
    pub(crate) fn begin_operation(
        &self,
        kind: &str,
        argv: &[String],
        head_before: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(self.catalog.begin_operation(kind, argv, head_before, now)?)
    }

    pub(crate) fn finish_operation(
        &self,
        id: i64,
        head_after: Option<&str>,
        exit_code: Option<i32>,
    ) -> Result<(), StoreError> {
        Ok(self.catalog.finish_operation(id, head_after, exit_code)?)
    }

    /// The snapshot with this id, if any.
    pub(crate) fn find_snapshot(&self, id: i64) -> Result<Option<SnapshotInfo>, StoreError> {
        Ok(self.catalog.snapshot(id)?)
    }

    /// Snapshots, newest first, optionally of one worktree and one path, at most `limit`.
    pub(crate) fn snapshots(
        &self,
        worktree: Option<&str>,
        path: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<SnapshotInfo>, StoreError> {
        Ok(self.catalog.snapshots(worktree, path, limit)?)
    }

    /// The newest snapshot of `path` in `worktree` taken by this store (not fetched).
    pub(crate) fn latest(
        &self,
        worktree: &str,
        path: &str,
    ) -> Result<Option<SnapshotInfo>, StoreError> {
        Ok(self.catalog.latest(worktree, path)?)
    }

    /// The snapshot `status` compares `path` with: the newest taken here that was not
    /// recorded right after a loss.
    pub(crate) fn baseline(
        &self,
        worktree: &str,
        path: &str,
    ) -> Result<Option<SnapshotInfo>, StoreError> {
        Ok(self.catalog.baseline(worktree, path)?)
    }

    /// Every path of `worktree` that has a snapshot.
    pub(crate) fn snapshotted_paths(&self, worktree: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.catalog.snapshotted_paths(worktree)?)
    }

    /// The stat signature recorded at each path's last snapshot: (path, kind, signature).
    pub(crate) fn stat_cache_entries(
        &self,
        worktree: &str,
    ) -> Result<Vec<(String, DbKind, String)>, StoreError> {
        Ok(self.catalog.stat_cache_entries(worktree)?)
    }

    pub(crate) fn forget_stat_cache(&self, worktree: &str, path: &str) -> Result<(), StoreError> {
        Ok(self.catalog.forget_stat_cache(worktree, path)?)
    }

    /// Record a snapshot whose image is already stored (restore's new baseline).
    pub(crate) fn insert_snapshot(
        &mut self,
        snapshot: &NewSnapshot<'_>,
        image: Option<&super::NewImage<'_>>,
        stat_cache: Option<(&str, Option<i64>)>,
    ) -> Result<i64, StoreError> {
        Ok(self.catalog.insert_snapshot(snapshot, image, stat_cache)?)
    }

    /// Delete snapshot records (their bytes stay until [`Store::reclaim_space`]).
    pub(crate) fn delete_snapshots(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        Ok(self.catalog.delete_snapshots(ids)?)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_snapshot_id;

    #[test]
    fn snapshot_ids_are_numbers_with_an_optional_hash() {
        assert_eq!(parse_snapshot_id("14"), Some(14));
        assert_eq!(parse_snapshot_id("#14"), Some(14));
        for not_an_id in [
            "",
            "#",
            "##14",
            "-1",
            "+1",
            "1.5",
            "posts.db",
            "99999999999999999999",
        ] {
            assert_eq!(parse_snapshot_id(not_an_id), None, "{not_an_id:?}");
        }
    }
}
