//! Plain git as people type it, guarded by the installed hooks alone: from a
//! subdirectory and through `git -C`, inside `!` aliases that run several gits, behind
//! global options and a git called through a symlink, with a broken shared setting and
//! with dbguard's variables left in the environment.

use std::fs;
use std::path::Path;

use dbguard::testing::*;

/// Plain git in `dir`, as a user types it; the hooks run, nothing is asserted.
fn plain(repo: &TestRepo, dir: &Path, args: &[&str]) -> Run {
    Run::from(repo.command("git", dir).args(args).output().unwrap())
}

/// The snapshots of `path`, newest first: (the command they were taken for, rows).
fn snapshots_of(repo: &TestRepo, path: &str) -> Vec<(String, u64)> {
    let log = repo.dbguard(["log", "--json"]).ok().json();
    let Some(snapshots) = log.as_array() else {
        return Vec::new();
    };
    snapshots
        .iter()
        .filter(|s| s["path"] == path)
        .map(|s| {
            let argv: Vec<&str> = s["operation"]["argv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            (argv.join(" "), s["tables"]["posts"].as_u64().unwrap())
        })
        .collect()
}

/// Whether a snapshot of `path` with `rows` rows was taken for `command`.
fn saved_for(repo: &TestRepo, path: &str, command: &str, rows: u64) -> bool {
    snapshots_of(repo, path).contains(&(command.to_string(), rows))
}

/// A repository with data/posts.db committed at 5,000 rows, dbguard installed, then
/// posts.db grown to 90,000 rows and an untracked data/cache.db of 700 rows.
fn data_directory_at_risk() -> TestRepo {
    let repo = TestRepo::new();
    fs::create_dir_all(repo.root.join("data")).unwrap();
    make_posts_db(&repo.root.join("data/posts.db"), 5000, 8);
    repo.git(["add", "data/posts.db"]);
    repo.git(["commit", "-q", "-m", "seed"]);
    repo.dbguard(["install"]).ok();
    let conn = rusqlite::Connection::open(repo.root.join("data/posts.db")).unwrap();
    add_posts(&conn, 85_000, 8);
    drop(conn);
    make_posts_db(&repo.root.join("data/cache.db"), 700, 8);
    repo
}

/// Each command of a subdirectory user, run from `data/` with a relative path and from
/// the top with `git -C data`: the database it throws away was saved first.
#[test]
fn relative_paths_typed_in_a_subdirectory_are_planned_from_there() {
    let commands: &[(&[&str], &str, u64)] = &[
        (&["restore", "posts.db"], "data/posts.db", 90_000),
        (&["checkout", "--", "posts.db"], "data/posts.db", 90_000),
        (&["clean", "-f", "-q", "cache.db"], "data/cache.db", 700),
        (&["rm", "-q", "-f", "posts.db"], "data/posts.db", 90_000),
        (
            &["stash", "push", "-q", "--", "posts.db"],
            "data/posts.db",
            90_000,
        ),
    ];
    for (args, path, rows) in commands {
        for through_dash_c in [false, true] {
            let repo = data_directory_at_risk();
            let run = if through_dash_c {
                let mut with_c = vec!["-C", "data"];
                with_c.extend_from_slice(args);
                plain(&repo, &repo.root, &with_c)
            } else {
                plain(&repo, &repo.root.join("data"), args)
            };
            let how = if through_dash_c {
                "git -C data"
            } else {
                "cd data && git"
            };
            assert_eq!(run.code, 0, "{how} {args:?}: {}", run.stderr);
            let command = match through_dash_c {
                true => format!("git -C data {}", args.join(" ")),
                false => format!("git {}", args.join(" ")),
            };
            assert!(
                saved_for(&repo, path, &command, *rows),
                "{how} {args:?} did not save {path}: {:?}\n{}",
                snapshots_of(&repo, path),
                run.stderr
            );
            repo.dbguard(["restore", path]).ok();
            assert_eq!(
                sqlite_count(&repo.root.join(path), "posts"),
                *rows,
                "{how} {args:?}"
            );
        }
    }
}

/// `nuke = !git clean -fd && git reset --hard`: the reset is a git of its own, planned
/// although the clean before it (in the same alias) found something else to save.
#[test]
fn each_git_a_shell_alias_runs_is_planned_on_its_own() {
    let repo = data_directory_at_risk();
    repo.git([
        "config",
        "alias.nuke",
        "!git clean -fdq && git reset -q --hard",
    ]);
    let run = plain(&repo, &repo.root.join("data"), &["nuke"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!repo.root.join("data/cache.db").exists());
    assert_eq!(
        sqlite_count(&repo.root.join("data/posts.db"), "posts"),
        5000
    );
    // Each git is its own operation, named after itself.
    assert!(
        saved_for(&repo, "data/cache.db", "git clean -fdq", 700),
        "{:?}\n{}",
        snapshots_of(&repo, "data/cache.db"),
        run.stderr
    );
    assert!(
        saved_for(&repo, "data/posts.db", "git reset -q --hard", 90_000),
        "the reset in the alias was not planned: {:?}\n{}",
        snapshots_of(&repo, "data/posts.db"),
        run.stderr
    );
}

/// `up = !git stash && git pull && git stash pop`: the stash finds nothing to save, and
/// the pull after it, which replaces an ignored database, is still planned.
#[test]
fn a_pull_inside_a_shell_alias_is_planned_after_a_stash_that_saved_nothing() {
    let upstream = TestRepo::new();
    fs::write(upstream.root.join(".gitignore"), "posts.db\n").unwrap();
    fs::write(upstream.root.join("notes.txt"), "one\n").unwrap();
    upstream.git(["add", ".gitignore", "notes.txt"]);
    upstream.git(["commit", "-q", "-m", "ignore"]);
    let (_, clone) = upstream.remote_and_clone();
    let collaborator = TestRepo {
        tmp: tempfile::tempdir().unwrap(),
        root: clone.clone(),
        home: upstream.home.clone(),
    };
    make_posts_db(&clone.join("posts.db"), 1000, 8);
    collaborator.dbguard(["install"]).ok();
    let conn = rusqlite::Connection::open(clone.join("posts.db")).unwrap();
    add_posts(&conn, 49_000, 8);
    drop(conn);
    collaborator.git([
        "config",
        "alias.up",
        "!git stash -q && git pull -q --no-rebase && git stash pop -q",
    ]);
    // Something for the stash to take, so that its pop has work too.
    fs::write(clone.join("notes.txt"), "local edit\n").unwrap();
    make_posts_db(&upstream.root.join("posts.db"), 10, 8);
    upstream.git(["add", "-f", "posts.db"]);
    upstream.git(["commit", "-q", "-m", "track a sample"]);
    upstream.git(["push", "-q", "../remote.git", "main"]);

    let run = plain(&collaborator, &clone, &["up"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(sqlite_count(&clone.join("posts.db"), "posts"), 10);
    assert_eq!(
        fs::read_to_string(clone.join("notes.txt")).unwrap(),
        "local edit\n"
    );
    assert!(
        saved_for(&collaborator, "posts.db", "git pull -q --no-rebase", 50_000),
        "the pull in the alias was not planned: {:?}\n{}",
        snapshots_of(&collaborator, "posts.db"),
        run.stderr
    );
    drop(collaborator);
}

/// `git --attr-source <a branch named log> reset --hard`: the value of a global option is
/// no subcommand; and a git reached through a symlink named `g` is git.
#[test]
fn global_option_values_and_a_symlinked_git_are_seen_through() {
    let repo = data_directory_at_risk();
    repo.git(["branch", "log"]);
    let run = plain(
        &repo,
        &repo.root,
        &["--attr-source", "log", "reset", "-q", "--hard"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        saved_for(
            &repo,
            "data/posts.db",
            "git --attr-source log reset -q --hard",
            90_000
        ),
        "{:?}\n{}",
        snapshots_of(&repo, "data/posts.db"),
        run.stderr
    );

    let repo = data_directory_at_risk();
    let bin = repo.path("bin");
    fs::create_dir_all(&bin).unwrap();
    let git = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("git"))
        .find(|candidate| candidate.is_file())
        .expect("git on PATH");
    std::os::unix::fs::symlink(&git, bin.join("g")).unwrap();
    let run = Run::from(
        repo.command(bin.join("g"), &repo.root)
            .args(["reset", "-q", "--hard"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        saved_for(&repo, "data/posts.db", "git reset -q --hard", 90_000),
        "{:?}\n{}",
        snapshots_of(&repo, "data/posts.db"),
        run.stderr
    );
}

/// A `.dbguard.toml` with a typo arrives with a pull; the next `git reset --hard` is still
/// saved (with the default settings), and the problem is said once, not at every command.
#[test]
fn a_broken_shared_setting_arriving_by_pull_leaves_the_hook_on_and_is_said_once() {
    let upstream = TestRepo::new();
    make_posts_db(&upstream.root.join("posts.db"), 5000, 8);
    upstream.git(["add", "posts.db"]);
    upstream.git(["commit", "-q", "-m", "seed"]);
    let (_, clone) = upstream.remote_and_clone();
    let collaborator = TestRepo {
        tmp: tempfile::tempdir().unwrap(),
        root: clone.clone(),
        home: upstream.home.clone(),
    };
    collaborator.dbguard(["install"]).ok();
    // `exclude` is a list; a string is a typo dbguard cannot read.
    fs::write(
        upstream.root.join(".dbguard.toml"),
        "exclude = \"vendor\"\n",
    )
    .unwrap();
    upstream.git(["add", ".dbguard.toml"]);
    upstream.git(["commit", "-q", "-m", "settings"]);
    upstream.git(["push", "-q", "../remote.git", "main"]);

    let pull = plain(&collaborator, &clone, &["pull", "-q", "--no-rebase"]);
    assert_eq!(pull.code, 0, "{}", pull.stderr);
    assert!(clone.join(".dbguard.toml").exists());
    let conn = rusqlite::Connection::open(clone.join("posts.db")).unwrap();
    add_posts(&conn, 85_000, 8);
    drop(conn);
    let reset = plain(&collaborator, &clone, &["reset", "-q", "--hard"]);
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    assert_eq!(sqlite_count(&clone.join("posts.db"), "posts"), 5000);
    let said = format!("{}{}", pull.stderr, reset.stderr);
    assert_eq!(
        said.matches(".dbguard.toml is not valid").count(),
        1,
        "{said}"
    );
    // The wrapper still refuses until it is fixed (as `log` and the other commands do).
    let refused = collaborator
        .dbguard(["git", "reset", "--hard"])
        .fails_with(3);
    assert!(
        refused.stderr.contains(".dbguard.toml"),
        "{}",
        refused.stderr
    );
    // Fixed: the snapshot the hook took is there to restore.
    fs::write(clone.join(".dbguard.toml"), "exclude = [\"vendor\"]\n").unwrap();
    assert!(
        saved_for(&collaborator, "posts.db", "git reset -q --hard", 90_000),
        "{:?}\n{said}",
        snapshots_of(&collaborator, "posts.db"),
    );
    collaborator.dbguard(["restore", "posts.db"]).ok();
    assert_eq!(sqlite_count(&clone.join("posts.db"), "posts"), 90_000);
    drop(collaborator);
}

/// `DBGUARD_SKIP=1` left exported skips, and says so at each command it skips;
/// `DBGUARD_GUARDED` left exported guards nothing: only dbguard's own marker for its own
/// child is believed.
#[test]
fn leftover_variables_never_switch_the_hook_off_unseen() {
    let repo = data_directory_at_risk();
    for _ in 0..2 {
        let run = Run::from(
            repo.command("git", &repo.root)
                .env("DBGUARD_SKIP", "1")
                .args(["checkout", "-q", "--", "data/posts.db"])
                .output()
                .unwrap(),
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            run.stderr
                .matches("DBGUARD_SKIP=1 is set: nothing saved")
                .count(),
            1,
            "{}",
            run.stderr
        );
        let conn = rusqlite::Connection::open(repo.root.join("data/posts.db")).unwrap();
        add_posts(&conn, 1000, 8);
    }
    // Only install's baseline (and what git left, after it ran): the grown rows were
    // never saved, as the user was told.
    let snapshots = snapshots_of(&repo, "data/posts.db");
    assert!(
        snapshots.iter().all(|(_, rows)| *rows < 90_000),
        "{snapshots:?}"
    );

    let repo = data_directory_at_risk();
    // Leftovers: a made-up value, and the marker of a process that is not this git's
    // ancestor. Each round grows the database, so each snapshot has its own row count.
    let mut expected = Vec::new();
    for (round, leftover) in ["1", &format!("{}-1", std::process::id())]
        .into_iter()
        .enumerate()
    {
        let rows = 90_000 + 1000 * round as u64;
        expected.push(("git stash -q".to_string(), rows));
        let run = Run::from(
            repo.command("git", &repo.root)
                .env("DBGUARD_GUARDED", leftover)
                .args(["stash", "-q"])
                .output()
                .unwrap(),
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        repo.git(["stash", "pop", "-q"]);
        let conn = rusqlite::Connection::open(repo.root.join("data/posts.db")).unwrap();
        add_posts(&conn, 1000, 8);
    }
    let taken = |repo: &TestRepo| snapshots_of(repo, "data/posts.db");
    let before_wrapper = taken(&repo);
    for saved in &expected {
        assert!(
            before_wrapper.contains(saved),
            "{saved:?} missing: {before_wrapper:?}"
        );
    }
    // The guard's own marker keeps working: the wrapper's snapshot, and none by the hook
    // of the git it runs.
    let run = repo.dbguard(["git", "reset", "-q", "--hard"]).ok();
    let after_wrapper = taken(&repo);
    assert_eq!(
        after_wrapper.len(),
        before_wrapper.len() + 1,
        "{}\n{after_wrapper:?}",
        run.stderr
    );
    assert_eq!(
        after_wrapper[0],
        ("git reset -q --hard".to_string(), 92_000)
    );
}
