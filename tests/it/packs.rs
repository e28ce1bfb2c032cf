//! The store in pack files: a snapshot after scattered updates stores about the pages
//! that changed, prune gives the space of deleted snapshots back by rewriting packs, and a
//! store written before packs (1 MiB chunk files) keeps working.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use dbguard::testing::*;
use sha2::{Digest, Sha256};

/// Bytes of every file in the store but its staging directory and lock.
fn store_bytes(repo: &TestRepo) -> u64 {
    fn walk(dir: &Path) -> u64 {
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() {
                    walk(&path)
                } else {
                    e.metadata().map(|m| m.len()).unwrap_or(0)
                }
            })
            .sum()
    }
    let store = repo.store();
    walk(&store) - walk(&store.join("tmp"))
}

/// A digest of every row (a copy made with SQLite's backup API differs from its source
/// in header counters, so files are compared by what they hold).
fn sha(path: &Path) -> Vec<u8> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut rows = conn
        .prepare("SELECT id, author, body FROM posts ORDER BY id")
        .unwrap();
    let mut hasher = Sha256::new();
    let mut query = rows.query([]).unwrap();
    while let Some(row) = query.next().unwrap() {
        hasher.update(row.get::<_, i64>(0).unwrap().to_le_bytes());
        hasher.update(row.get::<_, String>(1).unwrap());
        hasher.update(row.get::<_, String>(2).unwrap());
    }
    hasher.finalize().to_vec()
}

/// Update `rows` random rows' bodies, as a crawler refreshing posts does.
fn update_random_rows(db: &Path, rows: u64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE posts SET body = printf('%.*c', 300, 'y') || hex(randomblob(16)) \
         WHERE id IN (SELECT id FROM posts ORDER BY random() LIMIT ?1)",
        [rows as i64],
    )
    .unwrap();
}

fn snapshot_id(repo: &TestRepo, path: &str) -> i64 {
    let taken = repo.dbguard(["snapshot", "--json", path]).ok().json();
    taken[0]["id"].as_i64().unwrap()
}

#[test]
fn scattered_updates_store_about_the_pages_they_changed() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 20_000, 300);
    let first_id = snapshot_id(&repo, "posts.db");
    let first = store_bytes(&repo);
    let mut ids = vec![first_id];
    let mut states = vec![sha(&db)];
    for _ in 0..3 {
        update_random_rows(&db, 200);
        ids.push(snapshot_id(&repo, "posts.db"));
        states.push(sha(&db));
    }
    let grown = store_bytes(&repo) - first;
    // 1% of the rows changes about a tenth of the pages; 1 MiB chunks stored the whole
    // database again each time.
    assert!(
        grown * 4 < first * 3,
        "three 1% updates grew the store by {grown} bytes; one snapshot takes {first}"
    );
    // Every snapshot gives back exactly the file it was taken of.
    for (k, (id, state)) in ids.iter().zip(&states).enumerate() {
        let out = repo.restore_to(*id, &format!("restored-{k}.db"));
        assert_eq!(&sha(&out), state, "snapshot #{id}");
    }
    repo.dbguard(["verify"]).ok();
}

#[test]
fn pruning_rewrites_packs_down_to_what_the_kept_snapshot_needs() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 20_000, 300);
    snapshot_id(&repo, "posts.db");
    let one_snapshot = store_bytes(&repo);
    for _ in 0..5 {
        update_random_rows(&db, 400);
        snapshot_id(&repo, "posts.db");
    }
    let kept = sha(&db);
    let before = store_bytes(&repo);
    let dry = repo
        .dbguard(["prune", "--keep-last", "1", "--dry-run", "--json"])
        .ok()
        .json();
    assert!(dry["freed_bytes"].as_u64().unwrap() > 0, "{dry}");
    assert_eq!(store_bytes(&repo), before, "a dry run changes nothing");
    let pruned = repo
        .dbguard(["prune", "--keep-last", "1", "--json"])
        .ok()
        .json();
    assert_eq!(pruned["removed"].as_array().unwrap().len(), 5, "{pruned}");
    let after = store_bytes(&repo);
    assert!(
        after * 10 <= one_snapshot * 13,
        "after pruning 5 of 6 snapshots the store holds {after} bytes; one snapshot took \
         {one_snapshot} (before the prune: {before})"
    );
    repo.dbguard(["verify"]).ok();
    let id = repo.dbguard(["log", "--json"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(sha(&repo.restore_to(id, "kept.db")), kept);
    // Nothing is left for a second prune.
    let again = repo
        .dbguard(["prune", "--keep-last", "1", "--json"])
        .ok()
        .json();
    assert_eq!(again["freed_bytes"], 0, "{again}");
}

#[test]
fn a_damaged_pack_is_repaired_by_the_next_snapshot_of_the_same_bytes() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 10_000, 300);
    let first = snapshot_id(&repo, "posts.db");
    let state = sha(&db);
    repo.damage_stored_piece(first, 1 << 20);
    let verify = repo.dbguard(["verify"]).fails_with(1);
    assert!(
        verify.stdout.contains(&format!("#{first}")),
        "{}",
        verify.stdout
    );
    // The damaged bytes never come back as data: a restore of that snapshot fails and
    // leaves no file (a read that returned wrong bytes would write one here).
    let out = repo.path("from-damaged.db");
    let restore = repo
        .dbguard([
            "restore",
            "--from",
            &first.to_string(),
            "--to",
            out.to_str().unwrap(),
        ])
        .fails_with(1);
    assert!(!out.exists(), "{}", restore.stderr);
    // The file is unchanged: the next snapshot reads it (verify stopped trusting the stat
    // cache), writes the damaged pages again and refers to the same snapshot.
    let again = repo.dbguard(["snapshot", "--json", "posts.db"]).ok();
    assert_eq!(again.json()[0]["id"], first, "{}", again.stderr);
    assert!(again.stderr.contains("damaged chunk"), "{}", again.stderr);
    repo.dbguard(["verify"]).ok();
    assert_eq!(sha(&repo.restore_to(first, "repaired.db")), state);
}

/// `fixtures/store-v7`: a store written by dbguard with catalog schema 7 (commit
/// c452bfe; see `fixtures/make-store-v7.sh`): a snapshot with a message, one taken before
/// a guarded `git clean -fdx`, and the undo snapshot of the restore after it. Today's
/// dbguard migrates the catalog and keeps every record readable and restorable.
#[test]
fn a_catalog_of_schema_7_opens_and_migrates() {
    let repo = TestRepo::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/store-v7");
    copy_dir(&fixture.join("dbguard"), &repo.store());
    fs::copy(fixture.join("posts.db"), repo.root.join("posts.db")).unwrap();
    let catalog = repo.store().join("catalog.db");
    let version = || -> i64 {
        rusqlite::Connection::open(&catalog)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(version(), 7, "the fixture is a schema 7 catalog");
    {
        let conn = rusqlite::Connection::open(&catalog).unwrap();
        conn.execute(
            "UPDATE snapshots SET worktree = ?1",
            [repo.root.to_string_lossy()],
        )
        .unwrap();
        conn.execute("DELETE FROM stat_cache", []).unwrap();
        // Schema 7 kept a partial copy's facts only in this label (what a DuckDB copy
        // made while a writer held the file said): schema 8 reads them into columns.
        conn.execute(
            "UPDATE snapshots SET consistency = 'partial as of last checkpoint: missing 12 \
             commits (45678 WAL bytes) made since 2026-12-01T19:50:01.123Z (held by pid 4242)' \
             WHERE id = 1",
            [],
        )
        .unwrap();
    }
    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(version(), CATALOG_SCHEMA, "log migrated the catalog");
    let first = &log.as_array().unwrap()[2];
    assert_eq!(first["partial"], true, "{first}");
    assert_eq!(first["missing"]["commits"], 12, "{first}");
    assert_eq!(first["missing"]["wal_bytes"], 45678, "{first}");
    assert_eq!(first["missing"]["holder_pid"], 4242, "{first}");
    assert_eq!(log[1]["partial"], false, "{log}");
    let typed: (i64, i64) = rusqlite::Connection::open(&catalog)
        .unwrap()
        .query_row(
            "SELECT partial, missing_commits FROM snapshots WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(typed, (1, 12), "the facts are typed columns now");
    assert!(
        repo.dbguard(["log"]).ok().stdout.contains("PARTIAL"),
        "log marks the partial snapshot"
    );
    let rows: Vec<(i64, u64)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_i64().unwrap(), s["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(rows, vec![(3, 2300), (2, 2300), (1, 300)], "{log}");
    let shown = repo.dbguard(["show", "1"]).ok();
    assert!(shown.stdout.contains("three hundred"), "{}", shown.stdout);
    let shown = repo.dbguard(["show", "2"]).ok();
    assert!(shown.stdout.contains("git clean -fdx"), "{}", shown.stdout);
    for (id, count) in &rows {
        let out = repo.restore_to(*id, &format!("v7-{id}.db"));
        assert_eq!(sqlite_count(&out, "posts"), *count);
    }
    repo.dbguard(["verify"]).ok();
    // A new snapshot writes into the migrated catalog, beside the old records.
    let conn = rusqlite::Connection::open(repo.root.join("posts.db")).unwrap();
    add_posts(&conn, 50, 100);
    drop(conn);
    let new = snapshot_id(&repo, "posts.db");
    assert!(new > 3);
    assert_eq!(
        sqlite_count(&repo.restore_to(new, "v7-new.db"), "posts"),
        2350
    );
    repo.dbguard(["verify"]).ok();
}

/// `fixtures/store-v3`: a store written by dbguard before packs (schema 3, 1 MiB chunk
/// files), with the database it was taken of; see `fixtures/make-store-v3.sh`.
#[test]
fn a_store_written_before_packs_keeps_working() {
    let repo = TestRepo::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/store-v3");
    copy_dir(&fixture.join("dbguard"), &repo.store());
    fs::copy(fixture.join("posts.db"), repo.root.join("posts.db")).unwrap();
    // The catalog names the worktree it was made in; this repository is elsewhere.
    let worktree = repo.root.to_string_lossy().to_string();
    {
        let conn = rusqlite::Connection::open(repo.store().join("catalog.db")).unwrap();
        conn.execute("UPDATE snapshots SET worktree = ?1", [&worktree])
            .unwrap();
        conn.execute("DELETE FROM stat_cache", []).unwrap();
    }
    let log = repo.dbguard(["log", "--json"]).ok().json();
    let old: Vec<(i64, u64)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_i64().unwrap(), s["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(old.len(), 2, "{log}");
    assert!(old.iter().any(|(_, rows)| *rows == 300), "{old:?}");
    for (id, rows) in &old {
        let out = repo.restore_to(*id, &format!("old-{id}.db"));
        assert_eq!(sqlite_count(&out, "posts"), *rows);
    }
    repo.dbguard(["verify"]).ok();
    assert!(repo.store().join("objects").is_dir());

    // A new snapshot goes into a pack; both kinds verify and restore side by side.
    let conn = rusqlite::Connection::open(repo.root.join("posts.db")).unwrap();
    add_posts(&conn, 100, 300);
    drop(conn);
    let live_rows = sqlite_count(&repo.root.join("posts.db"), "posts");
    let new = snapshot_id(&repo, "posts.db");
    assert!(fs::read_dir(repo.store().join("packs")).unwrap().count() > 0);
    repo.dbguard(["verify"]).ok();
    assert_eq!(
        sqlite_count(&repo.restore_to(new, "new.db"), "posts"),
        live_rows
    );
    // Pruning the old snapshots deletes the chunk files they alone used.
    repo.dbguard(["prune", "--keep-last", "1"]).ok();
    let chunk_files: usize = fs::read_dir(repo.store().join("objects"))
        .unwrap()
        .flatten()
        .map(|d| fs::read_dir(d.path()).map(|e| e.count()).unwrap_or(0))
        .sum();
    assert_eq!(chunk_files, 0);
    repo.dbguard(["verify"]).ok();
    assert_eq!(
        sqlite_count(&repo.restore_to(new, "new-again.db"), "posts"),
        live_rows
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn an_unchanged_database_is_not_read_again() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 5_000, 300);
    sleep(Duration::from_millis(200));
    let first = repo.dbguard(["snapshot", "--json"]).ok().json();
    let packs = repo.stored_file_count();
    let again = repo.dbguard(["snapshot", "--json"]).ok().json();
    assert_eq!(again[0]["reused"], true, "{again}");
    assert_eq!(again[0]["id"], first[0]["id"]);
    assert_eq!(repo.stored_file_count(), packs);
}

/// Pages repeated within one image (zeroed free pages, here, across many 4 MiB segments
/// of the reader) are stored once and come back at every place.
#[test]
fn repeated_pages_are_stored_once_and_restored_everywhere() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA secure_delete=ON; PRAGMA journal_mode=DELETE;")
            .unwrap();
        make_posts_db(&db, 0, 0);
        add_posts(&conn, 40_000, 300);
        // Freed pages are zeroed: thousands of identical pages all over the file.
        conn.execute("DELETE FROM posts WHERE id % 10 != 0", [])
            .unwrap();
    }
    let pages = |path: &Path| -> (i64, i64) {
        let conn = rusqlite::Connection::open(path).unwrap();
        let count = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let free = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        (count, free)
    };
    let (count, free) = pages(&db);
    assert!(free * 2 > count, "{free} free of {count} pages");
    let id = snapshot_id(&repo, "posts.db");
    let stored = store_bytes(&repo);
    let size = fs::metadata(&db).unwrap().len();
    assert!(
        stored * 4 < size,
        "{stored} bytes stored for a {size}-byte file"
    );
    let out = repo.restore_to(id, "restored.db");
    assert_eq!(pages(&out), (count, free));
    assert_eq!(quick_check(&out), "ok");
    assert_eq!(sqlite_count(&out, "posts"), 4_000);
    assert_eq!(sha(&out), sha(&db));
    repo.dbguard(["verify"]).ok();
}
