//! dbguard's hooks beside real third-party hook managers: pre-commit (PyPI), husky and
//! lefthook (npm), each installed before and after dbguard. In every order both the
//! manager's hook and dbguard's comparison must run, and `dbguard uninstall` must leave
//! the manager's hook files exactly as the manager wrote them.
//!
//! `.ci/run` installs the managers and sets `DBGUARD_REQUIRE_PEERS=1`, which turns a
//! missing manager into a failure; elsewhere a missing one skips its tests with a note.

use std::fs;
use std::path::PathBuf;

use dbguard::testing::*;

#[derive(Clone, Copy, Debug)]
enum Peer {
    PreCommit,
    Husky,
    Lefthook,
}

impl Peer {
    fn program(self) -> &'static str {
        match self {
            Peer::PreCommit => "pre-commit",
            Peer::Husky => "husky",
            Peer::Lefthook => "lefthook",
        }
    }

    /// Whether the manager is installed; under `DBGUARD_REQUIRE_PEERS=1` it must be.
    fn available(self) -> bool {
        // Looked up on PATH, not run: `husky --help` would install husky right here.
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path).any(|dir| dir.join(self.program()).is_file());
        if !found {
            assert!(
                std::env::var_os("DBGUARD_REQUIRE_PEERS").is_none(),
                "{} is not installed (bash .ci/run installs it)",
                self.program()
            );
            eprintln!("note: {} is not installed; skipping", self.program());
        }
        found
    }
}

/// A repository with an ignored, snapshotted crawler database and a log file that the
/// manager's post-checkout hook appends to.
struct Scene {
    repo: TestRepo,
    log: PathBuf,
    db: PathBuf,
    checkouts: usize,
}

impl Scene {
    fn new() -> Scene {
        let repo = TestRepo::new();
        fs::write(repo.root.join(".gitignore"), "posts.db\nnode_modules/\n").unwrap();
        repo.git(["add", ".gitignore"]);
        repo.git(["commit", "-q", "-m", "ignore the database"]);
        let db = repo.root.join("posts.db");
        make_posts_db(&db, 4096, 8);
        let log = repo.path("peer.log");
        Scene {
            repo,
            log,
            db,
            checkouts: 0,
        }
    }

    fn hooks_dir(&self) -> PathBuf {
        let dir = self
            .repo
            .git(["rev-parse", "--path-format=absolute", "--git-path", "hooks"]);
        PathBuf::from(dir.trim())
    }

    fn post_checkout_hook(&self) -> Vec<u8> {
        fs::read(self.hooks_dir().join("post-checkout")).unwrap()
    }

    fn run(&self, program: &str, args: &[&str]) -> Run {
        Run::from(
            self.repo
                .command(program, &self.repo.root)
                .args(args)
                .output()
                .unwrap(),
        )
    }

    /// Set the manager up with a post-checkout hook that appends to the log.
    fn install_peer(&self, peer: Peer) {
        let log = self.log.display();
        match peer {
            Peer::PreCommit => {
                fs::write(
                    self.repo.root.join(".pre-commit-config.yaml"),
                    format!(
                        "repos:\n- repo: local\n  hooks:\n  - id: log\n    name: log\n    \
                         language: system\n    entry: sh -c 'echo pre-commit >> {log}'\n    \
                         always_run: true\n    pass_filenames: false\n    \
                         stages: [post-checkout]\n"
                    ),
                )
                .unwrap();
                self.run("pre-commit", &["install", "-t", "post-checkout"])
                    .ok();
            }
            Peer::Husky => {
                self.run("husky", &[]).ok();
                fs::write(
                    self.repo.root.join(".husky/post-checkout"),
                    format!("echo husky >> '{log}'\n"),
                )
                .unwrap();
            }
            Peer::Lefthook => {
                fs::write(
                    self.repo.root.join("lefthook.yml"),
                    format!("post-checkout:\n  commands:\n    log:\n      run: echo lefthook >> '{log}'\n"),
                )
                .unwrap();
                self.run("lefthook", &["install"]).ok();
            }
        }
    }

    /// The crawler loses rows, then a plain `git checkout -b` runs the hooks. Returns
    /// (the manager's hook ran, dbguard reported the loss).
    fn checkout_after_a_loss(&mut self) -> (bool, bool) {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        conn.execute(
            "DELETE FROM posts WHERE rowid IN \
             (SELECT rowid FROM posts ORDER BY rowid DESC LIMIT (SELECT count(*) / 2 FROM posts))",
            [],
        )
        .unwrap();
        drop(conn);
        let logged_before = fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .count();
        self.checkouts += 1;
        let checkout = self.run(
            "git",
            &["checkout", "-q", "-b", &format!("b{}", self.checkouts)],
        );
        assert_eq!(
            checkout.code, 0,
            "hooks never break git: {}",
            checkout.stderr
        );
        let logged = fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .count();
        let reported = checkout.stderr.contains("dbguard: posts.db lost rows");
        (logged == logged_before + 1, reported)
    }

    fn dbguard(&self, args: &[&str]) -> Run {
        self.repo.dbguard(args.iter().copied()).ok()
    }
}

/// The manager first, then dbguard: both run; uninstall restores the manager's file.
fn manager_then_dbguard(peer: Peer) {
    if !peer.available() {
        return;
    }
    let mut scene = Scene::new();
    scene.install_peer(peer);
    assert_eq!(scene.checkout_after_a_loss(), (true, false));
    let managers_hook = scene.post_checkout_hook();

    scene.dbguard(&["install"]);
    let status = scene.dbguard(&["install", "--status"]).stdout;
    assert!(
        status
            .lines()
            .any(|l| l.contains("post-checkout") && l.ends_with(" installed")),
        "{status}"
    );
    assert_eq!(scene.checkout_after_a_loss(), (true, true), "{peer:?}");

    scene.dbguard(&["uninstall"]);
    assert_eq!(scene.post_checkout_hook(), managers_hook, "{peer:?}");
    assert_eq!(scene.checkout_after_a_loss(), (true, false), "{peer:?}");
}

/// dbguard first, then the manager (which may move or bypass dbguard's hook): `install
/// --status` says what happened, `dbguard install` makes both run, uninstall restores
/// the manager's files.
fn dbguard_then_manager(peer: Peer) {
    if !peer.available() {
        return;
    }
    let mut scene = Scene::new();
    scene.dbguard(&["install"]);
    assert_eq!(scene.checkout_after_a_loss(), (false, true));

    scene.install_peer(peer);
    let managers_hook = scene.post_checkout_hook();
    let status = scene.dbguard(&["install", "--status"]).stdout;
    let line = status
        .lines()
        .find(|l| l.contains("post-checkout"))
        .unwrap_or_default()
        .to_string();
    match peer {
        // pre-commit's migration mode renames our hook and runs it first.
        Peer::PreCommit => {
            assert!(
                line.ends_with("installed in post-checkout.legacy, which pre-commit runs"),
                "{status}"
            );
            // Not a replaced block: pre-commit runs it from the copy.
            let warnings = scene.dbguard(&["install", "--status"]).stderr;
            assert!(!warnings.contains("without dbguard's block"), "{warnings}");
            assert_eq!(scene.checkout_after_a_loss(), (true, true));
        }
        // husky points core.hooksPath at .husky/_: git no longer runs .git/hooks.
        Peer::Husky => {
            assert!(status.contains(".husky/_"), "{status}");
            let warnings = scene.dbguard(&["install", "--status"]).stderr;
            assert!(
                warnings.contains("core.hooksPath now points to .husky/_ (husky's hooks)"),
                "{warnings}"
            );
            assert!(
                line.ends_with("missing from the existing hook (run dbguard install)"),
                "{status}"
            );
            assert_eq!(scene.checkout_after_a_loss(), (true, false));
        }
        // lefthook renames our hook to .old and does not run it.
        Peer::Lefthook => {
            assert!(
                line.ends_with("missing: lefthook moved it to post-checkout.old and does not run it (run dbguard install)"),
                "{status}"
            );
            let warnings = scene.dbguard(&["install", "--status"]).stderr;
            assert!(
                warnings
                    .contains("lefthook rewrote .git/hooks/post-checkout without dbguard's block"),
                "{warnings}"
            );
            assert_eq!(scene.checkout_after_a_loss(), (true, false));
        }
    }

    let install = scene.dbguard(&["install"]);
    assert_eq!(
        scene.checkout_after_a_loss(),
        (true, true),
        "{peer:?}: {}",
        install.stderr
    );
    let hook = String::from_utf8(scene.post_checkout_hook()).unwrap();
    let copies =
        fs::read_to_string(scene.hooks_dir().join("post-checkout.legacy")).unwrap_or_default();
    assert_eq!(
        hook.matches(">>> dbguard >>>").count() + copies.matches(">>> dbguard >>>").count(),
        1,
        "dbguard runs once: {hook}"
    );

    scene.dbguard(&["uninstall"]);
    assert_eq!(scene.post_checkout_hook(), managers_hook, "{peer:?}");
    for leftover in ["post-checkout.legacy", "post-checkout.old"] {
        assert!(!scene.hooks_dir().join(leftover).exists(), "{leftover}");
    }
    let default_hooks = scene.repo.root.join(".git/hooks/post-checkout");
    assert!(
        fs::read_to_string(&default_hooks).map_or(true, |t| !t.contains("dbguard")),
        "a dormant block stayed in .git/hooks"
    );
    assert_eq!(scene.checkout_after_a_loss(), (true, false), "{peer:?}");

    if let Peer::Lefthook = peer {
        // Nothing of dbguard comes back when lefthook puts its .old files back.
        scene.run("lefthook", &["uninstall"]).ok();
        assert_eq!(scene.checkout_after_a_loss(), (false, false));
    }
}

#[test]
fn pre_commit_then_dbguard() {
    manager_then_dbguard(Peer::PreCommit);
}

#[test]
fn dbguard_then_pre_commit() {
    dbguard_then_manager(Peer::PreCommit);
}

#[test]
fn husky_then_dbguard() {
    manager_then_dbguard(Peer::Husky);
}

#[test]
fn dbguard_then_husky() {
    dbguard_then_manager(Peer::Husky);
}

#[test]
fn lefthook_then_dbguard() {
    manager_then_dbguard(Peer::Lefthook);
}

#[test]
fn dbguard_then_lefthook() {
    dbguard_then_manager(Peer::Lefthook);
}
