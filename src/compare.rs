//! Compare a database now with its last snapshot: which tables lost rows, vanished, or
//! whether the whole file vanished or was replaced by a different schema.

use serde::Serialize;

use crate::db::Census;

/// One table's rows before and after (`None` after = the table is gone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct TableLoss {
    pub(crate) table: String,
    pub(crate) before: u64,
    pub(crate) after: Option<u64>,
}

/// A database that is worse off than in its snapshot.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Shrink {
    pub(crate) path: String,
    pub(crate) snapshot_id: i64,
    /// When the snapshot was taken.
    #[serde(serialize_with = "crate::store::rfc3339")]
    pub(crate) taken_at: chrono::DateTime<chrono::Utc>,
    /// When the state was last recorded as current: a later operation that found the
    /// database unchanged refers to the snapshot (see [`crate::store::SnapshotInfo::last_seen`]).
    #[serde(serialize_with = "crate::store::rfc3339")]
    pub(crate) seen_at: chrono::DateTime<chrono::Utc>,
    /// The git command the snapshot was taken before, for the prompt.
    pub(crate) taken_before: String,
    /// Whether that command was dbguard's own (it took the snapshot, nothing ran after).
    #[serde(skip)]
    pub(crate) taken_by_dbguard: bool,
    /// The newest command that found the database unchanged since the snapshot: the
    /// snapshot is also the state right before it.
    pub(crate) still_before: Option<String>,
    /// When the snapshot records the state a restore put back: the snapshot it restored.
    pub(crate) restored_from: Option<i64>,
    pub(crate) before: Census,
    /// `None`: the file is gone (or no longer a readable database).
    pub(crate) after: Option<Census>,
    pub(crate) lost: Vec<TableLoss>,
    pub(crate) schema_replaced: bool,
    /// Why `after` is missing, when the file exists but cannot be read.
    pub(crate) unreadable: Option<String>,
}

impl Shrink {
    /// "taken before `git pull`", or "taken by `dbguard install`" for a snapshot a
    /// dbguard command took on its own (nothing ran after it that it was taken for).
    pub(crate) fn taken(&self) -> String {
        let verb = if self.taken_by_dbguard {
            "by"
        } else {
            "before"
        };
        format!("taken {verb} `{}`", self.taken_before)
    }

    pub(crate) fn rows_before(&self) -> u64 {
        self.before.total_rows()
    }

    pub(crate) fn rows_after(&self) -> u64 {
        self.after.as_ref().map_or(0, Census::total_rows)
    }
}

/// `Some` when `after` lost rows or tables relative to `before`, or the schema changed
/// underneath, or the file is gone. Growth alone is never a shrink.
pub(crate) fn compare(before: &Census, after: Option<&Census>) -> Option<(Vec<TableLoss>, bool)> {
    let Some(after) = after else {
        let lost = before
            .tables
            .iter()
            .map(|(table, rows)| TableLoss {
                table: table.clone(),
                before: *rows,
                after: None,
            })
            .collect();
        return Some((lost, false));
    };
    let lost: Vec<TableLoss> = before
        .tables
        .iter()
        .filter_map(|(table, &rows)| match after.tables.get(table) {
            Some(&now) if now >= rows => None,
            now => Some(TableLoss {
                table: table.clone(),
                before: rows,
                after: now.copied(),
            }),
        })
        .collect();
    // A schema change with no lost rows is a migration, not a loss, unless tables vanished
    // (covered above) — so only report the schema when something was also lost.
    let schema_replaced = before.schema != after.schema;
    if lost.is_empty() {
        None
    } else {
        Some((lost, schema_replaced))
    }
}

/// The message of the snapshot that records a restored state (see [`restored_from`]).
pub(crate) fn restored_from_message(id: i64) -> String {
    format!("restored from #{id}")
}

/// The snapshot a restore put back, when `snapshot` records the state right after that
/// restore rather than a state taken before some command.
pub(crate) fn restored_from(snapshot: &crate::store::SnapshotInfo) -> Option<i64> {
    if snapshot.operation.kind != "restore" {
        return None;
    }
    snapshot
        .message
        .as_deref()?
        .strip_prefix("restored from #")?
        .parse()
        .ok()
}

/// Census the live file and compare it with `snapshot`; `Some` when it is worse off.
pub(crate) fn check_live(
    worktree: &std::path::Path,
    snapshot: &crate::store::SnapshotInfo,
) -> Option<Shrink> {
    let live = worktree.join(&snapshot.path);
    let (after, unreadable) = match std::fs::symlink_metadata(&live) {
        Err(_) => (None, None),
        Ok(_) => match crate::db::sniff(&live) {
            Ok(crate::db::Sniff::Database(kind)) if kind == snapshot.kind => {
                match crate::db::census_live(kind, &live) {
                    Ok(census) => (Some(census), None),
                    // Held by another process: we cannot tell, so do not cry wolf.
                    Err(crate::db::DbError::DuckDbLocked { .. }) => return None,
                    Err(error) => (None, Some(error.to_string())),
                }
            }
            Ok(crate::db::Sniff::Database(kind)) => (None, Some(format!("now a {kind} file"))),
            Ok(crate::db::Sniff::NotDatabase(reason)) => (None, Some(reason.to_string())),
            Err(error) => (None, Some(error.to_string())),
        },
    };
    shrink_against(snapshot, after, unreadable)
}

/// `Some` when `after` (the file now; `None` with `unreadable` when it is gone or cannot
/// be read) is worse off than `snapshot`: [`check_live`] for a census already taken.
pub(crate) fn shrink_against(
    snapshot: &crate::store::SnapshotInfo,
    after: Option<Census>,
    unreadable: Option<String>,
) -> Option<Shrink> {
    let (lost, schema_replaced) = compare(&snapshot.census, after.as_ref())?;
    Some(Shrink {
        path: snapshot.path.clone(),
        snapshot_id: snapshot.id,
        taken_at: snapshot.created_at,
        seen_at: snapshot.last_seen(),
        taken_before: snapshot.operation.describe(),
        taken_by_dbguard: snapshot.operation.is_dbguard_command(),
        still_before: snapshot.unchanged.last().map(|r| r.operation.describe()),
        restored_from: restored_from(snapshot),
        before: snapshot.census.clone(),
        after,
        lost,
        schema_replaced,
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn census(tables: &[(&str, u64)], schema: &str) -> Census {
        Census {
            tables: tables.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            schema: schema.into(),
        }
    }

    #[test]
    fn growth_is_not_a_shrink() {
        let before = census(&[("posts", 10)], "a");
        assert!(compare(&before, Some(&census(&[("posts", 11)], "a"))).is_none());
        assert!(compare(&before, Some(&census(&[("posts", 10), ("new", 1)], "b"))).is_none());
    }

    #[test]
    fn lost_rows_tables_and_files_are_shrinks() {
        let before = census(&[("posts", 900_000), ("users", 5)], "a");
        let (lost, replaced) = compare(
            &before,
            Some(&census(&[("posts", 5000), ("users", 5)], "a")),
        )
        .unwrap();
        assert_eq!(
            lost,
            vec![TableLoss {
                table: "posts".into(),
                before: 900_000,
                after: Some(5000)
            }]
        );
        assert!(!replaced);
        let (lost, replaced) = compare(&before, Some(&census(&[("other", 1)], "b"))).unwrap();
        assert_eq!(lost.len(), 2);
        assert!(lost.iter().all(|l| l.after.is_none()));
        assert!(replaced);
        let (lost, _) = compare(&before, None).unwrap();
        assert_eq!(lost.len(), 2);
    }
}
