//! The engine driven directly, without the CLI: a real git repository in a temp dir, a
//! real store, real SQLite files.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{ReadProgress, RestoreError, Restored, Target, restore};
use crate::clock;
use crate::db::DbKind;
use crate::git::Repo;
use crate::store::{AfterLoss, SnapshotInfo, SnapshotRequest, Store};

struct NoProgress;

impl ReadProgress for NoProgress {
    fn read(&self, _done: u64) {}
    fn read_finished(&self) {}
}

/// A git worktree with `app.db` (posts: 500 rows, users: 3 rows) and a store outside it.
struct Fixture {
    _dir: tempfile::TempDir,
    repo: Repo,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let worktree = dir.path().join("work");
        git2::Repository::init(&worktree).unwrap();
        let conn = Connection::open(worktree.join("app.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE posts (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
             INSERT INTO posts SELECT i, 'post number ' || i FROM n;
             INSERT INTO users (name) VALUES ('ada'), ('brian'), ('grace');",
        )
        .unwrap();
        drop(conn);
        let repo = Repo::discover(&worktree).unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        Fixture {
            _dir: dir,
            repo,
            store,
        }
    }

    fn live(&self) -> PathBuf {
        self.repo.worktree.join("app.db")
    }

    fn snapshot(&mut self, message: &str) -> SnapshotInfo {
        let operation = self
            .store
            .begin_operation("snapshot", &["dbguard".into()], None, clock::now())
            .unwrap();
        let taken = self
            .store
            .snapshot(
                &SnapshotRequest {
                    after_loss: AfterLoss::AsBefore,
                    worktree: &self.repo.worktree,
                    path: "app.db",
                    kind: DbKind::Sqlite,
                    git_state: "untracked",
                    operation_id: operation,
                    message: Some(message),
                },
                &|_| {},
            )
            .unwrap();
        self.info(taken.id)
    }

    /// Run the engine as `dbguard restore` would, without a progress display.
    fn restore(
        &mut self,
        snapshot: &SnapshotInfo,
        tables: &[&str],
        target: Target,
    ) -> Result<Restored, RestoreError> {
        let tables: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        restore(
            &self.repo,
            &mut self.store,
            snapshot,
            &tables,
            target,
            &NoProgress,
        )
    }

    fn info(&self, id: i64) -> SnapshotInfo {
        self.store.find_snapshot(id).unwrap().unwrap()
    }
}

fn execute(path: &Path, sql: &str) {
    Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

fn rows(path: &Path, table: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn integrity(path: &Path) -> String {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn restores_a_sqlite_snapshot_in_place_and_can_be_undone() {
    let mut fx = Fixture::new();
    let before = fx.snapshot("before the loss");
    execute(
        &fx.live(),
        "DELETE FROM posts WHERE id > 20; DELETE FROM users;",
    );
    assert_eq!(rows(&fx.live(), "posts"), 20);

    let restored = fx.restore(&before, &[], Target::InPlace).unwrap();

    assert_eq!(restored.path, fx.live());
    assert_eq!(restored.method, "atomic replace");
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_eq!(rows(&fx.live(), "posts"), 500);
    assert_eq!(rows(&fx.live(), "users"), 3);
    assert_eq!(integrity(&fx.live()), "ok");
    // No sidecar of the old file is left next to the new one.
    for suffix in [crate::db::SQLITE_WAL, crate::db::SQLITE_JOURNAL] {
        let mut sidecar = fx.live().into_os_string();
        sidecar.push(suffix);
        assert!(!Path::new(&sidecar).exists(), "{sidecar:?} left behind");
    }
    // The restored state is the path's latest snapshot, so later losses count from it.
    let baseline = restored.baseline.expect("the restored state is recorded");
    let latest = fx
        .store
        .latest(&fx.repo.worktree.to_string_lossy(), "app.db")
        .unwrap()
        .unwrap();
    assert_eq!(latest.id, baseline);
    assert_eq!(latest.census.tables, before.census.tables);

    // The state before the restore was snapshotted; restoring it undoes the restore.
    let undo = fx.info(restored.undo.expect("an undo snapshot"));
    assert_eq!(undo.census.tables["posts"], 20);
    assert_eq!(undo.census.tables["users"], 0);
    fx.restore(&undo, &[], Target::InPlace).unwrap();
    assert_eq!(rows(&fx.live(), "posts"), 20);
    assert_eq!(integrity(&fx.live()), "ok");
}

#[test]
fn restores_one_table_and_leaves_the_others() {
    let mut fx = Fixture::new();
    let before = fx.snapshot("before the loss");
    execute(
        &fx.live(),
        "DELETE FROM posts; INSERT INTO users (name) VALUES ('linus');",
    );

    let restored = fx.restore(&before, &["posts"], Target::InPlace).unwrap();

    assert_eq!(restored.method, "tables replaced in one transaction");
    assert_eq!(rows(&fx.live(), "posts"), 500);
    // The row added after the snapshot is still there.
    assert_eq!(rows(&fx.live(), "users"), 4);
    assert_eq!(integrity(&fx.live()), "ok");
}

#[test]
fn refuses_a_catalog_path_outside_the_worktree_and_writes_nothing() {
    let mut fx = Fixture::new();
    let mut snapshot = fx.snapshot("before");
    snapshot.path = "../outside.db".into();

    let error = fx.restore(&snapshot, &[], Target::InPlace).unwrap_err();

    assert!(
        matches!(error, RestoreError::OutsideWorktree { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "snapshot #{} names the path \"../outside.db\", which is outside this working tree",
            snapshot.id
        )
    );
    assert!(!fx.repo.worktree.join("../outside.db").exists());
    assert_eq!(rows(&fx.live(), "posts"), 500);
}

#[test]
fn to_path_refuses_to_overwrite_and_writes_a_new_file() {
    let mut fx = Fixture::new();
    let snapshot = fx.snapshot("before");
    let existing = fx.live();
    let error = fx
        .restore(&snapshot, &[], Target::To(existing.clone()))
        .unwrap_err();
    assert!(
        matches!(&error, RestoreError::DestinationExists { path } if *path == existing),
        "{error:?}"
    );

    let copy = fx.repo.worktree.join("copy.db");
    let restored = fx
        .restore(&snapshot, &[], Target::To(copy.clone()))
        .unwrap();
    assert_eq!(restored.path, copy);
    assert_eq!(restored.undo, None);
    assert_eq!(rows(&copy, "posts"), 500);
    assert_eq!(integrity(&copy), "ok");
}
