//! Guarded git commands with real git, real remotes on disk and real databases: dbguard
//! snapshots exactly what git is about to overwrite or delete, then runs git unchanged.

use std::fs;
use std::path::Path;

use dbguard::testing::*;

/// The story's upstream: a bare remote whose history tracks an old 5,000-row posts.db
/// (force-added over an ignore rule), and a clone made before that commit, in which
/// the crawler has grown its own ignored posts.db to `local_rows` rows.
struct Story {
    repo: TestRepo,
    clone: std::path::PathBuf,
}

fn story(local_rows: u64, ignored: bool) -> Story {
    let repo = TestRepo::new();
    if ignored {
        fs::write(repo.root.join(".gitignore"), "posts.db\n").unwrap();
        repo.git(["add", ".gitignore"]);
        repo.git(["commit", "-q", "-m", "ignore the crawler's database"]);
    }
    let (remote, clone) = repo.remote_and_clone();
    make_posts_db(&clone.join("posts.db"), local_rows, 8);

    // Upstream someone commits an old 5,000-row copy.
    make_posts_db(&repo.root.join("posts.db"), 5000, 8);
    repo.git(["add", "-f", "posts.db"]);
    repo.git(["commit", "-q", "-m", "add sample database"]);
    repo.git(["push", "-q", remote.to_str().unwrap(), "HEAD:main"]);
    Story { repo, clone }
}

impl Story {
    fn dbguard<const N: usize>(&self, args: [&str; N]) -> Run {
        self.repo.dbguard_in(&self.clone, args)
    }
    fn git<const N: usize>(&self, args: [&str; N]) -> String {
        self.repo.git_in(&self.clone, args)
    }
    fn snapshots(&self) -> serde_json::Value {
        self.dbguard(["log", "--json"]).ok().json()
    }
}

#[test]
fn guarded_pull_snapshots_the_ignored_900k_database_and_reports_the_shrink() {
    let story = story(900_000, true);
    let run = story.dbguard(["pull"]).ok();
    // git did what it does: the ignored database is now the committed 5,000-row copy.
    assert_eq!(sqlite_count(&story.clone.join("posts.db"), "posts"), 5000);
    let snapshots = story.snapshots();
    assert_eq!(snapshots.as_array().unwrap().len(), 1);
    assert_eq!(snapshots[0]["path"], "posts.db");
    assert_eq!(snapshots[0]["tables"]["posts"], 900_000);
    assert_eq!(snapshots[0]["git_state"], "ignored");
    assert_eq!(
        snapshots[0]["operation"]["argv"],
        serde_json::json!(["git", "pull"])
    );
    // The shrink report: table, rows before, rows after, and how to restore.
    assert!(run.stderr.contains("posts.db lost rows"), "{}", run.stderr);
    assert!(
        run.stderr.contains("900,000") && run.stderr.contains("5,000"),
        "{}",
        run.stderr
    );
    let id = snapshots[0]["id"].as_i64().unwrap();
    assert!(
        run.stderr
            .contains(&format!("dbguard restore posts.db --from {id}")),
        "{}",
        run.stderr
    );
}

#[test]
fn force_pull_recipe_reset_hard_after_fetch_snapshots_first() {
    let story = story(20_000, false);
    story.git(["fetch", "-q"]);
    let run = story.dbguard(["reset", "--hard", "origin/main"]).ok();
    assert_eq!(sqlite_count(&story.clone.join("posts.db"), "posts"), 5000);
    let snapshots = story.snapshots();
    assert_eq!(snapshots[0]["tables"]["posts"], 20_000);
    assert_eq!(snapshots[0]["git_state"], "untracked");
    assert!(run.stderr.contains("20,000"), "{}", run.stderr);
    assert!(
        run.stdout.contains("HEAD is now at"),
        "git's own output is shown: {}",
        run.stdout
    );
}

#[test]
fn checkout_of_a_branch_that_tracks_an_ignored_database() {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "data/\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore data"]);
    repo.git(["checkout", "-q", "-b", "other"]);
    fs::create_dir_all(repo.root.join("data")).unwrap();
    make_posts_db(&repo.root.join("data/app.db"), 100, 8);
    repo.git(["add", "-f", "data/app.db"]);
    repo.git(["commit", "-q", "-m", "track a small app.db"]);
    repo.git(["checkout", "-q", "main"]);
    fs::create_dir_all(repo.root.join("data")).unwrap();
    make_posts_db(&repo.root.join("data/app.db"), 30_000, 8);

    let run = repo.dbguard(["checkout", "other"]).ok();
    assert_eq!(sqlite_count(&repo.root.join("data/app.db"), "posts"), 100);
    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log[0]["tables"]["posts"], 30_000);
    assert!(
        run.stderr.contains("data/app.db lost rows"),
        "{}",
        run.stderr
    );
}

#[test]
fn clean_fdx_snapshots_the_ignored_database_it_deletes() {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "*.db\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore"]);
    fs::create_dir_all(repo.root.join("scratch dir")).unwrap();
    make_posts_db(&repo.root.join("scratch dir/notes.db"), 777, 8);
    let run = repo.dbguard(["clean", "-fdx"]).ok();
    assert!(!repo.root.join("scratch dir/notes.db").exists());
    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log[0]["path"], "scratch dir/notes.db");
    assert_eq!(log[0]["tables"]["posts"], 777);
    assert!(
        run.stderr.contains("scratch dir/notes.db is gone"),
        "{}",
        run.stderr
    );
}

#[test]
fn stash_u_snapshots_the_untracked_database() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("local.db"), 321, 8);
    repo.dbguard(["stash", "-u"]).ok();
    assert!(!repo.root.join("local.db").exists());
    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log[0]["tables"]["posts"], 321);
    assert_eq!(
        log[0]["operation"]["argv"],
        serde_json::json!(["git", "stash", "-u"])
    );
}

#[test]
fn upstream_commit_that_untracks_the_database_is_snapshotted_before_pull_deletes_it() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 4321, 8);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "track db"]);
    let (remote, clone) = repo.remote_and_clone();
    repo.git(["rm", "-q", "--cached", "posts.db"]);
    repo.git(["commit", "-q", "-m", "stop tracking posts.db"]);
    repo.git(["push", "-q", remote.to_str().unwrap(), "HEAD:main"]);

    let run = repo.dbguard_in(&clone, ["pull"]).ok();
    assert!(
        !clone.join("posts.db").exists(),
        "git deleted it, as git does"
    );
    let log = repo.dbguard_in(&clone, ["log", "--json"]).ok().json();
    assert_eq!(log[0]["tables"]["posts"], 4321);
    assert_eq!(log[0]["git_state"], "tracked");
    assert!(run.stderr.contains("posts.db is gone"), "{}", run.stderr);
    assert!(
        run.stderr.contains("under version control"),
        "{}",
        run.stderr
    );
}

/// `git worktree remove --force` deletes a linked worktree, untracked files and all,
/// and runs no hook: `dbguard git` finds the worktree as git does (here by the last
/// part of its path, typed in a subdirectory) and snapshots its databases first.
#[test]
fn guarded_worktree_remove_force_keeps_the_databases_it_deletes() {
    let repo = TestRepo::new();
    let linked = repo.path("trees/crawler");
    repo.git(["worktree", "add", "-q", linked.to_str().unwrap()]);
    make_posts_db(&linked.join("posts.db"), 2500, 8);
    fs::create_dir_all(repo.root.join("sub")).unwrap();

    let removed = repo
        .dbguard_in(
            &repo.root.join("sub"),
            ["git", "worktree", "remove", "--force", "crawler"],
        )
        .ok();
    assert!(!linked.exists(), "git removed the worktree");
    assert!(
        removed.stderr.contains("snapshotting its databases"),
        "{}",
        removed.stderr
    );
    assert_eq!(repo.restore_from_any_worktree("posts.db").0, 2500);

    // A worktree without a database, and a name git finds no worktree for: git alone
    // speaks.
    repo.git(["worktree", "add", "-q", linked.to_str().unwrap()]);
    let removed = repo
        .dbguard(["git", "worktree", "remove", linked.to_str().unwrap()])
        .ok();
    assert_eq!(removed.stderr, "");
    let unknown = repo.dbguard(["git", "worktree", "remove", "no-such-tree"]);
    assert_eq!(unknown.code, 128, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("not a working tree"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn nothing_at_risk_means_no_snapshot_and_only_gits_output() {
    let story = story(1000, true);
    story.git(["pull", "-q"]);
    // Up to date now; the databases are untouched by another pull.
    make_posts_db(&story.clone.join("other.db"), 10, 8);
    let guarded = story.dbguard(["pull"]).ok();
    let plain = Run::from(
        story
            .repo
            .command("git", &story.clone)
            .arg("pull")
            .output()
            .unwrap(),
    );
    assert_eq!(guarded.stdout, plain.stdout);
    assert_eq!(guarded.stderr, plain.stderr);
    assert_eq!(story.snapshots(), serde_json::json!([]));
}

#[test]
fn failing_git_commands_pass_through_exit_code_and_output() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("a.db"), 10, 8);
    for args in [
        vec!["checkout", "no-such-branch"],
        vec!["git", "frobnicate"],
        vec!["merge", "nope"],
        vec!["reset", "--hard", "nope"],
    ] {
        let guarded = repo.dbguard(&args);
        let git_args: Vec<&str> = if args[0] == "git" {
            args[1..].to_vec()
        } else {
            args.clone()
        };
        let plain = Run::from(
            repo.command("git", &repo.root)
                .args(&git_args)
                .output()
                .unwrap(),
        );
        assert_ne!(plain.code, 0);
        assert_eq!(guarded.code, plain.code, "{args:?}: {}", guarded.stderr);
        assert!(
            guarded.stderr.ends_with(&plain.stderr),
            "{args:?}: git's message is shown unchanged:\n{}\nvs\n{}",
            guarded.stderr,
            plain.stderr
        );
    }
}

#[test]
fn a_snapshot_that_cannot_be_made_stops_git_unless_overridden() {
    let repo = TestRepo::new();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corrupt.db"),
        repo.root.join("broken.db"),
    )
    .unwrap();
    let run = repo.dbguard(["clean", "-fx"]).fails_with(3);
    assert!(
        repo.root.join("broken.db").exists(),
        "git clean did not run"
    );
    assert!(
        run.stderr.contains("not running `git clean -fx`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--no-snapshot"), "{}", run.stderr);
    repo.dbguard(["--no-snapshot", "clean", "-fx"]).ok();
    assert!(!repo.root.join("broken.db").exists());
}

#[test]
fn shell_function_routes_pull_through_dbguard_and_status_straight_to_git() {
    let story = story(2000, true);
    // A dbguard on PATH that records each call, then runs the real one.
    let spy_dir = story.repo.path("spy");
    fs::create_dir_all(&spy_dir).unwrap();
    let calls = story.repo.path("calls.log");
    fs::write(
        spy_dir.join("dbguard"),
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            calls.display(),
            dbguard_bin().display()
        ),
    )
    .unwrap();
    let mut perms = fs::metadata(spy_dir.join("dbguard")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(spy_dir.join("dbguard"), perms).unwrap();
    let init = story.dbguard(["init", "bash"]).ok().stdout;
    let script = format!("{init}\ngit status --short\ngit pull -q\n");
    let mut bash = story.repo.command("bash", &story.clone);
    let path = format!("{}:{}", spy_dir.display(), std::env::var("PATH").unwrap());
    let run = Run::from(
        bash.args(["-c", &script])
            .env("PATH", path)
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls = fs::read_to_string(&calls).unwrap();
    assert_eq!(
        calls.trim(),
        "git pull -q",
        "only pull went through dbguard"
    );
    assert_eq!(story.snapshots()[0]["tables"]["posts"], 2000);
}

#[test]
fn git_dbguard_works_as_a_git_subcommand() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("x.db"), 12, 8);
    let run = repo.git(["dbguard", "snapshot", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&run).unwrap();
    assert_eq!(report[0]["rows"], 12);
}

#[test]
fn git_dbguard_is_a_small_hand_over_that_says_when_dbguard_is_missing() {
    let bin_dir = dbguard_bin().parent().unwrap().to_path_buf();
    let tiny = bin_dir.join("git-dbguard");
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    // It must not link the library (and with it DuckDB): a tenth of dbguard at most.
    assert!(
        size(&tiny) * 10 < size(&dbguard_bin()),
        "git-dbguard is {} bytes, dbguard {}",
        size(&tiny),
        size(&dbguard_bin())
    );
    // Alone in a directory, with no dbguard on PATH: a clear error, git's "not found" code.
    let repo = TestRepo::new();
    let lonely = repo.path("lonely");
    std::fs::create_dir_all(&lonely).unwrap();
    std::fs::copy(&tiny, lonely.join("git-dbguard")).unwrap();
    // Another test thread forking while the copy's write descriptor was open can hold it
    // until its child execs: Linux refuses to run the file meanwhile ("text file busy").
    let out = (0..50)
        .find_map(|_| {
            match std::process::Command::new(lonely.join("git-dbguard"))
                .arg("status")
                .env("PATH", "/usr/bin:/bin")
                .output()
            {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                }
                other => Some(other.unwrap()),
            }
        })
        .expect("the copied git-dbguard runs");
    let run = Run::from(out);
    assert_eq!(run.code, 127, "{}", run.stderr);
    assert!(run.stderr.contains("cannot run dbguard"), "{}", run.stderr);
    run.has_own_hint();
}
