//! Plain git, guarded by the `core.fsmonitor` hook alone (`dbguard install`, no wrapper,
//! no shell function): each command that writes the worktree is snapshotted before it
//! writes, read-only commands never are, and git's answer stays right.

use std::fs;
use std::path::Path;

use dbguard::testing::*;

/// Plain git in `dir`, as a user types it; the hooks run, nothing is asserted.
fn plain(repo: &TestRepo, dir: &Path, args: &[&str]) -> Run {
    Run::from(repo.command("git", dir).args(args).output().unwrap())
}

fn snapshot_count(repo: &TestRepo) -> usize {
    repo.dbguard(["log", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .len()
}

/// `dbguard restore <path>` as a user runs it after an accident; the rows it brought back.
fn restore_rows(repo: &TestRepo, path: &str) -> u64 {
    repo.dbguard(["restore", path]).ok();
    sqlite_count(&repo.root.join(path), "posts")
}

/// A repository with a committed 5,000-row posts.db, `other` (posts.db with 100 rows,
/// a.txt changed), dbguard installed, then posts.db grown to 90,000 rows.
fn tracked_database_grown_after_install() -> TestRepo {
    let repo = TestRepo::with_posts_on_main_and_other();
    let install = repo.dbguard(["install"]).ok();
    assert!(
        install.stderr.contains("core.fsmonitor"),
        "{}",
        install.stderr
    );
    // The fsmonitor hook alone guards every test built on this repository: the hooks
    // whose only job is its fallback are not there.
    for hook in ["reference-transaction", "pre-rebase"] {
        assert!(!repo.root.join(".git/hooks").join(hook).exists(), "{hook}");
    }
    let conn = rusqlite::Connection::open(repo.root.join("posts.db")).unwrap();
    add_posts(&conn, 85_000, 8);
    drop(conn);
    repo
}

#[test]
fn install_names_the_hook_and_uninstall_puts_back_exactly_what_was_there() {
    let repo = TestRepo::new();
    repo.dbguard(["install"]).ok();
    let value = repo.git(["config", "--local", "core.fsmonitor"]);
    assert!(value.trim().ends_with("/dbguard-fsmonitor"), "{value}");
    assert_eq!(
        repo.git(["config", "core.fsmonitorHookVersion"]).trim(),
        "2"
    );
    let status = repo.dbguard(["install", "--status"]).ok();
    assert!(
        status.stdout.contains("core.fsmonitor") && status.stdout.contains("installed"),
        "{}",
        status.stdout
    );
    repo.dbguard(["uninstall"]).ok();
    let config = fs::read_to_string(repo.root.join(".git/config")).unwrap();
    assert!(!config.contains("fsmonitor"), "{config}");

    // An explicit `false` comes back as `false`.
    repo.git(["config", "core.fsmonitor", "false"]);
    repo.dbguard(["install"]).ok();
    repo.dbguard(["uninstall"]).ok();
    assert_eq!(
        repo.git(["config", "--local", "core.fsmonitor"]).trim(),
        "false"
    );
    let no = repo.dbguard(["install", "--no-fsmonitor"]).ok();
    assert!(!no.stderr.contains("core.fsmonitor"), "{}", no.stderr);
    assert_eq!(
        repo.git(["config", "--local", "core.fsmonitor"]).trim(),
        "false"
    );
}

#[test]
fn plain_reset_hard_after_fetch_is_snapshotted_before_it_writes() {
    let repo = tracked_database_grown_after_install();
    let (_, clone) = repo.remote_and_clone();
    // The same accident in a collaborator's clone: install, grow, fetch, reset.
    let collaborator = TestRepo {
        tmp: tempfile::tempdir().unwrap(),
        root: clone.clone(),
        home: repo.home.clone(),
    };
    collaborator.dbguard(["install"]).ok();
    let conn = rusqlite::Connection::open(clone.join("posts.db")).unwrap();
    add_posts(&conn, 85_000, 8);
    drop(conn);
    plain(&collaborator, &clone, &["fetch", "-q"]);
    let reset = plain(&collaborator, &clone, &["reset", "--hard", "origin/main"]);
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    assert_eq!(sqlite_count(&clone.join("posts.db"), "posts"), 5000);
    assert!(
        reset.stderr.contains("posts.db: 90,000 rows"),
        "{}",
        reset.stderr
    );
    let log = collaborator.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log[0]["tables"]["posts"], 90_000);
    assert_eq!(log[0]["operation"]["argv"][0], "git");
    assert_eq!(log[0]["operation"]["argv"][1], "reset");
    assert_eq!(restore_rows(&collaborator, "posts.db"), 90_000);
    // The TestRepo above does not own the clone's directory.
    drop(collaborator);
}

#[test]
fn every_plain_command_that_overwrites_a_tracked_database_is_snapshotted_first() {
    let cases: &[&[&[&str]]] = &[
        &[&["checkout", "--", "posts.db"]],
        &[&["restore", "posts.db"]],
        &[&["checkout", "-f", "other"]],
        &[&["stash"], &["stash", "drop"]],
        &[&["rm", "-q", "-f", "posts.db"]],
    ];
    for commands in cases {
        let repo = tracked_database_grown_after_install();
        for args in *commands {
            let run = plain(&repo, &repo.root, args);
            assert_eq!(run.code, 0, "git {args:?}: {}", run.stderr);
        }
        let now = repo.root.join("posts.db");
        assert!(
            !now.exists() || sqlite_count(&now, "posts") != 90_000,
            "{commands:?}"
        );
        assert_eq!(
            restore_rows(&repo, "posts.db"),
            90_000,
            "after git {commands:?}"
        );
    }
}

#[test]
fn plain_stash_takes_one_snapshot_labelled_with_the_command() {
    let repo = tracked_database_grown_after_install();
    let before = snapshot_count(&repo);
    let stash = plain(&repo, &repo.root, &["stash"]);
    assert_eq!(stash.code, 0, "{}", stash.stderr);
    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log.as_array().unwrap().len(), before + 1, "{log:#}");
    assert_eq!(
        log[0]["operation"]["argv"],
        serde_json::json!(["git", "stash"])
    );
}

#[test]
fn plain_clean_fdx_keeps_an_ignored_and_an_untracked_database_it_deletes() {
    let repo = TestRepo::new();
    fs::create_dir_all(repo.root.join("data")).unwrap();
    fs::write(repo.root.join(".gitignore"), "data/crawl.db\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore"]);
    make_posts_db(&repo.root.join("data/crawl.db"), 1000, 8);
    repo.dbguard(["install"]).ok();
    let conn = rusqlite::Connection::open(repo.root.join("data/crawl.db")).unwrap();
    add_posts(&conn, 39_000, 8);
    drop(conn);
    make_posts_db(&repo.root.join("scratch.db"), 700, 8);

    let clean = plain(&repo, &repo.root, &["clean", "-fdx", "-q"]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    assert!(!repo.root.join("data/crawl.db").exists());
    assert!(!repo.root.join("scratch.db").exists());
    assert_eq!(restore_rows(&repo, "data/crawl.db"), 40_000);
    assert_eq!(restore_rows(&repo, "scratch.db"), 700);
}

/// `git worktree remove` deletes a worktree that git finds clean, ignored files and all:
/// its status check of that worktree runs the hook, which saves them first.
#[test]
fn plain_worktree_remove_keeps_the_ignored_databases_it_deletes() {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "*.db\n.venv/\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore"]);
    repo.dbguard(["install"]).ok();
    let linked = repo.path("linked");
    let linked_arg = linked.to_str().unwrap();
    repo.git(["worktree", "add", "-q", linked_arg]);
    make_posts_db(&linked.join("crawl.db"), 1500, 8);
    fs::create_dir_all(linked.join(".venv")).unwrap();
    make_posts_db(&linked.join(".venv/cache.db"), 30, 8);

    let removed = plain(&repo, &repo.root, &["worktree", "remove", linked_arg]);
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    assert!(!linked.exists(), "git removed the worktree");
    assert!(
        removed.stderr.contains("snapshotting its databases"),
        "{}",
        removed.stderr
    );
    // From the main worktree, as the message says: find them, bring the rows back.
    for (path, rows) in [("crawl.db", 1500), (".venv/cache.db", 30)] {
        let restored = repo.restore_from_any_worktree(path);
        assert_eq!(restored, (rows, linked_arg.to_string()), "{path}");
    }

    // Read-only gits and a worktree without a database stay quiet.
    repo.git(["worktree", "add", "-q", linked_arg]);
    let removed = plain(&repo, &repo.root, &["worktree", "remove", linked_arg]);
    assert_eq!((removed.code, removed.stderr.as_str()), (0, ""));
}

#[test]
fn plain_pull_that_tracks_an_ignored_database_snapshots_before_the_merge_writes() {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "posts.db\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore"]);
    let (_, clone) = repo.remote_and_clone();
    let collaborator = TestRepo {
        tmp: tempfile::tempdir().unwrap(),
        root: clone.clone(),
        home: repo.home.clone(),
    };
    make_posts_db(&clone.join("posts.db"), 1000, 8);
    collaborator.dbguard(["install"]).ok();
    assert!(!clone.join(".git/hooks/reference-transaction").exists());
    let conn = rusqlite::Connection::open(clone.join("posts.db")).unwrap();
    add_posts(&conn, 49_000, 8);
    drop(conn);
    // Upstream starts tracking a small posts.db.
    make_posts_db(&repo.root.join("posts.db"), 10, 8);
    repo.git(["add", "-f", "posts.db"]);
    repo.git(["commit", "-q", "-m", "track a sample"]);
    repo.git(["push", "-q", "../remote.git", "main"]);

    let pull = plain(&collaborator, &clone, &["pull", "-q", "--no-rebase"]);
    assert_eq!(pull.code, 0, "{}", pull.stderr);
    assert_eq!(sqlite_count(&clone.join("posts.db"), "posts"), 10);
    let log = collaborator.dbguard(["log", "--json"]).ok().json();
    let saved = log
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["tables"]["posts"] == 50_000)
        .unwrap_or_else(|| panic!("no 50,000-row snapshot: {log:#}"));
    assert_eq!(saved["operation"]["argv"][1], "pull", "{saved:#}");
    assert_eq!(restore_rows(&collaborator, "posts.db"), 50_000);
    drop(collaborator);
}

#[test]
fn read_only_commands_take_no_snapshot_while_a_writer_changes_the_database() {
    let repo = tracked_database_grown_after_install();
    let before = snapshot_count(&repo);
    let db = repo.root.join("posts.db");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(db).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                add_posts(&conn, 10, 8);
            }
        })
    };
    for _ in 0..20 {
        assert_eq!(plain(&repo, &repo.root, &["status", "--porcelain"]).code, 0);
        assert_eq!(plain(&repo, &repo.root, &["diff", "--stat"]).code, 0);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(snapshot_count(&repo), before);
}

#[test]
fn the_answer_keeps_git_right_about_modified_and_untracked_files() {
    for untracked_cache in ["false", "true"] {
        let repo = tracked_database_grown_after_install();
        repo.git(["config", "core.untrackedCache", untracked_cache]);
        // Prime the index with the hook's token.
        plain(&repo, &repo.root, &["status"]);
        plain(&repo, &repo.root, &["status"]);
        fs::write(repo.root.join("a.txt"), "edited locally, a longer line\n").unwrap();
        fs::write(repo.root.join("new.txt"), "untracked\n").unwrap();
        let status = plain(&repo, &repo.root, &["status", "--porcelain"]);
        assert!(status.stdout.contains(" M a.txt"), "{}", status.stdout);
        assert!(status.stdout.contains("?? new.txt"), "{}", status.stdout);
        let checkout = plain(&repo, &repo.root, &["checkout", "other"]);
        assert_eq!(
            checkout.code, 1,
            "git refuses as it does alone: {}",
            checkout.stderr
        );
        assert!(checkout.stderr.contains("a.txt"), "{}", checkout.stderr);
        assert_eq!(
            fs::read_to_string(repo.root.join("a.txt")).unwrap(),
            "edited locally, a longer line\n"
        );
    }
}

#[test]
fn a_previous_fsmonitor_hook_keeps_answering_and_comes_back_on_uninstall() {
    use std::os::unix::fs::PermissionsExt as _;
    let repo = TestRepo::new();
    let hook = repo.path("previous-hook");
    let calls = repo.path("previous-calls");
    fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nprintf 'prev-token\\0/\\0'\n",
            calls.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    repo.git(["config", "core.fsmonitor", hook.to_str().unwrap()]);
    let install = repo.dbguard(["install"]).ok();
    assert!(
        install.stderr.contains("previous-hook"),
        "{}",
        install.stderr
    );
    plain(&repo, &repo.root, &["status"]);
    plain(&repo, &repo.root, &["status"]);
    let seen = fs::read_to_string(&calls).unwrap();
    // Its token reached git and came back to it on the next call.
    assert!(seen.lines().any(|l| l == "2 prev-token"), "{seen}");
    repo.dbguard(["uninstall"]).ok();
    assert_eq!(
        repo.git(["config", "--local", "core.fsmonitor"]).trim(),
        hook.to_str().unwrap()
    );
    assert!(!repo.root.join(".git/dbguard-fsmonitor-previous").exists());
}

#[test]
fn stdin_stays_git_s() {
    let repo = tracked_database_grown_after_install();
    fs::write(repo.root.join("x.txt"), "x\n").unwrap();
    fs::write(repo.root.join("y.txt"), "y\n").unwrap();
    let feed = |args: &[&str], input: &str| {
        use std::io::Write as _;
        let mut child = repo
            .command("git", &repo.root)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Run::from(child.wait_with_output().unwrap())
    };
    assert_eq!(
        feed(&["update-index", "--add", "--stdin"], "x.txt\n").code,
        0
    );
    assert_eq!(feed(&["add", "--pathspec-from-file=-"], "y.txt\n").code, 0);
    let staged = repo.git(["diff", "--cached", "--name-only"]);
    assert_eq!(staged.lines().collect::<Vec<_>>(), ["x.txt", "y.txt"]);
    make_posts_db(&repo.root.join("scratch.db"), 300, 8);
    let stash = feed(&["stash", "-u"], "");
    assert_eq!(stash.code, 0, "{}", stash.stderr);
    assert!(!repo.root.join("scratch.db").exists());
    repo.git(["stash", "pop", "-q"]);
    assert_eq!(sqlite_count(&repo.root.join("scratch.db"), "posts"), 300);
    assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 90_000);
}

/// An editor's loop: run `git status` (without --no-optional-locks) whenever
/// `.git/index` changes; how many runs until the index stays put.
fn editor_runs_until_quiet(repo: &TestRepo) -> usize {
    let index = repo.root.join(".git/index");
    let stamp = || {
        let meta = fs::metadata(&index).unwrap();
        (
            meta.modified().unwrap(),
            std::os::unix::fs::MetadataExt::ino(&meta),
        )
    };
    let mut runs = 0;
    loop {
        let before = stamp();
        plain(repo, &repo.root, &["status", "--porcelain"]);
        runs += 1;
        if stamp() == before || runs == 12 {
            return runs;
        }
    }
}

#[test]
fn an_editor_that_watches_the_index_settles() {
    for untracked_cache in ["false", "true"] {
        let repo = tracked_database_grown_after_install();
        repo.git(["config", "core.untrackedCache", untracked_cache]);
        // git itself rewrites the index on every status while an entry's recorded mtime
        // is in the same second as the index file (racy-git), hook or not: start after.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let clean = editor_runs_until_quiet(&repo);
        fs::write(repo.root.join("a.txt"), "modified\n").unwrap();
        fs::write(repo.root.join("untracked.txt"), "new\n").unwrap();
        // The same racy-git second again: without it the count measures how many status
        // runs fit in the rest of that second (7 on a fast idle machine), not the hook.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let modified = editor_runs_until_quiet(&repo);
        assert!(
            clean <= 3 && modified <= 6,
            "untrackedCache={untracked_cache}: {clean} and {modified} status runs before the index stayed put"
        );
    }
}

#[test]
fn a_command_that_bypasses_the_hook_is_reported_with_what_was_never_saved() {
    let repo = tracked_database_grown_after_install();
    repo.dbguard(["snapshot"]).ok();
    let conn = rusqlite::Connection::open(repo.root.join("posts.db")).unwrap();
    add_posts(&conn, 10_000, 8);
    drop(conn);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let run = plain(
        &repo,
        &repo.root,
        &[
            "-c",
            "core.fsmonitor=false",
            "checkout",
            "-q",
            "-f",
            "other",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let err = &run.stderr;
    assert!(
        err.contains("posts.db lost rows: 90,000 before, 5,100 now"),
        "{err}"
    );
    assert!(
        err.contains("no snapshot of posts.db was taken right before `git -c core.fsmonitor=false checkout -q -f other`")
            && err.contains("rows written after that were never saved"),
        "{err}"
    );
}

/// Plain git with stderr on a terminal (`script` gives it one), as a person runs it.
fn on_a_terminal(repo: &TestRepo, line: &str) -> String {
    let run = Run::from(
        repo.command("script", &repo.root)
            .args(["-qec", line, "/dev/null"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{line}: {}{}", run.stdout, run.stderr);
    run.stdout
}

#[test]
fn the_next_git_command_says_once_that_git_lfs_replaced_the_hooks() {
    let repo = TestRepo::new();
    repo.git(["checkout", "-q", "-b", "other"]);
    repo.git(["checkout", "-q", "main"]);
    repo.dbguard(["install"]).ok();
    plain(&repo, &repo.root, &["lfs", "update", "--force"]);
    let first = on_a_terminal(&repo, "git checkout -q other");
    assert!(
        first.contains("git-lfs rewrote") && first.contains("dbguard install"),
        "{first}"
    );
    let second = on_a_terminal(&repo, "git checkout -q main");
    assert!(!second.contains("git-lfs rewrote"), "once: {second}");
    // Without a terminal (an editor's background status) it is not used up.
    repo.dbguard(["install"]).ok();
    plain(&repo, &repo.root, &["lfs", "update", "--force"]);
    let background = plain(&repo, &repo.root, &["status"]);
    assert!(
        !background.stderr.contains("rewrote"),
        "{}",
        background.stderr
    );
    let person = on_a_terminal(&repo, "git status");
    assert!(person.contains("git-lfs rewrote"), "{person}");
}

#[test]
fn a_plain_cherry_pick_over_an_ignored_database_is_snapshotted_first() {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "posts.db\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore"]);
    repo.git(["checkout", "-q", "-b", "sample"]);
    make_posts_db(&repo.root.join("posts.db"), 10, 8);
    repo.git(["add", "-f", "posts.db"]);
    repo.git(["commit", "-q", "-m", "sample"]);
    repo.git(["checkout", "-q", "main"]);
    make_posts_db(&repo.root.join("posts.db"), 3000, 8);
    repo.dbguard(["install"]).ok();
    add_posts(
        &rusqlite::Connection::open(repo.root.join("posts.db")).unwrap(),
        1000,
        8,
    );
    let pick = plain(&repo, &repo.root, &["cherry-pick", "sample"]);
    assert_eq!(pick.code, 0, "{}", pick.stderr);
    assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 10);
    assert!(
        pick.stderr
            .contains("dbguard does not plan `git cherry-pick`"),
        "{}",
        pick.stderr
    );
    assert_eq!(restore_rows(&repo, "posts.db"), 4000);
}

#[test]
fn the_builtin_daemon_setting_is_replaced_on_this_git_and_comes_back() {
    let repo = TestRepo::new();
    repo.git(["config", "core.fsmonitor", "true"]);
    let install = repo.dbguard(["install"]).ok();
    assert!(
        install.stderr.contains("replaced `true`"),
        "{}",
        install.stderr
    );
    let value = repo.git(["config", "--local", "core.fsmonitor"]);
    assert!(value.trim().ends_with("/dbguard-fsmonitor"), "{value}");
    repo.dbguard(["uninstall"]).ok();
    assert_eq!(
        repo.git(["config", "--local", "core.fsmonitor"]).trim(),
        "true"
    );
}

#[test]
fn the_guard_and_the_hook_never_snapshot_twice() {
    let repo = tracked_database_grown_after_install();
    let before = snapshot_count(&repo);
    repo.dbguard(["reset", "-q", "--hard"]).ok();
    assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 5000);
    assert_eq!(snapshot_count(&repo), before + 1);
    assert_eq!(restore_rows(&repo, "posts.db"), 90_000);
}
