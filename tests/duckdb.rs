//! DuckDB files: free ones are copied under DuckDB's own lock; one held open read-write by
//! a live Python process is either stored as a verified copy or refused, naming the PID.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;

fn make_duckdb(path: &std::path::Path, rows: i64) {
    let conn = duckdb::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE events AS SELECT range AS id, 'event ' || range AS name FROM range({rows});
         CREATE TABLE users(id INTEGER, name VARCHAR); INSERT INTO users VALUES (1, 'ada'), (2, 'bob');"
    ))
    .unwrap();
}

#[test]
fn free_duckdb_file_is_snapshotted_with_exact_counts() {
    let repo = TestRepo::new();
    make_duckdb(&repo.root.join("provision.duckdb"), 5000);
    let report = repo.dbguard(["snapshot", "--json"]).ok().json();
    assert_eq!(report[0]["kind"], "duckdb");
    assert_eq!(report[0]["tables"]["events"], 5000);
    assert_eq!(report[0]["tables"]["users"], 2);
    assert_eq!(report[0]["consistency"], "locked-copy");
    repo.dbguard(["verify"]).ok();
}

#[test]
fn duckdb_held_by_a_live_writer_is_verified_or_refused_naming_the_pid() {
    assert!(
        python_has("duckdb"),
        "this test needs the duckdb Python package (pip install duckdb; .ci/run installs it)"
    );
    let repo = TestRepo::new();
    make_duckdb(&repo.root.join("live.duckdb"), 1000);
    let script = r#"
import duckdb, sys, time
conn = duckdb.connect(sys.argv[1])
conn.execute("INSERT INTO events SELECT range + 1000, 'late' FROM range(250)")
print("ready", flush=True)
while True:
    conn.execute("INSERT INTO users VALUES (3, 'eve')")
    time.sleep(0.05)
"#;
    let mut writer = repo
        .command("python3", &repo.root)
        .args(["-c", script, "live.duckdb"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(writer.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = writer.id().to_string();

    let run = repo.dbguard(["snapshot", "--json", "live.duckdb"]);
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert!(
        run.stderr.contains(&pid),
        "the PID {pid} is named:\n{}",
        run.stderr
    );
    if run.code == 0 {
        let report = run.json();
        let consistency = report[0]["consistency"].as_str().unwrap();
        assert!(
            consistency.starts_with("as-of-last-checkpoint"),
            "{consistency}"
        );
        // The copy was opened and counted: at least what was checkpointed before.
        assert!(report[0]["tables"]["events"].as_u64().unwrap() >= 1000);
        repo.dbguard(["verify"]).ok();
    } else {
        let run = run.fails();
        assert!(run.stderr.starts_with("Error: "), "{}", run.stderr);
        assert!(run.stderr.contains("Hint:"));
        assert_eq!(
            repo.dbguard(["log", "--json"]).ok().json(),
            serde_json::json!([])
        );
    }
}
