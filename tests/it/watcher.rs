//! The fsmonitor hook's file watcher, through the real programs: started on demand by
//! the hook, answering exactly what changed, never losing a change while files are
//! written during `git status` and `git checkout`, and gone when it should be.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dbguard::testing::*;

/// `dbguard-fsmonitor 2 <token>` run in the worktree as git runs it: the token it
/// returns and the paths, `None` for "everything may have changed".
fn hook(repo: &TestRepo, token: &str) -> (String, Option<BTreeSet<String>>) {
    let program = dbguard_bin().with_file_name("dbguard-fsmonitor");
    let output = repo
        .command(program, &repo.root)
        .args(["2", token])
        .output()
        .unwrap();
    assert!(output.status.success());
    let mut fields = output.stdout.split(|b| *b == 0);
    let token = String::from_utf8(fields.next().unwrap().to_vec()).unwrap();
    let paths: Vec<String> = fields
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
        .collect();
    if paths == ["/"] {
        return (token, None);
    }
    (token, Some(paths.into_iter().collect()))
}

/// Ask the hook until a watcher answers (the first calls walk while it starts).
fn watcher_token(repo: &TestRepo) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (token, _) = hook(repo, "");
        if token.starts_with("dbguard:w:") {
            return token;
        }
        assert!(
            Instant::now() < deadline,
            "no watcher answered; last token {token}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The watcher's pid, from `dbguard install --status`.
fn watcher_pid(repo: &TestRepo) -> Option<u32> {
    let status = repo.dbguard(["install", "--status"]).ok().stdout;
    let line = status.lines().find(|l| l.contains("file watcher"))?;
    let pid = line.split("(pid ").nth(1)?.split(')').next()?;
    pid.parse().ok()
}

fn wait_until_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "watcher {pid} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `git status` without the hook, and without writing the index (which would drop the
/// hook's token from it).
fn git_alone(repo: &TestRepo) -> String {
    repo.git([
        "--no-optional-locks",
        "-c",
        "core.fsmonitor=false",
        "status",
        "--porcelain",
        "-uall",
    ])
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn installed_repo() -> TestRepo {
    let repo = TestRepo::new();
    fs::write(repo.root.join("tracked.txt"), "one\n").unwrap();
    fs::create_dir_all(repo.root.join("src")).unwrap();
    fs::write(repo.root.join("src/lib.txt"), "lib\n").unwrap();
    repo.git(["add", "."]);
    repo.git(["commit", "-q", "-m", "files"]);
    repo.dbguard(["install"]).ok();
    repo
}

#[test]
fn the_hook_starts_a_watcher_that_names_exactly_what_changed_and_uninstall_stops_it() {
    let repo = installed_repo();
    let token = watcher_token(&repo);
    let (same, paths) = hook(&repo, &token);
    assert_eq!(paths, Some(BTreeSet::new()), "nothing changed");
    assert_eq!(same, token, "nothing changed: the same token");

    fs::write(repo.root.join("tracked.txt"), "two\n").unwrap();
    fs::remove_file(repo.root.join("README")).unwrap();
    // A tree made in one go: its inner files exist before any watch on them can.
    fs::create_dir_all(repo.root.join("new/deep")).unwrap();
    fs::write(repo.root.join("new/deep/x.txt"), "x\n").unwrap();
    fs::write(
        repo.root.join(".git/description"),
        "inside .git: not named\n",
    )
    .unwrap();
    let (next, paths) = hook(&repo, &token);
    assert_eq!(
        paths,
        Some(names(&[
            "README",
            "new/",
            "new/deep/",
            "new/deep/x.txt",
            "tracked.txt"
        ]))
    );
    assert_ne!(next, token);
    let (_, paths) = hook(&repo, &next);
    assert_eq!(paths, Some(BTreeSet::new()));

    let status = repo.dbguard(["install", "--status"]).ok().stdout;
    assert!(status.contains("directories watched"), "{status}");
    let pid = watcher_pid(&repo).expect("a pid in install --status");
    let uninstall = repo.dbguard(["uninstall"]).ok();
    assert!(
        uninstall.stderr.contains("file watcher"),
        "{}",
        uninstall.stderr
    );
    wait_until_gone(pid);
}

#[test]
fn git_status_through_the_watcher_is_right_and_leaves_the_index_alone() {
    for untracked_cache in ["false", "true"] {
        let repo = installed_repo();
        repo.git(["config", "core.untrackedCache", untracked_cache]);
        watcher_token(&repo);
        let index = repo.root.join(".git/index");
        let stamp = || {
            let meta = fs::metadata(&index).unwrap();
            (
                meta.modified().unwrap(),
                std::os::unix::fs::MetadataExt::ino(&meta),
            )
        };
        // Past git's own racy-git second, then once to store the watcher's token.
        std::thread::sleep(Duration::from_millis(1100));
        repo.git(["status", "--porcelain"]);
        repo.git(["status", "--porcelain"]);
        let before = stamp();
        for _ in 0..3 {
            assert_eq!(repo.git(["status", "--porcelain"]), "");
        }
        assert_eq!(
            stamp(),
            before,
            "untrackedCache={untracked_cache}: a no-op status rewrote .git/index"
        );
        fs::write(repo.root.join("src/lib.txt"), "changed\n").unwrap();
        fs::create_dir_all(repo.root.join("src/more")).unwrap();
        fs::write(repo.root.join("src/more/new.txt"), "new\n").unwrap();
        fs::remove_file(repo.root.join("tracked.txt")).unwrap();
        let with_hook = repo.git(["status", "--porcelain", "-uall"]);
        let without = git_alone(&repo);
        assert_eq!(with_hook, without);
        assert_eq!(
            with_hook, " M src/lib.txt\n D tracked.txt\n?? src/more/new.txt\n",
            "untrackedCache={untracked_cache}"
        );
    }
}

#[test]
fn a_token_of_a_watcher_that_ended_is_answered_with_everything() {
    let repo = installed_repo();
    let token = watcher_token(&repo);
    let pid = watcher_pid(&repo).unwrap();
    let killed = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    wait_until_gone(pid);
    fs::write(
        repo.root.join("tracked.txt"),
        "changed while no watcher ran\n",
    )
    .unwrap();
    let (_, paths) = hook(&repo, &token);
    assert_eq!(paths, None, "an unknown token: everything may have changed");
    let restarted = watcher_token(&repo);
    assert_ne!(restarted, token);
    let (_, paths) = hook(&repo, &token);
    assert_eq!(
        paths, None,
        "the new watcher does not take the old one's token"
    );
}

#[test]
fn the_watcher_leaves_when_its_worktree_is_deleted() {
    let repo = installed_repo();
    watcher_token(&repo);
    let pid = watcher_pid(&repo).unwrap();
    drop(repo);
    wait_until_gone(pid);
}

/// A writer changes, creates and deletes files while `git status` and `git checkout`
/// run; after each round, git with the hook sees exactly what git without it sees.
#[test]
fn no_change_is_missed_while_files_are_written_during_status_and_checkout() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let repo = installed_repo();
    repo.git(["config", "core.untrackedCache", "true"]);
    fs::create_dir_all(repo.root.join("w")).unwrap();
    for i in 0..20 {
        fs::write(repo.root.join(format!("w/f{i}.txt")), format!("{i}\n")).unwrap();
    }
    repo.git(["add", "w"]);
    repo.git(["commit", "-q", "-m", "w"]);
    repo.git(["checkout", "-q", "-b", "other"]);
    fs::create_dir_all(repo.root.join("b")).unwrap();
    fs::write(repo.root.join("b/only-on-other.txt"), "other\n").unwrap();
    repo.git(["add", "b"]);
    repo.git(["commit", "-q", "-m", "other"]);
    repo.git(["checkout", "-q", "main"]);
    watcher_token(&repo);

    let mut missed = Vec::new();
    let mut counter = 0u64;
    for round in 0..25 {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, root) = (Arc::clone(&stop), repo.root.clone());
            let start = counter;
            std::thread::spawn(move || {
                let mut n = start;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let i = n % 20;
                    let tracked = root.join(format!("w/f{i}.txt"));
                    match n % 4 {
                        // Often the same size as before: only the stat data tells.
                        0 => fs::write(&tracked, format!("{}\n", (n / 20) % 10)).unwrap(),
                        1 => {
                            let dir = root.join(format!("w/d{}", n % 7));
                            fs::create_dir_all(&dir).unwrap();
                            fs::write(dir.join(format!("u{n}.txt")), "u\n").unwrap();
                        }
                        2 => {
                            let _ = fs::remove_file(&tracked);
                        }
                        _ => {
                            let _ = fs::remove_dir_all(root.join(format!("w/d{}", n % 7)));
                        }
                    }
                }
                n
            })
        };
        let branch = if round % 2 == 0 { "other" } else { "main" };
        for _ in 0..2 {
            repo.command("git", &repo.root)
                .args(["status", "--porcelain"])
                .output()
                .unwrap();
        }
        let checkout = repo
            .command("git", &repo.root)
            .args(["checkout", "-q", branch])
            .output()
            .unwrap();
        assert!(
            checkout.status.success(),
            "{}",
            String::from_utf8_lossy(&checkout.stderr)
        );
        stop.store(true, Ordering::Relaxed);
        counter = writer.join().unwrap();
        let with_hook = repo.git(["status", "--porcelain", "-uall"]);
        let without = git_alone(&repo);
        if with_hook != without {
            missed.push(format!(
                "round {round}:\nwith the hook:\n{with_hook}\nwithout:\n{without}"
            ));
        }
    }
    assert!(
        missed.is_empty(),
        "{} rounds missed changes:\n{}",
        missed.len(),
        missed.join("\n")
    );
    assert!(counter > 25, "the writer wrote ({counter} changes)");
}

/// git's own bug with any exact monitor: `git mv` and `git rm` of a submodule rewrite
/// `.gitmodules` but leave it unstaged when its entry looks fsmonitor-valid.
#[test]
fn mv_and_rm_of_a_submodule_stage_gitmodules() {
    let sub = TestRepo::new();
    let repo = installed_repo();
    repo.git([
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        sub.root.to_str().unwrap(),
        "sub",
    ]);
    repo.git(["commit", "-q", "-m", "submodule"]);
    watcher_token(&repo);
    std::thread::sleep(Duration::from_millis(1100));
    repo.git(["status", "--porcelain"]);
    repo.git(["status", "--porcelain"]);
    repo.git(["mv", "sub", "moved"]);
    assert_eq!(
        repo.git(["diff", "--name-only"]),
        "",
        ".gitmodules left unstaged"
    );
    assert!(
        repo.git(["diff", "--cached", "--name-only"])
            .contains(".gitmodules")
    );
    repo.git(["commit", "-q", "-m", "moved"]);
    repo.git(["status", "--porcelain"]);
    repo.git(["rm", "-q", "moved"]);
    assert_eq!(
        repo.git(["diff", "--name-only"]),
        "",
        ".gitmodules left unstaged"
    );
    assert!(
        repo.git(["diff", "--cached", "--name-only"])
            .contains(".gitmodules")
    );
}

/// git's own bug with any exact monitor (t7001.1): `git mv -f foo bar` kept bar's stale
/// stat data, so after `git reset --merge HEAD` `git diff-files` still listed bar.
#[test]
fn mv_f_over_a_tracked_file_refreshes_its_entry() {
    let repo = installed_repo();
    fs::write(repo.root.join("bar"), "test\n").unwrap();
    repo.git(["add", "bar"]);
    repo.git(["commit", "-q", "-m", "bar"]);
    fs::write(repo.root.join("foo"), "foo\n").unwrap();
    repo.git(["add", "foo"]);
    watcher_token(&repo);
    repo.git(["status", "--porcelain"]);
    // The rename's ctime differs from the file's creation.
    std::thread::sleep(Duration::from_millis(1100));
    repo.git(["mv", "-f", "foo", "bar"]);
    repo.git(["reset", "-q", "--merge", "HEAD"]);
    assert_eq!(repo.git(["diff-files"]), "");
}

/// The hook's state dir for this repository: outside the git dir, found by the `gitdir`
/// file that names the git dir it belongs to.
fn state_dir(repo: &TestRepo) -> PathBuf {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::MetadataExt as _;
    let git_dir = fs::canonicalize(repo.root.join(".git")).unwrap();
    let uid = fs::metadata("/proc/self").unwrap().uid();
    let bases = [
        std::env::var_os("XDG_RUNTIME_DIR").map(|dir| PathBuf::from(dir).join("dbguard-fsmonitor")),
        Some(PathBuf::from(format!("/tmp/dbguard-fsmonitor-{uid}"))),
    ];
    for base in bases.into_iter().flatten() {
        for entry in fs::read_dir(&base).into_iter().flatten().flatten() {
            if fs::read(entry.path().join("gitdir"))
                .is_ok_and(|owner| owner == git_dir.as_os_str().as_bytes())
            {
                return entry.path();
            }
        }
    }
    panic!("no state dir names {}", git_dir.display());
}

/// The operation markers the planner leaves (`dbguard hook fsmonitor-guard` marks every
/// command it decided for; the hook's fast path marks none).
fn operation_markers(repo: &TestRepo) -> BTreeSet<String> {
    fs::read_dir(state_dir(repo).join("ops"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_watcher_keeps_its_state_outside_the_git_dir_in_a_private_directory() {
    use std::os::unix::fs::PermissionsExt as _;
    let repo = installed_repo();
    // What an earlier build left in the git dir goes when a watcher starts.
    fs::create_dir_all(repo.root.join(".git/dbguard-fsmonitor/cookies")).unwrap();
    watcher_token(&repo);
    repo.git(["status", "--porcelain"]);
    let state = state_dir(&repo);
    assert!(state.join("watcher.sock").exists(), "{}", state.display());
    let mode = fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}", state.display());
    let mode = fs::metadata(state.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{}", state.display());
    let in_git_dir: Vec<String> = fs::read_dir(repo.root.join(".git"))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.starts_with("dbguard-fsmonitor") && name != "dbguard-fsmonitor-previous"
        })
        .collect();
    assert!(in_git_dir.is_empty(), "{in_git_dir:?}");
}

/// `dbguard restore <path>` as a user runs it after an accident; the rows it brought back.
fn restore_rows(repo: &TestRepo, path: &str) -> u64 {
    repo.dbguard(["restore", path]).ok();
    sqlite_count(&repo.root.join(path), "posts")
}

/// A repository ignoring `ignored`, with `a.txt` on `main` and changed on `text`, which
/// is checked out.
fn main_and_text(ignored: &str) -> TestRepo {
    let repo = TestRepo::new();
    fs::write(repo.root.join(".gitignore"), format!("{ignored}\n")).unwrap();
    fs::write(repo.root.join("a.txt"), "main\n").unwrap();
    repo.git(["add", "."]);
    repo.git(["commit", "-q", "-m", "main"]);
    repo.git(["checkout", "-q", "-b", "text"]);
    fs::write(repo.root.join("a.txt"), "text\n").unwrap();
    repo.git(["commit", "-q", "-am", "text"]);
    repo
}

/// `git <args>` as a user types it, through every hook; it must succeed.
fn git_ok(repo: &TestRepo, args: &str) {
    let run = Run::from(
        repo.command("git", &repo.root)
            .args(args.split_whitespace())
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "git {args}: {}", run.stderr);
}

#[test]
fn the_fast_path_skips_dbguard_only_while_no_database_can_be_lost() {
    let repo = main_and_text("data.db");
    repo.git(["checkout", "-q", "-b", "with-data", "main"]);
    make_posts_db(&repo.root.join("data.db"), 10, 8);
    repo.git(["add", "-f", "data.db"]);
    repo.git([
        "commit",
        "-q",
        "-m",
        "track a sample of the ignored data.db",
    ]);
    repo.git(["checkout", "-q", "-b", "with-posts", "main"]);
    make_posts_db(&repo.root.join("posts.db"), 100, 8);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "posts"]);
    repo.git(["checkout", "-q", "main"]);
    // A directory the planner's scan skips by default: looked into before recording.
    fs::create_dir(repo.root.join("__pycache__")).unwrap();
    fs::write(repo.root.join("__pycache__/a.pyc"), vec![7u8; 4096]).unwrap();
    repo.dbguard(["install"]).ok();
    watcher_token(&repo);
    let checkout = |branch: &str| git_ok(&repo, &format!("checkout -q {branch}"));

    // No database anywhere: the planner runs once, then the hook alone decides.
    checkout("text");
    let planned = operation_markers(&repo);
    assert_eq!(planned.len(), 1, "the planner decided the first checkout");
    checkout("main");
    checkout("text");
    assert_eq!(
        operation_markers(&repo),
        planned,
        "no planner for the next two"
    );

    // An ignored database made after that, which the next checkout overwrites.
    checkout("main");
    make_posts_db(&repo.root.join("data.db"), 1000, 8);
    checkout("with-data");
    assert_eq!(sqlite_count(&repo.root.join("data.db"), "posts"), 10);
    assert_ne!(operation_markers(&repo), planned, "the planner ran");
    assert_eq!(restore_rows(&repo, "data.db"), 1000);

    // A tracked database git itself brought, then grown, then overwritten.
    checkout("-f main");
    checkout("text");
    checkout("with-posts");
    let conn = rusqlite::Connection::open(repo.root.join("posts.db")).unwrap();
    add_posts(&conn, 4900, 8);
    drop(conn);
    git_ok(&repo, "checkout -q -f text");
    assert!(!repo.root.join("posts.db").exists());
    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|s| s["path"] == "posts.db" && s["tables"]["posts"] == 5000),
        "no 5,000-row snapshot of posts.db: {log:#}"
    );
}

#[test]
fn a_branch_switch_skips_dbguard_only_while_it_touches_no_database() {
    let repo = main_and_text("*.db");
    // A branch that tracks a sample of the ignored app.db, and one with a file `data`
    // where the worktree has a directory holding an ignored database.
    repo.git(["checkout", "-q", "-b", "with-app", "main"]);
    make_posts_db(&repo.root.join("app.db"), 10, 8);
    repo.git(["add", "-f", "app.db"]);
    repo.git(["commit", "-q", "-m", "sample app.db"]);
    repo.git(["checkout", "-q", "-b", "data-file", "main"]);
    fs::write(repo.root.join("data"), "a file now\n").unwrap();
    repo.git(["add", "data"]);
    repo.git(["commit", "-q", "-m", "data is a file"]);
    // A tag and a branch of one name: checkout takes the branch.
    let commit = |rev: &str| repo.git(["rev-parse", rev]).trim().to_string();
    repo.git(["tag", "safe", &commit("with-app")]);
    repo.git(["branch", "safe", &commit("text")]);
    repo.git(["tag", "risky", &commit("text")]);
    repo.git(["branch", "risky", &commit("with-app")]);
    repo.git(["checkout", "-q", "main"]);
    repo.dbguard(["install"]).ok();
    watcher_token(&repo);
    make_posts_db(&repo.root.join("app.db"), 1000, 8);
    let git = |args: &str| git_ok(&repo, args);

    // The planner decides the first switch and leaves its findings to the hook.
    git("checkout -q text");
    let planned = operation_markers(&repo);
    assert_eq!(planned.len(), 1, "the planner decided the first checkout");
    for switch in [
        "checkout -q main",
        "switch -q text",
        "checkout -q -b feature",
        "switch -c other",
        "checkout -q safe",
        "checkout -q main",
    ] {
        git(switch);
        assert_eq!(
            operation_markers(&repo),
            planned,
            "the planner ran for {switch}"
        );
    }
    assert_eq!(sqlite_count(&repo.root.join("app.db"), "posts"), 1000);

    // A database that appeared since the planner's scan: the planner again.
    fs::create_dir(repo.root.join("data")).unwrap();
    make_posts_db(&repo.root.join("data/inner.db"), 1000, 8);
    git("checkout -q text");
    let replanned = operation_markers(&repo);
    assert_ne!(
        replanned, planned,
        "the planner ran for an unknown database"
    );
    git("checkout -q main");
    assert_eq!(operation_markers(&repo), replanned);

    // A switch whose tree puts a file where the directory of a database is.
    let switched = Run::from(
        repo.command("git", &repo.root)
            .args(["checkout", "-q", "data-file"])
            .output()
            .unwrap(),
    );
    assert_ne!(
        operation_markers(&repo),
        replanned,
        "the planner ran for `data`"
    );
    if switched.code == 0 {
        assert!(repo.root.join("data").is_file());
        let log = repo.dbguard(["log", "--json"]).ok().json();
        assert!(
            log.as_array()
                .unwrap()
                .iter()
                .any(|s| s["path"] == "data/inner.db" && s["tables"]["posts"] == 1000),
            "git removed data/inner.db unsaved: {log:#}"
        );
        git("checkout -q main");
    } else {
        assert_eq!(
            sqlite_count(&repo.root.join("data/inner.db"), "posts"),
            1000
        );
    }

    // A branch named like a tag that tracks nothing: the branch is what git checks out.
    let before = operation_markers(&repo);
    git("checkout -q risky");
    assert_ne!(
        operation_markers(&repo),
        before,
        "the planner ran for `risky`"
    );
    assert_eq!(sqlite_count(&repo.root.join("app.db"), "posts"), 10);
    assert_eq!(restore_rows(&repo, "app.db"), 1000);
}
