//! Remotes: the store copied to a real S3 server (SeaweedFS on 127.0.0.1, started by the
//! harness) or a file:// directory, and back onto a fresh clone; a server killed
//! mid-push; bad credentials, addresses and buckets; two clones sharing a bucket; the
//! automatic push after snapshots; credentials kept out of everything dbguard writes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dbguard::testing::*;

fn s3(repo: &TestRepo, dir: &Path, server: &S3Server, args: &[&str]) -> Run {
    repo.dbguard_with(dir, &server.credentials(), args)
}

/// `remote add backup s3://dbguard/<prefix> --endpoint <server>` in `dir`.
fn add_s3_remote(repo: &TestRepo, dir: &Path, server: &S3Server, prefix: &str) {
    let url = format!("s3://{TEST_BUCKET}/{prefix}");
    s3(
        repo,
        dir,
        server,
        &[
            "remote",
            "add",
            "backup",
            &url,
            "--endpoint",
            &server.endpoint,
            "--no-encryption",
        ],
    )
    .ok();
}

/// The objects on the server whose name ends with `suffix`: file name → size.
fn remote_objects(server: &S3Server, prefix: &str, suffix: &str) -> BTreeMap<String, u64> {
    server
        .objects(TEST_BUCKET, prefix)
        .into_iter()
        .filter(|(name, _)| name.ends_with(suffix))
        .map(|(name, size)| (name.rsplit('/').next().unwrap().to_string(), size))
        .collect()
}

/// Every blob of a [`make_blob_db`] database, hashed in id order.
fn blob_digest(path: &Path) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT data FROM blobs ORDER BY id").unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut hasher = Sha256::new();
    while let Some(row) = rows.next().unwrap() {
        hasher.update(row.get::<_, Vec<u8>>(0).unwrap());
    }
    hasher.finalize().to_vec()
}

#[test]
fn a_deleted_clone_comes_back_from_s3_on_a_fresh_clone_with_every_row() {
    let Some(server) = S3Server::with_test_bucket() else {
        return;
    };
    let (repo, origin) = TestRepo::ignoring_databases_with_origin();
    make_posts_db(&repo.root.join("posts.db"), 90_000, 8);
    add_s3_remote(&repo, &repo.root, &server, "crawler");
    s3(&repo, &repo.root, &server, &["snapshot", "posts.db"]).ok();
    let push = s3(&repo, &repo.root, &server, &["push", "--json"]).ok();
    let report = push.json();
    assert_eq!(report["pushed"].as_array().unwrap().len(), 1, "{report}");
    let packs = pack_files(&repo.store());
    assert_eq!(report["packs_sent"], packs.len(), "{report}");
    assert_eq!(
        report["bytes_sent"],
        packs.values().sum::<u64>(),
        "{report}"
    );
    assert_eq!(
        remote_objects(&server, "crawler", ".pack"),
        packs,
        "the server holds each pack whole"
    );

    // The way out of a confused repository: delete it, clone it again.
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
    assert!(!repo.root.join("posts.db").exists());
    let nothing = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(nothing.as_array().unwrap().len(), 0, "{nothing}");

    add_s3_remote(&repo, &repo.root, &server, "crawler");
    let fetch = s3(&repo, &repo.root, &server, &["fetch", "backup", "--json"]).ok();
    let fetched = fetch.json();
    assert_eq!(fetched["fetched"].as_array().unwrap().len(), 1, "{fetched}");
    assert_eq!(fetched["bytes_fetched"], packs.values().sum::<u64>());
    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log[0]["path"], "posts.db", "{log}");
    assert_eq!(log[0]["tables"]["posts"], 90_000, "{log}");

    repo.dbguard(["restore", "posts.db"]).ok();
    let db = repo.root.join("posts.db");
    assert_eq!(sqlite_count(&db, "posts"), 90_000);
    assert_eq!(quick_check(&db), "ok");
    repo.dbguard(["verify"]).ok();

    // Fetching again brings nothing twice.
    let again = s3(&repo, &repo.root, &server, &["fetch", "--json"])
        .ok()
        .json();
    assert_eq!(again["fetched"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["already_here"], 1, "{again}");
    assert_eq!(again["bytes_fetched"], 0, "{again}");
}

#[test]
fn a_push_cut_short_by_a_dead_server_completes_later_without_sending_anything_twice() {
    let Some(mut server) = S3Server::with_test_bucket() else {
        return;
    };
    let repo = TestRepo::new();
    make_blob_db(&repo.root.join("blobs.db"), 1200, 100_000);
    add_s3_remote(&repo, &repo.root, &server, "big");
    s3(&repo, &repo.root, &server, &["snapshot", "blobs.db"]).ok();
    let packs = pack_files(&repo.store());
    assert!(packs.len() >= 10, "{packs:?}");

    let mut pushing = repo.command(dbguard_bin(), &repo.root);
    pushing
        .envs(server.credentials())
        .args(["push"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = pushing.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while remote_objects(&server, "big", ".pack").is_empty() {
        assert!(Instant::now() < deadline, "no pack ever arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    let cut = Run::from(child.wait_with_output().unwrap());
    assert_ne!(cut.code, 0, "the push outlived its server:\n{}", cut.stderr);
    cut.is_clear_error("cannot reach");

    server.start_again();
    let before_packs = remote_objects(&server, "big", ".pack");
    let before_all: BTreeMap<String, u64> =
        server.objects(TEST_BUCKET, "big").into_iter().collect();
    assert!(
        before_packs.len() < packs.len(),
        "the push was not cut short: {} of {} packs arrived",
        before_packs.len(),
        packs.len()
    );
    // A pack there whole is not sent again; a pack cut off mid-object is.
    let already: u64 = before_packs
        .iter()
        .filter(|(name, size)| packs.get(*name) == Some(size))
        .map(|(_, size)| size)
        .sum();

    let report = s3(&repo, &repo.root, &server, &["push", "--json"])
        .ok()
        .json();
    assert_eq!(report["pushed"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(
        report["bytes_sent"],
        packs.values().sum::<u64>() - already,
        "only what was missing was sent: {report}"
    );
    let after: BTreeMap<String, u64> = server.objects(TEST_BUCKET, "big").into_iter().collect();
    for (name, size) in &before_all {
        if name.ends_with(".pack") && packs.get(name.rsplit('/').next().unwrap()) != Some(size) {
            continue;
        }
        assert_eq!(after.get(name), Some(size), "{name} changed");
    }
    assert_eq!(remote_objects(&server, "big", ".pack"), packs);

    let verified = s3(
        &repo,
        &repo.root,
        &server,
        &["verify", "--remote", "backup", "--json"],
    )
    .ok()
    .json();
    assert_eq!(verified["snapshots"], 1, "{verified}");
    assert_eq!(verified["packs"], packs.len(), "{verified}");
    assert_eq!(
        verified["problems"].as_array().unwrap().len(),
        0,
        "{verified}"
    );

    // And a third push has nothing to do.
    let idle = s3(&repo, &repo.root, &server, &["push", "--json"])
        .ok()
        .json();
    assert_eq!(idle["bytes_sent"], 0, "{idle}");
    assert_eq!(idle["already_there"], 1, "{idle}");
}

#[test]
fn bad_credentials_addresses_and_buckets_are_one_line_errors_and_snapshots_still_happen() {
    let Some(server) = S3Server::with_test_bucket() else {
        return;
    };
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 1000, 8);
    repo.dbguard(["snapshot", "posts.db"]).ok();
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{dead_port}");
    let wrong_secret = [
        ("AWS_ACCESS_KEY_ID", server.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret".to_string()),
    ];
    // (remote name, endpoint, environment, what the error says)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, String)], &'a str);
    let cases: [Case<'_>; 4] = [
        (
            "refused",
            &server.endpoint,
            &wrong_secret,
            "refused the credentials",
        ),
        ("unreachable", &dead, &server.credentials(), "cannot reach"),
        (
            "nobucket",
            &server.endpoint,
            &server.credentials(),
            "does not exist",
        ),
        ("nocredentials", &server.endpoint, &[], "no credentials"),
    ];
    for (name, endpoint, env, needle) in cases {
        let bucket = if name == "nobucket" {
            "no-such-bucket"
        } else {
            TEST_BUCKET
        };
        let url = format!("s3://{bucket}/x");
        repo.dbguard([
            "remote",
            "add",
            name,
            &url,
            "--endpoint",
            endpoint,
            "--no-encryption",
        ])
        .ok();
        let push = repo
            .dbguard_with(&repo.root, env, &["push", name])
            .fails_with(1);
        push.is_clear_error(needle);
        let fetch = repo
            .dbguard_with(&repo.root, env, &["fetch", name])
            .fails_with(1);
        fetch.is_clear_error(needle);
        if name == "nobucket" {
            assert!(push.stderr.contains("create the bucket"), "{}", push.stderr);
        }
    }
    // The secret is never printed, whatever failed.
    let refused = repo.dbguard_with(&repo.root, &wrong_secret, &["push", "refused"]);
    assert!(
        !refused.stderr.contains("not-the-secret"),
        "{}",
        refused.stderr
    );

    // Autopush to a dead server: the guarded git command and its snapshot go ahead, the
    // background push fails on its own, and `remote list` says so.
    repo.git(["config", "dbguard.remote.autopush", "unreachable"]);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "posts"]);
    repo.dbguard(["install"]).ok();
    add_posts(
        &rusqlite::Connection::open(repo.root.join("posts.db")).unwrap(),
        500,
        8,
    );
    let reset = Run::from(
        repo.command("git", &repo.root)
            .envs(server.credentials())
            .args(["reset", "--hard", "HEAD"])
            .output()
            .unwrap(),
    );
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 1000);
    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log[0]["tables"]["posts"], 1500, "{log}");
    let status = wait_for_autopush(&repo);
    assert_eq!(status["ok"], false, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("cannot reach"),
        "{status}"
    );
    let listed = repo.dbguard(["remote", "list"]).ok();
    assert!(
        listed.stderr.contains("last automatic push to unreachable"),
        "{}",
        listed.stderr
    );
    repo.dbguard(["restore", "posts.db"]).ok();
    assert_eq!(sqlite_count(&repo.root.join("posts.db"), "posts"), 1500);
}

/// The outcome of the background push, once it has written one (within a minute).
fn wait_for_autopush(repo: &TestRepo) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let listed = repo.dbguard(["remote", "list", "--json"]).ok().json();
        if !listed["last_autopush"].is_null() {
            return listed["last_autopush"].clone();
        }
        assert!(Instant::now() < deadline, "no background push finished");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn autopush_sends_each_new_snapshot_in_the_background_and_keeps_credentials_out() {
    let Some(server) = S3Server::with_test_bucket() else {
        return;
    };
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 2000, 8);
    let url = format!("s3://{TEST_BUCKET}/auto");
    s3(
        &repo,
        &repo.root,
        &server,
        &[
            "remote",
            "add",
            "backup",
            &url,
            "--endpoint",
            &server.endpoint,
            "--autopush",
            "--no-encryption",
        ],
    )
    .ok();
    s3(&repo, &repo.root, &server, &["snapshot", "posts.db"]).ok();
    let status = wait_for_autopush(&repo);
    assert_eq!(status["ok"], true, "{status}");
    assert_eq!(
        remote_objects(&server, "auto", ".pack"),
        pack_files(&repo.store())
    );
    assert!(remote_objects(&server, "auto", ".json").len() >= 2);

    let listed = s3(&repo, &repo.root, &server, &["remote", "list", "--json"])
        .ok()
        .json();
    let remote = &listed["remotes"][0];
    assert_eq!(remote["autopush"], true, "{listed}");
    assert_eq!(remote["endpoint"], server.endpoint.as_str(), "{listed}");
    assert!(
        remote["credentials"]
            .as_str()
            .unwrap()
            .contains("AWS_ACCESS_KEY_ID"),
        "{listed}"
    );
    let secret = server.secret_key.as_str();
    let config = s3(&repo, &repo.root, &server, &["config"]).ok();
    let plain_list = s3(&repo, &repo.root, &server, &["remote", "list"]).ok();
    for (what, text) in [
        (
            "git config",
            fs::read_to_string(repo.root.join(".git/config")).unwrap(),
        ),
        ("remote list", listed.to_string()),
        ("remote list (text)", plain_list.stdout + &plain_list.stderr),
        ("dbguard config", config.stdout + &config.stderr),
        (
            "push.log",
            fs::read_to_string(repo.store().join("push.log")).unwrap_or_default(),
        ),
    ] {
        assert!(!text.contains(secret), "the secret is in {what}:\n{text}");
    }
    let catalog = fs::read(repo.store().join("catalog.db")).unwrap();
    assert!(
        !catalog
            .windows(secret.len())
            .any(|w| w == secret.as_bytes()),
        "the secret is in the catalog"
    );
}

#[test]
fn two_clones_share_a_bucket_and_prune_touches_only_its_own() {
    let Some(server) = S3Server::with_test_bucket() else {
        return;
    };
    let repo = TestRepo::new();
    let (_, clone) = repo.remote_and_clone();
    make_posts_db(&repo.root.join("posts.db"), 3000, 8);
    make_posts_db(&clone.join("posts.db"), 4000, 8);
    for dir in [&repo.root, &clone] {
        add_s3_remote(&repo, dir, &server, "shared");
    }
    for round in 0..3 {
        for dir in [&repo.root, &clone] {
            add_posts(
                &rusqlite::Connection::open(dir.join("posts.db")).unwrap(),
                2000 + round * 50,
                300,
            );
            s3(&repo, dir, &server, &["snapshot", "posts.db"]).ok();
        }
    }
    for dir in [&repo.root, &clone] {
        s3(&repo, dir, &server, &["push"]).ok();
    }
    let clone_store = clone.join(".git/dbguard");
    let theirs_before: Vec<(String, u64)> = server
        .objects(TEST_BUCKET, "shared")
        .into_iter()
        .filter(|(name, _)| !is_in_store_of(&repo.store(), name))
        .collect();
    assert!(theirs_before.len() > 3, "{theirs_before:?}");

    // A dry run names the records that would go, and deletes nothing anywhere.
    let everything_before = server.objects(TEST_BUCKET, "shared");
    let dry = s3(
        &repo,
        &repo.root,
        &server,
        &[
            "prune",
            "--keep-last",
            "1",
            "--remote",
            "backup",
            "--dry-run",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(
        dry["remote"]["snapshot_ids"].as_array().unwrap().len(),
        2,
        "{dry}"
    );
    assert_eq!(server.objects(TEST_BUCKET, "shared"), everything_before);
    assert_eq!(
        repo.dbguard(["log", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let pruned = s3(
        &repo,
        &repo.root,
        &server,
        &["prune", "--keep-last", "1", "--remote", "backup", "--json"],
    )
    .ok()
    .json();
    assert_eq!(
        pruned["remote"]["snapshot_ids"].as_array().unwrap().len(),
        2,
        "{pruned}"
    );
    let theirs_after: Vec<(String, u64)> = server
        .objects(TEST_BUCKET, "shared")
        .into_iter()
        .filter(|(name, _)| !is_in_store_of(&repo.store(), name))
        .collect();
    assert_eq!(
        theirs_after, theirs_before,
        "the other clone's objects changed"
    );
    let ours = remote_objects(
        &server,
        &format!("shared/stores/{}", store_id(&repo.store())),
        ".pack",
    );
    assert_eq!(
        ours,
        pack_files(&repo.store()),
        "the remote keeps what the store keeps"
    );
    s3(
        &repo,
        &repo.root,
        &server,
        &["verify", "--remote", "backup"],
    )
    .ok();

    // A third machine fetches both clones' snapshots: 1 + 3.
    let third = TestRepo::new();
    add_s3_remote(&third, &third.root, &server, "shared");
    let fetched = s3(&third, &third.root, &server, &["fetch", "--json"])
        .ok()
        .json();
    assert_eq!(fetched["fetched"].as_array().unwrap().len(), 4, "{fetched}");
    let newest = third.restore_to(
        fetched["fetched"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                f["origin"]
                    .as_str()
                    .unwrap()
                    .starts_with(&store_id(&clone_store))
            })
            .map(|f| f["id"].as_i64().unwrap())
            .max()
            .unwrap(),
        "theirs.db",
    );
    assert_eq!(
        sqlite_count(&newest, "posts"),
        sqlite_count(&clone.join("posts.db"), "posts")
    );

    // A copy of a clone's store pushing to the same place is refused, and told how.
    let copy = repo.path("copy");
    let copied = std::process::Command::new("cp")
        .args(["-a", clone.to_str().unwrap(), copy.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    let refused = s3(&repo, &copy, &server, &["push"]).fails_with(1);
    refused.is_clear_error("");
    assert!(
        refused.stderr.contains("--new-identity"),
        "{}",
        refused.stderr
    );
    s3(&repo, &copy, &server, &["push", "--new-identity"]).ok();
    assert_ne!(store_id(&copy.join(".git/dbguard")), store_id(&clone_store));
}

/// This store's id, as its catalog holds it.
fn store_id(store: &Path) -> String {
    let conn = rusqlite::Connection::open(store.join("catalog.db")).unwrap();
    conn.query_row(
        "SELECT value FROM store_meta WHERE key = 'store_id'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn is_in_store_of(store: &Path, object: &str) -> bool {
    object.contains(&format!("/stores/{}/", store_id(store)))
}

#[test]
fn a_file_remote_round_trips_and_a_damaged_pack_is_named_not_fetched() {
    let repo = TestRepo::new();
    let target = repo.path("nas");
    make_posts_db(&repo.root.join("posts.db"), 20_000, 40);
    let url = format!("file://{}", target.display());
    repo.dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    repo.dbguard(["snapshot", "posts.db"]).ok();
    add_posts(
        &rusqlite::Connection::open(repo.root.join("posts.db")).unwrap(),
        5000,
        40,
    );
    repo.dbguard(["snapshot", "posts.db"]).ok();
    let pushed = repo.dbguard(["push", "--json"]).ok().json();
    assert_eq!(pushed["pushed"].as_array().unwrap().len(), 2, "{pushed}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&target).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o700,
        "the remote directory is private like the store"
    );
    repo.dbguard(["verify", "--remote", "nas"]).ok();

    let fresh = TestRepo::new();
    fresh
        .dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    let fetched = fresh.dbguard(["fetch", "--json"]).ok().json();
    assert_eq!(fetched["fetched"].as_array().unwrap().len(), 2, "{fetched}");
    let out = fresh.restore_to(2, "back.db");
    assert_eq!(sqlite_count(&out, "posts"), 25_000);

    // One byte of one remote pack flipped: verify names it, a new machine fetches
    // nothing from it and keeps a store that verifies.
    let pack = find_pack(&target);
    let mut bytes = fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&pack, bytes).unwrap();
    let damaged = repo
        .dbguard(["verify", "--remote", "nas", "--json"])
        .fails_with(1);
    let report = damaged.json();
    assert!(
        report["problems"].to_string().contains(
            pack.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches(".pack")
        ),
        "{report}"
    );
    assert!(!report["broken"].as_array().unwrap().is_empty(), "{report}");

    let other = TestRepo::new();
    other
        .dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    let refused = other.dbguard(["fetch"]);
    assert!(
        refused.stderr.contains("cannot fetch snapshot"),
        "{}",
        refused.stderr
    );
    other.dbguard(["verify"]).ok();
    let log = other.dbguard(["log", "--json"]).ok().json();
    for entry in log.as_array().unwrap() {
        let id = entry["id"].as_i64().unwrap();
        let out = other.restore_to(id, &format!("got-{id}.db"));
        assert_eq!(quick_check(&out), "ok");
    }
}

fn find_pack(dir: &Path) -> PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "pack") {
                return path;
            }
        }
    }
    panic!("no pack under {}", dir.display());
}

#[test]
fn remote_commands_refuse_bad_names_urls_and_missing_remotes_clearly() {
    let repo = TestRepo::new();
    let no_remote = repo.dbguard(["push"]).fails_with(1);
    no_remote.is_clear_error("no remote is configured");
    for (args, needle) in [
        (
            vec!["remote", "add", "a b", "s3://bucket/x"],
            "cannot name a remote",
        ),
        (
            vec!["remote", "add", "x", "https://example.com/x"],
            "cannot add remote x",
        ),
        (
            vec!["remote", "add", "x", "s3://AKIA:secret@bucket/x"],
            "cannot add remote x",
        ),
        (
            vec!["remote", "add", "x", "file://relative/path"],
            "cannot add remote x",
        ),
        (
            vec![
                "remote",
                "add",
                "x",
                "s3://bucket/x",
                "--endpoint",
                "127.0.0.1:9000",
            ],
            "is not an http",
        ),
        (vec!["remote", "remove", "nope"], "no remote named"),
        (vec!["fetch", "nope"], "no remote named"),
        (vec!["verify", "--remote", "nope"], "no remote named"),
    ] {
        let run = repo.dbguard(&args).fails_with(1);
        run.is_clear_error(needle);
    }
    // A remote broken by hand in git config is left out, loudly; local protection stays.
    repo.git(["config", "dbguard.remote.typo.url", "s3:/bucket"]);
    make_posts_db(&repo.root.join("posts.db"), 10, 8);
    let snapshot = repo.dbguard(["snapshot", "posts.db"]).ok();
    assert!(
        snapshot.stderr.contains("dbguard.remote.typo.url") && snapshot.stderr.contains("left out"),
        "{}",
        snapshot.stderr
    );
    let push = repo.dbguard(["push", "typo"]).fails_with(1);
    assert!(
        push.stderr.contains("left out")
            && push
                .stderr
                .contains("Error: there is no remote named `typo`"),
        "{}",
        push.stderr
    );
    repo.git(["config", "--unset", "dbguard.remote.typo.url"]);
    let config = fs::read_to_string(repo.root.join(".git/config")).unwrap();
    assert!(!config.contains("secret"), "{config}");
    assert!(
        !config.contains("dbguard.remote") && !config.contains("[dbguard"),
        "{config}"
    );
}

/// Start `dbguard args` in `dir`, kill -9 it after `delay`; whether it had finished.
fn kill_after(repo: &TestRepo, dir: &Path, args: &[&str], delay: Duration) -> bool {
    let mut child = repo
        .command(dbguard_bin(), dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    !kill_9_after(&mut child, delay)
}

#[test]
fn push_and_fetch_killed_at_random_points_leave_stores_that_verify_and_finish_later() {
    let repo = TestRepo::new();
    make_blob_db(&repo.root.join("blobs.db"), 480, 100_000);
    repo.dbguard(["snapshot", "blobs.db"]).ok();
    let target = repo.path("nas");
    let url = format!("file://{}", target.display());
    repo.dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    // A deterministic spread of kill points (ms), from before the first byte to late.
    let delays = [5u64, 40, 90, 160, 260, 400];
    let mut landed = 0;
    for delay in delays {
        if kill_after(&repo, &repo.root, &["push"], Duration::from_millis(delay)) {
            break;
        }
        landed += 1;
        repo.dbguard(["verify"]).ok();
    }
    assert!(landed >= 1, "no kill landed while the push ran");
    let pushed = repo.dbguard(["push", "--json"]).ok().json();
    assert_eq!(
        pushed["pushed"].as_array().unwrap().len()
            + pushed["already_there"].as_u64().unwrap() as usize,
        1,
        "{pushed}"
    );
    repo.dbguard(["verify", "--remote", "nas"]).ok();

    let fresh = TestRepo::new();
    fresh
        .dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    for delay in delays {
        if kill_after(
            &fresh,
            &fresh.root,
            &["fetch"],
            Duration::from_millis(delay),
        ) {
            break;
        }
        fresh.dbguard(["verify"]).ok();
        // Nothing half-fetched is listed.
        let log = fresh.dbguard(["log", "--json"]).ok().json();
        assert!(log.as_array().unwrap().len() <= 1, "{log}");
    }
    fresh.dbguard(["fetch"]).ok();
    let log = fresh.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    let id = log[0]["id"].as_i64().unwrap();
    let back = fresh.restore_to(id, "back.db");
    assert_eq!(sqlite_count(&back, "blobs"), 480);
    assert_eq!(
        blob_digest(&back),
        blob_digest(&repo.root.join("blobs.db")),
        "every blob back"
    );
    fresh.dbguard(["verify"]).ok();
}

#[test]
fn another_clones_fetched_snapshots_never_crowd_out_or_stand_for_this_clones_own() {
    let repo = TestRepo::new();
    let url = format!("file://{}", repo.path("nas").display());
    // This clone's posts.db: 100 rows, one snapshot of its own.
    make_posts_db(&repo.root.join("posts.db"), 100, 8);
    repo.dbguard(["snapshot", "posts.db"]).ok();
    let own = repo.dbguard(["log", "--json", "posts.db"]).ok().json()[0]["id"]
        .as_i64()
        .unwrap();
    // A second clone of the same repository (another machine) has a posts.db of its own,
    // bigger, snapshotted three times and pushed to the shared remote.
    let (_, clone) = repo.remote_and_clone();
    make_posts_db(&clone.join("posts.db"), 1000, 8);
    for _ in 0..3 {
        add_posts(
            &rusqlite::Connection::open(clone.join("posts.db")).unwrap(),
            10,
            8,
        );
        repo.dbguard_in(&clone, ["snapshot", "posts.db"]).ok();
    }
    repo.dbguard_in(&clone, ["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    repo.dbguard_in(&clone, ["push"]).ok();

    repo.dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    let fetched = repo.dbguard(["fetch", "--json"]).ok().json();
    assert_eq!(fetched["fetched"].as_array().unwrap().len(), 3, "{fetched}");

    // status compares the file with this clone's own snapshot, not with the other
    // machine's bigger one: nothing shrank here.
    let status = repo.dbguard(["status", "--json"]).ok().json();
    let row = &status[0];
    assert_eq!(row["path"], "posts.db", "{status}");
    assert_eq!(row["state"], "ok", "{status}");
    assert_eq!(row["last_snapshot"]["id"], own, "{status}");

    // keep-last 1 keeps this clone's newest (its only one) and the other store's newest.
    let pruned = repo
        .dbguard(["prune", "--keep-last", "1", "--json"])
        .ok()
        .json();
    assert_eq!(pruned["removed"].as_array().unwrap().len(), 2, "{pruned}");
    let log = repo.dbguard(["log", "--json", "posts.db"]).ok().json();
    let ids: Vec<i64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{log}");
    assert!(
        ids.contains(&own),
        "this clone's own snapshot was pruned: {log}"
    );
    let back = repo.restore_to(own, "own.db");
    assert_eq!(sqlite_count(&back, "posts"), 100);
    let newest_fetched = repo.restore_to(*ids.iter().max().unwrap(), "fetched.db");
    assert_eq!(sqlite_count(&newest_fetched, "posts"), 1030);
}
