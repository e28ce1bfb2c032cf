//! A busy store never turns the guard off: the hook's own restore offer answered on a
//! terminal, a restore picker left open, a long prune, and a store whose disk fills up
//! in the middle of an ingest, each while a plain git command needs its snapshot.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dbguard::testing::*;

/// A repository with a committed 5,000-row posts.db, dbguard installed (hooks and
/// `core.fsmonitor`), then posts.db grown to 90,000 rows: a plain `git checkout --
/// posts.db` or `git reset --hard` puts the 5,000 back.
fn grown_tracked_database() -> TestRepo {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 5000, 8);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "seed"]);
    repo.dbguard(["install"]).ok();
    add_posts(
        &rusqlite::Connection::open(repo.root.join("posts.db")).unwrap(),
        85_000,
        8,
    );
    repo
}

/// Plain git in the worktree, as a user types it; the hooks run.
fn plain(repo: &TestRepo, args: &[&str]) -> Run {
    Run::from(repo.command("git", &repo.root).args(args).output().unwrap())
}

fn log(repo: &TestRepo) -> serde_json::Value {
    repo.dbguard(["log", "--json"]).ok().json()
}

/// The newest snapshot's command line, as `log --json` records it.
fn newest_operation(repo: &TestRepo) -> String {
    log(repo)[0]["operation"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_hooks_restore_offer_answered_yes_on_a_terminal_brings_the_rows_back_in_seconds() {
    let repo = grown_tracked_database();
    let started = Instant::now();
    let mut terminal = repo.on_a_pty(&repo.root, &["git", "checkout", "--", "posts.db"]);
    let asked = terminal.wait_for("[Y/n]", Duration::from_secs(60));
    assert!(asked.contains("Restore posts.db from #"), "{asked}");
    assert!(asked.contains("90,000 rows)?"), "{asked}");
    terminal.send("y\n");
    let (code, shown) = terminal.finish(Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("restored posts.db from #"), "{shown}");
    assert!(!shown.contains("has held the snapshot store"), "{shown}");
    // The deadlock this replaces made git wait 120 s and restored nothing.
    assert!(took < Duration::from_secs(30), "took {took:?}:\n{shown}");
    eprintln!("checkout, offer, answer and restore on a terminal: {took:?}");
    assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 90_000);
    assert_eq!(quick_check(&repo.root.join("posts.db")), "ok");
    // And status is honest afterwards: nothing lost any more.
    let status = repo.dbguard(["status"]).ok();
    assert!(!status.stdout.contains("SHRANK"), "{}", status.stdout);
    assert!(status.stdout.contains("90,000"), "{}", status.stdout);
}

#[test]
fn an_open_restore_picker_never_holds_up_the_snapshot_of_a_plain_git_command() {
    let repo = grown_tracked_database();
    repo.dbguard(["snapshot", "posts.db"]).ok();
    let mut picker = repo.on_a_pty(&repo.root, &["dbguard", "restore"]);
    picker.wait_for("Restore which snapshot?", Duration::from_secs(30));
    // While the user looks at the list, another terminal runs a plain reset.
    add_posts(
        &rusqlite::Connection::open(repo.root.join("posts.db")).unwrap(),
        1000,
        8,
    );
    let started = Instant::now();
    let reset = plain(&repo, &["reset", "-q", "--hard"]);
    let took = started.elapsed();
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    assert!(
        !reset.stderr.contains("not saved") && !reset.stderr.contains("has held"),
        "{}",
        reset.stderr
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    eprintln!("plain reset --hard with a restore picker open: {took:?}");
    assert_eq!(newest_operation(&repo), "git reset -q --hard");
    assert_eq!(log(&repo)[0]["rows"], 91_000);
    // The picker is still there, and leaves without restoring when told to.
    picker.send("q");
    let (code, shown) = picker.finish(Duration::from_secs(30));
    assert_ne!(code, 0, "{shown}");
    assert!(shown.contains("nothing chosen"), "{shown}");
}

/// A store full of snapshots whose prune rewrites many packs: `snapshots` states of a
/// database of random pages, each changing a third of the pages of the one before.
fn store_with_a_long_prune(repo: &TestRepo, snapshots: usize) {
    let path = repo.root.join("big.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE pages(id INTEGER PRIMARY KEY, fill BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 24000)
         INSERT INTO pages(fill) SELECT randomblob(3000) FROM n;",
    )
    .unwrap();
    for round in 0..snapshots {
        repo.dbguard(["snapshot", "big.db"]).ok();
        conn.execute(
            "UPDATE pages SET fill = randomblob(3000) WHERE (id + ?1) % 3 = 0",
            [round as i64],
        )
        .unwrap();
    }
    drop(conn);
    repo.dbguard(["snapshot", "big.db"]).ok();
}

#[test]
fn a_long_prune_never_makes_the_snapshot_of_a_plain_git_command_give_up() {
    let repo = grown_tracked_database();
    fs::write(repo.root.join(".gitignore"), "big.db\n").unwrap();
    store_with_a_long_prune(&repo, 8);
    let lock = repo.store().join("lock");
    let mut prune = repo
        .command(dbguard_bin(), &repo.root)
        .args(["prune", "--keep-last", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prune_started = Instant::now();
    // Once prune works on the packs (it says so in the store's lock file) ...
    while !fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains("prune")
    {
        assert!(
            prune.try_wait().unwrap().is_none(),
            "prune ended before it took the store"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // ... a plain reset that overwrites posts.db gets its snapshot, in its turn.
    let started = Instant::now();
    let reset = plain(&repo, &["reset", "-q", "--hard"]);
    let took = started.elapsed();
    let prune_still_running = prune.try_wait().unwrap().is_none();
    let pruned = prune.wait_with_output().unwrap();
    let prune_took = prune_started.elapsed();
    eprintln!("plain reset --hard during a prune: {took:?}; the prune: {prune_took:?}");
    assert!(pruned.status.success(), "{pruned:?}");
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    assert!(
        !reset.stderr.contains("not saved") && !reset.stderr.contains("has held"),
        "{}",
        reset.stderr
    );
    assert!(
        prune_still_running,
        "the prune ({prune_took:?}) ended before the reset ({took:?}): it proves nothing"
    );
    assert_eq!(newest_operation(&repo), "git reset -q --hard");
    assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 5000);
    repo.dbguard(["restore", "posts.db"]).ok();
    assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 90_000);
    repo.dbguard(["verify"]).ok();
}

#[test]
fn a_store_disk_filling_up_during_the_ingest_ends_promptly_and_git_does_not_run() {
    let repo = TestRepo::new();
    let disk = repo.path("store-disk");
    let Some(_mount) = Tmpfs::mount(&disk, "3m") else {
        return;
    };
    let store = disk.join("store");
    repo.git(["config", "dbguard.store", store.to_str().unwrap()]);
    // 16 MiB of incompressible pages: the packs cannot fit, whichever way they are read.
    let db = repo.root.join("noise.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE noise(b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 16000)
         INSERT INTO noise SELECT randomblob(1000) FROM n;",
    )
    .unwrap();
    drop(conn);
    repo.git(["add", "noise.db"]);
    repo.git(["commit", "-q", "-m", "noise"]);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM noise WHERE rowid > 8000", [])
        .unwrap();
    drop(conn);
    for attempt in 0..3 {
        let started = Instant::now();
        let mut guarded = repo
            .command(dbguard_bin(), &repo.root)
            .args(["git", "checkout", "--", "noise.db"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        while guarded.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = guarded.kill();
                panic!("attempt {attempt}: the guard hung with the store's disk full");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let run = Run::from(guarded.wait_with_output().unwrap()).fails_with(3);
        eprintln!("attempt {attempt}: refused in {:?}", started.elapsed());
        assert!(
            run.stderr.contains("is full") && run.stderr.contains("git did not run"),
            "{}",
            run.stderr
        );
        // git did not run: the modified database is as it was.
        assert_eq!(sqlite_count(&db, "noise"), 8000);
        // And the store is free again: the next command does not wait for it.
        repo.dbguard(["log"]).ok();
    }
}
