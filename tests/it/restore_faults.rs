//! Restores under real faults: a full worktree filesystem with the store on another one,
//! kill -9 at random moments while a WAL database is replaced, a damaged live file, a
//! killed restore's staging file, and catalog rows crafted to write where they must not.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dbguard::testing::*;
use sha2::{Digest, Sha256};

fn sha(path: &Path) -> Vec<u8> {
    Sha256::digest(fs::read(path).unwrap()).to_vec()
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn integrity_check(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// Run a Python sqlite3 script on `db` that ends with `os._exit(0)`: the process dies
/// without closing, as a killed app does, so what it committed stays in the `-wal`.
fn python_sqlite(repo: &TestRepo, db: &Path, body: &str) {
    let script = format!(
        "import os, sqlite3, sys\nconn = sqlite3.connect(sys.argv[1], isolation_level=None)\n{body}\nos._exit(0)\n"
    );
    let status = repo
        .command("python3", &repo.root)
        .args(["-c", &script])
        .arg(db)
        .status()
        .unwrap();
    assert!(status.success(), "python failed");
}

/// A WAL database with `rows` posts, checkpointed into the main file.
fn make_wal_db(db: &Path, rows: u64, body_len: usize) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE posts(id INTEGER PRIMARY KEY, author TEXT, body TEXT);",
    )
    .unwrap();
    add_posts(&conn, rows, body_len);
}

fn snapshot_id(run: &Run) -> i64 {
    run.json()[0]["id"].as_i64().unwrap()
}

/// Fill the filesystem holding `dir` until a write fails with ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = fs::File::create(&filler).unwrap();
    let block = vec![0x5au8; 64 * 1024];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    // Single bytes until the last page is used up too.
    while file.write(&[0x5a]).is_ok_and(|n| n == 1) {}
    let _ = file.sync_all();
    filler
}

#[test]
fn full_worktree_disk_leaves_a_wal_database_exactly_as_it_was() {
    let _serial = shared();
    let repo = TestRepo::new();
    let mount_dir = repo.path("small");
    let Some(_tmpfs) = Tmpfs::mount(&mount_dir, "8m") else {
        return;
    };
    // A worktree on the small filesystem; the store on the big one (as with a configured
    // `dbguard.store`, or a linked worktree on another disk).
    let work = mount_dir.join("work");
    fs::create_dir(&work).unwrap();
    repo.git_in(&work, ["init", "-q"]);
    let store = repo.path("store");
    repo.git_in(&work, ["config", "dbguard.store", store.to_str().unwrap()]);
    let db = work.join("w.db");
    // The snapshot to restore is of a large state (3 MB)...
    make_wal_db(&db, 3000, 1000);
    let id = snapshot_id(&repo.dbguard_in(&work, ["snapshot", "--json", "w.db"]).ok());
    // ...the database now is small (1 MB), and an app that died afterwards left 500 rows
    // in the -wal only: folding them in grows the main file, which a full disk refuses,
    // and the image does not fit in what removing the WAL would free.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("DELETE FROM posts WHERE id > 1000; VACUUM;")
            .unwrap();
    }
    python_sqlite(
        &repo,
        &db,
        "conn.execute('PRAGMA wal_autocheckpoint=0')\n\
         conn.execute(\"INSERT INTO posts(author, body) SELECT 'late', printf('%.*c', 1000, 'y') FROM posts LIMIT 500\")",
    );
    let wal = sidecar(&db, "-wal");
    assert!(
        fs::metadata(&wal).unwrap().len() > 100_000,
        "rows in the WAL"
    );
    let filler = fill(&mount_dir);
    let (db_before, wal_before) = (sha(&db), sha(&wal));

    let run = repo
        .dbguard_in(&work, ["restore", "w.db", "--from", &id.to_string()])
        .fails_with(1);
    assert!(
        run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    // What it says about the live file is true: nothing changed, byte for byte.
    assert!(
        run.stderr.contains("the live database was not changed"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("restored w.db"), "{}", run.stderr);
    assert_eq!(sha(&db), db_before, "the main file changed");
    assert_eq!(sha(&wal), wal_before, "the -wal changed");
    assert!(sidecar(&db, "-shm").exists(), "the -shm was removed");
    let leftovers: Vec<_> = fs::read_dir(&work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("dbguard-restore"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");

    fs::remove_file(&filler).unwrap();
    assert_eq!(integrity_check(&db), "ok");
    assert_eq!(sqlite_count(&db, "posts"), 1500);
    // With room again, the same restore works (and can be undone to the 1,500 rows).
    let run = repo
        .dbguard_in(
            &work,
            ["restore", "w.db", "--from", &id.to_string(), "--json"],
        )
        .ok();
    assert_eq!(sqlite_count(&db, "posts"), 3000);
    let undo = run.json()["undo_snapshot_id"].as_i64().unwrap();
    repo.dbguard_in(&work, ["restore", "w.db", "--from", &undo.to_string()])
        .ok();
    assert_eq!(sqlite_count(&db, "posts"), 1500);
    assert_eq!(integrity_check(&db), "ok");
}

/// xorshift64*: reproducible random delays; the seed is printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn kill_9_at_random_moments_leaves_a_wal_database_old_or_new() {
    let _serial = shared();
    let repo = TestRepo::new();
    let db = repo.root.join("w.db");
    make_wal_db(&db, 30_000, 200);
    let id = snapshot_id(&repo.dbguard(["snapshot", "--json"]).ok()).to_string();
    // Each round: the old state is 1,000 rows, its last changes only in the -wal.
    let make_old_state = |round: usize| {
        python_sqlite(
            &repo,
            &db,
            &format!(
                "conn.execute('PRAGMA wal_autocheckpoint=0')\n\
                 conn.execute('DELETE FROM posts WHERE id > 1000')\n\
                 conn.execute(\"UPDATE posts SET author = 'round {round}' WHERE id = 1\")"
            ),
        );
        assert!(fs::metadata(sidecar(&db, "-wal")).unwrap().len() > 0);
    };
    make_old_state(0);
    let started = Instant::now();
    repo.dbguard(["restore", "w.db", "--from", &id]).ok();
    let full = started.elapsed();
    assert_eq!(sqlite_count(&db, "posts"), 30_000);

    let seed = test_seed();
    eprintln!("seed {seed}; one restore takes {full:?}");
    let mut rng = Rng(seed);
    let (mut old, mut new, mut landed) = (0, 0, 0);
    for round in 1..=30 {
        make_old_state(round);
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64 * 11 / 10 + 1));
        let mut child = repo
            .command(dbguard_bin(), &repo.root)
            .args(["restore", "w.db", "--from", &id])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if kill_9_after(&mut child, delay) {
            landed += 1;
        }
        let rows = sqlite_count(&db, "posts");
        assert_eq!(
            integrity_check(&db),
            "ok",
            "round {round}, killed after {delay:?} (seed {seed})"
        );
        match rows {
            1000 => old += 1,
            30_000 => new += 1,
            _ => panic!("round {round}, killed after {delay:?}: {rows} rows (seed {seed})"),
        }
    }
    eprintln!("after 30 kills ({landed} while it ran): {old} old, {new} new, 0 other");
    assert!(
        landed >= 10,
        "only {landed} of 30 kills landed while the restore ran (seed {seed})"
    );
    // The next restore removes the staging files the killed ones left behind.
    repo.dbguard(["restore", "w.db", "--from", &id]).ok();
    assert_eq!(sqlite_count(&db, "posts"), 30_000);
    let staging: Vec<_> = fs::read_dir(&repo.root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("dbguard-restore"))
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
}

#[test]
fn a_duckdb_wal_is_folded_in_never_dropped() {
    let _serial = alone();
    let repo = TestRepo::new();
    let duck = repo.root.join("w.duckdb");
    {
        let conn = duckdb::Connection::open(&duck).unwrap();
        conn.execute_batch("CREATE TABLE t AS SELECT range AS i FROM range(800);")
            .unwrap();
    }
    let id = snapshot_id(&repo.dbguard(["snapshot", "--json", "w.duckdb"]).ok());
    // Later commits that only the .wal holds (the writer did not checkpoint on close).
    {
        let conn = duckdb::Connection::open(&duck).unwrap();
        conn.execute_batch(
            "PRAGMA disable_checkpoint_on_shutdown; SET checkpoint_threshold = '1GB';
             INSERT INTO t SELECT range FROM range(800, 1500);",
        )
        .unwrap();
    }
    let wal = sidecar(&duck, ".wal");
    assert!(fs::metadata(&wal).unwrap().len() > 0, "rows in the WAL");
    let run = repo
        .dbguard(["restore", "w.duckdb", "--from", &id.to_string(), "--json"])
        .ok();
    let count = |path: &Path| -> i64 {
        let conn = duckdb::Connection::open(path).unwrap();
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    assert!(
        fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0,
        "an old WAL is left next to the restored file"
    );
    assert_eq!(count(&duck), 800);
    // The undo snapshot holds the WAL's rows: nothing was lost.
    let undo = run.json()["undo_snapshot_id"].as_i64().unwrap();
    repo.dbguard(["restore", "w.duckdb", "--from", &undo.to_string()])
        .ok();
    assert_eq!(count(&duck), 1500);
}

#[test]
fn a_damaged_database_is_kept_aside_and_the_snapshot_restored_over_it() {
    let _serial = shared();
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 3000, 200);
    let id = snapshot_id(&repo.dbguard(["snapshot", "--json"]).ok());
    // Damage pages in the middle (the header and schema page stay intact).
    {
        let mut bytes = fs::read(&db).unwrap();
        let page = 4096;
        for b in &mut bytes[page * 3..page * 6] {
            *b = 0xff;
        }
        fs::write(&db, bytes).unwrap();
    }
    let damaged = sha(&db);
    let snapshot = repo.dbguard(["snapshot", "posts.db"]).fails_with(1);
    assert!(
        snapshot.stderr.contains("integrity") || snapshot.stderr.contains("malformed"),
        "the file is damaged: {}",
        snapshot.stderr
    );

    let run = repo
        .dbguard(["restore", "posts.db", "--from", &id.to_string()])
        .ok();
    assert_eq!(sqlite_count(&db, "posts"), 3000);
    assert_eq!(integrity_check(&db), "ok");
    // The damaged file is kept, byte for byte, and the note says where.
    let aside: Vec<PathBuf> = fs::read_dir(&repo.root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("posts.db.dbguard-moved-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(sha(&aside[0]), damaged);
    let name = aside[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        run.stderr.contains(&name) && run.stderr.contains("cannot be snapshotted"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("undo with"), "{}", run.stderr);
}

/// A pid with no process.
fn dead_pid() -> u32 {
    (900_000..4_000_000)
        .find(|pid| !Path::new("/proc").join(pid.to_string()).exists())
        .unwrap()
}

#[test]
fn staging_files_of_killed_restores_are_never_databases_and_get_cleaned_up() {
    let _serial = shared();
    let repo = TestRepo::new();
    let db = repo.root.join("big.db");
    make_posts_db(&db, 500, 100);
    let id = snapshot_id(&repo.dbguard(["snapshot", "--json"]).ok()).to_string();
    let stale = repo
        .root
        .join(format!(".big.db.dbguard-restore-{}", dead_pid()));
    // One whose process is alive (a restore staging right now) stays.
    let running = repo
        .root
        .join(format!(".big.db.dbguard-restore-{}", std::process::id()));
    fs::copy(&db, &stale).unwrap();
    fs::copy(&db, &running).unwrap();

    let status = repo.dbguard(["status", "--json"]).ok().json();
    let paths: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["big.db"]);
    let taken = repo.dbguard(["snapshot", "--json"]).ok().json();
    assert_eq!(taken.as_array().unwrap().len(), 1, "{taken}");
    assert_eq!(taken[0]["path"], "big.db");
    let named = repo
        .dbguard(["snapshot", stale.file_name().unwrap().to_str().unwrap()])
        .fails_with(1);
    assert!(named.stderr.contains("staging copy"), "{}", named.stderr);

    repo.dbguard(["restore", "big.db", "--from", &id]).ok();
    assert!(!stale.exists(), "the stale staging file is still there");
    assert!(
        running.exists(),
        "a live restore's staging file was removed"
    );
}

#[test]
fn restore_to_keeps_the_databases_mode_or_follows_the_umask() {
    let _serial = shared();
    let repo = TestRepo::new();
    let db = repo.root.join("secret.db");
    make_posts_db(&db, 10, 8);
    fs::set_permissions(&db, fs::Permissions::from_mode(0o600)).unwrap();
    let id = snapshot_id(&repo.dbguard(["snapshot", "--json"]).ok()).to_string();
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;

    let copy = repo.path("copy.db");
    repo.dbguard(["restore", "--from", &id, "--to", copy.to_str().unwrap()])
        .ok();
    assert_eq!(mode(&copy), 0o600, "a private database stays private");

    // No live database to take the mode from: a new file, as the umask says.
    fs::remove_file(&db).unwrap();
    for (umask, expected) in [("027", 0o640), ("022", 0o644), ("077", 0o600)] {
        let out = repo.path(&format!("umask-{umask}.db"));
        let run = Run::from(
            repo.command("sh", &repo.root)
                .args([
                    "-c",
                    &format!("umask {umask} && exec dbguard restore --from {id} --to \"$0\""),
                ])
                .arg(&out)
                .output()
                .unwrap(),
        )
        .ok();
        assert_eq!(mode(&out), expected, "umask {umask}: {}", run.stderr);
        assert_eq!(sqlite_count(&out, "posts"), 10);
    }
}

#[test]
fn catalog_paths_inside_a_git_directory_are_refused() {
    let _serial = shared();
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 5, 8);
    let id = snapshot_id(&repo.dbguard(["snapshot", "--json"]).ok()).to_string();
    fs::create_dir_all(repo.root.join("nested/.git/hooks")).unwrap();
    for crafted in [
        "nested/.git/hooks/post-checkout",
        "nested/.GIT/hooks/post-checkout",
        ".Git/hooks/pre-commit",
    ] {
        let catalog = rusqlite::Connection::open(repo.store().join("catalog.db")).unwrap();
        catalog
            .execute("UPDATE snapshots SET path = ?1", [crafted])
            .unwrap();
        drop(catalog);
        let run = repo.dbguard(["restore", "--from", &id]).fails_with(1);
        assert!(
            run.stderr.contains("inside a .git directory"),
            "{crafted}: {}",
            run.stderr
        );
        assert!(!repo.root.join(crafted).exists(), "{crafted} was written");
    }
    assert!(!repo.root.join(".git/hooks/pre-commit").exists());
}

#[test]
fn exports_of_crafted_catalog_paths_stay_inside_out() {
    let _serial = shared();
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 5, 8);
    let id = snapshot_id(&repo.dbguard(["snapshot", "--json"]).ok()).to_string();
    for (n, crafted) in ["..", ".", "", "../.."].into_iter().enumerate() {
        let catalog = rusqlite::Connection::open(repo.store().join("catalog.db")).unwrap();
        catalog
            .execute("UPDATE snapshots SET path = ?1", [crafted])
            .unwrap();
        drop(catalog);
        let exports = repo.path(&format!("exports-{n}"));
        let out = exports.join("a/out");
        repo.dbguard([
            "export",
            &id,
            "--out",
            out.to_str().unwrap(),
            "--format",
            "jsonl",
        ])
        .ok();
        // Nothing next to `out` or above it, and the table inside it.
        let beside: Vec<_> = fs::read_dir(exports.join("a"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(beside, ["out"], "{crafted:?} wrote beside --out");
        let top: Vec<_> = fs::read_dir(&exports)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(top, ["a"], "{crafted:?} wrote above --out");
        let found = Command::new("find")
            .arg(&out)
            .args(["-name", "posts.jsonl*"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&found.stdout).trim().is_empty(),
            "{crafted:?}: nothing exported into --out"
        );
    }
}

#[test]
fn kill_9_at_random_moments_leaves_a_duckdb_database_old_or_new() {
    let _serial = alone();
    let repo = TestRepo::new();
    let duck = repo.root.join("w.duckdb");
    {
        let conn = duckdb::Connection::open(&duck).unwrap();
        conn.execute_batch(
            "CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(100000);",
        )
        .unwrap();
    }
    let id = snapshot_id(&repo.dbguard(["snapshot", "--json", "w.duckdb"]).ok()).to_string();
    let count = || -> i64 {
        let conn = duckdb::Connection::open(&duck).unwrap();
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    // The old state: 1,000 rows, the deletion in the .wal (usually).
    let make_old_state = || {
        let conn = duckdb::Connection::open(&duck).unwrap();
        conn.execute_batch(
            "PRAGMA disable_checkpoint_on_shutdown; SET checkpoint_threshold = '1GB';
             DELETE FROM t WHERE i >= 1000;
             UPDATE t SET s = 'old state' WHERE i = 0;",
        )
        .unwrap();
        drop(conn);
        // DuckDB may still checkpoint such a deletion at once; count the rounds where
        // the .wal held it.
        fs::metadata(sidecar(&duck, ".wal")).is_ok_and(|m| m.len() > 0)
    };
    assert!(make_old_state(), "the deletion is in the .wal");
    let started = Instant::now();
    repo.dbguard(["restore", "w.duckdb", "--from", &id]).ok();
    let full = started.elapsed();
    assert_eq!(count(), 100_000);
    let seed = test_seed();
    eprintln!("seed {seed}; one DuckDB restore takes {full:?}");
    let mut rng = Rng(seed);
    let (mut old, mut new, mut with_wal, mut landed) = (0, 0, 0, 0);
    for round in 1..=15 {
        with_wal += usize::from(make_old_state());
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64 * 11 / 10 + 1));
        let mut child = repo
            .command(dbguard_bin(), &repo.root)
            .args(["restore", "w.duckdb", "--from", &id])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if kill_9_after(&mut child, delay) {
            landed += 1;
        }
        match count() {
            1000 => old += 1,
            100_000 => new += 1,
            rows => panic!("round {round}, killed after {delay:?}: {rows} rows (seed {seed})"),
        }
    }
    eprintln!(
        "after 15 kills ({landed} while it ran): {old} old, {new} new, 0 other ({with_wal} with data in the .wal)"
    );
    assert!(
        landed >= 5,
        "only {landed} of 15 kills landed while the restore ran (seed {seed})"
    );
}
