//! The snapshot store on real repositories and real database files.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::Duration;

use dbguard::testing::*;

/// A Python process that keeps inserting paired rows into `a` and `b` (one transaction
/// per pair) in a database in `journal_mode` (WAL or DELETE), until killed.
fn start_paired_writer(repo: &TestRepo, db: &str, journal_mode: &str) -> Child {
    let script = r#"
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("PRAGMA journal_mode=" + sys.argv[2])
conn.execute("CREATE TABLE IF NOT EXISTS a(id INTEGER PRIMARY KEY, v TEXT)")
conn.execute("CREATE TABLE IF NOT EXISTS b(id INTEGER PRIMARY KEY, v TEXT)")
print("ready", flush=True)
i = 0
while True:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO a(v) VALUES (?)", ("x" * 200,))
    conn.execute("INSERT INTO b(v) VALUES (?)", ("y" * 200,))
    conn.execute("COMMIT")
    i += 1
"#;
    let mut child = repo
        .command("python3", &repo.root)
        .args(["-c", script, db, journal_mode])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the concurrent writer");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

#[test]
fn wal_database_under_a_live_writer_snapshots_consistently() {
    snapshots_under_a_live_writer_are_consistent("WAL");
}

#[test]
fn rollback_journal_database_under_a_live_writer_snapshots_consistently() {
    snapshots_under_a_live_writer_are_consistent("DELETE");
}

/// Five snapshots while a writer commits pairs of rows: each snapshot's census and its
/// restored image hold whole pairs only, and the writer went on between them.
fn snapshots_under_a_live_writer_are_consistent(journal_mode: &str) {
    let repo = TestRepo::new();
    let mut writer = start_paired_writer(&repo, "app.db", journal_mode);
    sleep(Duration::from_millis(300));
    let mut totals = Vec::new();
    for _ in 0..5 {
        let run = repo.dbguard(["snapshot", "--json", "app.db"]).ok();
        let report = run.json();
        let tables = &report[0]["tables"];
        let (a, b) = (tables["a"].as_u64().unwrap(), tables["b"].as_u64().unwrap());
        assert_eq!(a, b, "paired tables differ in one snapshot: {report}");
        assert!(a > 0);
        totals.push((report[0]["id"].as_i64().unwrap(), a));
        sleep(Duration::from_millis(100));
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    let rows: Vec<u64> = totals.iter().map(|(_, rows)| *rows).collect();
    assert!(
        rows.windows(2).all(|w| w[0] <= w[1]) && rows[0] < rows[4],
        "the writer was live during the snapshots: {rows:?}"
    );
    for (id, rows) in totals {
        let copy = repo.path(&format!("restored-{id}.db"));
        repo.dbguard([
            "restore",
            "--from",
            &id.to_string(),
            "--to",
            copy.to_str().unwrap(),
        ])
        .ok();
        assert_eq!(quick_check(&copy), "ok");
        assert_eq!(sqlite_count(&copy, "a"), rows, "snapshot {id}");
        assert_eq!(sqlite_count(&copy, "b"), rows, "snapshot {id}");
    }
    // Every stored image passes quick_check when materialised (verify re-reads all).
    repo.dbguard(["verify"]).ok();
}

#[test]
fn unchanged_database_is_reused_without_opening_it() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 2000, 300);
    sleep(Duration::from_millis(200));
    let first = repo.dbguard(["snapshot", "--json"]).ok().json();
    assert_eq!(first[0]["reused"], false);
    let chunks = repo.stored_file_count();
    assert!(chunks > 0);

    // Another process holds an exclusive lock: any attempt to read the file would wait
    // 30 s and fail. An unchanged file must not be opened at all.
    let mut locker = repo
        .command("python3", &repo.root)
        .args([
            "-c",
            "import sqlite3,sys,time\nc=sqlite3.connect('posts.db',isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked',flush=True)\ntime.sleep(60)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(locker.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let started = std::time::Instant::now();
    let second = repo.dbguard(["snapshot", "--json"]).ok().json();
    let waited = started.elapsed();
    locker.kill().unwrap();
    locker.wait().unwrap();
    assert_eq!(second[0]["reused"], true);
    assert_eq!(second[0]["stored_bytes"], 0);
    assert_eq!(second[0]["rows"], 2000);
    assert_eq!(
        repo.stored_file_count(),
        chunks,
        "no new chunk for an unchanged file"
    );
    assert!(
        waited < Duration::from_secs(10),
        "it waited for the lock: {waited:?}"
    );

    // One snapshot holds the state; the second operation refers to it.
    assert_eq!(second[0]["id"], first[0]["id"]);
    assert_eq!(second[0]["unchanged"], true);
    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["unchanged"].as_array().unwrap().len(), 1);
}

#[test]
fn small_change_adds_a_small_fraction_of_the_size() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 40_000, 500);
    let size = fs::metadata(&db).unwrap().len();
    repo.dbguard(["snapshot"]).ok();
    {
        // 1% of the rows: edit 200 recent posts and append 200 new ones.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute("UPDATE posts SET body = upper(body) WHERE id > 39800", [])
            .unwrap();
        add_posts(&conn, 200, 500);
    }
    let second = repo.dbguard(["snapshot", "--json"]).ok().json();
    let added = second[0]["stored_bytes"].as_u64().unwrap();
    assert_eq!(second[0]["rows"], 40_200);
    assert!(
        added * 20 < size,
        "a 1% change stored {added} bytes of a {size}-byte database"
    );
}

#[test]
fn store_lives_in_the_git_dir_with_private_permissions() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 10, 10);
    repo.dbguard(["snapshot"]).ok();
    for dir in ["", "packs", "tmp"] {
        let mode = fs::metadata(repo.store().join(dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{dir}");
    }
    let mode = fs::metadata(repo.store().join("catalog.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // git does not see the store: the working tree stays clean apart from the database.
    let status = repo.git(["status", "--porcelain"]);
    assert_eq!(status.trim(), "?? posts.db");
}

#[test]
fn log_show_and_status_describe_snapshots() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 1234, 50);
    fs::create_dir_all(repo.root.join("data dir")).unwrap();
    make_posts_db(&repo.root.join("data dir/ünï code.db"), 7, 50);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "track db"]);
    repo.dbguard(["snapshot", "-m", "before migration"]).ok();

    let log = repo.dbguard(["log"]).ok();
    assert!(log.stdout.contains("posts.db"), "{}", log.stdout);
    assert!(log.stdout.contains("1,234"));
    assert!(log.stdout.contains("data dir/ünï code.db"));

    let snapshots = repo.dbguard(["log", "--json", "posts.db"]).ok().json();
    let id = snapshots[0]["id"].as_i64().unwrap();
    let show = repo.dbguard(["show", &id.to_string()]).ok();
    assert!(show.stdout.contains("before migration"));
    // Read through SQLite inside one read transaction, no staging copy.
    assert!(show.stdout.contains("read-transaction"), "{}", show.stdout);
    assert!(show.stdout.contains("1,234"));

    let status = repo.dbguard(["status"]).ok();
    assert!(status.stdout.contains("tracked"), "{}", status.stdout);
    assert!(status.stdout.contains("untracked"));
    assert!(status.stderr.contains("posts.db is under version control"));
    assert!(status.stderr.contains("git rm --cached"));
    let json = repo.dbguard(["status", "--json"]).ok().json();
    let posts = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "posts.db")
        .unwrap();
    assert_eq!(posts["rows_now"], 1234);
    assert_eq!(posts["last_snapshot"]["rows"], 1234);
}

#[test]
fn kill_during_snapshot_leaves_a_store_that_verifies() {
    let repo = TestRepo::new();
    let db = repo.root.join("big.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 12000)
             INSERT INTO blobs(data) SELECT randomblob(8000) FROM n;",
        )
        .unwrap();
    }
    repo.dbguard(["snapshot", "-m", "good one"]).ok();
    let mut landed = 0;
    for delay_ms in [30u64, 120, 250, 400] {
        {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute(
                "UPDATE blobs SET data = randomblob(8000) WHERE id % 3 = 0",
                [],
            )
            .unwrap();
        }
        let mut child = repo
            .command(dbguard_bin(), &repo.root)
            .args(["snapshot"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if kill_9_after(&mut child, Duration::from_millis(delay_ms)) {
            landed += 1;
        }
        let verify = repo.dbguard(["verify", "--json"]).ok().json();
        assert_eq!(verify["problems"].as_array().unwrap().len(), 0);
    }
    assert!(
        landed >= 2,
        "only {landed} of 4 kills landed while the snapshot ran"
    );
    // The next run clears the debris and works.
    repo.dbguard(["snapshot"]).ok();
    assert_eq!(fs::read_dir(repo.store().join("tmp")).unwrap().count(), 0);
    repo.dbguard(["verify"]).ok();
}

fn ids(list: &serde_json::Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect()
}

fn restored_rows(repo: &TestRepo, id: i64, name: &str) -> u64 {
    let out = repo.restore_to(id, name);
    sqlite_count(&out, "posts")
}

#[test]
fn damaged_chunk_is_never_reused_and_verify_names_the_snapshots_it_breaks() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 300, 300);
    sleep(Duration::from_millis(200));
    repo.dbguard(["snapshot", "posts.db"]).ok(); // #1: one chunk
    let conn = rusqlite::Connection::open(&db).unwrap();
    add_posts(&conn, 12_000, 300); // ~4.7 MiB: five chunks
    drop(conn);
    sleep(Duration::from_millis(200));
    repo.dbguard(["snapshot", "posts.db"]).ok(); // #2
    let again = repo.dbguard(["snapshot", "--json", "posts.db"]).ok().json(); // still #2
    assert_eq!(again[0]["reused"], true, "{again}");
    assert_eq!(again[0]["id"], 2, "{again}");

    // A chunk of #2 goes bad; #1 does not use it.
    repo.damage_stored_piece(2, 1 << 20);
    let verify = repo.dbguard(["verify"]).fails_with(1);
    assert!(
        verify.stdout.contains("breaks #2"),
        "verify names the snapshots a damaged chunk breaks:\n{}{}",
        verify.stdout,
        verify.stderr
    );
    assert!(
        verify
            .stdout
            .contains("posts.db: cannot restore #2; restorable: #1"),
        "{}",
        verify.stdout
    );
    assert!(
        verify.stderr.contains("1 snapshot cannot be restored")
            && verify.stderr.contains("`dbguard snapshot posts.db`")
            && verify
                .stderr
                .contains("`dbguard restore posts.db --from 1`"),
        "{}",
        verify.stderr
    );
    let report = repo.dbguard(["verify", "--json"]).fails_with(1).json();
    assert_eq!(ids(&report["broken"]), vec![2]);
    assert_eq!(ids(&report["restorable"]), vec![1]);
    // The advice works: #1 restores.
    assert_eq!(restored_rows(&repo, 1, "one.db"), 300);

    // verify stopped trusting the stat cache for the damaged image: the next snapshot of
    // the unchanged file reads it and rewrites the chunk, which repairs #2; the file is
    // the same, so no new snapshot is recorded.
    let repair = repo.dbguard(["snapshot", "--json", "posts.db"]).ok(); // still #2
    assert_eq!(repair.json()[0]["reused"], false, "{}", repair.stderr);
    assert_eq!(repair.json()[0]["id"], 2, "{}", repair.stderr);
    assert!(repair.stderr.contains("damaged chunk"), "{}", repair.stderr);
    repo.dbguard(["verify"]).ok();
    assert_eq!(restored_rows(&repo, 2, "two.db"), 12_300);

    // Without verify: a chunk written since the stat cache entry was recorded is not
    // trusted either, and a snapshot after a change rewrites the damaged chunk it reuses.
    repo.damage_stored_piece(2, 1 << 20);
    // A new table: page 1 and a page at the end change, the middle chunks stay the same.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE notes(t TEXT); INSERT INTO notes VALUES ('new');")
        .unwrap();
    drop(conn);
    sleep(Duration::from_millis(200));
    let changed = repo.dbguard(["snapshot", "--json", "posts.db"]).ok(); // #3
    assert_eq!(changed.json()[0]["rows"], 12_301);
    assert!(
        changed.stderr.contains("damaged chunk"),
        "{}",
        changed.stderr
    );
    assert_eq!(changed.json()[0]["id"], 3);
    assert_eq!(restored_rows(&repo, 3, "three.db"), 12_300);
    assert_eq!(sqlite_count(&repo.path("three.db"), "notes"), 1);
    repo.damage_stored_piece(3, 2 << 20);
    let unchanged = repo.dbguard(["snapshot", "--json", "posts.db"]).ok(); // still #3
    assert_eq!(unchanged.json()[0]["reused"], false, "{}", unchanged.stderr);
    assert_eq!(unchanged.json()[0]["id"], 3, "{}", unchanged.stderr);
    assert_eq!(restored_rows(&repo, 3, "three-again.db"), 12_300);
    repo.dbguard(["verify"]).ok();
    let cached = repo.dbguard(["snapshot", "--json", "posts.db"]).ok().json(); // still #3
    assert_eq!(cached[0]["reused"], true, "an intact image is reused again");

    // What no live file holds any more cannot be repaired: verify names only that.
    repo.damage_stored_piece(1, 0);
    repo.dbguard(["snapshot", "posts.db"]).ok(); // still #3
    let lost = repo.dbguard(["verify", "--json"]).fails_with(1).json();
    assert_eq!(ids(&lost["broken"]), vec![1]);
    assert_eq!(ids(&lost["restorable"]), vec![2, 3]);
    let lost = repo.dbguard(["verify"]).fails_with(1);
    assert!(
        lost.stderr.contains("`dbguard restore posts.db --from 3`"),
        "{}",
        lost.stderr
    );
}

#[test]
fn store_files_are_private_even_under_umask_000() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 2000, 300);
    // Hold the database exclusively so that dbguard waits for its read lock, with the
    // catalog's -wal/-shm on disk.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut child = repo
        .command("sh", &repo.root)
        .args(["-c", "umask 000; exec \"$0\" snapshot posts.db"])
        .arg(dbguard_bin())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !repo.store().join("catalog.db-shm").exists() || !repo.store().join("packs").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store did not appear"
        );
        sleep(Duration::from_millis(5));
    }
    // Waiting on the lock, not finished.
    sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "dbguard finished under the lock"
    );
    let mut seen = Vec::new();
    let mut check = |path: &std::path::Path| {
        let meta = fs::metadata(path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        seen.push(format!("{} {mode:o}", path.display()));
        assert_eq!(mode, want, "{} is {mode:o}", path.display());
    };
    // A SQLite database is read straight into the store: nothing staged.
    let staged: Vec<_> = fs::read_dir(repo.store().join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    for name in [
        "",
        "tmp",
        "packs",
        "lock",
        "catalog.db",
        "catalog.db-wal",
        "catalog.db-shm",
    ] {
        check(&repo.store().join(name));
    }
    drop(locker);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for entry in walk(&repo.store()) {
        check(&entry);
    }
    assert!(seen.len() > 10, "{seen:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if dir.is_dir() {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            out.extend(walk(&entry.path()));
        }
    }
    out
}

#[test]
fn a_full_store_disk_is_named_as_such_not_blamed_on_the_database() {
    let repo = TestRepo::new();
    let disk = repo.path("store-disk");
    let Some(_mount) = Tmpfs::mount(&disk, "2m") else {
        return;
    };
    let store = disk.join("store");
    repo.git(["config", "dbguard.store", store.to_str().unwrap()]);
    // Too big for the disk even compressed (SQLite pages go straight into packs).
    make_posts_db(&repo.root.join("big.db"), 150_000, 300);
    // Incompressible: 2.5 MiB of packs.
    let conn = rusqlite::Connection::open(repo.root.join("noise.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE noise(b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)
         INSERT INTO noise SELECT randomblob(1000) FROM n;",
    )
    .unwrap();
    drop(conn);
    for db in ["big.db", "noise.db"] {
        let run = repo.dbguard(["snapshot", db]).fails_with(1);
        assert!(
            run.stderr.contains(&format!(
                "the disk holding the snapshot store at {} is full",
                store.display()
            )),
            "{db}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("not a usable") && !run.stderr.contains("damaged"),
            "{db}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("git config dbguard.store"),
            "{}",
            run.stderr
        );
        // Nothing half-written stays behind, and the store still verifies.
        assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), 0);
        repo.dbguard(["verify"]).ok();
    }
}

#[test]
fn a_file_where_the_store_should_be_is_reported() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 100, 100);
    repo.dbguard(["snapshot", "posts.db"]).ok();
    fs::remove_dir_all(repo.store()).unwrap();
    fs::write(repo.store(), "not a store\n").unwrap();
    for args in [vec!["log"], vec!["verify"], vec!["snapshot", "posts.db"]] {
        let run = repo.dbguard(&args).fails_with(1);
        assert!(
            run.stderr.contains(&format!(
                "the snapshot store path {} is not a directory",
                repo.store().display()
            )),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("no snapshots yet"), "{}", run.stderr);
    }
}
