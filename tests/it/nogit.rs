//! dbguard outside git and off the clone: a database in a plain directory (no git)
//! snapshotted, restored, exported, pruned, pushed to the real S3 server and fetched into
//! a new store; `--store` and `DBGUARD_STORE`; the scheduled export run from the exact
//! line the schedule installs, keeping N folders; the default export folder surviving
//! `git clean -fdx`; the README's fresh-clone recipe run as written, with the new
//! clone's first push sending no pack the bucket already holds.

use std::fs;
use std::path::{Path, PathBuf};

use dbguard::testing::*;

/// A directory outside any git repository, next to `repo`'s worktree, holding a posts.db
/// of `rows` rows.
fn plain_dir_with_posts(repo: &TestRepo, name: &str, rows: u64) -> PathBuf {
    let dir = repo.path(name);
    fs::create_dir_all(&dir).unwrap();
    make_posts_db(&dir.join("posts.db"), rows, 8);
    dir
}

/// Rows in a Parquet file, read by the parquet crate.
fn parquet_rows(path: &Path) -> i64 {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(fs::File::open(path).unwrap()).unwrap();
    reader.metadata().file_metadata().num_rows()
}

/// The per-user stores of directories outside git, in this test's home.
fn user_stores(repo: &TestRepo) -> Vec<PathBuf> {
    let dir = repo.home.join(".local/share/dbguard/stores");
    let mut stores: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    stores.sort();
    stores
}

#[test]
fn a_database_outside_git_is_snapshotted_restored_exported_pruned_pushed_and_fetched() {
    let repo = TestRepo::new();
    let dir = plain_dir_with_posts(&repo, "crawl", 2000);
    let db = dir.join("posts.db");

    repo.dbguard_in(&dir, ["snapshot"]).ok();
    let log = repo.dbguard_in(&dir, ["log", "--json"]).ok().json();
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    let stores = user_stores(&repo);
    assert_eq!(stores.len(), 1, "one per-user store: {stores:?}");
    let store = &stores[0];
    let name = store.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("crawl-"), "{name}");
    assert!(store.join("catalog.db").is_file());
    let mut left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["posts.db"],
        "nothing written into the user's directory"
    );

    // Rows lost, rows back.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM posts WHERE id > 10", []).unwrap();
    drop(conn);
    repo.dbguard_in(&dir, ["restore", "posts.db"]).ok();
    assert_eq!(sqlite_count(&db, "posts"), 2000);
    assert_eq!(quick_check(&db), "ok");

    // Exported, and the Parquet file read back.
    let out = repo.path("exports");
    repo.dbguard_in(
        &dir,
        [
            "export",
            "posts.db",
            "--format",
            "parquet",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(
        parquet_rows(&find_file(&out, "/parquet/posts.parquet")),
        2000
    );

    // Pruned to the newest snapshot.
    add_posts(&rusqlite::Connection::open(&db).unwrap(), 5, 8);
    repo.dbguard_in(&dir, ["snapshot"]).ok();
    let before = repo.dbguard_in(&dir, ["log", "--json"]).ok().json();
    assert!(before.as_array().unwrap().len() >= 2, "{before}");
    repo.dbguard_in(&dir, ["prune", "--keep-last", "1"]).ok();
    let after = repo.dbguard_in(&dir, ["log", "--json"]).ok().json();
    assert_eq!(after.as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after[0]["tables"]["posts"], 2005, "{after}");
    repo.dbguard_in(&dir, ["verify"]).ok();

    // Git-only commands say so in one line, with the way that works here.
    let install = repo.dbguard_in(&dir, ["install"]).fails_with(1);
    let first = install.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("needs a git repository"),
        "{}",
        install.stderr
    );
    assert!(
        install.stderr.contains("dbguard snapshot"),
        "{}",
        install.stderr
    );
    assert!(!install.stderr.contains("panicked"), "{}", install.stderr);

    // Off this machine: pushed to the real S3 server, fetched into a new store.
    if !S3Server::available() {
        return;
    }
    let server = S3Server::start(&[TEST_BUCKET]);
    let creds: Vec<(&str, String)> = server.credentials().to_vec();
    let url = format!("s3://{TEST_BUCKET}/crawl");
    // A plain remote: what this test checks is the store's layout on it (encrypted
    // remotes: tests/it/remote_crypto.rs).
    let add = [
        "remote",
        "add",
        "backup",
        &url,
        "--endpoint",
        &server.endpoint,
        "--no-encryption",
    ];
    repo.dbguard_with(&dir, &creds, &add).ok();
    let pushed = repo
        .dbguard_with(&dir, &creds, &["push", "--json"])
        .ok()
        .json();
    assert_eq!(pushed["pushed"].as_array().unwrap().len(), 1, "{pushed}");

    let elsewhere = repo.path("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let new_store = repo.path("new-store");
    let store_arg = new_store.to_str().unwrap();
    let mut add_there = vec!["--store", store_arg];
    add_there.extend(add);
    repo.dbguard_with(&elsewhere, &creds, &add_there).ok();
    let fetched = repo
        .dbguard_with(
            &elsewhere,
            &creds,
            &["--store", store_arg, "fetch", "--json"],
        )
        .ok()
        .json();
    assert_eq!(fetched["fetched"].as_array().unwrap().len(), 1, "{fetched}");
    assert!(new_store.join("catalog.db").is_file());
    let log = repo
        .dbguard_in(&elsewhere, ["--store", store_arg, "log", "--json"])
        .ok()
        .json();
    assert_eq!(log[0]["tables"]["posts"], 2005, "{log}");
    let id = log[0]["id"].to_string();
    let back = repo.path("back.db");
    repo.dbguard_in(
        &elsewhere,
        [
            "--store",
            store_arg,
            "restore",
            "--from",
            &id,
            "--to",
            back.to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(sqlite_count(&back, "posts"), 2005);
    repo.dbguard_in(&elsewhere, ["--store", store_arg, "verify"])
        .ok();
}

#[test]
fn the_store_outside_git_comes_from_the_option_then_the_environment_and_a_repository_refuses_it() {
    let repo = TestRepo::new();
    let dir = plain_dir_with_posts(&repo, "service", 100);
    let option = repo.path("by-option");
    repo.dbguard_in(&dir, ["--store", option.to_str().unwrap(), "snapshot"])
        .ok();
    assert!(option.join("catalog.db").is_file());
    let env = repo.path("by-env");
    let run = repo
        .dbguard_with(
            &dir,
            &[("DBGUARD_STORE", env.to_str().unwrap().to_string())],
            &["snapshot"],
        )
        .ok();
    assert!(env.join("catalog.db").is_file(), "{}", run.stderr);
    assert!(user_stores(&repo).is_empty(), "no per-user store was made");
    let config = repo
        .dbguard_with(
            &dir,
            &[("DBGUARD_STORE", env.to_str().unwrap().to_string())],
            &["config", "--json"],
        )
        .ok()
        .json();
    assert_eq!(config["store"]["source"], "environment", "{config}");

    // Inside a repository the store stays where the hooks write.
    make_posts_db(&repo.root.join("posts.db"), 10, 8);
    let refused = repo
        .dbguard(["--store", option.to_str().unwrap(), "snapshot"])
        .fails_with(1);
    assert!(
        refused
            .stderr
            .contains("--store is for directories outside git"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("git config dbguard.store"),
        "{}",
        refused.stderr
    );
    repo.dbguard(["snapshot"]).ok();
    assert!(repo.store().join("catalog.db").is_file());
}

/// The command of the crontab line `schedule --print` shows, as cron would run it.
fn scheduled_command(printed: &str, worktree: &Path) -> String {
    let mut lines = printed.lines();
    lines.find(|l| l.starts_with("# crontab")).expect(printed);
    let line = lines.next().expect(printed);
    let marker = format!(" # dbguard:{}", worktree.display());
    let line = line.strip_suffix(&marker).expect(line);
    let command: Vec<&str> = line.splitn(6, ' ').collect();
    command[5].replace("\\%", "%")
}

/// Export folders (with dbguard's marker) of one database under `out`.
fn export_folders(out: &Path, database: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(out.join(database))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join(".dbguard-export").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_scheduled_export_line_run_three_times_keeps_the_two_newest_folders_and_pushes() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 300, 8);
    let nas = repo.path("nas");
    let url = format!("file://{}", nas.display());
    repo.dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    // Installing makes the store, where the line logs (`--print` installs nothing).
    repo.dbguard(["snapshot"]).ok();
    let out = repo.path("exports");
    let printed = repo
        .dbguard([
            "schedule",
            "--export",
            "--format",
            "parquet,jsonl",
            "--compression",
            "gzip",
            "--out",
            out.to_str().unwrap(),
            "--keep",
            "2",
            "--print",
        ])
        .ok();
    let command = scheduled_command(&printed.stdout, &repo.root.canonicalize().unwrap());
    assert!(command.contains(" push nas --quiet"), "{command}");
    // Something of the user's in the export folder, which no keep may touch.
    fs::create_dir_all(out.join("posts.db/notes")).unwrap();
    fs::create_dir_all(out.join("posts.db/20200101T000000Z")).unwrap();

    for (run, now) in [
        "2026-03-01T00:00:00Z",
        "2026-03-01T08:00:00Z",
        "2026-03-01T16:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        add_posts(&rusqlite::Connection::open(&db).unwrap(), 10, 8);
        let status = repo
            .command("sh", &repo.root)
            .env("DBGUARD_NOW", now)
            .args(["-c", &command])
            .status()
            .unwrap();
        assert!(status.success(), "run {run} of: {command}");
    }
    assert_eq!(
        export_folders(&out, "posts.db"),
        ["20260301T080000Z", "20260301T160000Z"]
    );
    assert!(out.join("posts.db/notes").is_dir());
    assert!(out.join("posts.db/20200101T000000Z").is_dir());
    let newest = out.join("posts.db/20260301T160000Z");
    assert_eq!(
        parquet_rows(&find_file(&newest, "/parquet/posts.parquet")),
        330
    );
    find_file(&newest, "/jsonl/posts.jsonl.gz");
    let log = fs::read_to_string(repo.store().join("schedule.log")).unwrap();
    assert!(!log.contains("rror"), "{log}");
    // The push step ran: the remote holds the newest snapshot.
    let listed = repo.dbguard(["fetch", "--json"]).ok().json();
    assert_eq!(listed["fetched"].as_array().unwrap().len(), 0, "{listed}");
    assert!(nas.is_dir());
    let remote = repo.dbguard(["remote", "list", "--json"]).ok().stdout;
    assert!(remote.contains("nas"), "{remote}");
}

#[test]
fn export_without_out_in_a_worktree_survives_git_clean_fdx() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 50, 8);
    let exported = repo
        .dbguard(["export", "posts.db", "--format", "parquet", "--json"])
        .ok()
        .json();
    let dir = PathBuf::from(exported[0]["export_dir"].as_str().unwrap());
    let worktree = repo.root.canonicalize().unwrap();
    assert!(
        !dir.starts_with(&worktree),
        "{} is in the worktree",
        dir.display()
    );
    assert!(dir.starts_with(repo.exports()), "{}", dir.display());
    repo.git(["clean", "-fdx"]);
    assert!(!repo.root.join("posts.db").exists());
    assert_eq!(parquet_rows(&find_file(&dir, "/parquet/posts.parquet")), 50);
}

#[test]
fn a_scheduled_snapshot_outside_git_names_its_store() {
    let repo = TestRepo::new();
    let dir = plain_dir_with_posts(&repo, "data", 20);
    let store = repo.path("data-store");
    let printed = repo
        .dbguard_in(
            &dir,
            ["--store", store.to_str().unwrap(), "schedule", "--print"],
        )
        .ok();
    let command = scheduled_command(&printed.stdout, &dir.canonicalize().unwrap());
    assert!(
        command.contains(&format!(" --store {} ", store.display())),
        "{command}"
    );
    let status = repo
        .command("sh", repo.tmp.path())
        .args(["-c", &command])
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
    let log = repo
        .dbguard_in(&dir, ["--store", store.to_str().unwrap(), "log", "--json"])
        .ok()
        .json();
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
}

/// The README's recipe for a fresh clone: the lines of its code block after the comment
/// that introduces it.
fn readme_recipe() -> Vec<String> {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("# after `rm -rf` of the clone, or on a new machine:\n")
        .expect("the README's fresh-clone recipe");
    readme[start..]
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("```"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_fresh_clone_recipe_brings_rows_back_and_the_first_push_sends_no_pack_twice() {
    let recipe = readme_recipe();
    assert_eq!(
        recipe,
        [
            "git clone … && cd … && dbguard install",
            "dbguard remote add backup s3://lab-backups/dbguard/crawler",
            "dbguard fetch backup && dbguard log && dbguard restore posts.db",
        ],
        "the commands this test runs are the README's"
    );
    if !S3Server::available() {
        return;
    }
    let server = S3Server::start(&[TEST_BUCKET]);
    let creds: Vec<(&str, String)> = server.credentials().to_vec();
    let (repo, origin) = TestRepo::ignoring_databases_with_origin();
    let db = repo.root.join("posts.db");
    make_blob_db(&db, 320, 65536);
    let url = format!("s3://{TEST_BUCKET}/crawler");
    // A plain remote: what this test checks is the store's layout on it (encrypted
    // remotes: tests/it/remote_crypto.rs).
    let add = [
        "remote",
        "add",
        "backup",
        &url,
        "--endpoint",
        &server.endpoint,
        "--no-encryption",
    ];
    repo.dbguard_with(&repo.root, &creds, &["install"]).ok();
    let first = repo.dbguard_with(&repo.root, &creds, &add).ok();
    assert!(
        first.stderr.contains("`dbguard push backup`"),
        "{}",
        first.stderr
    );
    repo.dbguard_with(&repo.root, &creds, &["snapshot", "posts.db"])
        .ok();
    let pushed = repo
        .dbguard_with(&repo.root, &creds, &["push", "--json"])
        .ok()
        .json();
    assert!(pushed["packs_sent"].as_u64().unwrap() >= 2, "{pushed}");
    let first_packs = pack_files(&repo.store());

    // The clone is deleted; the README's commands, as written, in a new one.
    fs::remove_dir_all(&repo.root).unwrap();
    repo.git_in(
        repo.tmp.path(),
        [
            "clone",
            "-q",
            origin.to_str().unwrap(),
            repo.root.to_str().unwrap(),
        ],
    );
    repo.dbguard_with(&repo.root, &creds, &["install"]).ok();
    let added = repo.dbguard_with(&repo.root, &creds, &add).ok();
    assert!(
        added
            .stderr
            .contains("`dbguard fetch backup` brings them here"),
        "a fresh clone is told to fetch: {}",
        added.stderr
    );
    repo.dbguard_with(&repo.root, &creds, &["fetch", "backup"])
        .ok();
    repo.dbguard_with(&repo.root, &creds, &["log"]).ok();
    repo.dbguard_with(&repo.root, &creds, &["restore", "posts.db"])
        .ok();
    assert_eq!(sqlite_count(&db, "blobs"), 320);
    assert_eq!(quick_check(&db), "ok");

    // New rows, a snapshot of the clone's own, and its first push: the packs the bucket
    // holds for the old clone are copied there by the server, only new ones are sent.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("INSERT INTO blobs(data) SELECT randomblob(65536) FROM blobs LIMIT 20;")
        .unwrap();
    drop(conn);
    repo.dbguard_with(&repo.root, &creds, &["snapshot", "posts.db"])
        .ok();
    let before = server.objects(TEST_BUCKET, "crawler").len();
    let second = repo
        .dbguard_with(&repo.root, &creds, &["push", "--json"])
        .ok()
        .json();
    let new_packs: u64 = pack_files(&repo.store())
        .iter()
        .filter(|(name, _)| !first_packs.contains_key(*name))
        .map(|(_, size)| size)
        .sum();
    assert!(
        second["packs_copied_on_remote"].as_u64().unwrap() >= 2,
        "{second}"
    );
    assert_eq!(
        second["bytes_sent"], new_packs,
        "only packs the bucket lacked: {second}"
    );
    assert!(
        new_packs < first_packs.values().sum::<u64>() / 4,
        "{second}"
    );
    assert!(server.objects(TEST_BUCKET, "crawler").len() > before);
    repo.dbguard_with(&repo.root, &creds, &["verify", "--remote", "backup"])
        .ok();

    // Its snapshots come back from the bucket whole into yet another store.
    let other = repo.path("other");
    fs::create_dir_all(&other).unwrap();
    let store = repo.path("other-store");
    let store_arg = store.to_str().unwrap();
    let mut add_other = vec!["--store", store_arg];
    add_other.extend(add);
    repo.dbguard_with(&other, &creds, &add_other).ok();
    repo.dbguard_with(&other, &creds, &["--store", store_arg, "fetch"])
        .ok();
    let log = repo
        .dbguard_in(&other, ["--store", store_arg, "log", "--json"])
        .ok()
        .json();
    let newest = log[0]["id"].to_string();
    let back = repo.path("back.db");
    repo.dbguard_in(
        &other,
        [
            "--store",
            store_arg,
            "restore",
            "--from",
            &newest,
            "--to",
            back.to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(sqlite_count(&back, "blobs"), 340);
}

#[test]
fn remote_add_without_credentials_warns() {
    let repo = TestRepo::new();
    let run = repo
        .dbguard([
            "remote",
            "add",
            "backup",
            "s3://somewhere/x",
            "--endpoint",
            "http://127.0.0.1:9",
            "--no-encryption",
        ])
        .ok();
    assert!(
        run.stderr
            .contains("no AWS credentials found for remote backup"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("AWS_ACCESS_KEY_ID"), "{}", run.stderr);
}
