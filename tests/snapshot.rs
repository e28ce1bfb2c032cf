//! The snapshot store on real repositories and real database files.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use common::*;

/// A Python process that keeps inserting paired rows into `a` and `b` (one transaction
/// per pair) in a WAL-mode database, until killed.
fn start_paired_writer(repo: &TestRepo, db: &str) -> Child {
    let script = r#"
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("PRAGMA journal_mode=WAL")
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
        .args(["-c", script, db])
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
    let repo = TestRepo::new();
    let mut writer = start_paired_writer(&repo, "app.db");
    sleep(Duration::from_millis(300));
    let mut totals = Vec::new();
    for _ in 0..5 {
        let run = repo.dbguard(["snapshot", "--json", "app.db"]).ok();
        let report = run.json();
        let tables = &report[0]["tables"];
        let (a, b) = (tables["a"].as_u64().unwrap(), tables["b"].as_u64().unwrap());
        assert_eq!(a, b, "paired tables differ in one snapshot: {report}");
        assert!(a > 0);
        totals.push(a);
        sleep(Duration::from_millis(100));
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert!(
        totals.windows(2).all(|w| w[0] <= w[1]) && totals[0] < totals[4],
        "the writer was live during the snapshots: {totals:?}"
    );
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
    let chunks = repo.chunk_count();
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
        repo.chunk_count(),
        chunks,
        "no new chunk for an unchanged file"
    );
    assert!(
        waited < Duration::from_secs(10),
        "it waited for the lock: {waited:?}"
    );

    // Both snapshots are listed and point at the same image.
    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log.as_array().unwrap().len(), 2);
    assert_eq!(log[0]["image_digest"], log[1]["image_digest"]);
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
    for dir in ["", "objects", "tmp"] {
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
    assert!(show.stdout.contains("online-backup"));
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
        sleep(Duration::from_millis(delay_ms));
        let _ = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status();
        child.wait().unwrap();
        let verify = repo.dbguard(["verify", "--json"]).ok().json();
        assert_eq!(verify["problems"].as_array().unwrap().len(), 0);
    }
    // The next run clears the debris and works.
    repo.dbguard(["snapshot"]).ok();
    assert_eq!(fs::read_dir(repo.store().join("tmp")).unwrap().count(), 0);
    repo.dbguard(["verify"]).ok();
}
