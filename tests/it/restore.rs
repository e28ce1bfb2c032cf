//! Restore: the story end to end, restores under a live app, per table, from a damaged
//! store, and interrupted by kill -9.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::thread::sleep;
use std::time::Duration;

use dbguard::testing::*;
use sha2::{Digest, Sha256};

fn sha(path: &std::path::Path) -> Vec<u8> {
    Sha256::digest(fs::read(path).unwrap()).to_vec()
}

fn census_of(repo: &TestRepo, id: i64) -> serde_json::Value {
    repo.dbguard(["show", "--json", &id.to_string()])
        .ok()
        .json()["tables"]
        .clone()
}

#[test]
fn story_forced_pull_then_restore_then_undo() {
    let _serial = shared();
    let repo = TestRepo::new();
    let (remote, clone) = repo.remote_and_clone();
    make_posts_db(&clone.join("posts.db"), 900_000, 8);
    make_posts_db(&repo.root.join("posts.db"), 5000, 8);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "old sample"]);
    repo.git(["push", "-q", remote.to_str().unwrap(), "HEAD:main"]);

    repo.git_in(&clone, ["fetch", "-q"]);
    repo.dbguard_in(&clone, ["reset", "--hard", "origin/main"])
        .ok();
    let db = clone.join("posts.db");
    assert_eq!(sqlite_count(&db, "posts"), 5000);

    let restored = repo
        .dbguard_in(&clone, ["restore", "posts.db", "--json"])
        .ok();
    let report = restored.json();
    assert_eq!(sqlite_count(&db, "posts"), 900_000);
    assert_eq!(quick_check(&db), "ok");
    assert_eq!(report["tables"]["posts"], 900_000);
    let undo = report["undo_snapshot_id"]
        .as_i64()
        .expect("an undo snapshot id");
    assert!(restored.stderr.contains(&format!(
        "undo with: dbguard restore posts.db --from {undo}"
    )));

    repo.dbguard_in(&clone, ["restore", "posts.db", "--from", &undo.to_string()])
        .ok();
    assert_eq!(sqlite_count(&db, "posts"), 5000);
    assert_eq!(quick_check(&db), "ok");
}

#[test]
fn restore_into_a_database_an_app_is_writing_to() {
    let _serial = shared();
    let repo = TestRepo::new();
    let db = repo.root.join("app.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE log(id INTEGER PRIMARY KEY, v TEXT);",
        )
        .unwrap();
    }
    make_posts_db(&db, 10_000, 8);
    let snapshot = repo.dbguard(["snapshot", "--json"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM posts WHERE id > 100", [])
        .unwrap();

    let script = r#"
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
print("ready", flush=True)
n = 0
while True:
    conn.execute("INSERT INTO log(v) VALUES ('tick')")
    n += 1
    if n % 20 == 0:
        print(n, flush=True)
    time.sleep(0.005)
"#;
    let mut app = repo
        .command("python3", &repo.root)
        .args(["-c", script, "app.db"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(app.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    sleep(Duration::from_millis(200));

    let run = repo
        .dbguard([
            "restore",
            "app.db",
            "--from",
            &snapshot.to_string(),
            "--json",
        ])
        .ok();
    assert_eq!(run.json()["method"], "backup API into the open database");
    // The app keeps working after the restore: it goes on printing progress.
    let before = lines.next().unwrap().unwrap().parse::<u64>().unwrap();
    let after = lines.next().unwrap().unwrap().parse::<u64>().unwrap();
    assert!(after > before);
    assert!(
        app.try_wait().unwrap().is_none(),
        "the app is still running"
    );
    app.kill().unwrap();
    app.wait().unwrap();
    assert_eq!(
        sqlite_count(&db, "posts"),
        10_000,
        "no row of the snapshot lost"
    );
    assert_eq!(quick_check(&db), "ok");
}

#[test]
fn table_level_restore_leaves_other_tables_new_rows() {
    let _serial = shared();
    let repo = TestRepo::new();
    let db = repo.root.join("app.db");
    make_posts_db(&db, 500, 8);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users(name) VALUES ('ada');").unwrap();
    }
    let id = repo.dbguard(["snapshot", "--json"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("DELETE FROM posts; INSERT INTO users(name) VALUES ('bob'), ('eve');")
            .unwrap();
    }
    repo.dbguard(["restore", "--from", &id.to_string(), "--table", "posts"])
        .ok();
    assert_eq!(sqlite_count(&db, "posts"), 500);
    assert_eq!(sqlite_count(&db, "users"), 3, "users keeps its new rows");
    let run = repo
        .dbguard(["restore", "--from", &id.to_string(), "--table", "nope"])
        .fails_with(1);
    assert!(
        run.stderr.contains("has no table \"nope\""),
        "{}",
        run.stderr
    );
}

#[test]
fn damaged_snapshot_is_refused_and_the_live_file_untouched() {
    let _serial = shared();
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 3000, 200);
    repo.dbguard(["snapshot"]).ok();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM posts WHERE id > 10", [])
        .unwrap();
    let live_before = sha(&db);
    // Damage what holds the snapshot's first page.
    let id = repo.dbguard(["log", "--json"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    repo.damage_stored_piece(id, 0);

    let run = repo.dbguard(["restore", "posts.db"]).fails_with(1);
    assert!(run.stderr.starts_with("Error: "), "{}", run.stderr);
    assert!(run.stderr.contains("damaged"), "{}", run.stderr);
    assert!(
        run.stderr.contains("the live database was not changed"),
        "{}",
        run.stderr
    );
    assert_eq!(sha(&db), live_before);
    repo.dbguard(["verify"]).fails_with(1);
}

#[test]
fn kill_during_restore_leaves_old_or_new_database() {
    let _serial = shared();
    let repo = TestRepo::new();
    let db = repo.root.join("big.db");
    make_posts_db(&db, 200_000, 200);
    let id = repo.dbguard(["snapshot", "--json"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    let mut landed = 0;
    for delay_ms in [20u64, 80, 200, 400, 700] {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute("DELETE FROM posts WHERE id > 1000", [])
            .unwrap();
        let mut child = repo
            .command(dbguard_bin(), &repo.root)
            .args(["restore", "big.db", "--from", &id.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if kill_9_after(&mut child, Duration::from_millis(delay_ms)) {
            landed += 1;
        }
        assert_eq!(quick_check(&db), "ok", "after kill at {delay_ms} ms");
        let rows = sqlite_count(&db, "posts");
        assert!(rows == 1000 || rows == 200_000, "a mix: {rows} rows");
        // Finish it for the next round.
        repo.dbguard(["restore", "big.db", "--from", &id.to_string()])
            .ok();
        assert_eq!(sqlite_count(&db, "posts"), 200_000);
    }
    assert!(
        landed >= 2,
        "only {landed} of 5 kills landed while the restore ran"
    );
}

#[test]
fn restore_to_another_path_and_duckdb_restore() {
    let _serial = alone();
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 42, 8);
    let id = repo.dbguard(["snapshot", "--json"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    let out = repo.restore_to(id, "elsewhere.db");
    assert_eq!(sqlite_count(&out, "posts"), 42);
    repo.dbguard([
        "restore",
        "--from",
        &id.to_string(),
        "--to",
        out.to_str().unwrap(),
    ])
    .fails_with(1);

    let duck = repo.root.join("w.duckdb");
    {
        let conn = duckdb::Connection::open(&duck).unwrap();
        conn.execute_batch("CREATE TABLE t AS SELECT range AS i FROM range(800);")
            .unwrap();
    }
    let id = repo.dbguard(["snapshot", "--json", "w.duckdb"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    {
        let conn = duckdb::Connection::open(&duck).unwrap();
        conn.execute_batch("DELETE FROM t WHERE i > 10;").unwrap();
    }
    repo.dbguard(["restore", "w.duckdb"]).ok();
    let conn = duckdb::Connection::open(&duck).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 800);
    assert_eq!(census_of(&repo, id)["t"], 800);
}

#[test]
fn catalog_paths_that_escape_the_worktree_are_refused() {
    let _serial = shared();
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 5, 8);
    let id = repo.dbguard(["snapshot", "--json"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    let catalog = rusqlite::Connection::open(repo.store().join("catalog.db")).unwrap();
    catalog
        .execute("UPDATE snapshots SET path = '../escaped.db'", [])
        .unwrap();
    drop(catalog);
    let run = repo
        .dbguard(["restore", "--from", &id.to_string()])
        .fails_with(1);
    assert!(
        run.stderr.contains("outside this working tree"),
        "{}",
        run.stderr
    );
    assert!(!repo.tmp.path().join("escaped.db").exists());
}

#[test]
fn diff_shows_rows_now_and_between_snapshots() {
    let _serial = shared();
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 100, 8);
    let first = repo.dbguard(["snapshot", "--json"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM posts WHERE id > 60", [])
        .unwrap();
    sleep(Duration::from_millis(60));
    let second = repo.dbguard(["snapshot", "--json"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    let now = repo
        .dbguard(["diff", "--json", &first.to_string()])
        .ok()
        .json();
    assert_eq!(now[0]["tables"]["posts"]["rows_before"], 100);
    assert_eq!(now[0]["tables"]["posts"]["rows_after"], 60);
    let between = repo
        .dbguard(["diff", &first.to_string(), &second.to_string()])
        .ok();
    assert!(between.stdout.contains("-40"), "{}", between.stdout);
}

#[test]
fn restore_never_writes_through_symlinks() {
    let _serial = shared();
    let repo = TestRepo::new();
    fs::create_dir(repo.root.join("data")).unwrap();
    make_posts_db(&repo.root.join("data/posts.db"), 50, 8);
    make_posts_db(&repo.root.join("app.db"), 50, 8);
    let taken = repo.dbguard(["snapshot", "--json"]).ok().json();
    let id_of = |path: &str| {
        taken
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["path"] == path)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
            .to_string()
    };

    // The directory became a link to somewhere outside the working tree.
    let elsewhere = repo.path("elsewhere");
    fs::rename(repo.root.join("data"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, repo.root.join("data")).unwrap();
    let outside = elsewhere.join("posts.db");
    let before = sha(&outside);
    // Named on the command line, or only by the snapshot: refused either way.
    let id = id_of("data/posts.db");
    for args in [
        vec!["restore", "data/posts.db", "--from", &id],
        vec!["restore", "--from", &id],
    ] {
        let run = repo.dbguard(args).fails_with(1);
        assert!(run.stderr.contains("outside"), "{}", run.stderr);
    }
    assert_eq!(
        sha(&outside),
        before,
        "the file behind the link was written"
    );

    // The database file itself became a link.
    let target = repo.path("target.db");
    make_posts_db(&target, 3, 8);
    let target_before = sha(&target);
    fs::remove_file(repo.root.join("app.db")).unwrap();
    std::os::unix::fs::symlink(&target, repo.root.join("app.db")).unwrap();
    let run = repo
        .dbguard(["restore", "app.db", "--from", &id_of("app.db")])
        .fails_with(1);
    assert!(
        run.stderr.contains("app.db is a symlink now"),
        "{}",
        run.stderr
    );
    assert_eq!(sha(&target), target_before);
    assert!(
        fs::symlink_metadata(repo.root.join("app.db"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_read_only_store_can_still_be_read_and_restored_from() {
    let _serial = shared();
    let repo = TestRepo::new();
    let disk = repo.path("store-disk");
    let Some(mount) = Tmpfs::mount(&disk, "32m") else {
        return;
    };
    let store = disk.join("store");
    repo.git(["config", "dbguard.store", store.to_str().unwrap()]);
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 1000, 100);
    repo.dbguard(["snapshot", "posts.db"]).ok(); // #1
    let conn = rusqlite::Connection::open(&db).unwrap();
    add_posts(&conn, 500, 100);
    drop(conn);
    repo.dbguard(["snapshot", "posts.db"]).ok(); // #2
    // A writer killed right after a commit leaves that commit only in catalog.db-wal.
    {
        let catalog = rusqlite::Connection::open(store.join("catalog.db")).unwrap();
        catalog
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .unwrap();
        catalog
            .execute(
                "UPDATE snapshots SET message = 'only in the WAL' WHERE id = 2",
                [],
            )
            .unwrap();
    }
    assert!(fs::metadata(store.join("catalog.db-wal")).unwrap().len() > 0);
    let before = sha(&db);
    mount.remount("ro");

    let read_everything = |label: &str| {
        let log = repo.dbguard(["log", "--json"]).ok().json();
        assert_eq!(log.as_array().unwrap().len(), 2, "{label}: {log}");
        let show = repo.dbguard(["show", "2"]).ok();
        assert!(
            show.stdout.contains("only in the WAL"),
            "{label}: the catalog's last commit is read:\n{}",
            show.stdout
        );
        let verify = repo.dbguard(["verify"]).ok();
        assert!(
            verify.stdout.contains("store ok"),
            "{label}: {}",
            verify.stdout
        );
        let out = repo.path(&format!("restored-{label}.db"));
        repo.dbguard(["restore", "--from", "2", "--to", out.to_str().unwrap()])
            .ok();
        assert_eq!(sqlite_count(&out, "posts"), 1500, "{label}");
        assert_eq!(quick_check(&out), "ok");
    };
    read_everything("wal-and-shm");

    // Writing commands say why they cannot, and what to do instead.
    for args in [
        vec!["snapshot", "posts.db"],
        vec!["restore", "posts.db", "--from", "1"],
        vec!["prune", "--keep-last", "1"],
    ] {
        let run = repo.dbguard(&args).fails_with(1);
        assert!(
            run.stderr.contains(&format!(
                "the snapshot store at {} is read-only",
                store.display()
            )) && run.stderr.contains("git config dbguard.store"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(sha(&db), before, "the live database was not touched");

    // The -wal without its -shm: SQLite cannot read it in place on a read-only mount.
    mount.remount("rw");
    fs::remove_file(store.join("catalog.db-shm")).unwrap();
    mount.remount("ro");
    read_everything("wal-only");

    // A writer that closes the store leaves everything in catalog.db.
    mount.remount("rw");
    repo.dbguard(["log"]).ok();
    assert!(fs::metadata(store.join("catalog.db-wal")).map_or(true, |m| m.len() == 0));
    mount.remount("ro");
    read_everything("checkpointed");
}

#[test]
fn restore_without_from_picks_the_snapshot_before_the_rows_were_lost() {
    let _serial = shared();
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 100, 8);
    repo.dbguard(["snapshot", "posts.db"]).ok();
    let delete_down_to = |rows: i64| {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute("DELETE FROM posts WHERE id > ?1", [rows])
            .unwrap();
    };
    delete_down_to(50);
    repo.dbguard(["snapshot", "posts.db"]).ok();
    // The file is as the newest snapshot (#2, 50 rows) left it: the one wanted back is the
    // one before the loss, #1.
    let before_loss = repo.root.join("before-loss.db");
    let picked = repo
        .dbguard(["restore", "posts.db", "--to", "before-loss.db", "--json"])
        .ok();
    assert_eq!(picked.json()["snapshot_id"], 1, "{}", picked.stderr);
    assert_eq!(sqlite_count(&before_loss, "posts"), 100);
    assert_eq!(quick_check(&before_loss), "ok");
    // Rows lost since #2, with no snapshot: #2 is the state before that loss.
    delete_down_to(20);
    let picked = repo
        .dbguard([
            "restore",
            "posts.db",
            "--to",
            "before-last-loss.db",
            "--json",
        ])
        .ok();
    assert_eq!(picked.json()["snapshot_id"], 2, "{}", picked.stderr);
    assert_eq!(
        sqlite_count(&repo.root.join("before-last-loss.db"), "posts"),
        50
    );
    assert_eq!(
        sqlite_count(&db, "posts"),
        20,
        "the live file is left alone"
    );
}
