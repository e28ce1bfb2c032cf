//! One snapshot per state: a database unchanged since its latest snapshot gets no new
//! one (the operation refers to that snapshot, and `log` says so), a changed one does;
//! guards still count the referred snapshot as protection. Also: what `prune --dry-run`
//! says about each snapshot, and the version-control warning said once a day.

use std::thread::sleep;
use std::time::Duration;

use dbguard::testing::*;

/// dbguard at a fixed instant (`DBGUARD_NOW`) in UTC, so that output is reproducible.
fn at(repo: &TestRepo, now: &str, args: &[&str]) -> Run {
    let mut cmd = repo.command(dbguard_bin(), &repo.root);
    cmd.args(args).env("DBGUARD_NOW", now).env("TZ", "UTC");
    Run::from(cmd.output().unwrap())
}

fn snapshot_count(repo: &TestRepo) -> usize {
    repo.dbguard(["log", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn repeated_install_and_export_of_an_unchanged_database_add_no_snapshot() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 3000, 40);
    repo.dbguard(["install", "--no-fsmonitor"]).ok();
    assert_eq!(snapshot_count(&repo), 1);
    // A new mtime, the same bytes: the stat cache cannot vouch for the file, so the
    // second install reads it again, finds the same image, and records nothing new.
    sleep(Duration::from_millis(50));
    let touched = repo.command("touch", &repo.root).arg("posts.db").status();
    assert!(touched.unwrap().success());
    // Past the stat cache's racy window (50 ms), so the install's reading is trusted and
    // the exports below need not read the file again.
    sleep(Duration::from_millis(150));
    let again = repo.dbguard(["install", "--no-fsmonitor"]).ok();
    assert!(
        again
            .stderr
            .contains("posts.db is saved: unchanged since snapshot #1 (3,000 rows in 1 table"),
        "{}",
        again.stderr
    );
    assert_eq!(snapshot_count(&repo), 1, "{}", again.stderr);

    // Settled now: each export finds the file unchanged by its stat signature alone.
    sleep(Duration::from_millis(200));
    let out = repo.path("out");
    for _ in 0..2 {
        let export = repo
            .dbguard(["export", "posts.db", "--out", out.to_str().unwrap()])
            .ok();
        assert!(
            export
                .stderr
                .contains("posts.db is saved: unchanged since snapshot #1"),
            "{}",
            export.stderr
        );
    }
    assert_eq!(snapshot_count(&repo), 1);

    // The log still shows every operation and the snapshot each one refers to.
    let log = repo.dbguard(["log"]).ok().stdout;
    let lines: Vec<&str> = log.lines().skip(1).collect();
    assert_eq!(lines.len(), 4, "{log}");
    assert!(lines.iter().all(|l| l.starts_with("#1 ")), "{log}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("(unchanged since #1)"))
            .count(),
        3,
        "{log}"
    );
    assert!(lines[3].trim_end().ends_with("by dbguard install"), "{log}");
    let json = repo.dbguard(["log", "--json"]).ok().json();
    let unchanged = json[0]["unchanged"].as_array().unwrap();
    assert_eq!(unchanged.len(), 3);
    assert_eq!(unchanged[0]["reopened"], true);
    assert_eq!(unchanged[1]["reopened"], false, "the stat cache vouched");
    assert_eq!(unchanged[2]["reopened"], false, "the stat cache vouched");
    assert_eq!(unchanged[2]["operation"]["kind"], "export");

    // A changed database gets a new snapshot.
    let conn = rusqlite::Connection::open(&db).unwrap();
    add_posts(&conn, 10, 40);
    drop(conn);
    let changed = repo.dbguard(["snapshot", "--json"]).ok().json();
    assert_eq!(changed[0]["id"], 2);
    assert_eq!(changed[0]["unchanged"], false);
    assert_eq!(changed[0]["rows"], 3010);
    assert_eq!(snapshot_count(&repo), 2);
    let same = repo.dbguard(["snapshot", "--json"]).ok().json();
    assert_eq!(
        (same[0]["id"].clone(), same[0]["unchanged"].clone()),
        (2.into(), true.into())
    );
    assert_eq!(snapshot_count(&repo), 2);
}

#[test]
fn a_guarded_reset_over_an_unchanged_database_is_protected_and_restorable() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 500, 40);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "a small sample"]);
    let conn = rusqlite::Connection::open(&db).unwrap();
    add_posts(&conn, 8000, 40);
    drop(conn);
    sleep(Duration::from_millis(200));
    repo.dbguard(["snapshot"]).ok(); // #1: 8,500 rows

    // Unchanged since #1: the guard takes no new snapshot but still lets git run only
    // because #1 holds the state, and offers #1 after the reset.
    let reset = repo.dbguard(["git", "reset", "--hard"]).ok();
    assert_eq!(sqlite_count(&db, "posts"), 500, "git reset did its work");
    assert!(
        reset
            .stderr
            .contains("posts.db is saved: unchanged since snapshot #1"),
        "{}",
        reset.stderr
    );
    assert!(
        reset.stderr.contains("lost rows: 8,500 before, 500 now"),
        "{}",
        reset.stderr
    );
    assert!(
        reset
            .stderr
            .contains("unchanged since then before `git reset --hard`"),
        "{}",
        reset.stderr
    );
    assert!(
        reset
            .stderr
            .contains("to restore it: dbguard restore posts.db --from 1"),
        "{}",
        reset.stderr
    );
    assert_eq!(snapshot_count(&repo), 1);
    let log = repo.dbguard(["log"]).ok().stdout;
    assert!(
        log.contains("git reset --hard (unchanged since #1)"),
        "{log}"
    );

    // `restore PATH` picks the snapshot before the loss, and the rows come back.
    let restore = repo.dbguard(["restore", "posts.db"]).ok();
    assert!(
        restore
            .stderr
            .contains("restored posts.db from #1: 8,500 rows"),
        "{}",
        restore.stderr
    );
    assert_eq!(sqlite_count(&db, "posts"), 8500);
    assert_eq!(quick_check(&db), "ok");
}

#[test]
fn prune_dry_run_says_rows_label_and_age_of_what_it_would_remove() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 90_000, 8);
    sleep(Duration::from_millis(200));
    at(&repo, "2026-11-18T08:00:00Z", &["snapshot"]).ok(); // #1
    // A relative --out: the command line is part of the output.
    at(
        &repo,
        "2026-11-19T09:30:00Z",
        &["export", "posts.db", "--out", "../out"],
    )
    .ok(); // unchanged: refers to #1
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM posts WHERE id > 5000", [])
        .unwrap();
    at(&repo, "2026-11-20T12:00:00Z", &["snapshot", "-m", "after"]).ok(); // #2
    make_posts_db(&db, 10, 8);
    at(&repo, "2026-11-21T09:00:00Z", &["snapshot"]).ok(); // #3
    let dry = at(
        &repo,
        "2026-11-21T10:00:00Z",
        &["prune", "--keep-last", "1", "--dry-run"],
    )
    .ok();
    // Compressed sizes of random bodies vary from run to run.
    let text: String = dry
        .stderr
        .lines()
        .map(|line| match line.split_once("would free ") {
            Some((head, _)) => format!("{head}would free [bytes]\n"),
            None => format!("{line}\n"),
        })
        .collect();
    insta::assert_snapshot!("prune_dry_run", text);
    assert_eq!(snapshot_count(&repo), 3, "a dry run removes nothing");
}

#[test]
fn the_version_control_warning_is_said_once_a_day_on_guarded_commands() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 100, 8);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "track it"]);
    let warning = "posts.db is under version control";
    let guarded = |now: &str| {
        // A modified tracked database is at risk under `reset --hard`.
        let conn = rusqlite::Connection::open(&db).unwrap();
        add_posts(&conn, 1, 8);
        drop(conn);
        at(&repo, now, &["git", "reset", "--hard"]).ok().stderr
    };
    let first = guarded("2026-11-21T10:00:00Z");
    assert_eq!(first.matches(warning).count(), 1, "{first}");
    assert!(first.contains("dbguard untrack posts.db"), "{first}");
    let later = guarded("2026-11-21T16:00:00Z");
    assert!(later.contains("lost rows"), "the guard ran:\n{later}");
    assert!(
        !later.contains(warning),
        "said again the same day:\n{later}"
    );
    // `status` always says it.
    let status = at(&repo, "2026-11-21T16:01:00Z", &["status"])
        .flags_a_loss()
        .stderr;
    assert!(status.contains(warning), "{status}");
    // A day later, once again.
    let next_day = guarded("2026-11-22T10:30:00Z");
    assert_eq!(next_day.matches(warning).count(), 1, "{next_day}");
    let again = guarded("2026-11-22T10:31:00Z");
    assert!(!again.contains(warning), "{again}");
}
