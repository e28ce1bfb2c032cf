//! What people read: the main flows' output pinned with insta snapshots (status, log,
//! show, diff, the shrink report, errors), NO_COLOR, piped output, help and the demo.

use std::process::Command;

use dbguard::testing::*;

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
    let run = Run::from(cmd.arg("install").output().unwrap()).fails_with(1);
    insta::assert_snapshot!("error_not_a_repo", scrub(&repo, &run.stderr));
    std::fs::write(
        repo.root.join("notes.db"),
        "plain text, not a database\n".repeat(40),
    )
    .unwrap();
    let run = fixed(&repo, &["snapshot", "notes.db"]).fails_with(1);
    insta::assert_snapshot!("error_not_a_database", run.stderr);
    let run = fixed(&repo, &["show", "99"]).fails_with(1);
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
fn help_of_a_guarded_command_is_dbguards_then_points_at_gits() {
    let repo = TestRepo::new();
    for (args, own, gits) in [
        (
            vec!["pull", "--help"],
            "Snapshot what `git pull` will overwrite",
            "`git help pull`",
        ),
        (
            vec!["reset", "-h"],
            "Snapshot what `git reset`",
            "`git help reset`",
        ),
        (
            vec!["git", "--help"],
            "Any git command, guarded",
            "`git help <command>`",
        ),
    ] {
        let run = fixed(&repo, &args).ok();
        assert!(run.stdout.contains(own), "{args:?}:\n{}", run.stdout);
        assert!(run.stdout.contains(gits), "{args:?}:\n{}", run.stdout);
        assert!(run.stdout.contains("--no-snapshot"), "{}", run.stdout);
        assert!(
            !run.stdout.contains("NAME\n"),
            "git's man page:\n{}",
            run.stdout
        );
    }
    // After the git command, --help is git's own (`git pull -h` prints git's usage).
    let gits = fixed(&repo, &["git", "pull", "-h"]);
    assert!(
        gits.stdout.contains("usage: git pull") || gits.stderr.contains("usage: git pull"),
        "{}{}",
        gits.stdout,
        gits.stderr
    );
    // A guard-only option is not in the help of every other command.
    let log = fixed(&repo, &["log", "--help"]).ok();
    assert!(!log.stdout.contains("--no-snapshot"), "{}", log.stdout);
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

/// README, "Exit codes": one check per row, as a script wrapping git would see them.
mod exit_codes {
    use super::*;
    use std::process::Stdio;

    fn with_a_snapshot() -> TestRepo {
        let repo = TestRepo::new();
        make_posts_db(&repo.root.join("posts.db"), 200, 20);
        repo.dbguard(["snapshot", "posts.db"]).ok();
        repo
    }

    #[test]
    fn one_could_not_do_it() {
        let repo = with_a_snapshot();
        let run = repo.dbguard(["show", "999"]).fails_with(1);
        assert!(
            run.stderr.contains("snapshot #999 does not exist"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("`dbguard log` lists"), "{}", run.stderr);
    }

    #[test]
    fn two_usage() {
        let repo = TestRepo::new();
        let run = repo.dbguard(["log", "--no-such-option"]).fails_with(2);
        assert!(run.stderr.contains("--no-such-option"), "{}", run.stderr);
    }

    #[test]
    fn a_guarded_git_keeps_its_own_code() {
        let repo = TestRepo::new();
        for args in [
            vec!["git", "status", "--no-such-option"],
            vec!["git", "rev-parse", "--verify", "-q", "no-such-ref"],
            vec!["git", "no-such-command"],
            vec!["checkout", "no-such-branch"],
        ] {
            let plain = Run::from(
                repo.command("git", &repo.root)
                    .args(&args[1..])
                    .output()
                    .unwrap(),
            );
            assert_ne!(plain.code, 0, "{args:?}");
            repo.dbguard(&args).fails_with(plain.code);
        }
        assert_eq!(
            repo.dbguard(["git", "status", "--no-such-option"]).code,
            129,
            "git's usage code"
        );
    }

    #[test]
    fn three_refused_git_did_not_run() {
        let repo = TestRepo::with_posts_on_main_and_other();
        std::fs::write(repo.root.join("a.txt"), "edited\n").unwrap();
        let store = repo.path("store-is-a-file");
        std::fs::write(&store, "not a directory\n").unwrap();
        repo.git(["config", "dbguard.store", store.to_str().unwrap()]);
        let run = repo.dbguard(["reset", "--hard", "other"]).fails_with(3);
        assert!(run.stderr.contains("git did not run"), "{}", run.stderr);
        assert!(run.stderr.contains("--no-snapshot"), "{}", run.stderr);
        // git really did not run: the edit and the 5,000 rows are where they were.
        assert_eq!(
            std::fs::read_to_string(repo.root.join("a.txt")).unwrap(),
            "edited\n"
        );
        assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 5000);
    }

    #[test]
    fn four_a_loss() {
        let repo = with_a_snapshot();
        std::fs::remove_file(repo.root.join("posts.db")).unwrap();
        let run = repo.dbguard(["status"]).flags_a_loss();
        assert!(run.stdout.contains("posts.db") || run.stderr.contains("posts.db"));
    }

    #[test]
    fn seventy_an_internal_error() {
        let repo = TestRepo::new();
        let mut cmd = repo.command(dbguard_bin(), &repo.root);
        let run = Run::from(
            cmd.args(["log"])
                .env("DBGUARD_TEST_PANIC", "1")
                .output()
                .unwrap(),
        );
        assert_eq!(run.code, 70, "{}", run.stderr);
        assert!(run.stderr.contains("internal error"), "{}", run.stderr);
        assert!(run.stderr.contains("please report it"), "{}", run.stderr);
    }

    #[test]
    fn a_bug_in_a_hook_never_stops_git() {
        let repo = TestRepo::new();
        repo.dbguard(["install"]).ok();
        std::fs::write(repo.root.join("notes.txt"), "note\n").unwrap();
        repo.git(["add", "notes.txt"]);
        let run = Run::from(
            repo.command("git", &repo.root)
                .args(["commit", "-q", "-m", "notes"])
                .env("DBGUARD_TEST_PANIC", "1")
                .output()
                .unwrap(),
        );
        // (the panic's own lines are expected here: the knob makes the hook panic)
        assert_eq!(run.code, 0, "git commit failed:\n{}", run.stderr);
        assert!(run.stderr.contains("internal error"), "{}", run.stderr);
        assert_eq!(repo.git(["log", "-1", "--format=%s"]).trim(), "notes");
    }

    #[test]
    fn one_hundred_forty_one_when_the_reader_leaves() {
        let repo = with_a_snapshot();
        // `dbguard log | head -0`: the reader is gone before dbguard writes (closed
        // before it starts: dropping it after the spawn raced with dbguard's write).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let child = repo
            .command(dbguard_bin(), &repo.root)
            .args(["log"])
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let run = Run::from(child.wait_with_output().unwrap());
        assert_eq!(run.code, 141, "{}", run.stderr);
        assert_eq!(run.stderr, "", "a closed pipe is not reported");
    }

    #[test]
    fn one_when_the_output_cannot_be_written() {
        let repo = with_a_snapshot();
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let run = Run::from(
            repo.command(dbguard_bin(), &repo.root)
                .args(["log", "--json"])
                .stdout(full)
                .output()
                .unwrap(),
        )
        .fails_with(1);
        assert!(
            run.stderr.contains("the output could not be written"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn uninstall_says_what_it_leaves_and_how_to_remove_it() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 100, 20);
    repo.dbguard(["install"]).ok();
    let nas = repo.path("nas");
    repo.dbguard([
        "remote",
        "add",
        "nas",
        &format!("file://{}", nas.display()),
        "--no-encryption",
    ])
    .ok();
    let run = repo.dbguard(["uninstall"]).ok();
    assert!(
        run.stderr.contains(&format!(
            "left in place: the snapshots in {}",
            repo.store().display()
        )),
        "{}",
        run.stderr
    );
    let remove = "git config --remove-section dbguard.remote.nas";
    assert!(run.stderr.contains(remove), "{}", run.stderr);
    // The commands it names work: afterwards no dbguard setting is left.
    for line in run
        .stderr
        .lines()
        .filter(|l| l.contains("--remove-section"))
    {
        let commands = line.split("to remove them: ").nth(1).unwrap();
        for command in commands.split("; ") {
            let section = command.rsplit(' ').next().unwrap();
            repo.git(["config", "--remove-section", section]);
        }
    }
    let left = Run::from(
        repo.command("git", &repo.root)
            .args(["config", "--local", "--get-regexp", "^dbguard\\."])
            .output()
            .unwrap(),
    );
    assert_eq!(left.stdout, "", "settings left: {}", left.stdout);
}
