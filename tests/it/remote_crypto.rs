//! Encrypted remotes on a real S3 server (SeaweedFS): a push, a deleted clone fetched
//! back with the key; the bucket's bytes and names without a row, table name or pack
//! hash; a wrong or missing key failing in one line and changing nothing; a tampered
//! object caught by `verify --remote` and `fetch`; push append-only (it works with
//! credentials that may not delete, while prune with them fails); an unencrypted remote
//! converted.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dbguard::testing::*;

const PASSPHRASE: &str = "correct horse battery staple";
/// A row value and a table name that must never reach the bucket in plain.
const MARKER: &str = "ledger-entry-7f3a9c51e2d84b06";
const TABLE: &str = "confidential_ledger";

struct Env {
    vars: Vec<(&'static str, String)>,
}

impl Env {
    /// The server's admin credentials and the passphrase in DBGUARD_PASSWORD_FILE.
    fn new(server: &S3Server, passphrase_file: &Path) -> Env {
        let mut vars: Vec<(&'static str, String)> = server.credentials().into();
        vars.push((
            "DBGUARD_PASSWORD_FILE",
            passphrase_file.display().to_string(),
        ));
        Env { vars }
    }

    fn without_passphrase(server: &S3Server) -> Env {
        Env {
            vars: server.credentials().into(),
        }
    }

    fn with(mut self, key: &'static str, value: String) -> Env {
        self.vars.retain(|(k, _)| *k != key);
        self.vars.push((key, value));
        self
    }
}

fn passphrase_file(repo: &TestRepo, name: &str, text: &str) -> PathBuf {
    let path = repo.path(name);
    fs::write(&path, format!("{text}\n")).unwrap();
    path
}

/// A repository ignoring `*.db`, pushed to a bare origin so it can be cloned afresh,
/// with `ledger.db`: a table named [`TABLE`] whose rows hold [`MARKER`].
fn repo_with_ledger() -> (TestRepo, PathBuf) {
    let (repo, origin) = TestRepo::ignoring_databases_with_origin();
    let conn = rusqlite::Connection::open(repo.root.join("ledger.db")).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE {TABLE}(id INTEGER PRIMARY KEY, entry TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO {TABLE}(entry) SELECT '{MARKER}' || i FROM n;"
    ))
    .unwrap();
    (repo, origin)
}

fn add_remote(
    repo: &TestRepo,
    dir: &Path,
    server: &S3Server,
    env: &Env,
    prefix: &str,
    extra: &[&str],
) -> Run {
    let url = format!("s3://{TEST_BUCKET}/{prefix}");
    let mut args = vec![
        "remote",
        "add",
        "backup",
        url.as_str(),
        "--endpoint",
        &server.endpoint,
    ];
    args.extend_from_slice(extra);
    repo.dbguard_with(dir, &env.vars, &args)
}

/// Every object under `prefix`: path → bytes, read from the server's filer.
fn bucket_bytes(server: &S3Server, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    server
        .objects(TEST_BUCKET, prefix)
        .into_iter()
        .map(|(path, _)| {
            let bytes = server.object_bytes(TEST_BUCKET, &path);
            (path, bytes)
        })
        .collect()
}

/// The local pack names (content hashes).
fn pack_hashes(store: &Path) -> Vec<String> {
    fs::read_dir(store.join("packs"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".pack")
                .map(str::to_string)
        })
        .collect()
}

/// Which of `needles` appear in any name or byte of `objects`.
fn found_in(objects: &BTreeMap<String, Vec<u8>>, needles: &[String]) -> Vec<String> {
    needles
        .iter()
        .filter(|needle| {
            objects.iter().any(|(name, bytes)| {
                name.contains(needle.as_str())
                    || bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            })
        })
        .cloned()
        .collect()
}

fn clone_afresh(repo: &TestRepo, origin: &Path) {
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
}

#[test]
fn an_encrypted_push_hides_everything_and_a_fresh_clone_fetches_it_only_with_the_key() {
    let Some(server) = S3Server::with_test_bucket() else {
        return;
    };
    let (repo, origin) = repo_with_ledger();
    let secret = passphrase_file(&repo, "passphrase", PASSPHRASE);
    let env = Env::new(&server, &secret);
    let added = add_remote(&repo, &repo.root, &server, &env, "lab", &[]).ok();
    assert!(
        added.stderr.contains("encrypted with a new key"),
        "{}",
        added.stderr
    );
    repo.dbguard_with(&repo.root, &env.vars, &["snapshot", "ledger.db"])
        .ok();
    let pushed = repo
        .dbguard_with(&repo.root, &env.vars, &["push", "--json"])
        .ok()
        .json();
    assert_eq!(pushed["pushed"].as_array().unwrap().len(), 1, "{pushed}");

    // The same store pushed in plain elsewhere shows what the encrypted copy must not.
    let plain_env = Env::without_passphrase(&server);
    let url = format!("s3://{TEST_BUCKET}/plain");
    repo.dbguard_with(
        &repo.root,
        &plain_env.vars,
        &[
            "remote",
            "add",
            "plain",
            &url,
            "--endpoint",
            &server.endpoint,
            "--no-encryption",
        ],
    )
    .ok();
    repo.dbguard_with(&repo.root, &plain_env.vars, &["push", "plain"])
        .ok();
    let hashes = pack_hashes(&repo.store());
    assert!(!hashes.is_empty());
    let mut needles = vec![
        TABLE.to_string(),
        "ledger.db".to_string(),
        "snapshots".to_string(),
    ];
    needles.extend(hashes.iter().cloned());
    let plain = bucket_bytes(&server, "plain");
    assert_eq!(
        found_in(&plain, &needles),
        needles,
        "the control shows them all"
    );
    let encrypted = bucket_bytes(&server, "lab");
    assert!(encrypted.len() > hashes.len(), "{:?}", encrypted.keys());
    needles.push(MARKER.to_string());
    needles.push("stores".to_string());
    needles.push(repo.store().display().to_string());
    assert_eq!(found_in(&encrypted, &needles), Vec::<String>::new());
    for (name, bytes) in &encrypted {
        let below = name.strip_prefix("lab/").unwrap();
        if below.starts_with("keys/") {
            assert!(
                String::from_utf8_lossy(bytes).contains("argon2id"),
                "{name}"
            );
        } else {
            assert!(bytes.starts_with(b"DBGX"), "{name} is not sealed");
        }
    }

    // Deleted clone, cloned again: without the key nothing comes back and nothing changes.
    clone_afresh(&repo, &origin);
    let wrong = passphrase_file(&repo, "wrong", "not the passphrase");
    let wrong_env = Env::new(&server, &wrong);
    let refused = add_remote(&repo, &repo.root, &server, &wrong_env, "lab", &[]).fails_with(1);
    refused.is_clear_error("the passphrase does not open this remote's key");
    let listed = repo.dbguard(["remote", "list"]).ok();
    assert!(!listed.stdout.contains("backup"), "{}", listed.stdout);
    add_remote(&repo, &repo.root, &server, &env, "lab", &[]).ok();
    let before = bucket_bytes(&server, "lab");
    let missing = repo
        .dbguard_with(
            &repo.root,
            &Env::without_passphrase(&server).vars,
            &["fetch", "backup"],
        )
        .fails_with(1);
    missing.is_clear_error("the remote is encrypted and no passphrase or key file was given");
    let bad = repo
        .dbguard_with(&repo.root, &wrong_env.vars, &["fetch", "backup"])
        .fails_with(1);
    bad.is_clear_error("does not open this remote's key");
    let bad_push = repo
        .dbguard_with(
            &repo.root,
            &wrong_env.vars,
            &["verify", "--remote", "backup"],
        )
        .fails_with(1);
    bad_push.is_clear_error("does not open this remote's key");
    let nothing = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(nothing.as_array().unwrap().len(), 0, "{nothing}");
    assert_eq!(
        bucket_bytes(&server, "lab"),
        before,
        "the bucket is unchanged"
    );

    // With the key: every row back.
    let fetched = repo
        .dbguard_with(&repo.root, &env.vars, &["fetch", "backup", "--json"])
        .ok()
        .json();
    assert_eq!(fetched["fetched"].as_array().unwrap().len(), 1, "{fetched}");
    repo.dbguard_with(&repo.root, &env.vars, &["verify", "--remote", "backup"])
        .ok();
    repo.dbguard(["restore", "ledger.db"]).ok();
    let db = repo.root.join("ledger.db");
    assert_eq!(sqlite_count(&db, TABLE), 2000);
    assert_eq!(quick_check(&db), "ok");

    // A key file exported from it opens it without the passphrase; a passwd change
    // retires the old passphrase.
    let key_file = repo.path("lab.key");
    repo.dbguard_with(
        &repo.root,
        &env.vars,
        &[
            "remote",
            "key",
            "export",
            "backup",
            key_file.to_str().unwrap(),
        ],
    )
    .ok();
    let by_file =
        Env::without_passphrase(&server).with("DBGUARD_KEY_FILE", key_file.display().to_string());
    repo.dbguard_with(&repo.root, &by_file.vars, &["verify", "--remote", "backup"])
        .ok();
    let new_secret = passphrase_file(&repo, "new-passphrase", "a new passphrase");
    let passwd_env = Env::new(&server, &secret).with(
        "DBGUARD_NEW_PASSWORD_FILE",
        new_secret.display().to_string(),
    );
    repo.dbguard_with(
        &repo.root,
        &passwd_env.vars,
        &["remote", "key", "passwd", "backup"],
    )
    .ok();
    let old = repo
        .dbguard_with(&repo.root, &env.vars, &["verify", "--remote", "backup"])
        .fails_with(1);
    old.is_clear_error("does not open");
    repo.dbguard_with(
        &repo.root,
        &Env::new(&server, &new_secret).vars,
        &["verify", "--remote", "backup"],
    )
    .ok();
}

#[test]
fn a_tampered_object_is_caught_by_verify_and_fetch() {
    let Some(server) = S3Server::with_test_bucket() else {
        return;
    };
    let (repo, origin) = repo_with_ledger();
    let env = Env::new(&server, &passphrase_file(&repo, "passphrase", PASSPHRASE));
    add_remote(&repo, &repo.root, &server, &env, "lab", &[]).ok();
    repo.dbguard_with(&repo.root, &env.vars, &["snapshot", "ledger.db"])
        .ok();
    repo.dbguard_with(&repo.root, &env.vars, &["push"]).ok();
    repo.dbguard_with(&repo.root, &env.vars, &["verify", "--remote", "backup"])
        .ok();

    // One byte of the largest object (a pack) flipped, same size.
    let objects = server.objects(TEST_BUCKET, "lab");
    let (largest, _) = objects
        .iter()
        .max_by_key(|(_, size)| *size)
        .unwrap()
        .clone();
    let mut bytes = server.object_bytes(TEST_BUCKET, &largest);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    server.overwrite_object(TEST_BUCKET, &largest, &bytes);
    let verify = repo.dbguard_with(&repo.root, &env.vars, &["verify", "--remote", "backup"]);
    assert_ne!(
        verify.code, 0,
        "verify passed a tampered pack:\n{}",
        verify.stdout
    );
    assert!(
        format!("{}{}", verify.stdout, verify.stderr)
            .contains("does not open with the remote's key"),
        "{}\n{}",
        verify.stdout,
        verify.stderr
    );
    clone_afresh(&repo, &origin);
    add_remote(&repo, &repo.root, &server, &env, "lab", &[]).ok();
    let fetch = repo.dbguard_with(&repo.root, &env.vars, &["fetch", "backup", "--json"]);
    let both = format!("{}{}", fetch.stdout, fetch.stderr);
    assert!(
        both.contains("does not open with the remote's key"),
        "{both}"
    );
    let log = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(
        log.as_array().unwrap().len(),
        0,
        "nothing tampered is kept: {log}"
    );
}

#[test]
fn push_never_deletes_or_overwrites_and_works_with_credentials_that_cannot_delete() {
    let Some(server) = S3Server::with_test_bucket() else {
        return;
    };
    if !server.deny_deletes_to_appender(TEST_BUCKET) {
        return;
    }
    let (repo, _origin) = repo_with_ledger();
    let secret = passphrase_file(&repo, "passphrase", PASSPHRASE);
    let admin = Env::new(&server, &secret);
    let mut appender = Env::new(&server, &secret);
    for (key, value) in server.appender_credentials() {
        appender = appender.with(key, value);
    }
    add_remote(&repo, &repo.root, &server, &appender, "lab", &[]).ok();
    repo.dbguard_with(&repo.root, &appender.vars, &["snapshot", "ledger.db"])
        .ok();
    repo.dbguard_with(&repo.root, &appender.vars, &["push"])
        .ok();
    let first = bucket_bytes(&server, "lab");

    // A second snapshot and two more pushes: everything there before stays, byte for
    // byte (an object written again would differ: every seal has a fresh nonce).
    let conn = rusqlite::Connection::open(repo.root.join("ledger.db")).unwrap();
    conn.execute_batch(&format!("DELETE FROM {TABLE} WHERE id > 1000;"))
        .unwrap();
    drop(conn);
    repo.dbguard_with(&repo.root, &appender.vars, &["snapshot", "ledger.db"])
        .ok();
    let second = repo
        .dbguard_with(&repo.root, &appender.vars, &["push", "--json"])
        .ok()
        .json();
    assert_eq!(second["pushed"].as_array().unwrap().len(), 1, "{second}");
    repo.dbguard_with(&repo.root, &appender.vars, &["push"])
        .ok();
    let after = bucket_bytes(&server, "lab");
    for (name, bytes) in &first {
        assert_eq!(
            after.get(name),
            Some(bytes),
            "{name} was deleted or overwritten"
        );
    }
    assert!(after.len() > first.len());

    // Those credentials cannot delete: prune --remote says so in one line; the
    // owner's credentials can.
    let refused = repo
        .dbguard_with(
            &repo.root,
            &appender.vars,
            &["prune", "--keep-last", "1", "--remote", "backup"],
        )
        .fails_with(1);
    let error = refused
        .stderr
        .lines()
        .find(|l| l.starts_with("Error: "))
        .unwrap_or_else(|| panic!("no error line:\n{}", refused.stderr));
    assert!(error.contains("refused"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("credentials that may delete"),
        "{}",
        refused.stderr
    );
    // (The prune pushed its repacked pack first; nothing went.)
    let refused_after = bucket_bytes(&server, "lab");
    for (name, bytes) in &after {
        assert_eq!(refused_after.get(name), Some(bytes), "{name} was deleted");
    }
    let pruned = repo
        .dbguard_with(
            &repo.root,
            &admin.vars,
            &["prune", "--keep-last", "1", "--remote", "backup", "--json"],
        )
        .ok()
        .json();
    assert_eq!(
        pruned["remote"]["snapshot_ids"].as_array().unwrap().len(),
        1,
        "{pruned}"
    );
    assert!(bucket_bytes(&server, "lab").len() < refused_after.len());
}

#[test]
fn an_unencrypted_remote_is_converted_and_its_plain_objects_removed_when_asked() {
    let Some(server) = S3Server::with_test_bucket() else {
        return;
    };
    let (repo, origin) = repo_with_ledger();
    let env = Env::new(&server, &passphrase_file(&repo, "passphrase", PASSPHRASE));
    add_remote(
        &repo,
        &repo.root,
        &server,
        &env,
        "lab",
        &["--no-encryption"],
    )
    .ok();
    repo.dbguard_with(&repo.root, &env.vars, &["snapshot", "ledger.db"])
        .ok();
    repo.dbguard_with(&repo.root, &env.vars, &["push"]).ok();
    let plain: Vec<String> = server
        .objects(TEST_BUCKET, "lab")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(plain.iter().any(|n| n.contains("/stores/")), "{plain:?}");

    // An encrypted remote add over it is refused: it holds plain copies.
    let over = add_remote(&repo, &repo.root, &server, &env, "lab", &[]).fails_with(1);
    over.is_clear_error("not encrypted");

    let converted = repo
        .dbguard_with(&repo.root, &env.vars, &["remote", "encrypt", "backup"])
        .ok();
    assert!(
        converted.stderr.contains("--remove-plaintext"),
        "{}",
        converted.stderr
    );
    let both: Vec<String> = server
        .objects(TEST_BUCKET, "lab")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        plain.iter().all(|n| both.contains(n)),
        "the plain copies stay until asked"
    );
    repo.dbguard_with(
        &repo.root,
        &env.vars,
        &["remote", "encrypt", "backup", "--remove-plaintext"],
    )
    .ok();
    let after = bucket_bytes(&server, "lab");
    assert!(
        after.keys().all(|n| !n.contains("/stores/")),
        "{:?}",
        after.keys()
    );
    assert_eq!(found_in(&after, &[TABLE.to_string()]), Vec::<String>::new());

    // New pushes are encrypted, and a fresh clone fetches with the key.
    repo.dbguard_with(&repo.root, &env.vars, &["push"]).ok();
    clone_afresh(&repo, &origin);
    add_remote(&repo, &repo.root, &server, &env, "lab", &[]).ok();
    let fetched = repo
        .dbguard_with(&repo.root, &env.vars, &["fetch", "backup", "--json"])
        .ok()
        .json();
    assert_eq!(fetched["fetched"].as_array().unwrap().len(), 1, "{fetched}");
    repo.dbguard(["restore", "ledger.db"]).ok();
    assert_eq!(sqlite_count(&repo.root.join("ledger.db"), TABLE), 2000);
}

/// Autopush runs in git hooks, where nobody can type a passphrase: `remote add
/// --autopush` of a remote that only a typed passphrase opens says so at once (the
/// background pushes would otherwise fail unseen), and the remedy it names works.
#[test]
fn autopush_to_a_remote_only_a_typed_passphrase_opens_is_warned_about() {
    let repo = TestRepo::new();
    let nas = repo.path("nas");
    let url = format!("file://{}", nas.display());
    let mut terminal = repo.on_a_pty(
        &repo.root,
        &["dbguard", "remote", "add", "nas", &url, "--autopush"],
    );
    terminal.wait_for("New passphrase of remote nas", Duration::from_secs(30));
    terminal.send("correct horse\n");
    terminal.wait_for("Again", Duration::from_secs(30));
    terminal.send("correct horse\n");
    let (code, shown) = terminal.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("autopush runs in git hooks where nobody can type it"),
        "{shown}"
    );
    assert!(shown.contains("dbguard remote key export nas"), "{shown}");

    // With a key file named in the remote's settings, nothing is said.
    let passphrase = passphrase_file(&repo, "nas-pass", "correct horse");
    let key = repo.path("nas.key");
    let env = Env {
        vars: vec![("DBGUARD_PASSWORD_FILE", passphrase.display().to_string())],
    };
    repo.dbguard_with(
        &repo.root,
        &env.vars,
        &["remote", "key", "export", "nas", key.to_str().unwrap()],
    )
    .ok();
    let other = TestRepo::new();
    let quiet = other
        .dbguard_with(
            &other.root,
            &[] as &[(&str, &str)],
            &[
                "remote",
                "add",
                "nas",
                &url,
                "--autopush",
                "--key-file",
                key.to_str().unwrap(),
            ],
        )
        .ok();
    assert!(
        !quiet.stderr.contains("nobody can type it"),
        "{}",
        quiet.stderr
    );
}
