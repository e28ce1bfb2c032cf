//! Hostile input, crafted as an attacker would: Parquet files whose metadata carries SQL,
//! a table definition with a comment in it, table names with terminal escape sequences,
//! secrets on git's command line, Parquet files from pyarrow in every codec, and a remote
//! whose packs and records lie. Each test checks what a user would: tables intact, no
//! file created, nothing printed raw, no secret anywhere, memory bounded.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dbguard::testing::*;

/// A SQLite database holding `users` with three rows: what an attack would destroy.
fn users_db(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO users(name) VALUES ('ann'), ('bob'), ('cy');",
    )
    .unwrap();
}

fn table_names(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut q = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap();
    q.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The first line of stderr is the error, it says `needle`, and a hint follows.
#[track_caller]
fn assert_clear_error(run: &Run, needle: &str) {
    // An import into a working tree first says which snapshot it took.
    assert!(
        run.stderr.lines().any(|l| l.starts_with("Error: ")),
        "no error line:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(needle),
        "expected {needle:?} in:\n{}",
        run.stderr
    );
    assert!(
        run.hints()
            .iter()
            .any(|h| *h != dbguard::testing::GENERAL_HINT),
        "no hint of its own in:\n{}",
        run.stderr
    );
}

/// DuckDB writes a Parquet file whose key-value metadata says what `kv` says
/// (`COPY … (KV_METADATA {…})`, as any tool can).
fn duckdb_parquet(path: &Path, kv: &[(&str, String)]) {
    let script = r#"
import duckdb, json, sys
path, kv = sys.argv[1], json.loads(sys.argv[2])
q = lambda s: "'" + s.replace("'", "''") + "'"
meta = ", ".join(f"{q(k)}: {q(v)}" for k, v in kv.items())
duckdb.sql(f"COPY (SELECT range AS a, 'row ' || range AS b FROM range(5)) TO {q(path)} (FORMAT parquet, KV_METADATA {{{meta}}})")
"#;
    let kv: serde_json::Map<String, serde_json::Value> = kv
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    python_out(
        script,
        &[
            path.to_str().unwrap(),
            &serde_json::Value::Object(kv).to_string(),
        ],
    );
}

#[test]
fn sql_in_a_parquet_files_metadata_never_runs() {
    assert!(
        python_has("duckdb"),
        "needs the Python module duckdb (.ci/run installs it)"
    );
    let repo = TestRepo::new();
    let target = repo.root.join("app.db");
    users_db(&target);
    let planted = repo.path("planted.db");
    let attacks = [
        // Drops a table and writes a file of the attacker's choice through ATTACH.
        (
            "dbguard.sqlite.sql",
            format!(
                "CREATE TABLE t (a INTEGER, b TEXT); DROP TABLE users; ATTACH '{}' AS p; CREATE TABLE p.x(y)",
                planted.display()
            ),
        ),
        (
            "dbguard.sqlite.sql",
            format!("ATTACH '{}' AS p", planted.display()),
        ),
        (
            "dbguard.sqlite.sql",
            "CREATE TRIGGER t AFTER INSERT ON users BEGIN DELETE FROM users; END".into(),
        ),
        // The declared type of a column, pasted into a CREATE statement.
        (
            "dbguard.sqlite.decltype.a",
            "INTEGER); DROP TABLE users; --".into(),
        ),
    ];
    for (number, (key, value)) in attacks.iter().enumerate() {
        let file = repo.root.join(format!("attack{number}.parquet"));
        duckdb_parquet(&file, &[(key, value.clone())]);
        let run = repo
            .dbguard([
                "import-table",
                file.to_str().unwrap(),
                "--into",
                "app.db",
                "--table",
                "t",
            ])
            .fails_with(1);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_clear_error(&run, "attack");
        assert!(
            run.stderr.contains("create the table yourself"),
            "{}",
            run.stderr
        );
        assert_eq!(table_names(&target), ["users"], "{key}: {value}");
        assert_eq!(sqlite_count(&target, "users"), 3);
        assert!(!planted.exists(), "ATTACH created {}", planted.display());
    }
    // The hint works: with the table there, the file's rows are appended and its
    // metadata is not used.
    rusqlite::Connection::open(&target)
        .unwrap()
        .execute_batch("CREATE TABLE t (a INTEGER, b TEXT)")
        .unwrap();
    let run = repo
        .dbguard([
            "import-table",
            "attack0.parquet",
            "--into",
            "app.db",
            "--table",
            "t",
        ])
        .ok();
    assert!(run.stderr.contains("loaded 5 rows"), "{}", run.stderr);
    assert_eq!(sqlite_count(&target, "t"), 5);
    assert_eq!(sqlite_count(&target, "users"), 3);
    assert!(!planted.exists());
}

#[test]
fn a_table_whose_definition_holds_a_comment_is_exported_and_imported_whole() {
    let repo = TestRepo::new();
    let source = repo.root.join("source.db");
    let conn = rusqlite::Connection::open(&source).unwrap();
    // Valid SQLite: the `-- (` comment ends at the newline. Cut at its `(`, the text
    // became `(x); DROP TABLE users; --\n (a …)`, two statements.
    conn.execute_batch(
        "CREATE TABLE notes -- (x); DROP TABLE users; --
           (id INTEGER PRIMARY KEY, body TEXT NOT NULL CHECK (length(body) > 0));
         INSERT INTO notes(body) VALUES ('one'), ('two');",
    )
    .unwrap();
    drop(conn);
    let run = repo
        .dbguard([
            "export",
            "source.db",
            "--format",
            "parquet",
            "--compression",
            "zstd",
            "--out",
            "out",
            "--json",
        ])
        .ok();
    assert_eq!(
        run.json()[0]["tables"]["notes"]["rows"],
        2,
        "{}",
        run.stdout
    );
    let parquet = find_under(&repo.root.join("out"), "notes.parquet");
    let target = repo.root.join("target.db");
    users_db(&target);
    repo.dbguard([
        "import-table",
        parquet.to_str().unwrap(),
        "--into",
        "target.db",
    ])
    .ok();
    assert_eq!(table_names(&target), ["notes", "users"]);
    assert_eq!(sqlite_count(&target, "notes"), 2);
    assert_eq!(sqlite_count(&target, "users"), 3);
    // The table kept its real definition: the CHECK constraint refuses an empty body.
    let refused = rusqlite::Connection::open(&target)
        .unwrap()
        .execute("INSERT INTO notes(body) VALUES ('')", []);
    assert!(refused.is_err(), "the CHECK constraint was lost");
}

fn find_under(dir: &Path, file_name: &str) -> PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == file_name) {
                return path;
            }
        }
    }
    panic!("no {file_name} under {}", dir.display());
}

#[test]
fn parquet_files_from_pyarrow_load_in_every_codec() {
    assert!(
        python_has("pyarrow"),
        "needs the Python module pyarrow (.ci/run installs it)"
    );
    let repo = TestRepo::new();
    let script = r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
table = pa.table({"id": list(range(1, 2001)), "name": [f"name {i}" for i in range(1, 2001)],
                  "score": [i / 4 for i in range(1, 2001)]})
for codec in sys.argv[2:]:
    pq.write_table(table, f"{sys.argv[1]}/{codec}.parquet", compression=codec)
"#;
    let codecs = ["snappy", "lz4", "gzip", "brotli", "zstd", "none"];
    let mut args = vec![repo.root.to_str().unwrap()];
    args.extend(codecs);
    python_out(script, &args);
    for codec in codecs {
        let run = repo
            .dbguard([
                "import-table",
                &format!("{codec}.parquet"),
                "--into",
                "loaded.db",
                "--table",
                codec,
            ])
            .ok();
        assert!(
            run.stderr.contains("loaded 2,000 rows"),
            "{codec}: {}",
            run.stderr
        );
        let conn = rusqlite::Connection::open(repo.root.join("loaded.db")).unwrap();
        let (rows, ids, last, score): (i64, i64, String, f64) = conn
            .query_row(
                &format!("SELECT count(*), sum(id), max(name), sum(score) FROM \"{codec}\""),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            (rows, ids, last.as_str()),
            (2000, 2001000, "name 999"),
            "{codec}"
        );
        assert_eq!(score, 2001000.0 / 4.0, "{codec}");
    }
    // A file that is no Parquet file at all after its magic blames nobody's export.
    fs::write(repo.root.join("broken.parquet"), b"PAR1 not really").unwrap();
    let run = repo
        .dbguard([
            "import-table",
            "broken.parquet",
            "--into",
            "loaded.db",
            "--table",
            "b",
        ])
        .fails_with(1);
    assert_clear_error(&run, "broken.parquet");
    assert!(!run.stderr.contains("bug in dbguard"), "{}", run.stderr);
}

#[test]
fn escape_sequences_in_table_and_column_names_are_printed_escaped() {
    let repo = TestRepo::new();
    let db = repo.root.join("evil.db");
    let table = "t\x1b]0;pwned\x07\x1b[2J\u{9b}31m";
    let column = "c\x1b[31m\r";
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE \"{table}\" (\"{column}\" TEXT); INSERT INTO \"{table}\" VALUES ('x');"
    ))
    .unwrap();
    drop(conn);
    let runs = [
        repo.dbguard(["snapshot", "evil.db"]).ok(),
        repo.dbguard(["show", "1"]).ok(),
        repo.dbguard(["log"]).ok(),
        repo.dbguard(["status"]),
        repo.dbguard(["diff", "evil.db"]),
        repo.dbguard(["restore", "evil.db", "--from", "1", "--table", "nope"]),
        repo.dbguard(["export", "evil.db", "--format", "jsonl", "--out", "x"]),
    ];
    for run in &runs {
        for text in [&run.stdout, &run.stderr] {
            assert!(
                !text.contains(['\x1b', '\x07', '\r', '\u{9b}']),
                "raw control characters printed: {text:?}"
            );
        }
    }
    assert!(
        runs[1]
            .stdout
            .contains("t\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m"),
        "the name is shown, escaped:\n{}",
        runs[1].stdout
    );
    // JSON keeps the exact name for scripts.
    let shown = repo.dbguard(["show", "1", "--json"]).ok();
    assert!(
        !shown.stdout.contains(['\x1b', '\x07', '\u{9b}']),
        "{:?}",
        shown.stdout
    );
    assert!(
        shown.json().to_string().contains("pwned"),
        "{}",
        shown.stdout
    );
    let json = shown.json();
    let tables = json["tables"].as_object().unwrap();
    assert!(tables.contains_key(table), "{json}");
}

/// Every file under `dir`, read whole (the store: catalog, its -wal, packs; a remote).
fn every_byte_under(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                all.extend(fs::read(&path).unwrap_or_default());
            }
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

const HEADER_SECRET: &str = "SEKRIT-HEADER-7d1f";
const URL_SECRET: &str = "SEKRIT-TOKEN-93ab";

#[test]
fn secrets_on_gits_command_line_reach_no_catalog_log_or_remote() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 200, 20);
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "posts"]);
    add_posts(&rusqlite::Connection::open(&db).unwrap(), 50, 20);
    let header = format!("http.extraHeader=Authorization: Bearer {HEADER_SECRET}");
    repo.dbguard(["git", "-c", &header, "reset", "--hard"]).ok();
    assert_eq!(sqlite_count(&db, "posts"), 200);
    add_posts(&rusqlite::Connection::open(&db).unwrap(), 10, 20);
    // The fetch of the pull fails (nothing listens there): the guard snapshots anyway.
    let url = format!("https://alice:{URL_SECRET}@127.0.0.1:9/r.git?private_token={URL_SECRET}");
    repo.dbguard(["git", "pull", &url, "main"]);
    let log = repo.dbguard(["log"]).ok();
    let log_json = repo.dbguard(["log", "--json"]).ok();
    assert!(log.stdout.contains("reset --hard"), "{}", log.stdout);
    assert!(log.stdout.contains("<redacted>"), "{}", log.stdout);
    let nas = repo.path("nas");
    repo.dbguard([
        "remote",
        "add",
        "nas",
        &format!("file://{}", nas.display()),
        "--no-encryption",
    ])
    .ok();
    repo.dbguard(["push"]).ok();
    for secret in [HEADER_SECRET, URL_SECRET] {
        for (what, text) in [
            ("log", log.stdout.as_bytes()),
            ("log --json", log_json.stdout.as_bytes()),
            ("the store", &every_byte_under(&repo.store())[..]),
            ("the remote", &every_byte_under(&nas)[..]),
        ] {
            assert!(!contains(text, secret), "{secret} in {what}");
        }
    }

    // A store an older dbguard wrote: its catalog (schema 5) and its records already on
    // the remote hold the secret. The next command migrates the catalog; the next push
    // replaces the records.
    let catalog = repo.store().join("catalog.db");
    let conn = rusqlite::Connection::open(&catalog).unwrap();
    let leaked = serde_json::json!(["dbguard", "git", "-c", header, "reset", "--hard"]).to_string();
    conn.execute("UPDATE operations SET argv = ?1", [&leaked])
        .unwrap();
    // Schema 5 had neither the redaction (6), `after_loss_of` (7) nor the typed
    // completeness columns (8).
    let mut older = String::from("ALTER TABLE snapshots DROP COLUMN after_loss_of;");
    for column in [
        "partial",
        "copy_instant",
        "copy_retries",
        "missing_commits",
        "missing_wal_bytes",
        "missing_since",
        "missing_until",
        "holder_pid",
    ] {
        older.push_str(&format!(" ALTER TABLE snapshots DROP COLUMN {column};"));
    }
    conn.execute_batch(&format!("{older} PRAGMA user_version = 5"))
        .unwrap();
    drop(conn);
    let mut records = 0;
    let mut stack = vec![nas.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.parent().unwrap().ends_with("snapshots") {
                let mut record: serde_json::Value =
                    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
                record["operation"]["argv"] = serde_json::from_str(&leaked).unwrap();
                fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
                records += 1;
            }
        }
    }
    assert!(records >= 1, "{records} records on the remote");
    assert!(contains(&every_byte_under(&nas), HEADER_SECRET));
    let migrated = repo.dbguard(["log", "--json"]).ok();
    assert!(
        !migrated.stdout.contains(HEADER_SECRET),
        "{}",
        migrated.stdout
    );
    let conn = rusqlite::Connection::open(&catalog).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, CATALOG_SCHEMA, "migrated to the current schema");
    drop(conn);
    let pushed = repo.dbguard(["push"]).ok();
    assert!(pushed.stderr.contains("redacted"), "{}", pushed.stderr);
    assert!(
        !contains(&every_byte_under(&nas), HEADER_SECRET),
        "the remote still holds it"
    );
    repo.dbguard(["verify", "--remote", "nas"]).ok();
}

/// The one directory under `dir` named like a store id (`stores/<id>`).
fn remote_space(remote: &Path) -> PathBuf {
    let stores = remote.join("stores");
    let mut spaces: Vec<PathBuf> = fs::read_dir(&stores)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(spaces.len(), 1, "{spaces:?}");
    spaces.remove(0)
}

/// A copy of the remote space `from` under the id `id`, each record rewritten by `edit`.
fn forge_space(from: &Path, id: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let to = from.parent().unwrap().join(id);
    fs::create_dir_all(to.join("packs")).unwrap();
    fs::create_dir_all(to.join("snapshots")).unwrap();
    for entry in fs::read_dir(from.join("packs")).unwrap().flatten() {
        fs::copy(entry.path(), to.join("packs").join(entry.file_name())).unwrap();
    }
    for entry in fs::read_dir(from.join("snapshots")).unwrap().flatten() {
        let mut record: serde_json::Value =
            serde_json::from_slice(&fs::read(entry.path()).unwrap()).unwrap();
        record["store"] = id.into();
        edit(&mut record);
        fs::write(
            to.join("snapshots").join(entry.file_name()),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
    }
    to
}

#[test]
fn fetched_records_naming_paths_outside_the_worktree_are_refused() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 500, 20);
    let nas = repo.path("nas");
    let url = format!("file://{}", nas.display());
    repo.dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    repo.dbguard(["snapshot", "posts.db"]).ok();
    repo.dbguard(["push"]).ok();
    let space = remote_space(&nas);
    forge_space(&space, "aaaaaaaaaaaaaaaaaaaa", |r| {
        r["path"] = "../outside.db".into()
    });
    forge_space(&space, "bbbbbbbbbbbbbbbbbbbb", |r| {
        r["path"] = "/etc/abs.db".into()
    });

    let fresh = TestRepo::new();
    fresh
        .dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    let fetched = fresh.dbguard(["fetch", "--json"]).assert_no_panic();
    let report = fetched.json();
    let paths: Vec<&str> = report["fetched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    // The real one comes; the others are named and left out.
    assert!(paths.contains(&"posts.db"), "{report}");
    assert!(
        !paths.iter().any(|p| p.contains("..") || p.starts_with('/')),
        "{report}"
    );
    let why = fetched.stderr.clone() + &report.to_string();
    assert!(why.contains("../outside.db"), "{why}");
    assert!(why.contains("not a path inside a working tree"), "{why}");
    assert!(
        !fetched.stderr.contains(['\x1b', '\x07']),
        "{:?}",
        fetched.stderr
    );
    // Nothing outside the worktree is read or written; status stays in the worktree.
    assert!(!fresh.tmp.path().join("outside.db").exists());
    let status = fresh.dbguard(["status"]);
    assert!(!status.stdout.contains("outside.db"), "{}", status.stdout);
    assert!(
        !status.stderr.contains(['\x1b', '\x07']),
        "{:?}",
        status.stderr
    );
    fresh.dbguard(["verify"]).ok();
}

#[test]
fn a_remote_pack_claiming_a_huge_frame_is_refused_within_a_memory_limit() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 500, 20);
    let nas = repo.path("nas");
    let url = format!("file://{}", nas.display());
    repo.dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    repo.dbguard(["snapshot", "posts.db"]).ok();
    repo.dbguard(["push"]).ok();
    let space = remote_space(&nas);

    // A pack of one frame: 4 GiB of zeros claimed (header and index agree), 512 blocks
    // of 8 MiB; what it holds is zstd's encoding of 1 GiB of zeros (~40 KB).
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 19).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        std::io::Write::write_all(&mut encoder, &zeros).unwrap();
    }
    let compressed = encoder.finish().unwrap();
    let plain_len: u32 = u32::MAX;
    let mut pack = b"DBGPACK1".to_vec();
    pack.extend_from_slice(b"DBGF");
    pack.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
    pack.extend_from_slice(&plain_len.to_le_bytes());
    pack.extend_from_slice(&compressed);
    assert!(pack.len() < 100_000, "{} bytes", pack.len());
    let name = {
        use sha2::{Digest, Sha256};
        Sha256::digest(&pack)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let forged = forge_space(&space, "dddddddddddddddddddd", |r| {
        r["image"]["manifest"] = serde_json::json!([[1_000_000, 512]]);
        r["image"]["size"] = (512u64 * 4096).into();
        r["image"]["block_size"] = 4096.into();
    });
    for entry in fs::read_dir(forged.join("packs")).unwrap().flatten() {
        fs::remove_file(entry.path()).unwrap();
    }
    fs::write(forged.join("packs").join(format!("{name}.pack")), &pack).unwrap();
    let index = serde_json::json!({
        "format": 1, "pack": name, "size": pack.len(),
        "frames": [{"offset": 8, "stored_len": compressed.len(), "plain_len": plain_len,
                    "block_size": 8 << 20, "members": [[1_000_000, 512]]}]
    });
    fs::write(
        forged.join("packs").join(format!("{name}.index.json")),
        index.to_string(),
    )
    .unwrap();

    let fresh = TestRepo::new();
    fresh
        .dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    // 1.5 GiB of address space: the runtime, DuckDB and SQLite fit, a 4 GiB buffer does not.
    let mut cmd = fresh.command("sh", &fresh.root);
    cmd.args([
        "-c",
        "ulimit -v 1572864 && exec \"$0\" fetch",
        dbguard_bin().to_str().unwrap(),
    ]);
    let fetched = Run::from(cmd.output().unwrap()).assert_no_panic();
    assert!(
        !fetched.stderr.contains("memory allocation") && fetched.code != 134,
        "{}",
        fetched.stderr
    );
    assert!(
        fetched.stderr.contains("cannot fetch snapshot"),
        "{}",
        fetched.stderr
    );
    assert!(fetched.stderr.contains("damaged"), "{}", fetched.stderr);
    // The honest snapshot came, the forged one did not, and the store verifies.
    let log = fresh.dbguard(["log", "--json"]).ok().json();
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    fresh.dbguard(["verify"]).ok();
    let packs: Vec<_> = fs::read_dir(fresh.store().join("packs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !packs.iter().any(|p| p.to_string_lossy().contains(&name)),
        "{packs:?}"
    );
}

#[test]
fn a_file_remote_in_an_existing_directory_is_as_private_as_the_store() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 500, 20);
    let nas = repo.path("nas");
    fs::create_dir_all(&nas).unwrap();
    fs::set_permissions(&nas, fs::Permissions::from_mode(0o755)).unwrap();
    repo.dbguard([
        "remote",
        "add",
        "nas",
        &format!("file://{}", nas.display()),
        "--no-encryption",
    ])
    .ok();
    repo.dbguard(["snapshot", "posts.db"]).ok();
    repo.dbguard(["push"]).ok();
    let mut checked = 0;
    let mut stack = vec![nas.join("stores")];
    while let Some(dir) = stack.pop() {
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "{checked} objects");
}
