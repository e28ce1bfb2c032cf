//! `dbguard status` flags databases that shrank or vanished since their last snapshot,
//! and the restore command it prints works when pasted where status ran.

use std::fs;
use std::path::Path;

use dbguard::testing::*;

/// The command after `hint: to bring it back: ` for `path` in status's stderr.
fn printed_restore(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("hint: to bring it back: "))
        .unwrap_or_else(|| panic!("no restore command in:\n{stderr}"))
        .to_string()
}

/// Run `command` as a user pasting it into a shell in `dir`.
fn paste(repo: &TestRepo, dir: &Path, command: &str) -> Run {
    Run::from(
        repo.command("sh", dir)
            .args(["-c", command])
            .output()
            .unwrap(),
    )
}

fn snapshot_id(repo: &TestRepo, path: &str) -> i64 {
    let log = repo.dbguard(["log", "--json", path]).ok().json();
    log[0]["id"].as_i64().unwrap()
}

#[test]
fn a_database_git_clean_deleted_is_listed_as_gone_with_a_restore_command_that_works() {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "data/\n").unwrap();
    fs::create_dir_all(repo.root.join("src")).unwrap();
    fs::write(repo.root.join("src/main.txt"), "code\n").unwrap();
    repo.git(["add", ".gitignore", "src"]);
    repo.git(["commit", "-q", "-m", "ignore data"]);
    fs::create_dir_all(repo.root.join("data")).unwrap();
    let db = repo.root.join("data/crawl.db");
    make_posts_db(&db, 40_000, 8);
    repo.dbguard(["snapshot"]).ok();
    let id = snapshot_id(&repo, "data/crawl.db");

    repo.git(["clean", "-q", "-fdx"]);
    assert!(!repo.root.join("data").exists());

    let status = repo.dbguard(["status"]).flags_a_loss();
    assert!(
        !status
            .stderr
            .contains("no SQLite or DuckDB databases in this working tree"),
        "{}",
        status.stderr
    );
    let row = status
        .stdout
        .lines()
        .find(|l| l.starts_with("data/crawl.db "))
        .unwrap_or_else(|| panic!("not listed:\n{}", status.stdout));
    assert!(row.contains("GONE"), "{row}");
    assert!(row.contains(&format!("#{id} ")), "{row}");
    assert!(row.ends_with("40,000"), "{row}");
    let warning = status
        .stderr
        .lines()
        .find(|l| l.starts_with("warning: data/crawl.db is gone;"))
        .unwrap_or_else(|| panic!("no warning:\n{}", status.stderr));
    assert!(warning.contains(&format!(" snapshot #{id} (")), "{warning}");
    assert!(warning.ends_with(" s ago) holds 40,000 rows"), "{warning}");
    let command = printed_restore(&status.stderr);
    assert_eq!(
        command,
        format!("dbguard restore data/crawl.db --from {id}")
    );

    let json = repo.dbguard(["status", "--json"]).flags_a_loss().json();
    let entry = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "data/crawl.db")
        .unwrap();
    assert_eq!(entry["state"], "vanished");
    assert_eq!(entry["loss"]["snapshot_id"], id);
    assert_eq!(entry["loss"]["rows_then"], 40_000);
    assert!(entry["loss"]["rows_now"].is_null());
    assert_eq!(entry["loss"]["restore_command"], command.as_str());
    assert_eq!(entry["last_snapshot"]["rows"], 40_000);

    // From outside the worktree (`-C`), the command says which worktree.
    let outside = repo.path("elsewhere");
    fs::create_dir_all(&outside).unwrap();
    let root = repo.root.to_str().unwrap();
    let status = repo
        .dbguard_in(&outside, ["-C", root, "status"])
        .flags_a_loss();
    let command = printed_restore(&status.stderr);
    assert!(command.starts_with("dbguard -C "), "{command}");
    assert!(
        command.ends_with(&format!(" restore data/crawl.db --from {id}")),
        "{command}"
    );

    // From a subdirectory, the command names the path from there, and works pasted there.
    let sub = repo.root.join("src");
    let status = repo.dbguard_in(&sub, ["status"]).flags_a_loss();
    let command = printed_restore(&status.stderr);
    assert_eq!(
        command,
        format!("dbguard restore ../data/crawl.db --from {id}")
    );
    paste(&repo, &sub, &command).ok();
    assert_eq!(sqlite_count(&db, "posts"), 40_000);
    assert_eq!(quick_check(&db), "ok");

    // Back: nothing is flagged any more.
    let status = repo.dbguard(["status"]).ok();
    assert!(
        !status.stderr.contains("to bring it back"),
        "{}",
        status.stderr
    );
    assert!(!status.stdout.contains("GONE"), "{}", status.stdout);
}

#[test]
fn only_a_database_that_lost_rows_is_flagged() {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "*.db\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore databases"]);
    for name in ["shrunk.db", "same.db", "grown.db"] {
        make_posts_db(&repo.root.join(name), 1_000, 8);
    }
    repo.dbguard(["snapshot"]).ok();
    let id = snapshot_id(&repo, "shrunk.db");
    let shrunk = rusqlite::Connection::open(repo.root.join("shrunk.db")).unwrap();
    shrunk
        .execute("DELETE FROM posts WHERE id > 400", [])
        .unwrap();
    drop(shrunk);
    add_posts(
        &rusqlite::Connection::open(repo.root.join("grown.db")).unwrap(),
        500,
        8,
    );

    let status = repo.dbguard(["status"]).flags_a_loss();
    let line = |name: &str| {
        status
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{}", status.stdout))
            .to_string()
    };
    assert!(
        line("shrunk.db").contains("400 SHRANK"),
        "{}",
        status.stdout
    );
    assert!(!line("same.db").contains("SHRANK"), "{}", status.stdout);
    assert!(!line("grown.db").contains("SHRANK"), "{}", status.stdout);
    assert!(line("grown.db").contains("1,500"), "{}", status.stdout);
    let warning = status
        .stderr
        .lines()
        .find(|l| l.starts_with("warning: shrunk.db shrank since its last snapshot: "))
        .unwrap_or_else(|| panic!("no warning:\n{}", status.stderr));
    assert!(warning.contains(&format!(" snapshot #{id} (")), "{warning}");
    assert!(
        warning.ends_with(" s ago) holds 1,000 rows, the file has 400 now (posts 1,000 -> 400)"),
        "{warning}"
    );
    for name in ["same.db", "grown.db"] {
        assert!(!status.stderr.contains(name), "{}", status.stderr);
    }
    let warnings = status.stderr.matches("to bring it back").count();
    assert_eq!(warnings, 1, "{}", status.stderr);

    let json = repo.dbguard(["status", "--json"]).flags_a_loss().json();
    let state = |name: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(state("shrunk.db")["state"], "shrank");
    assert_eq!(state("shrunk.db")["loss"]["rows_now"], 400);
    assert_eq!(
        state("shrunk.db")["loss"]["tables"]["posts"]["rows_now"],
        400
    );
    for name in ["same.db", "grown.db"] {
        assert_eq!(state(name)["state"], "ok");
        assert!(state(name)["loss"].is_null());
        // Existing fields keep their types.
        assert!(state(name)["git_state"].is_string());
        assert!(state(name)["size_bytes"].is_u64());
    }

    let command = printed_restore(&status.stderr);
    assert_eq!(command, format!("dbguard restore shrunk.db --from {id}"));
    paste(&repo, &repo.root, &command).ok();
    assert_eq!(sqlite_count(&repo.root.join("shrunk.db"), "posts"), 1_000);
    let status = repo.dbguard(["status"]).ok();
    assert!(!status.stdout.contains("SHRANK"), "{}", status.stdout);
}

/// Plain git in the worktree, as a user types it; the hooks run.
fn plain(repo: &TestRepo, args: &[&str]) -> Run {
    Run::from(repo.command("git", &repo.root).args(args).output().unwrap())
}

fn posts_row(status: &Run) -> String {
    status
        .stdout
        .lines()
        .find(|l| l.starts_with("posts.db "))
        .unwrap_or_else(|| panic!("posts.db not listed:\n{}", status.stdout))
        .to_string()
}

#[test]
fn a_loss_through_plain_git_stays_flagged_until_restored_or_accepted() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 5000, 8);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "seed"]);
    repo.dbguard(["install"]).ok();
    add_posts(&rusqlite::Connection::open(&db).unwrap(), 85_000, 8);

    // No terminal: the hooks snapshot before, say what was lost, and record what git
    // left, which is no baseline.
    let checkout = plain(&repo, &["checkout", "--", "posts.db"]);
    assert!(
        checkout
            .stderr
            .contains("posts.db lost rows: 90,000 before, 5,000 now"),
        "{}",
        checkout.stderr
    );
    assert_eq!(sqlite_count(&db, "posts"), 5000);
    let status = repo.dbguard(["status"]).flags_a_loss();
    assert!(
        posts_row(&status).contains("5,000 SHRANK"),
        "{}",
        status.stdout
    );
    assert!(posts_row(&status).ends_with("90,000"), "{}", status.stdout);
    assert!(
        status
            .stderr
            .contains("Error: 1 database lost rows or vanished: posts.db"),
        "{}",
        status.stderr
    );
    assert!(
        status.stderr.contains("dbguard snapshot posts.db"),
        "{}",
        status.stderr
    );

    // Later snapshots of the same state (the schedule's, another git command's) do not
    // make it a baseline either.
    repo.dbguard(["snapshot"]).ok();
    plain(&repo, &["reset", "-q", "--hard"]);
    repo.dbguard(["status"]).flags_a_loss();

    // Restored: all is well again.
    repo.dbguard(["restore", "posts.db"]).ok();
    assert_eq!(sqlite_count(&db, "posts"), 90_000);
    let status = repo.dbguard(["status"]).ok();
    assert!(!posts_row(&status).contains("SHRANK"), "{}", status.stdout);

    // Lost again, and this time accepted as it is: the state is the new baseline.
    plain(&repo, &["checkout", "--", "posts.db"]);
    repo.dbguard(["status"]).flags_a_loss();
    repo.dbguard(["snapshot", "posts.db"]).ok();
    let status = repo.dbguard(["status"]).ok();
    assert!(!posts_row(&status).contains("SHRANK"), "{}", status.stdout);
    assert!(posts_row(&status).ends_with("5,000"), "{}", status.stdout);
}
