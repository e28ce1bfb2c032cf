//! What people read: the main flows' output pinned with insta snapshots (status, log,
//! show, diff, the shrink report, errors), NO_COLOR, piped output, help and the demo.

mod common;

use std::process::Command;

use common::*;

/// dbguard with a fixed clock and time zone, so output is reproducible.
fn fixed(repo: &TestRepo, args: &[&str]) -> Run {
    let mut cmd = repo.command(dbguard_bin(), &repo.root);
    cmd.args(args)
        .env("DBGUARD_NOW", "2026-11-21T10:00:00Z")
        .env("TZ", "UTC");
    Run::from(cmd.output().unwrap())
}

/// A database whose bytes are the same on every run.
fn deterministic_db(path: &std::path::Path, rows: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE posts(id INTEGER PRIMARY KEY, body TEXT); CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO users(name) VALUES ('ada'), ('bob');",
    )
    .unwrap();
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO posts(body) SELECT 'post ' || i FROM n",
        [rows],
    )
    .unwrap();
}

fn scrub(repo: &TestRepo, text: &str) -> String {
    text.replace(
        &repo
            .tmp
            .path()
            .canonicalize()
            .unwrap()
            .display()
            .to_string(),
        "[TMP]",
    )
}

#[test]
fn main_flows_read_well() {
    let repo = TestRepo::new();
    deterministic_db(&repo.root.join("posts.db"), 1500);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "track"]);

    let snapshot = fixed(&repo, &["snapshot", "-m", "first"]).ok();
    insta::assert_snapshot!("snapshot", snapshot.stderr);
    rusqlite::Connection::open(repo.root.join("posts.db"))
        .unwrap()
        .execute("DELETE FROM posts WHERE id > 1000", [])
        .unwrap();
    let status = fixed(&repo, &["status"]).flags_a_loss();
    insta::assert_snapshot!(
        "status",
        format!("{}\n--- stderr\n{}", status.stdout, status.stderr)
    );
    insta::assert_snapshot!("log", fixed(&repo, &["log"]).ok().stdout);
    insta::assert_snapshot!(
        "show",
        scrub(&repo, &fixed(&repo, &["show", "1"]).ok().stdout)
    );
    insta::assert_snapshot!("diff", fixed(&repo, &["diff"]).ok().stdout);
    let restore = fixed(&repo, &["restore", "posts.db"]).ok();
    insta::assert_snapshot!("restore", restore.stderr);
}

#[test]
fn the_shrink_report_after_a_guarded_checkout() {
    let repo = TestRepo::new();
    std::fs::write(repo.root.join(".gitignore"), "posts.db\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore"]);
    repo.git(["checkout", "-q", "-b", "old"]);
    deterministic_db(&repo.root.join("posts.db"), 50);
    repo.git(["add", "-f", "posts.db"]);
    repo.git(["commit", "-q", "-m", "old copy"]);
    repo.git(["checkout", "-q", "main"]);
    deterministic_db(&repo.root.join("posts.db"), 1200);
    let run = fixed(&repo, &["checkout", "-q", "old"]).ok();
    insta::assert_snapshot!("shrink_report", run.stderr);
}

#[test]
fn errors_have_a_hint() {
    let repo = TestRepo::new();
    let outside = repo.path("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    let mut cmd = repo.command(dbguard_bin(), &outside);
    // Outside git most commands work (a store of the directory's own); hooks need git.
    let run = Run::from(cmd.arg("install").output().unwrap()).fails();
    insta::assert_snapshot!("error_not_a_repo", scrub(&repo, &run.stderr));
    std::fs::write(
        repo.root.join("notes.db"),
        "plain text, not a database\n".repeat(40),
    )
    .unwrap();
    let run = fixed(&repo, &["snapshot", "notes.db"]).fails();
    insta::assert_snapshot!("error_not_a_database", run.stderr);
    let run = fixed(&repo, &["show", "99"]).fails();
    insta::assert_snapshot!("error_no_snapshot", run.stderr);
}

#[test]
fn no_color_and_piped_output_are_plain() {
    let repo = TestRepo::new();
    deterministic_db(&repo.root.join("posts.db"), 10);
    // Forced colour shows escapes; NO_COLOR (set by the harness) and pipes do not.
    let colored = fixed(&repo, &["--color", "always", "snapshot"]).ok();
    assert!(colored.stderr.contains('\x1b'), "{:?}", colored.stderr);
    for args in [
        vec!["snapshot"],
        vec!["status"],
        vec!["log"],
        vec!["verify"],
    ] {
        let run = fixed(&repo, &args).ok();
        assert!(
            !run.stdout.contains('\x1b') && !run.stderr.contains('\x1b'),
            "{args:?}"
        );
        // Progress bars draw with carriage returns; piped output has none.
        assert!(!run.stderr.contains('\r'), "{args:?}");
    }
}

#[test]
fn help_is_grouped_and_subcommands_have_examples() {
    let repo = TestRepo::new();
    let help = fixed(&repo, &["--help"]).ok().stdout;
    for group in ["Protect:", "Inspect:", "Recover:", "Maintain:"] {
        assert!(help.contains(group), "{help}");
    }
    for sub in [
        "install",
        "uninstall",
        "untrack",
        "init",
        "snapshot",
        "schedule",
        "status",
        "log",
        "show",
        "diff",
        "config",
        "restore",
        "export",
        "import-table",
        "demo",
        "verify",
        "prune",
        "completions",
        "man",
        "pull",
        "reset",
        "checkout",
        "switch",
        "merge",
        "rebase",
        "clean",
        "stash",
        "rm",
        "git",
    ] {
        let long = fixed(&repo, &["help", sub]).ok().stdout;
        assert!(
            long.contains("Example"),
            "{sub} --help has no examples:\n{long}"
        );
    }
    let completions = fixed(&repo, &["completions", "bash"]).ok().stdout;
    assert!(completions.contains("dbguard"));
    let man = fixed(&repo, &["man"]).ok().stdout;
    assert!(
        man.starts_with(".ie") || man.contains(".TH"),
        "{}",
        &man[..200.min(man.len())]
    );
}

#[test]
fn demo_plays_the_story_and_leaves_nothing_behind() {
    let scratch = tempfile::tempdir().unwrap();
    let run = Run::from(
        Command::new(dbguard_bin())
            .args(["demo", "--rows", "90000"])
            .env("TMPDIR", scratch.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap(),
    )
    .ok();
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("90,000 rows"), "{out}");
    assert!(out.contains("lost rows: 90,000 before, 5,000 now"), "{out}");
    assert!(
        out.contains("restored posts.db from #1: 90,000 rows"),
        "{out}"
    );
    assert!(
        out.contains("crawler/posts.db: 90,000 rows (restored)"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "the sandbox is removed"
    );
}

#[test]
fn config_shows_the_environment_variables_in_effect() {
    let repo = TestRepo::new();
    // The harness sets DBGUARD_NO_PROMPT and NO_COLOR; DBGUARD_NOW is set here.
    let text = fixed(&repo, &["config"]).ok().stdout;
    for (name, effect) in [
        ("DBGUARD_NO_PROMPT=1", "never prompt"),
        ("DBGUARD_NOW=2026-11-21T10:00:00Z", "the clock"),
        ("NO_COLOR=1", "no colour"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("config does not show {name}:\n{text}"));
        assert!(line.contains(effect), "{line}");
    }
    assert!(
        !text.contains("DBGUARD_SKIP"),
        "an unset variable is listed:\n{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&fixed(&repo, &["--json", "config"]).ok().stdout).unwrap();
    assert_eq!(json["environment"]["DBGUARD_NOW"], "2026-11-21T10:00:00Z");
    assert!(
        json["store"].is_object() || json["store"].is_string(),
        "{json}"
    );
}
