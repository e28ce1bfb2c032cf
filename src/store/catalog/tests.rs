//! The catalog across schema versions: older catalogs stay readable and migrate.
use chrono::Utc;
use rusqlite::Connection;

use super::records::parse_ts;
use super::schema::SCHEMA;
use super::*;

/// The schema of version 2 (dbguard before `operation_refs`), as it created catalogs.
fn v2_schema() -> String {
    let (v2, refs) = SCHEMA
        .split_once("CREATE TABLE IF NOT EXISTS operation_refs")
        .unwrap();
    assert!(refs.contains("snapshot_id"));
    let without_blocks = v2.replace(
        "    size INTEGER NOT NULL,\n    block_size INTEGER,            -- NULL: a legacy image, its chunks in image_chunks\n    manifest BLOB                  -- its block numbers in order, as runs (store/blocks.rs)\n",
        "    size INTEGER NOT NULL\n",
    );
    assert_ne!(without_blocks, v2, "schema 4's image columns are stripped");
    // Every snapshot column after `message` came later (origin: schema 5).
    let (head, tail) = without_blocks.split_once("    message TEXT,\n").unwrap();
    let (_, after) = tail
        .split_once("\n);\nCREATE INDEX IF NOT EXISTS snapshots_path")
        .unwrap();
    let without_origin =
        format!("{head}    message TEXT\n);\nCREATE INDEX IF NOT EXISTS snapshots_path{after}");
    assert_ne!(
        without_origin, without_blocks,
        "schema 5's origin is stripped"
    );
    without_origin
}

#[test]
fn a_version_2_catalog_stays_readable_and_a_writer_adds_references() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    {
        let conn = Connection::open(&path).unwrap();
        // What dbguard wrote before schema 3: a snapshot, and a second identical one
        // the stat cache reused.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; {} PRAGMA user_version=2;
             INSERT INTO operations(created_at, kind, argv)
                 VALUES ('2026-01-01T00:00:00Z', 'install', '[\"dbguard\",\"install\"]'),
                        ('2026-01-02T00:00:00Z', 'install', '[\"dbguard\",\"install\"]');
             INSERT INTO images(digest, size) VALUES ('d', 0);
             INSERT INTO snapshots(operation_id, image_id, worktree, path, kind, created_at,
                 consistency, git_state, schema_hash, reused)
                 VALUES (1, 1, '/w', 'a.db', 'sqlite', '2026-01-01T00:00:00Z',
                 'online-backup', 'tracked', 's', 0),
                        (2, 1, '/w', 'a.db', 'sqlite', '2026-01-02T00:00:00Z',
                 'online-backup', 'tracked', 's', 1);
             INSERT INTO snapshot_tables VALUES (1, 'posts', 7), (2, 'posts', 7);
             INSERT INTO stat_cache(worktree, path, signature, snapshot_id, chunks_ctime_ns)
                 VALUES ('/w', 'a.db', 'sig', 2, 5);",
            v2_schema()
        ))
        .unwrap();
    }
    // A reader (a read-only store) neither migrates nor needs the new table.
    let scratch = tempfile::tempdir().unwrap();
    let read_only = Catalog::open_read_only(&path, scratch.path()).unwrap();
    let listed = read_only.snapshots(None, None, None).unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![2, 1]);
    assert!(listed.iter().all(|s| s.unchanged.is_empty()));
    drop(read_only);

    let mut catalog = Catalog::open(&path).unwrap();
    let version: i64 = catalog
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    // The old snapshots are untouched, the stat cache still points at #2.
    let latest = catalog.latest("/w", "a.db").unwrap().unwrap();
    assert_eq!((latest.id, latest.census.total_rows()), (2, 7));
    assert_eq!(
        catalog
            .stat_cache_hit("/w", "a.db", "sig")
            .unwrap()
            .unwrap()
            .snapshot_id,
        2
    );
    // A later operation that finds a.db unchanged refers to #2.
    let now = parse_ts("2026-01-03T00:00:00Z");
    let operation = catalog
        .begin_operation("export", &["dbguard".into(), "export".into()], None, now)
        .unwrap();
    catalog
        .insert_ref(
            &NewRef {
                operation_id: operation,
                snapshot_id: 2,
                worktree: "/w",
                path: "a.db",
                created_at: now,
                git_state: "tracked",
                reopened: false,
                message: None,
            },
            Some(("sig", Some(5))),
        )
        .unwrap();
    let latest = catalog.latest("/w", "a.db").unwrap().unwrap();
    assert_eq!(latest.id, 2);
    assert_eq!(latest.unchanged.len(), 1);
    assert_eq!(latest.unchanged[0].operation.describe(), "dbguard export");
    assert_eq!(latest.last_seen(), now);
    // Pruning the snapshot takes its references along, and the operation with them
    // unless it is the newest one.
    catalog.delete_snapshots(&[1]).unwrap();
    assert_eq!(catalog.snapshots(None, None, None).unwrap().len(), 1);
    catalog.delete_snapshots(&[2]).unwrap();
    let refs: i64 = catalog
        .conn
        .query_row("SELECT count(*) FROM operation_refs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(refs, 0);
}

#[test]
fn a_version_1_catalog_stays_readable_and_is_migrated_by_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let v1 = v2_schema().replace("    chunks_ctime_ns INTEGER,\n", "");
    assert_ne!(v1, v2_schema());
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; {v1} PRAGMA user_version=1;
             INSERT INTO operations(created_at, kind, argv)
                 VALUES ('2026-01-01T00:00:00Z', 'snapshot', '[]');
             INSERT INTO images(digest, size) VALUES ('d', 0);
             INSERT INTO snapshots(operation_id, image_id, worktree, path, kind, created_at,
                 consistency, git_state, schema_hash)
                 VALUES (1, 1, '/w', 'a.db', 'sqlite', '2026-01-01T00:00:00Z',
                 'online-backup', 'tracked', 's');
             INSERT INTO stat_cache(worktree, path, signature, snapshot_id)
                 VALUES ('/w', 'a.db', 'sig', 1);"
        ))
        .unwrap();
    }
    // Reading needs no migration (and could not write one).
    let scratch = tempfile::tempdir().unwrap();
    let read_only = Catalog::open_read_only(&path, scratch.path()).unwrap();
    assert_eq!(read_only.snapshots(None, None, None).unwrap().len(), 1);
    assert!(matches!(
        read_only.begin_operation("snapshot", &[], None, Utc::now()),
        Err(CatalogError::ReadOnly { .. })
    ));
    drop(read_only);
    let catalog = Catalog::open(&path).unwrap();
    let version: i64 = catalog
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let hit = catalog
        .stat_cache_hit("/w", "a.db", "sig")
        .unwrap()
        .unwrap();
    assert_eq!(hit.snapshot_id, 1);
    // An entry from before the migration has no chunk ctime: it is not trusted.
    assert_eq!(hit.chunks_ctime_ns, None);
    assert_eq!(catalog.snapshots(None, None, None).unwrap().len(), 1);
}
