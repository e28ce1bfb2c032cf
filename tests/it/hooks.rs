//! Installed hooks with plain git: the post-checkout comparison, the reference-transaction
//! snapshot before a pull's merge, pre-commit, and coexistence with existing hooks.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use dbguard::testing::*;

/// `git commit -q -m <message>` as a user types it, hooks and all.
fn plain_commit(repo: &TestRepo, message: &str) -> Run {
    Run::from(
        repo.command("git", &repo.root)
            .args(["commit", "-q", "-m", message])
            .output()
            .unwrap(),
    )
}

fn hook_path(repo: &TestRepo, name: &str) -> std::path::PathBuf {
    repo.root.join(".git/hooks").join(name)
}

#[test]
fn plain_checkout_over_an_ignored_900k_database_reports_the_shrink() {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "posts.db\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore"]);
    repo.git(["checkout", "-q", "-b", "sample"]);
    make_posts_db(&repo.root.join("posts.db"), 5000, 8);
    repo.git(["add", "-f", "posts.db"]);
    repo.git(["commit", "-q", "-m", "sample data"]);
    repo.git(["checkout", "-q", "main"]);
    make_posts_db(&repo.root.join("posts.db"), 900_000, 8);

    let install = repo.dbguard(["install"]).ok();
    assert!(
        install.stderr.contains("post-checkout"),
        "{}",
        install.stderr
    );
    let baseline = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(baseline[0]["tables"]["posts"], 900_000);

    // Plain git, as people type it: git itself says nothing about the database.
    let checkout = Run::from(
        repo.command("git", &repo.root)
            .args(["checkout", "sample"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        checkout.code, 0,
        "hooks never break git: {}",
        checkout.stderr
    );
    assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 5000);
    // core.fsmonitor snapshotted it right before git wrote: unchanged since install,
    // the checkout refers to the install's snapshot.
    let log = repo.dbguard(["log", "--json"]).ok().json();
    let checkout_argv = serde_json::json!(["git", "checkout", "sample"]);
    let before = log
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            let seen_before = s["operation"]["argv"] == checkout_argv
                || s["unchanged"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["operation"]["argv"] == checkout_argv);
            seen_before && s["tables"]["posts"] == 900_000
        })
        .unwrap_or_else(|| panic!("no snapshot before the checkout: {log:#}"));
    assert_eq!(before["tables"]["posts"], 900_000);
    let id = before["id"].as_i64().unwrap();
    let err = &checkout.stderr;
    assert!(!err.contains("never saved"), "{err}");
    assert!(err.contains("dbguard: posts.db lost rows"), "{err}");
    assert!(err.contains("900,000") && err.contains("5,000"), "{err}");
    assert!(
        err.contains(&format!("dbguard restore posts.db --from {id}")),
        "{err}"
    );

    // The printed command works.
    repo.dbguard(["restore", "posts.db", "--from", &id.to_string()])
        .ok();
    assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 900_000);
}

#[test]
fn plain_pull_is_snapshotted_by_reference_transaction_before_the_merge() {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "posts.db\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore"]);
    let (remote, clone) = repo.remote_and_clone();
    make_posts_db(&clone.join("posts.db"), 1000, 8);
    // The fallback when core.fsmonitor is not dbguard's (tests/it/fsmonitor.rs: when it is).
    repo.dbguard_in(&clone, ["install", "--no-fsmonitor"]).ok();
    // The crawler keeps going after the baseline: 20,000 rows by the time of the pull.
    add_posts(
        &rusqlite::Connection::open(clone.join("posts.db")).unwrap(),
        19_000,
        8,
    );

    make_posts_db(&repo.root.join("posts.db"), 5000, 8);
    repo.git(["add", "-f", "posts.db"]);
    repo.git(["commit", "-q", "-m", "sample"]);
    repo.git(["push", "-q", remote.to_str().unwrap(), "HEAD:main"]);

    let pull = Run::from(
        repo.command("git", &clone)
            .args(["pull", "--no-rebase"])
            .output()
            .unwrap(),
    );
    assert_eq!(pull.code, 0, "{}", pull.stderr);
    assert_eq!(sqlite_count(&clone.join("posts.db"), "posts"), 5000);
    let log = repo.dbguard_in(&clone, ["log", "--json"]).ok().json();
    // Taken in the `prepared` state of the fetch's ref update (and again, unchanged,
    // before ORIG_HEAD), i.e. before the merge wrote the file.
    let labels: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["tables"]["posts"] == 20_000)
        .map(|s| s["operation"]["argv"][0].as_str().unwrap())
        .collect();
    assert!(
        labels
            .iter()
            .any(|l| l.contains("before updating refs/remotes/origin/main")),
        "no snapshot of the 20,000 rows before the fetch's ref update: {labels:?}"
    );
    assert!(
        pull.stderr.contains("20,000"),
        "the post-merge hook reports: {}",
        pull.stderr
    );
}

#[test]
fn existing_hooks_keep_running_after_install_and_uninstall() {
    let repo = TestRepo::new();
    let marker = repo.path("marker");
    let own = format!(
        "#!/bin/sh\necho \"own hook $*\" >> '{}'\n",
        marker.display()
    );
    fs::write(hook_path(&repo, "post-checkout"), &own).unwrap();
    fs::set_permissions(
        hook_path(&repo, "post-checkout"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    make_posts_db(&repo.root.join("a.db"), 10, 8);

    repo.dbguard(["install"]).ok();
    let status = repo.dbguard(["install", "--status"]).ok();
    assert!(
        status.stdout.contains("post-checkout") && status.stdout.contains("installed"),
        "{}",
        status.stdout
    );
    repo.git(["checkout", "-q", "-b", "x"]);
    assert_eq!(fs::read_to_string(&marker).unwrap().lines().count(), 1);

    // Reinstalling is idempotent: one block, the user's lines intact.
    repo.dbguard(["install"]).ok();
    let text = fs::read_to_string(hook_path(&repo, "post-checkout")).unwrap();
    assert_eq!(text.matches(">>> dbguard >>>").count(), 1);
    assert!(text.contains("own hook"));

    repo.dbguard(["uninstall"]).ok();
    assert_eq!(
        fs::read_to_string(hook_path(&repo, "post-checkout")).unwrap(),
        own
    );
    assert!(
        !hook_path(&repo, "post-merge").exists(),
        "files dbguard created are removed"
    );
    repo.git(["checkout", "-q", "main"]);
    assert_eq!(fs::read_to_string(&marker).unwrap().lines().count(), 2);
}

#[test]
fn hooks_are_silent_when_no_database_is_involved() {
    let repo = TestRepo::new();
    repo.dbguard(["install"]).ok();
    fs::write(repo.root.join("file.txt"), "x").unwrap();
    repo.git(["add", "file.txt"]);
    let commit = plain_commit(&repo, "text");
    assert_eq!((commit.code, commit.stderr.as_str()), (0, ""));
    let checkout = Run::from(
        repo.command("git", &repo.root)
            .args(["checkout", "-q", "-b", "b"])
            .output()
            .unwrap(),
    );
    assert_eq!((checkout.code, checkout.stderr.as_str()), (0, ""));
}

#[test]
fn pre_commit_refuses_a_database_unless_configured() {
    let repo = TestRepo::new();
    repo.dbguard(["install"]).ok();
    make_posts_db(&repo.root.join("data.db"), 10, 8);
    repo.git(["add", "data.db"]);
    let refused = plain_commit(&repo, "db");
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("data.db"), "{}", refused.stderr);
    assert!(refused.stderr.contains("--no-verify"), "{}", refused.stderr);
    repo.git(["config", "dbguard.precommit", "warn"]);
    let warned = plain_commit(&repo, "db");
    assert_eq!(warned.code, 0, "{}", warned.stderr);
    assert!(warned.stderr.contains("warning"), "{}", warned.stderr);
}

/// git's diff detects renames by default: a tracked database moved and changed in the
/// index is one renamed entry (`R`), not an added one, and it must be refused all the
/// same; so must a file that replaces a symlink (`T`).
#[test]
fn pre_commit_refuses_a_database_moved_or_put_in_a_symlinks_place() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("data.db"), 200, 8);
    std::os::unix::fs::symlink("README", repo.root.join("link.db")).unwrap();
    repo.git(["add", "data.db", "link.db"]);
    repo.git(["commit", "-q", "-m", "tracked before dbguard"]);
    repo.dbguard(["install"]).ok();

    repo.git(["mv", "data.db", "posts.db"]);
    let conn = rusqlite::Connection::open(repo.root.join("posts.db")).unwrap();
    add_posts(&conn, 5, 8);
    drop(conn);
    repo.git(["add", "posts.db"]);
    let status = repo.git(["status", "--porcelain"]);
    assert!(status.contains("R  data.db -> posts.db"), "{status}");
    let refused = plain_commit(&repo, "move the db");
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert!(refused.stderr.contains("posts.db"), "{}", refused.stderr);
    repo.git(["commit", "-q", "--no-verify", "-m", "moved on purpose"]);

    fs::remove_file(repo.root.join("link.db")).unwrap();
    make_posts_db(&repo.root.join("link.db"), 10, 8);
    repo.git(["add", "link.db"]);
    let refused = plain_commit(&repo, "symlink became a db");
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert!(refused.stderr.contains("link.db"), "{}", refused.stderr);

    // The other way round is no database committed: a symlink stores the path it
    // points to.
    repo.git(["rm", "-q", "--cached", "link.db"]);
    fs::rename(repo.root.join("link.db"), repo.root.join("local.db")).unwrap();
    std::os::unix::fs::symlink("local.db", repo.root.join("link.db")).unwrap();
    repo.git(["add", "link.db"]);
    let committed = plain_commit(&repo, "link to a local database");
    assert_eq!(committed.code, 0, "{}", committed.stderr);
}

#[test]
fn untrack_snapshots_removes_from_the_index_and_ignores() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 77, 8);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "track"]);
    let run = repo.dbguard(["untrack", "posts.db"]).ok();
    assert!(run.stderr.contains("collaborators"), "{}", run.stderr);
    assert_eq!(repo.git(["ls-files", "posts.db"]).trim(), "");
    assert!(
        fs::read_to_string(repo.root.join(".gitignore"))
            .unwrap()
            .contains("/posts.db")
    );
    assert_eq!(
        repo.dbguard(["log", "--json"]).ok().json()[0]["tables"]["posts"],
        77
    );
    assert!(repo.root.join("posts.db").exists());
}

#[test]
fn core_hooks_path_and_linked_worktree() {
    let repo = TestRepo::new();
    repo.git(["config", "core.hooksPath", ".githooks"]);
    repo.dbguard(["install"]).ok();
    assert!(repo.root.join(".githooks/post-checkout").exists());
    let run = repo.dbguard(["install"]).ok();
    assert!(run.stderr.contains("outside .git"), "{}", run.stderr);

    let linked = repo.path("linked");
    repo.git([
        "worktree",
        "add",
        "-q",
        linked.to_str().unwrap(),
        "-b",
        "wt",
    ]);
    make_posts_db(&linked.join("w.db"), 9, 8);
    let report = repo.dbguard_in(&linked, ["snapshot", "--json"]).ok().json();
    assert_eq!(report[0]["rows"], 9);
    // One store for all worktrees, in the common dir; each worktree sees its own.
    assert!(repo.store().join("catalog.db").exists());
    let main_log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(main_log, serde_json::json!([]));

    // A relative hooksPath is per worktree: installed from the linked one, it is no
    // "core.hooksPath now points elsewhere" in either.
    repo.dbguard_in(&linked, ["install"]).ok();
    assert!(linked.join(".githooks/post-checkout").exists());
    for dir in [&linked, &repo.root] {
        let status = repo.dbguard_in(dir, ["install", "--status"]).ok();
        assert!(
            !status.stderr.contains("core.hooksPath"),
            "{}",
            status.stderr
        );
    }
}

/// Plain `git <args>` in the repository, as a user types it (hooks run, stdin closed).
fn plain_git(repo: &TestRepo, args: &[&str]) -> Run {
    let run = Run::from(repo.command("git", &repo.root).args(args).output().unwrap());
    assert_eq!(run.code, 0, "hooks never break git: {}", run.stderr);
    run
}

fn mtime(path: &std::path::Path) -> std::time::SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn hooks_decide_in_sh_until_a_watched_database_changes() {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "posts.db\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore"]);
    repo.git(["checkout", "-q", "-b", "sample"]);
    make_posts_db(&repo.root.join("posts.db"), 50, 8);
    repo.git(["add", "-f", "posts.db"]);
    repo.git(["commit", "-q", "-m", "sample data"]);
    repo.git(["checkout", "-q", "main"]);
    repo.git(["checkout", "-q", "-b", "other"]);
    fs::write(repo.root.join("notes.txt"), "unrelated\n").unwrap();
    repo.git(["add", "notes.txt"]);
    repo.git(["commit", "-q", "-m", "notes"]);
    repo.git(["checkout", "-q", "main"]);
    // The crawler's database, last written a while ago (two seconds do here: the watch
    // file is stamped a second before dbguard's look, so younger files keep starting it).
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 2000, 8);
    let settle = || std::thread::sleep(std::time::Duration::from_millis(2100));
    settle();
    repo.dbguard(["install"]).ok();

    // Once the catalog written by install has settled too, a hook run by git that finds
    // nothing writes the watch file, listing the catalog and the database.
    settle();
    plain_git(&repo, &["checkout", "-q", "other"]);
    let watch = repo.root.join(".git/dbguard-watch");
    let listed = fs::read_to_string(&watch).unwrap();
    let canonical = repo.root.canonicalize().unwrap();
    assert!(
        listed.starts_with("dbguard-watch 2\n")
            && listed.contains(&format!("{}\n", canonical.join("posts.db").display()))
            && listed.contains("/dbguard/catalog.db\n")
            && listed.contains(&format!("{}\n", canonical.join(".git/config").display())),
        "{listed}"
    );

    // A dbguard run now would stamp the file a second later: it stays as it was because
    // the shims decided in sh, and git says nothing.
    let stamp = mtime(&watch);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for branch in ["main", "other", "main"] {
        let run = plain_git(&repo, &["checkout", "-q", branch]);
        assert_eq!(run.stderr, "");
    }
    assert_eq!(mtime(&watch), stamp, "dbguard was started");

    // git overwrites the watched, ignored database: dbguard starts and reports.
    let checkout = plain_git(&repo, &["checkout", "-q", "sample"]);
    assert!(
        checkout
            .stderr
            .contains("posts.db lost rows: 2,000 before, 50 now"),
        "{}",
        checkout.stderr
    );
    // It re-snapshotted the file git had just written: too fresh to vouch for, so the
    // watch file is gone until a later hook finds it settled.
    assert!(!watch.exists() || mtime(&watch) != stamp);

    // Leaving the branch that tracks it deletes the file: reported once, not on every
    // later checkout.
    let leave = plain_git(&repo, &["checkout", "-q", "main"]);
    assert!(
        leave.stderr.contains("posts.db is gone"),
        "{}",
        leave.stderr
    );
    assert!(!db.exists());
    for branch in ["other", "main"] {
        let run = plain_git(&repo, &["checkout", "-q", branch]);
        assert_eq!(run.stderr, "", "reported twice");
    }
}

#[test]
fn plain_checkout_after_a_restore_reports_the_restored_rows_lost() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 1000, 8);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "sample"]);
    // The post-checkout hook's own comparison (with core.fsmonitor the snapshot taken
    // right before the checkout is the one compared; tests/it/fsmonitor.rs).
    repo.dbguard(["install", "--no-fsmonitor"]).ok();
    add_posts(&rusqlite::Connection::open(&db).unwrap(), 2000, 8);
    let good = repo.dbguard(["snapshot", "--json"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    // git puts the committed 1,000 rows back; the hook reports it.
    let first = plain_git(&repo, &["checkout", "--", "posts.db"]);
    assert!(
        first
            .stderr
            .contains("posts.db lost rows: 3,000 before, 1,000 now"),
        "{}",
        first.stderr
    );
    let restored = repo
        .dbguard(["restore", "posts.db", "--from", &good.to_string(), "--json"])
        .ok()
        .json();
    assert_eq!(sqlite_count(&db, "posts"), 3000);
    let baseline = restored["baseline_snapshot_id"]
        .as_i64()
        .expect("a baseline snapshot");
    let log = repo.dbguard(["log", "posts.db"]).ok();
    assert!(
        log.stdout.contains(&format!("restored from #{good}")),
        "{}",
        log.stdout
    );

    // The same plain checkout again: the restored rows are what is lost now.
    let again = plain_git(&repo, &["checkout", "--", "posts.db"]);
    assert_eq!(sqlite_count(&db, "posts"), 1000);
    let err = &again.stderr;
    assert!(
        err.contains("posts.db lost rows: 3,000 before, 1,000 now"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "snapshot #{baseline} is the state restored from #{good}"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "to restore it: dbguard restore posts.db --from {baseline}"
        )),
        "{err}"
    );
    // The offered command brings the restored rows back.
    repo.dbguard(["restore", "posts.db", "--from", &baseline.to_string()])
        .ok();
    assert_eq!(sqlite_count(&db, "posts"), 3000);
    assert_eq!(quick_check(&db), "ok");
}

/// The line of `install --status` for `hook`.
fn status_line(repo: &TestRepo, hook: &str) -> String {
    let status = repo.dbguard(["install", "--status"]).ok().stdout;
    status
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{hook} ")))
        .unwrap_or_else(|| panic!("no {hook} in:\n{status}"))
        .to_string()
}

#[test]
fn git_lfs_update_force_shows_in_install_status_and_install_again_runs_both() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(real_lfs) = std::env::split_paths(&path)
        .map(|dir| dir.join("git-lfs"))
        .find(|p| p.is_file())
    else {
        assert!(
            std::env::var_os("DBGUARD_REQUIRE_PEERS").is_none(),
            "git-lfs is not installed"
        );
        eprintln!("note: git-lfs is not installed; skipping");
        return;
    };
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "posts.db\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore"]);
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 2000, 8);
    repo.dbguard(["install"]).ok();

    // A git-lfs that logs each hook it serves, so the test sees that its lines ran.
    let bin = repo.path("lfs-bin");
    fs::create_dir_all(&bin).unwrap();
    let log = repo.path("lfs.log");
    let wrapper = bin.join("git-lfs");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real_lfs.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let with_lfs_log = |args: &[&str]| {
        let mut cmd = repo.command("git", &repo.root);
        let inherited = cmd
            .get_envs()
            .find(|(k, _)| *k == "PATH")
            .and_then(|(_, v)| v.map(|v| v.to_owned()))
            .unwrap();
        let path = std::env::join_paths(
            std::iter::once(bin.clone()).chain(std::env::split_paths(&inherited)),
        )
        .unwrap();
        Run::from(cmd.args(args).env("PATH", path).output().unwrap())
    };
    let lose_rows_and_checkout = |branch: &str| {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(
                "DELETE FROM posts WHERE id IN \
                 (SELECT id FROM posts ORDER BY id DESC LIMIT (SELECT count(*) / 2 FROM posts))",
                [],
            )
            .unwrap();
        let _ = fs::remove_file(&log);
        let run = with_lfs_log(&["checkout", "-q", "-b", branch]);
        assert_eq!(run.code, 0, "hooks never break git: {}", run.stderr);
        let lfs_ran = fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| l == "post-checkout");
        (lfs_ran, run.stderr.contains("dbguard: posts.db lost rows"))
    };

    repo.git(["lfs", "update", "--force"]);
    for hook in ["post-checkout", "post-merge"] {
        let line = status_line(&repo, hook);
        assert!(
            line.ends_with("replaced by git-lfs, without dbguard's block (run dbguard install)"),
            "{line}"
        );
    }
    assert!(status_line(&repo, "pre-commit").ends_with(" installed"));
    let status = repo.dbguard(["install", "--status"]).ok();
    assert!(
        status.stderr.contains(
            "warning: git-lfs rewrote .git/hooks/post-checkout and .git/hooks/post-merge without dbguard's block"
        ),
        "{}",
        status.stderr
    );
    // What the notice is about: git-lfs's hook runs, dbguard's comparison does not.
    assert_eq!(lose_rows_and_checkout("b1"), (true, false));

    repo.dbguard(["install"]).ok();
    for hook in ["post-checkout", "post-merge"] {
        assert!(status_line(&repo, hook).ends_with(" installed"));
    }
    let status = repo.dbguard(["install", "--status"]).ok();
    assert!(!status.stderr.contains("git-lfs"), "{}", status.stderr);
    assert_eq!(lose_rows_and_checkout("b2"), (true, true));
}

#[test]
fn install_with_core_fsmonitor_leaves_out_the_hooks_only_its_absence_needs() {
    let repo = TestRepo::new();
    // The user's own reference-transaction hook, which must keep running as it was.
    let own = "#!/bin/sh\n: own reference-transaction\n";
    fs::write(hook_path(&repo, "reference-transaction"), own).unwrap();
    fs::set_permissions(
        hook_path(&repo, "reference-transaction"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    repo.dbguard(["install", "--no-fsmonitor"]).ok();
    assert!(
        fs::read_to_string(hook_path(&repo, "reference-transaction"))
            .unwrap()
            .contains(">>> dbguard >>>")
    );
    assert!(hook_path(&repo, "pre-rebase").exists());

    // With core.fsmonitor they would return at once: re-install takes the blocks out.
    let install = repo.dbguard(["install"]).ok();
    assert!(
        install.stderr.contains("pre-rebase")
            && install
                .stderr
                .contains("not needed: core.fsmonitor snapshots before git writes"),
        "{}",
        install.stderr
    );
    assert_eq!(
        fs::read_to_string(hook_path(&repo, "reference-transaction")).unwrap(),
        own
    );
    assert!(!hook_path(&repo, "pre-rebase").exists());
    assert!(hook_path(&repo, "post-checkout").exists());
    assert!(hook_path(&repo, "pre-commit").exists());
    let status = repo.dbguard(["install", "--status"]).ok();
    let line = |hook: &str| {
        status
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(hook))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("reference-transaction").contains("not needed"),
        "{}",
        status.stdout
    );
    // Without dbguard's core.fsmonitor the same hook is missing, and --status says so.
    repo.git(["config", "--unset", "core.fsmonitor"]);
    let status = repo.dbguard(["install", "--status"]).ok();
    let line = status
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("pre-rebase"))
        .unwrap_or_default();
    assert!(line.contains("not installed"), "{}", status.stdout);
}

#[test]
fn core_fsmonitor_taken_away_brings_the_fallback_hooks_back_and_says_so() {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), "posts.db\n").unwrap();
    repo.git(["add", ".gitignore"]);
    repo.git(["commit", "-q", "-m", "ignore"]);
    let (remote, clone) = repo.remote_and_clone();
    make_posts_db(&clone.join("posts.db"), 1000, 8);
    repo.dbguard_in(&clone, ["install"]).ok();
    let hooks = clone.join(".git/hooks");
    assert!(!hooks.join("reference-transaction").exists());
    let plain_in_clone = |args: &[&str]| {
        let run = Run::from(repo.command("git", &clone).args(args).output().unwrap());
        assert_eq!(run.code, 0, "hooks never break git: {}", run.stderr);
        run
    };

    // Another tool (or a hand) unsets core.fsmonitor; the next commit's pre-commit hook
    // notices, puts the fallback hooks back and says so, once.
    repo.git_in(&clone, ["config", "--unset", "core.fsmonitor"]);
    fs::write(clone.join("notes.txt"), "n\n").unwrap();
    repo.git_in(&clone, ["add", "notes.txt"]);
    let commit = plain_in_clone(&["commit", "-q", "-m", "notes"]);
    assert!(
        commit
            .stderr
            .contains("core.fsmonitor no longer runs dbguard-fsmonitor (it is unset)")
            && commit.stderr.contains("reference-transaction")
            && commit.stderr.contains("dbguard install"),
        "{}",
        commit.stderr
    );
    for hook in ["reference-transaction", "pre-rebase"] {
        assert!(
            fs::read_to_string(hooks.join(hook))
                .unwrap()
                .contains(">>> dbguard >>>"),
            "{hook}"
        );
    }
    let again = plain_in_clone(&["checkout", "-q", "-b", "side"]);
    assert_eq!(again.stderr, "", "said twice");
    plain_in_clone(&["checkout", "-q", "main"]);

    // So a plain pull that overwrites the grown database is still snapshotted before
    // the merge writes it, by the reference-transaction hook.
    add_posts(
        &rusqlite::Connection::open(clone.join("posts.db")).unwrap(),
        19_000,
        8,
    );
    make_posts_db(&repo.root.join("posts.db"), 10, 8);
    repo.git(["add", "-f", "posts.db"]);
    repo.git(["commit", "-q", "-m", "sample"]);
    repo.git(["push", "-q", remote.to_str().unwrap(), "HEAD:main"]);
    plain_in_clone(&["pull", "-q", "--no-rebase"]);
    assert_eq!(sqlite_count(&clone.join("posts.db"), "posts"), 10);
    repo.dbguard_in(&clone, ["restore", "posts.db"]).ok();
    assert_eq!(sqlite_count(&clone.join("posts.db"), "posts"), 20_000);

    // A checkout notices too (the post-* hooks' watch file lists the git config):
    // installed again, then core.fsmonitor set to false by hand.
    repo.dbguard_in(&clone, ["install"]).ok();
    assert!(!hooks.join("reference-transaction").exists());
    repo.git_in(&clone, ["config", "core.fsmonitor", "false"]);
    let checkout = plain_in_clone(&["checkout", "-q", "-b", "side2"]);
    assert!(
        checkout
            .stderr
            .contains("core.fsmonitor no longer runs dbguard-fsmonitor (it is `false`)"),
        "{}",
        checkout.stderr
    );
    assert!(hooks.join("reference-transaction").exists());

    // A one-off `git -c core.fsmonitor=false …` changes nothing in the hooks.
    repo.dbguard_in(&clone, ["install"]).ok();
    let bypass = plain_in_clone(&[
        "-c",
        "core.fsmonitor=false",
        "checkout",
        "-q",
        "-b",
        "side3",
    ]);
    assert_eq!(bypass.stderr, "");
    assert!(!hooks.join("reference-transaction").exists());
}

#[test]
fn without_a_store_the_post_hooks_start_dbguard_only_once_one_is_made() {
    let repo = TestRepo::new();
    repo.git(["branch", "other"]);
    repo.dbguard(["install"]).ok();
    // No database: install took no baseline, so there is nothing to compare with.
    assert!(!repo.store().join("catalog.db").exists());
    std::thread::sleep(std::time::Duration::from_millis(2100));
    plain_git(&repo, &["checkout", "-q", "other"]);
    let watch = repo.root.join(".git/dbguard-watch");
    let listed = fs::read_to_string(&watch).unwrap();
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with('?') && line.ends_with("/dbguard/catalog.db")),
        "{listed}"
    );
    let stamp = mtime(&watch);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for branch in ["main", "other", "main"] {
        assert_eq!(plain_git(&repo, &["checkout", "-q", branch]).stderr, "");
    }
    assert_eq!(mtime(&watch), stamp, "dbguard was started");

    // The first snapshot makes the store: the next hook starts dbguard again.
    make_posts_db(&repo.root.join("a.db"), 10, 8);
    repo.dbguard(["snapshot"]).ok();
    plain_git(&repo, &["checkout", "-q", "other"]);
    assert!(
        !watch.exists() || mtime(&watch) != stamp,
        "the post-checkout hook did not start dbguard"
    );
}

#[test]
fn pre_commit_starts_dbguard_only_for_a_staged_file_that_may_be_a_database() {
    let repo = TestRepo::new();
    repo.dbguard(["install"]).ok();
    // A `dbguard` first on PATH that notes each start, then runs the real one.
    let shadow = repo.path("shadow");
    fs::create_dir_all(&shadow).unwrap();
    let starts = repo.path("starts");
    let real = dbguard_bin();
    fs::write(
        shadow.join("dbguard"),
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            starts.display(),
            real.display()
        ),
    )
    .unwrap();
    fs::set_permissions(shadow.join("dbguard"), fs::Permissions::from_mode(0o755)).unwrap();
    // Then dbguard-fsmonitor and git, as the hermetic PATH has them.
    let path = format!(
        "{}:{}:{}",
        shadow.display(),
        real.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let commit = |message: &str| {
        Run::from(
            repo.command("git", &repo.root)
                .env("PATH", &path)
                .args(["commit", "-q", "-m", message])
                .output()
                .unwrap(),
        )
    };
    // Let the watch file settle past the config written by install.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    plain_git(&repo, &["checkout", "-q", "-b", "side"]);
    let _ = fs::remove_file(&starts);

    // Text, and a small file with SQLite's header: nothing that can be a database.
    fs::write(repo.root.join("notes.txt"), vec![b'n'; 4096]).unwrap();
    fs::write(repo.root.join("tiny.db"), b"SQLite format 3\0").unwrap();
    repo.git(["add", "notes.txt", "tiny.db"]);
    let text = commit("text");
    assert_eq!((text.code, text.stderr.as_str()), (0, ""));
    assert!(!starts.exists(), "dbguard started for a text commit");

    // A real database staged: dbguard starts and refuses, as before.
    make_posts_db(&repo.root.join("data.db"), 10, 8);
    repo.git(["add", "data.db"]);
    let refused = commit("db");
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("data.db"), "{}", refused.stderr);
    assert!(
        fs::read_to_string(&starts)
            .unwrap()
            .contains("hook pre-commit")
    );
}
