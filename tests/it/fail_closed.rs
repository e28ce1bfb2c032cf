//! Fail closed: whatever goes wrong before git writes the worktree, a guarded git command
//! snapshots first or refuses (naming `--no-snapshot`); it never runs unguarded. Settings
//! cannot switch protection off, a crashed writer's hot journal does not block a snapshot,
//! and messages send users the right way.

use std::fs;
use std::path::Path;
use std::process::Stdio;

use dbguard::testing::*;

/// A repository tracking `path` with 1,000 committed rows, grown locally to 6,000.
fn grown_tracked_db(path: &str) -> TestRepo {
    let repo = TestRepo::new();
    let live = repo.root.join(path);
    fs::create_dir_all(live.parent().unwrap()).unwrap();
    make_posts_db(&live, 1000, 8);
    repo.git(["add", "-f", path]);
    repo.git(["commit", "-q", "-m", "sample database"]);
    let conn = rusqlite::Connection::open(&live).unwrap();
    add_posts(&conn, 5000, 8);
    drop(conn);
    repo
}

fn snapshot_rows(repo: &TestRepo, path: &str) -> Vec<u64> {
    repo.dbguard(["log", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["path"] == path)
        .map(|s| s["tables"]["posts"].as_u64().unwrap())
        .collect()
}

#[test]
fn invalid_settings_refuse_guarded_git_and_name_the_override() {
    type BreakIt<'a> = &'a dyn Fn(&TestRepo);
    let bad_settings: [(&str, BreakIt); 4] = [
        ("broken toml", &|repo| {
            fs::write(repo.root.join(".dbguard.toml"), "exclude = [\n").unwrap()
        }),
        ("wrong type", &|repo| {
            fs::write(repo.root.join(".dbguard.toml"), "exclude = \"data\"\n").unwrap()
        }),
        ("bad precommit value", &|repo| {
            repo.git(["config", "dbguard.precommit", "maybe"]);
        }),
        ("bad number", &|repo| {
            repo.git(["config", "dbguard.keepLast", "lots"]);
        }),
    ];
    for (what, break_it) in bad_settings {
        let repo = grown_tracked_db("posts.db");
        break_it(&repo);
        let run = repo.dbguard(["git", "reset", "--hard"]).fails_with(3);
        assert_eq!(
            sqlite_count(&repo.root.join("posts.db"), "posts"),
            6000,
            "{what}: git ran unguarded:\n{}",
            run.stderr
        );
        assert!(run.stderr.contains("Error:"), "{what}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("dbguard --no-snapshot git reset --hard"),
            "{what}: the override is not named:\n{}",
            run.stderr
        );
    }
}

#[test]
fn unknown_settings_are_reported_and_protection_stays_on() {
    for text in ["keep_last = 3\n", "future_setting = true\n"] {
        let repo = grown_tracked_db("posts.db");
        fs::write(repo.root.join(".dbguard.toml"), text).unwrap();
        let run = repo.dbguard(["git", "reset", "--hard"]).ok();
        let key = text.split(' ').next().unwrap();
        assert!(
            run.stderr.contains(&format!("unknown setting `{key}`")),
            "{}",
            run.stderr
        );
        assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 1000);
        assert_eq!(
            snapshot_rows(&repo, "posts.db"),
            vec![6000],
            "{}",
            run.stderr
        );
    }
}

#[test]
fn an_exclusion_never_hides_a_database_git_is_about_to_overwrite() {
    let repo = grown_tracked_db("data/x.db");
    fs::write(repo.root.join(".dbguard.toml"), "exclude = [\"data\"]\n").unwrap();
    repo.git(["add", ".dbguard.toml"]);
    repo.git(["commit", "-q", "-m", "exclude data"]);
    let live = repo.root.join("data/x.db");

    let status = repo.dbguard(["status"]).ok();
    assert!(
        status.stderr.contains("data/") && status.stderr.contains(".dbguard.toml"),
        "status must say what is excluded and by which file:\n{}",
        status.stderr
    );

    // reset --hard, checkout -- path and stash each discard the 6,000-row state.
    let grow_back = || {
        let conn = rusqlite::Connection::open(&live).unwrap();
        add_posts(&conn, 5000, 8);
    };
    repo.dbguard(["git", "reset", "--hard"]).ok();
    assert_eq!(sqlite_count(&live, "posts"), 1000);
    grow_back();
    repo.dbguard(["git", "checkout", "--", "data/x.db"]).ok();
    assert_eq!(sqlite_count(&live, "posts"), 1000);
    grow_back();
    repo.dbguard(["git", "stash"]).ok();
    assert_eq!(sqlite_count(&live, "posts"), 1000);
    assert_eq!(snapshot_rows(&repo, "data/x.db"), vec![6000, 6000, 6000]);

    // An ignored database in the excluded directory, deleted by clean -fdx.
    make_posts_db(&repo.root.join("data/crawl.db"), 4000, 8);
    fs::write(repo.root.join(".gitignore"), "crawl.db\n").unwrap();
    repo.dbguard(["git", "clean", "-fdx"]).ok();
    assert!(!repo.root.join("data/crawl.db").exists());
    assert_eq!(snapshot_rows(&repo, "data/crawl.db"), vec![4000]);
}

#[test]
fn a_hot_journal_left_by_a_crashed_writer_is_rolled_back_in_a_copy_only() {
    let repo = TestRepo::new();
    let live = repo.root.join("app.db");
    make_posts_db(&live, 2000, 64);
    // A writer that dies mid-transaction, after its changes spilled into the database
    // file: a tiny page cache forces the spill, SIGKILL leaves the journal hot.
    let writer = format!(
        "import sqlite3, sys, time\n\
         c = sqlite3.connect({path:?}, isolation_level=None)\n\
         c.execute('PRAGMA cache_size=5')\n\
         c.execute('BEGIN')\n\
         c.execute(\"INSERT INTO posts(author, body) SELECT author, body FROM posts\")\n\
         c.execute(\"DELETE FROM posts WHERE id < 500\")\n\
         print('ready', flush=True)\n\
         time.sleep(600)\n",
        path = live.to_str().unwrap()
    );
    let mut child = std::process::Command::new("python3")
        .args(["-c", &writer])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    child.kill().unwrap();
    child.wait().unwrap();
    let journal = repo.root.join("app.db-journal");
    let (db_bytes, journal_bytes) = (fs::read(&live).unwrap(), fs::read(&journal).unwrap());
    assert!(journal_bytes.len() > 512, "the writer left no journal");

    let run = repo.dbguard(["snapshot", "app.db"]).ok();
    assert!(run.stderr.contains("hot journal"), "{}", run.stderr);
    assert_eq!(
        fs::read(&live).unwrap(),
        db_bytes,
        "the database was changed"
    );
    assert_eq!(
        fs::read(&journal).unwrap(),
        journal_bytes,
        "the journal was changed"
    );

    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log[0]["tables"]["posts"], 2000);
    let id = log[0]["id"].as_i64().unwrap().to_string();
    let copy = repo.path("restored.db");
    repo.dbguard(["restore", "--from", &id, "--to", copy.to_str().unwrap()])
        .ok();
    assert_eq!(sqlite_count(&copy, "posts"), 2000);
    assert_eq!(quick_check(&copy), "ok");
}

#[test]
fn paths_that_name_nothing_are_errors() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 10, 8);
    // Before any snapshot, and after one.
    for _ in 0..2 {
        let log = repo.dbguard(["log", "nothere.db"]).fails_with(1);
        assert!(log.stderr.contains("nothere.db"), "{}", log.stderr);
        let diff = repo.dbguard(["diff", "nothere.db"]).fails_with(1);
        assert!(diff.stderr.contains("nothere.db"), "{}", diff.stderr);
        repo.dbguard(["snapshot"]).ok();
    }
    // A real database without snapshots of its own: diff has nothing to compare with.
    make_posts_db(&repo.root.join("new.db"), 10, 8);
    let diff = repo.dbguard(["diff", "new.db"]).fails_with(1);
    assert!(
        diff.stderr.contains("dbguard snapshot new.db"),
        "{}",
        diff.stderr
    );
}

#[test]
fn hints_name_only_what_exists() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("a.db"), 10, 8);
    make_posts_db(&repo.root.join("b.db"), 10, 8);
    repo.dbguard(["snapshot"]).ok();
    let latest = repo.dbguard(["log", "--json"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    let which = repo.dbguard(["restore"]).fails_with(1);
    assert!(
        which.stderr.contains(&format!("--from {latest}")),
        "the example id must exist:\n{}",
        which.stderr
    );

    // A damaged database: no hint about a --skip flag that does not exist.
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corrupt.db"),
        repo.root.join("bad.db"),
    )
    .unwrap();
    let damaged = repo.dbguard(["snapshot", "bad.db"]).fails_with(1);
    let damaged = damaged.hint_says("truncated or damaged");
    assert!(!damaged.stderr.contains("--skip"), "{}", damaged.stderr);
}

#[test]
fn a_duckdb_file_from_a_newer_duckdb_is_not_called_damaged() {
    let repo = TestRepo::new();
    let live = repo.root.join("future.duckdb");
    {
        let conn = duckdb::Connection::open(&live).unwrap();
        conn.execute_batch("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    // The storage version (u64 after `DUCK` at offset 8) of a DuckDB far in the future,
    // with the main header's checksum (DuckDB's: 5381 xor-folded with each u64 word times
    // a constant, over bytes 8..4096) recomputed so that only the version is "wrong".
    let mut bytes = fs::read(&live).unwrap();
    bytes[12..20].copy_from_slice(&99_999u64.to_le_bytes());
    let checksum = bytes[8..4096].chunks_exact(8).fold(5381u64, |sum, word| {
        sum ^ u64::from_le_bytes(word.try_into().unwrap()).wrapping_mul(0xbf58476d1ce4e5b9)
    });
    bytes[0..8].copy_from_slice(&checksum.to_le_bytes());
    fs::write(&live, &bytes).unwrap();
    let run = repo.dbguard(["snapshot", "future.duckdb"]).fails_with(1);
    assert!(run.stderr.contains("newer DuckDB"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("truncated or damaged"),
        "{}",
        run.stderr
    );
    assert_eq!(fs::read(&live).unwrap(), bytes, "the file was changed");
}

#[test]
fn git_dash_c_settings_reach_the_hooks() {
    let repo = TestRepo::new();
    repo.dbguard(["install"]).ok();
    make_posts_db(&repo.root.join("data.db"), 10, 8);
    repo.git(["add", "data.db"]);
    // Refused by default (see tests/it/hooks.rs); allowed for this one commit.
    let allowed = Run::from(
        repo.command("git", &repo.root)
            .args(["-c", "dbguard.precommit=allow", "commit", "-q", "-m", "db"])
            .output()
            .unwrap(),
    );
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    assert!(repo.git(["ls-files"]).contains("data.db"));
}

#[test]
fn schedule_refuses_a_path_with_a_line_break() {
    let tmp = TempDir::new().unwrap();
    let repo = TestRepo::new();
    let odd = tmp.path().join("two\nlines");
    fs::create_dir_all(&odd).unwrap();
    repo.git_in(&odd, ["init", "-q"]);
    let table = tmp.path().join("crontab");
    let crontab = tmp.path().join("fake-crontab");
    fs::write(
        &crontab,
        format!("#!/bin/sh\ncat > '{}'\n", table.display()),
    )
    .unwrap();
    fs::set_permissions(
        &crontab,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let run = Run::from(
        repo.command(dbguard_bin(), &odd)
            .env("DBGUARD_CRONTAB", &crontab)
            .arg("schedule")
            .output()
            .unwrap(),
    )
    .fails_with(1);
    assert!(run.stderr.contains("line break"), "{}", run.stderr);
    assert!(!table.exists(), "the crontab was written");
}

#[test]
fn hooks_snapshot_tracked_databases_in_excluded_directories() {
    let repo = grown_tracked_db("data/x.db");
    fs::write(repo.root.join(".dbguard.toml"), "exclude = [\"data\"]\n").unwrap();
    repo.dbguard(["install"]).ok();
    // Plain git: the reference-transaction hook snapshots before refs/stash moves.
    let stash = Run::from(
        repo.command("git", &repo.root)
            .args(["stash", "-q"])
            .output()
            .unwrap(),
    );
    assert_eq!(stash.code, 0, "{}", stash.stderr);
    assert_eq!(sqlite_count(&repo.root.join("data/x.db"), "posts"), 1000);
    assert!(
        snapshot_rows(&repo, "data/x.db").contains(&6000),
        "{:?}",
        snapshot_rows(&repo, "data/x.db")
    );
}
