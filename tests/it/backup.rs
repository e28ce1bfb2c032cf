//! Backups: `export` read back by pyarrow and DuckDB, lossless mixed-type columns through
//! `import-table`, `prune` on a real store, `schedule` with a temporary crontab, and the
//! one-line `snapshot --quiet`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use dbguard::testing::*;

/// Reads one Parquet file with pyarrow and with DuckDB, and one JSON Lines file (plain,
/// gzip or zstd); prints row counts, sum(id) and (author, body) of a few ids from each.
const READ_BACK: &str = r#"
import gzip, io, json, shutil, subprocess, sys
import pyarrow.parquet as pq
parquet, jsonl = sys.argv[1], sys.argv[2]
ids = [1, 777, 50000]

table = pq.read_table(parquet)
cols = table.to_pydict()
by_id = {i: n for n, i in enumerate(cols["id"])}
out = {"pyarrow": {"rows": table.num_rows, "sum": sum(cols["id"]),
                   "picked": {str(i): [cols["author"][by_id[i]], cols["body"][by_id[i]]] for i in ids}}}

def jsonl_rows(path):
    if path.endswith(".gz"):
        return [json.loads(l) for l in gzip.open(path, "rt")]
    if path.endswith(".zst"):
        try:
            import zstandard
            with open(path, "rb") as f:
                text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f)).read()
        except ImportError:
            if shutil.which("zstd"):
                text = subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout.decode()
            else:
                import duckdb
                rel = duckdb.sql(f"SELECT * FROM read_json('{path}', format='newline_delimited', compression='zstd')")
                names = rel.columns
                return [dict(zip(names, r)) for r in rel.fetchall()]
        return [json.loads(l) for l in text.splitlines()]
    return [json.loads(l) for l in open(path)]

rows = jsonl_rows(jsonl)
by_id = {r["id"]: r for r in rows}
out["jsonl"] = {"rows": len(rows), "sum": sum(r["id"] for r in rows),
                "picked": {str(i): [by_id[i]["author"], by_id[i]["body"]] for i in ids}}

import duckdb
con = duckdb.connect()
n, s = con.execute(f"SELECT count(*), sum(id) FROM read_parquet('{parquet}')").fetchone()
picked = {str(i): list(con.execute(f"SELECT author, body FROM read_parquet('{parquet}') WHERE id = {i}").fetchone()) for i in ids}
out["duckdb"] = {"rows": n, "sum": int(s), "picked": picked}
print(json.dumps(out))
"#;

fn source_summary(db: &Path) -> serde_json::Value {
    let conn = rusqlite::Connection::open(db).unwrap();
    let (rows, sum): (i64, i64) = conn
        .query_row("SELECT count(*), sum(id) FROM posts", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let mut picked = serde_json::Map::new();
    for id in [1, 777, 50000] {
        let (author, body): (String, String) = conn
            .query_row("SELECT author, body FROM posts WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        picked.insert(id.to_string(), serde_json::json!([author, body]));
    }
    serde_json::json!({"rows": rows, "sum": sum, "picked": picked})
}

#[test]
fn backup_export_both_formats_and_codecs_read_back_with_pyarrow_and_duckdb() {
    assert!(
        python_has("pyarrow") && python_has("duckdb"),
        "needs the Python modules pyarrow and duckdb (.ci/run installs them)"
    );
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 50_000, 60);
    let expected = source_summary(&db);
    for (codec, suffix) in [
        ("zstd", ".jsonl.zst"),
        ("gzip", ".jsonl.gz"),
        ("none", ".jsonl"),
    ] {
        let out = format!("out-{codec}");
        let run = repo
            .dbguard([
                "export",
                "posts.db",
                "--format",
                "parquet,jsonl",
                "--compression",
                codec,
                "--out",
                &out,
                "--json",
            ])
            .ok();
        let report = run.json();
        assert_eq!(report[0]["tables"]["posts"]["rows"], 50_000, "{codec}");
        assert!(run.stderr.contains("posts: 50,000 rows"), "{}", run.stderr);
        let dir = repo.root.join(&out).join("posts.db");
        let parquet = find_file(&dir, "/parquet/posts.parquet");
        let jsonl = find_file(&dir, &format!("/jsonl/posts{suffix}"));
        let got = python_json(READ_BACK, &[&parquet, &jsonl]);
        for reader in ["pyarrow", "jsonl", "duckdb"] {
            assert_eq!(got[reader], expected, "{reader} reading the {codec} export");
        }
    }
}

#[test]
fn backup_export_by_snapshot_id_uses_the_snapshot_time_in_the_path() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 100, 10);
    repo.dbguard_with(
        &repo.root,
        &[("DBGUARD_NOW", "2026-11-21T11:45:00Z")],
        &["snapshot", "posts.db"],
    )
    .ok();
    // The live file changes afterwards; the export is of the snapshot.
    dbguard::testing::add_posts(
        &rusqlite::Connection::open(repo.root.join("posts.db")).unwrap(),
        50,
        10,
    );
    let report = repo
        .dbguard([
            "export",
            "#1",
            "--format",
            "jsonl",
            "--compression",
            "none",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(report[0]["tables"]["posts"]["rows"], 100);
    let file = repo
        .exports()
        .join("posts.db/20261121T114500Z/jsonl/posts.jsonl");
    assert_eq!(fs::read_to_string(file).unwrap().lines().count(), 100);
    let missing = repo.dbguard(["export", "99"]).fails_with(1);
    assert!(
        missing.stderr.contains("#99 does not exist"),
        "{}",
        missing.stderr
    );
    missing.hint_says("`dbguard log` lists");
    let table = repo
        .dbguard(["export", "1", "--table", "nope"])
        .fails_with(1);
    assert!(table.stderr.contains("nope"), "{}", table.stderr);
    table.hint_says("lists the tables of a snapshot");
}

/// `id|typeof|value` of every row of `m` (TEXT as hex: it need not be UTF-8).
fn typed_rows(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT id || '|' || typeof(v) || '|' || \
             CASE typeof(v) WHEN 'text' THEN hex(v) ELSE quote(v) END FROM m ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn backup_mixed_type_column_round_trips_through_export_and_import_table() {
    let repo = TestRepo::new();
    let db = repo.root.join("mixed.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE m(id INTEGER PRIMARY KEY, v);
         INSERT INTO m(v) VALUES (42), ('text'), (3.25), (x'00ff10'), (NULL),
           (9007199254740993), (-0.5), (''), (x''), (CAST(x'fffe41' AS TEXT)),
           ('{\"$blob_b64\": \"AA==\"}'), (1e300), (-9223372036854775808);",
    )
    .unwrap();
    drop(conn);
    let expected = typed_rows(&db);
    assert!(expected.iter().any(|r| r.contains("|blob|")));
    repo.dbguard([
        "export",
        "mixed.db",
        "--format",
        "parquet,jsonl",
        "--compression",
        "gzip",
    ])
    .ok();
    let dir = repo.exports().join("mixed.db");
    let jsonl = find_file(&dir, "/jsonl/m.jsonl.gz");
    let parquet = find_file(&dir, "/parquet/m.parquet");
    for (file, target) in [(&jsonl, "from-jsonl.db"), (&parquet, "from-parquet.db")] {
        let run = repo
            .dbguard([
                "import-table".as_ref(),
                file.as_os_str(),
                "--into".as_ref(),
                target.as_ref(),
                "--table".as_ref(),
                "m".as_ref(),
            ])
            .ok();
        assert!(run.stderr.contains("loaded 13 rows"), "{}", run.stderr);
        assert_eq!(typed_rows(&repo.root.join(target)), expected, "{target}");
    }
    if python_has("pyarrow") {
        let meta = python_json(
            "import json,sys,pyarrow.parquet as pq\n\
             t=pq.read_table(sys.argv[1]); m=pq.ParquetFile(sys.argv[1]).metadata.metadata or {}\n\
             types=[v and v['type'] for v in t.column('v').to_pylist()]\n\
             print(json.dumps({'rows': t.num_rows, 'types': types, 'encoding': m.get(b'dbguard.encoding.v', b'').decode()}))",
            &[&parquet],
        );
        assert_eq!(meta["rows"], 13);
        let types: Vec<String> = expected
            .iter()
            .map(|r| match r.split('|').nth(1).unwrap() {
                "null" => "null".to_string(),
                t => format!("\"{t}\""),
            })
            .collect();
        assert_eq!(meta["types"].to_string(), format!("[{}]", types.join(",")));
        assert!(
            meta["encoding"]
                .as_str()
                .unwrap()
                .starts_with("sqlite-value-struct"),
            "{meta}"
        );
    }
}

#[test]
fn backup_import_table_snapshots_an_existing_database_first() {
    let repo = TestRepo::new();
    let db = repo.root.join("posts.db");
    make_posts_db(&db, 20, 5);
    repo.dbguard(["export", "posts.db", "--format", "jsonl"])
        .ok();
    let jsonl = find_file(&repo.exports(), "posts.jsonl.zst");
    // No --table: the name comes from the file; --replace: the 20 rows are not doubled.
    let report = repo
        .dbguard([
            "import-table".as_ref(),
            jsonl.as_os_str(),
            "--into".as_ref(),
            "posts.db".as_ref(),
            "--replace".as_ref(),
            "--json".as_ref(),
        ])
        .ok()
        .json();
    assert_eq!(report["rows"], 20);
    assert_eq!(report["table"], "posts");
    assert_eq!(
        report["undo_snapshot_id"], 1,
        "snapshot #1 by export holds the state before the import too"
    );
    assert_eq!(dbguard::testing::sqlite_count(&db, "posts"), 20);
    let duck = repo.root.join("x.duckdb");
    duckdb::Connection::open(&duck)
        .unwrap()
        .execute_batch("CREATE TABLE t(i INTEGER)")
        .unwrap();
    let refused = repo
        .dbguard([
            "import-table".as_ref(),
            jsonl.as_os_str(),
            "--into".as_ref(),
            "x.duckdb".as_ref(),
        ])
        .fails_with(1);
    assert!(refused.stderr.contains("SQLite only"), "{}", refused.stderr);
}

/// (id, path) of every snapshot in the catalog, oldest first.
fn catalog_snapshots(repo: &TestRepo) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(repo.store().join("catalog.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, path FROM snapshots ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// 15 rounds, one hour apart: posts.db grows every round, notes.db only every third (so
/// it has 5 snapshots: the other rounds find it unchanged and refer to them).
fn fifteen_rounds(repo: &TestRepo) {
    let posts = repo.root.join("posts.db");
    let notes = repo.root.join("notes.db");
    make_posts_db(&posts, 2_000, 200);
    make_posts_db(&notes, 100, 50);
    for round in 0..15 {
        let conn = rusqlite::Connection::open(&posts).unwrap();
        dbguard::testing::add_posts(&conn, 300, 200);
        if round % 3 == 0 {
            dbguard::testing::add_posts(&rusqlite::Connection::open(&notes).unwrap(), 10, 50);
        }
        let now = format!("2026-11-01T{round:02}:00:00Z");
        repo.dbguard_with(
            &repo.root,
            &[("DBGUARD_NOW", &now)],
            &["snapshot", "--quiet"],
        )
        .ok();
    }
}

#[test]
fn backup_prune_keeps_exactly_the_newest_per_path_and_verify_passes() {
    let repo = TestRepo::new();
    fifteen_rounds(&repo);
    let before = catalog_snapshots(&repo);
    assert_eq!(before.len(), 20);
    let chunks_before = repo.stored_file_count();
    let later = [("DBGUARD_NOW", "2026-11-02T00:00:00Z")];

    let dry = repo
        .dbguard_with(
            &repo.root,
            &later,
            &["prune", "--keep-last", "3", "--dry-run", "--json"],
        )
        .ok();
    assert_eq!(
        catalog_snapshots(&repo),
        before,
        "--dry-run removed something"
    );
    assert_eq!(repo.stored_file_count(), chunks_before);
    // Each line tells the snapshot apart: the oldest of posts.db (2,000 + 300 rows).
    let oldest = dry
        .stderr
        .lines()
        .find(|l| l.contains("posts.db: 2,300 rows"))
        .unwrap_or_else(|| panic!("no line for the oldest snapshot:\n{}", dry.stderr));
    assert!(oldest.starts_with("would remove #"), "{oldest}");
    assert!(
        oldest.contains("(1 day ago), by dbguard snapshot"),
        "{oldest}"
    );
    let dry = dry.json();
    assert_eq!(dry["removed"].as_array().unwrap().len(), 14);
    assert!(dry["freed_bytes"].as_u64().unwrap() > 0);

    let run = repo
        .dbguard_with(&repo.root, &later, &["prune", "--keep-last", "3", "--json"])
        .ok();
    assert!(
        run.stderr.contains("removed 14 snapshots, kept 6; freed"),
        "{}",
        run.stderr
    );
    let report = run.json();
    assert_eq!(report["removed"], dry["removed"]);
    assert_eq!(
        report["freed_bytes"], dry["freed_bytes"],
        "dry run predicted the bytes"
    );
    assert!(report["freed_bytes"].as_u64().unwrap() > 0);
    let after = catalog_snapshots(&repo);
    for path in ["posts.db", "notes.db"] {
        let all: Vec<i64> = before
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(id, _)| *id)
            .collect();
        let kept: Vec<i64> = after
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(kept, all[all.len() - 3..].to_vec(), "{path}");
    }
    assert!(repo.stored_file_count() < chunks_before);
    let verify = repo.dbguard(["verify"]).ok();
    assert!(verify.stdout.contains("store ok"), "{}", verify.stdout);
    // Every kept snapshot still restores.
    let restored = repo.path("old.db");
    repo.dbguard([
        "restore".as_ref(),
        "--from".as_ref(),
        after[0].0.to_string().as_ref(),
        "--to".as_ref(),
        restored.as_os_str(),
    ])
    .ok();
    assert_eq!(dbguard::testing::quick_check(&restored), "ok");
}

#[test]
fn backup_prune_never_removes_the_newest_snapshot_of_a_path() {
    let repo = TestRepo::new();
    fifteen_rounds(&repo);
    let before = catalog_snapshots(&repo);
    // A month later, "keep what is younger than an hour" matches nothing at all.
    repo.dbguard_with(
        &repo.root,
        &[("DBGUARD_NOW", "2026-12-01T00:00:00Z")],
        &["prune", "--keep-within", "1h"],
    )
    .ok();
    let after = catalog_snapshots(&repo);
    let newest = |path: &str| {
        before
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(id, _)| *id)
            .max()
    };
    assert_eq!(after.len(), 2);
    for path in ["posts.db", "notes.db"] {
        assert!(
            after.iter().any(|(id, _)| Some(*id) == newest(path)),
            "{path}"
        );
    }
    repo.dbguard(["verify"]).ok();
    repo.dbguard(["prune", "--keep-within", "soon"])
        .fails_with(1)
        .has_own_hint();
}

#[test]
fn backup_prune_without_flags_uses_the_configured_policy() {
    let repo = TestRepo::new();
    fifteen_rounds(&repo);
    // Default policy: keep the last 10 of each path.
    repo.dbguard(["prune"]).ok();
    assert_eq!(catalog_snapshots(&repo).len(), 15);
    repo.git(["config", "dbguard.keepLast", "4"]);
    repo.dbguard(["prune"]).ok();
    assert_eq!(catalog_snapshots(&repo).len(), 8);
}

/// A crontab program that keeps the table in `<dir>/crontab` (absent = no crontab).
fn fake_crontab(dir: &Path) -> (PathBuf, PathBuf) {
    let table = dir.join("crontab");
    let script = dir.join("fake-crontab");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nf='{}'\ncase \"$1\" in\n  -l) if [ -f \"$f\" ]; then cat \"$f\"; else echo \"no crontab for tester\" >&2; exit 1; fi ;;\n  -) cat > \"$f\" ;;\n  *) exit 2 ;;\nesac\n",
            table.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (script, table)
}

#[test]
fn backup_schedule_installs_once_and_removes_only_its_line() {
    let repo = TestRepo::new();
    let (script, table) = fake_crontab(repo.tmp.path());
    let env = [("DBGUARD_CRONTAB", script.to_str().unwrap())];
    let marker = format!("# dbguard:{}", repo.root.canonicalize().unwrap().display());
    let ours = |text: &str| text.lines().filter(|l| l.ends_with(&marker)).count();

    // No crontab yet.
    repo.dbguard_with(&repo.root, &env, &["schedule"]).ok();
    let text = fs::read_to_string(&table).unwrap();
    assert_eq!(ours(&text), 1, "{text}");
    assert!(text.starts_with("0 */8 * * * cd '"), "{text}");
    assert!(text.contains("snapshot --quiet"), "{text}");
    assert!(text.contains("prune --quiet"), "{text}");
    assert!(text.contains("schedule.log"), "{text}");
    repo.dbguard_with(&repo.root, &env, &["schedule", "--remove"])
        .ok();
    assert_eq!(fs::read_to_string(&table).unwrap(), "");

    let unrelated = "MAILTO=me@example.com\n15 4 * * * /usr/local/bin/backup --all\n";
    fs::write(&table, unrelated).unwrap();
    repo.dbguard_with(&repo.root, &env, &["schedule"]).ok();
    repo.dbguard_with(&repo.root, &env, &["schedule"]).ok();
    let text = fs::read_to_string(&table).unwrap();
    assert_eq!(ours(&text), 1, "installed twice:\n{text}");
    assert!(text.starts_with(unrelated), "{text}");

    repo.dbguard_with(&repo.root, &env, &["schedule", "--every", "weekly"])
        .ok();
    let text = fs::read_to_string(&table).unwrap();
    assert_eq!(ours(&text), 1, "{text}");
    assert!(text.contains("\n0 3 * * 0 cd '"), "{text}");

    let printed = repo
        .dbguard_with(
            &repo.root,
            &env,
            &["schedule", "--every", "daily", "--print"],
        )
        .ok();
    assert!(
        printed.stdout.contains("0 3 * * * cd '"),
        "{}",
        printed.stdout
    );
    assert!(
        printed.stdout.contains("OnCalendar=*-*-* 03:00:00"),
        "{}",
        printed.stdout
    );
    assert_eq!(
        fs::read_to_string(&table).unwrap(),
        text,
        "--print installed something"
    );

    repo.dbguard_with(&repo.root, &env, &["schedule", "--remove"])
        .ok();
    assert_eq!(fs::read_to_string(&table).unwrap(), unrelated);
    let again = repo
        .dbguard_with(&repo.root, &env, &["schedule", "--remove"])
        .ok();
    assert!(
        again.stderr.contains("no dbguard schedule"),
        "{}",
        again.stderr
    );
    assert_eq!(fs::read_to_string(&table).unwrap(), unrelated);

    repo.dbguard_with(&repo.root, &env, &["schedule", "--every", "fortnightly"])
        .fails_with(1)
        .has_own_hint();
    let missing = repo
        .dbguard_with(
            &repo.root,
            &[("DBGUARD_CRONTAB", "/nonexistent/crontab")],
            &["schedule"],
        )
        .fails_with(1);
    assert!(
        missing
            .stderr
            .contains("the crontab program /nonexistent/crontab (DBGUARD_CRONTAB) does not exist"),
        "{}",
        missing.stderr
    );
    assert!(missing.stdout.contains("[Timer]"), "{}", missing.stdout);
}

/// A directory holding only `git` (a link to the real one): a PATH without cron.
fn path_without_cron(repo: &TestRepo) -> PathBuf {
    let bin = repo.path("bin-without-cron");
    fs::create_dir_all(&bin).unwrap();
    let which = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    let git = String::from_utf8(which.stdout).unwrap();
    std::os::unix::fs::symlink(git.trim(), bin.join("git")).unwrap();
    bin
}

#[test]
fn backup_schedule_without_cron_says_so_and_prints_the_systemd_timer() {
    let repo = TestRepo::new();
    let bin = path_without_cron(&repo);
    let path = [("PATH", bin.to_str().unwrap())];
    let run = repo
        .dbguard_with(&repo.root, &path, &["schedule", "--every", "daily"])
        .fails_with(1);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        "Error: cron is not installed (no `crontab` program on PATH), so nothing was scheduled",
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("No such file"), "{}", run.stderr);
    assert!(
        run.stderr.contains("save the two units printed above"),
        "{}",
        run.stderr
    );
    // The timer printed is the one --print gives, for the same cadence.
    let printed = repo
        .dbguard_with(
            &repo.root,
            &path,
            &["schedule", "--every", "daily", "--print"],
        )
        .ok();
    let timer = printed
        .stdout
        .split("# or a systemd user timer:\n")
        .nth(1)
        .unwrap();
    assert!(run.stdout.ends_with(timer), "{}\n---\n{timer}", run.stdout);
    assert!(run.stdout.contains("OnCalendar="), "{}", run.stdout);
    // Nothing to remove without cron, and it says why.
    let removed = repo
        .dbguard_with(&repo.root, &path, &["schedule", "--remove"])
        .ok();
    assert!(
        removed.stderr.contains("cron is not installed here"),
        "{}",
        removed.stderr
    );
}

#[test]
fn backup_import_table_keeps_the_primary_key_and_refuses_to_append_duplicates() {
    let repo = TestRepo::new();
    let db = repo.root.join("mixed.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE mixed (id INTEGER PRIMARY KEY, v, b BLOB, t TEXT NOT NULL);
             INSERT INTO mixed VALUES (1, 1, x'00', 'a'), (2, 'two', NULL, 'b'), (3, 3.5, x'01', 'c'),
               (4, NULL, NULL, 'd'), (5, x'ff', x'', 'e'), (6, 6, NULL, 'f');",
        )
        .unwrap();
    repo.dbguard(["export", "mixed.db", "--format", "parquet"])
        .ok();
    let parquet = find_file(&repo.exports(), "/parquet/mixed.parquet");
    // Outside any repository, into a new database.
    let scratch = repo.path("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let import = || {
        repo.dbguard_in(
            &scratch,
            [
                "import-table".as_ref(),
                parquet.as_os_str(),
                "--into".as_ref(),
                "copy.db".as_ref(),
            ],
        )
    };
    let run = import().ok();
    assert!(run.stderr.contains("loaded 6 rows"), "{}", run.stderr);
    let copy = scratch.join("copy.db");
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'mixed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // The source's own definition, checked before it ran (the name is unchanged).
    assert_eq!(
        sql,
        "CREATE TABLE mixed (id INTEGER PRIMARY KEY, v, b BLOB, t TEXT NOT NULL)"
    );
    let pk: String = conn
        .query_row(
            "SELECT name FROM pragma_table_info('mixed') WHERE pk = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pk, "id");
    drop(conn);
    // The same file again: one error line naming the row and the key, a hint that works,
    // and not one row more.
    let refused = import().fails_with(1);
    let lines: Vec<&str> = refused.stderr.lines().collect();
    let error = lines
        .iter()
        .position(|l| l.starts_with("Error: "))
        .unwrap_or_else(|| panic!("no error line:\n{}", refused.stderr));
    assert!(
        lines[error].starts_with("Error: row 1 of ")
            && lines[error]
                .contains("has the same primary key as a row already in table \"mixed\"")
            && lines[error].contains("UNIQUE constraint failed: mixed.id"),
        "{}",
        refused.stderr
    );
    // One line: the hint follows directly, no "Caused by".
    assert!(
        lines[error + 1].trim_start().starts_with("Hint:"),
        "{}",
        refused.stderr
    );
    assert!(
        lines.iter().any(|l| l.contains("Hint:")
            && l.contains("nothing was loaded")
            && l.contains("--replace")),
        "{}",
        refused.stderr
    );
    assert_eq!(dbguard::testing::sqlite_count(&copy, "mixed"), 6);
    // The hint's --replace works.
    let replaced = repo
        .dbguard_in(
            &scratch,
            [
                "import-table".as_ref(),
                parquet.as_os_str(),
                "--into".as_ref(),
                "copy.db".as_ref(),
                "--replace".as_ref(),
            ],
        )
        .ok();
    assert!(
        replaced.stderr.contains("loaded 6 rows"),
        "{}",
        replaced.stderr
    );
    assert_eq!(dbguard::testing::sqlite_count(&copy, "mixed"), 6);
}

#[test]
fn backup_untrack_adds_no_second_gitignore_line() {
    for (existing, expected) in [
        ("posts.db\n", "posts.db\n"),
        ("*.db\n", "*.db\n"),
        ("", "/posts.db\n"),
        ("# data\n!keep.db\n", "# data\n!keep.db\n/posts.db\n"),
    ] {
        let repo = TestRepo::new();
        let gitignore = repo.root.join(".gitignore");
        if !existing.is_empty() {
            fs::write(&gitignore, existing).unwrap();
        }
        make_posts_db(&repo.root.join("posts.db"), 5, 5);
        // Twice: tracked (forced past the ignore line), untracked, tracked again, untracked.
        for round in 0..2 {
            repo.git(["add", "-f", "posts.db"]);
            repo.git(["commit", "-q", "-m", "track"]);
            repo.dbguard(["untrack", "posts.db"]).ok();
            assert_eq!(
                fs::read_to_string(&gitignore).unwrap(),
                expected,
                "round {round}, .gitignore was {existing:?}"
            );
            repo.git(["commit", "-q", "-m", "untrack"]);
        }
    }
}

#[test]
fn backup_bench_export_says_what_it_needs_when_pandas_is_missing() {
    let repo = TestRepo::new();
    // Hide pandas from Python when it is installed, as on a machine without it.
    let shadow = repo.path("no-pandas");
    fs::create_dir_all(shadow.join("pandas")).unwrap();
    fs::write(
        shadow.join("pandas/__init__.py"),
        "raise ModuleNotFoundError(\"No module named 'pandas'\", name='pandas')\n",
    )
    .unwrap();
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/export.py");
    let output = Command::new("python3")
        .arg(&bench)
        .args(["--rows", "10", "--dir"])
        .arg(repo.path("bench-out"))
        .env("PYTHONPATH", &shadow)
        // Should the check ever come too late: this binary, never a build.
        .env("DBGUARD_BIN", dbguard_bin())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("Traceback"), "{stderr}");
    assert!(
        stderr.contains("needs pandas and pyarrow")
            && stderr.contains("(missing: pandas)")
            && stderr.contains(" -m pip install pandas pyarrow"),
        "{stderr}"
    );
    // Nothing was set up before it said so.
    assert!(!repo.path("bench-out").exists());
}

#[test]
fn backup_scheduled_command_runs_without_a_terminal_and_logs_one_line() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 500, 20);
    let (script, table) = fake_crontab(repo.tmp.path());
    repo.dbguard_with(
        &repo.root,
        &[("DBGUARD_CRONTAB", script.to_str().unwrap())],
        &["schedule"],
    )
    .ok();
    let line = fs::read_to_string(&table).unwrap();
    // Run the command part of the line the way cron would: sh -c, no terminal.
    let command = line.splitn(6, ' ').nth(5).unwrap().trim().to_string();
    let status = repo
        .command("sh", Path::new("/"))
        .args(["-c", &command])
        .status()
        .unwrap();
    assert!(status.success());
    let log = fs::read_to_string(repo.store().join("schedule.log")).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("snapshot: 1 database, 1 changed"), "{log}");
}

#[test]
fn backup_snapshot_quiet_prints_one_line() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 500, 20);
    make_posts_db(&repo.root.join("notes.db"), 50, 20);
    let now = [("DBGUARD_NOW", "2026-11-21T11:45:00Z")];
    let run = repo
        .dbguard_with(&repo.root, &now, &["snapshot", "--quiet"])
        .ok();
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(
        run.stdout
            .starts_with("2026-11-21T11:45:00Z snapshot: 2 databases, 2 changed, +"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stderr, "");
    let again = repo
        .dbguard_with(&repo.root, &now, &["snapshot", "--quiet"])
        .ok();
    assert_eq!(
        again.stdout,
        "2026-11-21T11:45:00Z snapshot: 2 databases, 0 changed, +0 B, complete\n"
    );
}

#[test]
fn backup_export_of_a_duckdb_database_reads_back() {
    let repo = TestRepo::new();
    let db = repo.root.join("events.duckdb");
    duckdb::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE events AS SELECT range AS id, 'event ' || range AS name,
               DATE '2026-01-01' + CAST(range % 300 AS INTEGER) AS day FROM range(20000);
             CREATE TABLE users(id INTEGER, name VARCHAR); INSERT INTO users VALUES (1, 'ada'), (2, NULL);",
        )
        .unwrap();
    let report = repo
        .dbguard(["export", "events.duckdb", "--compression", "gzip", "--json"])
        .ok()
        .json();
    let rows: Vec<(String, u64)> = report[0]["tables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, t)| (name.clone(), t["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [("events".to_string(), 20000), ("users".to_string(), 2)]
    );
    let dir = repo.exports().join("events.duckdb");
    let jsonl = find_file(&dir, "/jsonl/users.jsonl.gz");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(fs::File::open(jsonl).unwrap()),
        &mut text,
    )
    .unwrap();
    assert_eq!(
        text,
        "{\"id\":1,\"name\":\"ada\"}\n{\"id\":2,\"name\":null}\n"
    );
    if python_has("pyarrow") {
        let parquet = find_file(&dir, "/parquet/events.parquet");
        let got = python_json(
            "import json,sys,pyarrow.parquet as pq\n\
             t=pq.read_table(sys.argv[1]).to_pydict()\n\
             print(json.dumps({'rows': len(t['id']), 'sum': sum(t['id']), 'last': t['name'][-1], 'day': str(t['day'][0])}))",
            &[&parquet],
        );
        assert_eq!(
            got,
            serde_json::json!({"rows": 20000, "sum": 199990000, "last": "event 19999", "day": "2026-01-01"})
        );
    }
}

#[test]
fn backup_import_table_works_outside_any_repository_and_says_nothing_was_snapshotted() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("posts.db"), 15, 5);
    repo.dbguard(["export", "posts.db", "--format", "jsonl"])
        .ok();
    let jsonl = find_file(&repo.exports(), "posts.jsonl.zst");
    // import-table of the exported file, run from a directory outside the repository.
    let import_from_scratch = |target: &std::ffi::OsStr, replace: bool| {
        let mut args = vec![
            "import-table".as_ref(),
            jsonl.as_os_str(),
            "--into".as_ref(),
            target,
        ];
        if replace {
            args.push("--replace".as_ref());
        }
        repo.dbguard_in(&repo.path("scratch"), args)
    };
    // A scratch directory that is no git repository, with a database already there.
    let scratch = repo.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    make_posts_db(&scratch.join("scratch.db"), 3, 5);
    let run = import_from_scratch("scratch.db".as_ref(), true).ok();
    assert!(run.stderr.contains("loaded 15 rows"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("not inside a git working tree, so it is not snapshotted first"),
        "{}",
        run.stderr
    );
    assert_eq!(
        dbguard::testing::sqlite_count(&scratch.join("scratch.db"), "posts"),
        15
    );
    // From outside, into a database of the repository: its store keeps the undo, and
    // the hint names the repository so it works from here.
    let run = import_from_scratch(repo.root.join("posts.db").as_os_str(), false).fails_with(1);
    // Appending the same keys fails in one transaction: nothing changed, and it says so.
    assert!(
        run.stderr.contains("UNIQUE constraint failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("nothing was loaded"), "{}", run.stderr);
    assert_eq!(
        dbguard::testing::sqlite_count(&repo.root.join("posts.db"), "posts"),
        15
    );
    // One more row, so that the state the undo brings back is told apart.
    rusqlite::Connection::open(repo.root.join("posts.db"))
        .unwrap()
        .execute("INSERT INTO posts(author, body) VALUES ('late', 'row')", [])
        .unwrap();
    let run = import_from_scratch(repo.root.join("posts.db").as_os_str(), true).ok();
    let hint = run
        .stderr
        .lines()
        .find(|l| l.contains("undo with:"))
        .unwrap_or_else(|| panic!("no undo hint:\n{}", run.stderr))
        .to_string();
    assert!(
        hint.contains("-C ") && hint.contains("restore posts.db --from"),
        "{hint}"
    );
    assert_eq!(
        dbguard::testing::sqlite_count(&repo.root.join("posts.db"), "posts"),
        15
    );
    // The hint works as printed, from the scratch directory: the undo brings back the
    // 16 rows there were before the import.
    let id = hint.rsplit(' ').next().unwrap();
    repo.dbguard_in(
        &scratch,
        [
            "-C",
            repo.root.to_str().unwrap(),
            "restore",
            "posts.db",
            "--from",
            id,
        ],
    )
    .ok();
    assert_eq!(
        dbguard::testing::sqlite_count(&repo.root.join("posts.db"), "posts"),
        16
    );
}

#[test]
fn backup_untrack_escapes_glob_characters_and_says_ignored_only_when_git_agrees() {
    let repo = TestRepo::new();
    make_posts_db(&repo.root.join("crawl[1].db"), 5, 5);
    // The file an unescaped `/crawl[1].db` line would ignore instead.
    make_posts_db(&repo.root.join("crawl1.db"), 5, 5);
    repo.git(["add", "--", ":(literal)crawl[1].db", "crawl1.db"]);
    repo.git(["commit", "-q", "-m", "track"]);
    let run = repo.dbguard(["untrack", "crawl[1].db"]).ok();
    assert!(
        run.stderr
            .contains("crawl[1].db is no longer tracked and is in .gitignore"),
        "{}",
        run.stderr
    );
    let check = |path: &str| {
        repo.command("git", &repo.root)
            .args(["check-ignore", "-q", "--no-index", "--", path])
            .status()
            .unwrap()
            .success()
    };
    assert!(
        check("crawl[1].db"),
        "{}",
        fs::read_to_string(repo.root.join(".gitignore")).unwrap()
    );
    assert!(!check("crawl1.db"), "the line ignores another file");

    // A nested .gitignore's negation outranks the line untrack adds at the top: dbguard
    // says the file is not ignored instead of claiming it is.
    fs::create_dir_all(repo.root.join("sub")).unwrap();
    fs::write(repo.root.join("sub/.gitignore"), "!kept.db\n").unwrap();
    make_posts_db(&repo.root.join("sub/kept.db"), 5, 5);
    repo.git(["add", "sub"]);
    repo.git(["commit", "-q", "-m", "track kept"]);
    let run = repo.dbguard(["untrack", "sub/kept.db"]).ok();
    assert!(!check("sub/kept.db"));
    assert!(!run.stderr.contains("is in .gitignore"), "{}", run.stderr);
    assert!(
        run.stderr.contains("git does not ignore it"),
        "{}",
        run.stderr
    );
}

#[test]
fn backup_export_gives_each_database_path_its_own_directory() {
    let repo = TestRepo::new();
    fs::create_dir_all(repo.root.join("data")).unwrap();
    make_posts_db(&repo.root.join("data/posts.db"), 30, 5);
    make_posts_db(&repo.root.join("data_posts.db"), 70, 5);
    let out = repo.path("out");
    for database in ["data/posts.db", "data_posts.db"] {
        repo.dbguard([
            "export",
            database,
            "--format",
            "jsonl",
            "--compression",
            "none",
            "--out",
            out.to_str().unwrap(),
        ])
        .ok();
    }
    let mut rows = Vec::new();
    for entry in fs::read_dir(&out).unwrap() {
        let dir = entry.unwrap().path();
        let file = find_file(&dir, "/jsonl/posts.jsonl");
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        rows.push((name, fs::read_to_string(file).unwrap().lines().count()));
    }
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("data%2Fposts.db".to_string(), 30),
            ("data_posts.db".to_string(), 70)
        ]
    );
}
