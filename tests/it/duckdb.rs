//! DuckDB files: free ones are copied under DuckDB's own lock; ones held open read-write
//! by a live Python process are copied live with every commit made before the copy, or,
//! when no complete copy can be made, stored marked partial and never let git run.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use dbguard::testing::*;

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
fn duckdb_held_by_a_live_writer_is_copied_with_its_wal_naming_the_pid() {
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

    let run = repo.dbguard(["snapshot", "--json", "live.duckdb"]).ok();
    writer.kill().unwrap();
    writer.wait().unwrap();
    let report = run.json();
    let consistency = report[0]["consistency"].as_str().unwrap();
    assert!(consistency.starts_with("live-copy as of "), "{consistency}");
    assert!(
        consistency.contains(&format!("held by pid {pid}")),
        "{consistency}"
    );
    assert_eq!(report[0]["partial"], false);
    // The 250 rows committed into the WAL before the snapshot are in it.
    assert_eq!(report[0]["tables"]["events"], 1250);
    assert!(report[0]["tables"]["users"].as_u64().unwrap() >= 2);
    repo.dbguard(["verify"]).ok();
}

/// A service that keeps a DuckDB file open read-write and commits ten rows per
/// transaction (`ev.id` = 1, 2, 3 …, no primary key so duplicates would show), with
/// automatic checkpoints off. After each commit it writes how many rows are committed
/// to `<db>.committed`, so a test knows what any copy taken afterwards must hold.
/// argv: db, then `checkpoint_every` (0 = never), then `commits` before it stops
/// committing (0 = never stops), then `damage` (1 = append a complete WAL entry with a
/// wrong checksum after the last commit, as a damaged disk would), and it then idles,
/// still holding the file, until killed; then the pause between commits in seconds.
const WRITER: &str = r#"
import duckdb, os, struct, sys, time
path, every, stop_after, damage = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
pause = float(sys.argv[5])
conn = duckdb.connect(path)
conn.execute("SET checkpoint_threshold = '100GB'")
conn.execute("CREATE TABLE IF NOT EXISTS ev(id BIGINT, payload VARCHAR)")
n = conn.execute("SELECT count(*) FROM ev").fetchone()[0]
counter = os.open(path + ".committed", os.O_RDWR | os.O_CREAT)
def publish():
    os.pwrite(counter, b"%012d\n" % n, 0)
publish()
print("ready", flush=True)
commits = 0
while stop_after == 0 or commits < stop_after:
    conn.execute("INSERT INTO ev SELECT ? + range, repeat('p', 200) FROM range(10)", [n + 1])
    n += 10
    commits += 1
    publish()
    if every and commits % every == 0:
        conn.execute("CHECKPOINT")
    # Without checkpoints, a modest rate keeps the WAL of a minute-long test quick to
    # replay for the unoptimised DuckDB of dev builds (libduckdb-sys is built at -O0).
    time.sleep(pause)
if damage:
    with open(path + ".wal", "ab") as wal:
        wal.write(struct.pack("<QQ", 16, 0x1234) + b"\x64\x00\x19" + b"\xab" * 13)
print("idle", flush=True)
while True:
    time.sleep(1)
"#;

/// A running writer process; killed when dropped.
struct Writer {
    child: std::process::Child,
    stdout: BufReader<std::process::ChildStdout>,
    db: std::path::PathBuf,
}

impl Writer {
    fn start(
        repo: &TestRepo,
        db: &str,
        checkpoint_every: u32,
        commits: u32,
        damage: bool,
    ) -> Writer {
        let pause = if checkpoint_every == 0 { "0.05" } else { "0" };
        assert!(
            python_has("duckdb"),
            "this test needs the duckdb Python package (pip install duckdb; .ci/run installs it)"
        );
        let mut child = repo
            .command("python3", &repo.root)
            .args([
                "-c",
                WRITER,
                db,
                &checkpoint_every.to_string(),
                &commits.to_string(),
                if damage { "1" } else { "0" },
                pause,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut writer = Writer {
            child,
            stdout,
            db: repo.root.join(db),
        };
        writer.expect("ready");
        writer
    }

    fn expect(&mut self, word: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), word, "the writer did not say {word}");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Rows committed so far (each commit is published after it returned).
    fn committed(&self) -> u64 {
        let mut path = self.db.clone().into_os_string();
        path.push(".committed");
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(n) = text.trim().parse()
            {
                return n;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The image of snapshot `id`, restored to a file outside the worktree, opened by DuckDB
/// without errors: (rows, distinct ids, max id).
fn restored_ev(repo: &TestRepo, id: i64) -> (u64, u64, u64) {
    let out = repo.restore_to(id, &format!("restored-{id}.duckdb"));
    let conn = duckdb::Connection::open(&out).unwrap();
    let row: (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT id), coalesce(max(id), 0) FROM ev",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    drop(conn);
    let _ = std::fs::remove_file(&out);
    (row.0 as u64, row.1 as u64, row.2 as u64)
}

/// 30 live snapshots while the writer commits; each must hold at least every row
/// committed before it started, with no duplicate or missing id, and open cleanly.
/// Returns the retries the snapshots reported.
fn thirty_live_snapshots(repo: &TestRepo, writer: &Writer) -> u64 {
    let mut retries = 0;
    let mut last = 0;
    let first = writer.committed();
    for round in 0..30 {
        let before = writer.committed();
        let run = repo.dbguard(["snapshot", "--json", "live.duckdb"]).ok();
        let report = run.json();
        let taken = &report[0];
        assert_eq!(taken["partial"], false, "round {round}: {}", run.stderr);
        let consistency = taken["consistency"].as_str().unwrap();
        assert!(consistency.starts_with("live-copy as of "), "{consistency}");
        assert!(
            consistency.contains(&format!("pid {}", writer.pid())),
            "{consistency}"
        );
        assert!(taken["instant"].is_string(), "{taken}");
        retries += taken["retries"].as_u64().unwrap();
        let rows = taken["tables"]["ev"].as_u64().unwrap();
        assert!(
            rows >= before,
            "round {round}: snapshot holds {rows} rows but {before} were committed before it started"
        );
        let (count, distinct, max) = restored_ev(repo, taken["id"].as_i64().unwrap());
        assert_eq!(
            count, rows,
            "round {round}: the image holds what the census said"
        );
        assert_eq!(distinct, count, "round {round}: duplicate ids");
        assert_eq!(max, count, "round {round}: ids 1..={count} without a gap");
        assert!(rows >= last, "round {round}: went backwards");
        last = rows;
    }
    assert!(
        writer.committed() > first,
        "the writer committed while the snapshots were taken"
    );
    retries
}

fn seed_live_db(repo: &TestRepo) {
    let conn = duckdb::Connection::open(repo.root.join("live.duckdb")).unwrap();
    conn.execute_batch(
        "CREATE TABLE ev AS SELECT range + 1 AS id, repeat('p', 200) AS payload FROM range(20000);",
    )
    .unwrap();
}

#[test]
fn duckdb_live_copies_hold_every_commit_made_before_they_started() {
    let repo = TestRepo::new();
    seed_live_db(&repo);
    let writer = Writer::start(&repo, "live.duckdb", 0, 0, false);
    let retries = thirty_live_snapshots(&repo, &writer);
    println!("auto-checkpoint off: 30 live snapshots, {retries} retries");
    // The user's files were only read.
    assert!(repo.root.join("live.duckdb.wal").exists());
    repo.dbguard(["verify"]).ok();
}

#[test]
fn duckdb_live_copies_retry_when_checkpoints_overlap_them() {
    let repo = TestRepo::new();
    // A ~15 MB file, so that copying it takes long enough for the writer's checkpoints
    // (every 50 commits, committing as fast as it can) to overlap copies.
    let conn = duckdb::Connection::open(repo.root.join("live.duckdb")).unwrap();
    conn.execute_batch(
        "CREATE TABLE ev AS SELECT range + 1 AS id, md5(range::VARCHAR) || md5((range * 7)::VARCHAR) AS payload FROM range(400000);",
    )
    .unwrap();
    drop(conn);
    let writer = Writer::start(&repo, "live.duckdb", 50, 0, false);
    let retries = thirty_live_snapshots(&repo, &writer);
    println!("checkpoint every 50 commits: 30 live snapshots, {retries} retries");
    let log = repo.dbguard(["log", "--json"]).ok().json();
    let logged: u64 = log
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["retries"].as_u64().unwrap())
        .sum();
    assert_eq!(logged, retries, "log --json reports the same retries");
}

#[test]
fn duckdb_guarded_clean_refuses_when_only_a_partial_copy_can_be_made() {
    let repo = TestRepo::new();
    seed_live_db(&repo);
    // 30 commits (300 rows) in the WAL, then a damaged WAL tail: no complete copy can be made.
    let mut writer = Writer::start(&repo, "live.duckdb", 0, 30, true);
    writer.expect("idle");
    let pid = writer.pid().to_string();
    let wal = repo.root.join("live.duckdb.wal");
    let wal_before = std::fs::read(&wal).unwrap();

    let run = repo.dbguard(["git", "clean", "-fdx"]).fails_with(3);
    assert!(
        run.stderr.contains("not running `git clean -fdx`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("process {pid}")),
        "names the holder:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("partial"), "{}", run.stderr);
    assert!(
        run.stderr.contains("30 committed transactions"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("dbguard --no-snapshot git clean -fdx"),
        "names the override:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("checkpoint"),
        "says what to do:\n{}",
        run.stderr
    );
    // git did not run: the database, its WAL (byte for byte) and the marker are there.
    assert_eq!(std::fs::read(&wal).unwrap(), wal_before);
    assert!(repo.root.join("live.duckdb").exists());
    assert!(repo.root.join("live.duckdb.committed").exists());

    // `dbguard snapshot` stores it marked partial and exits 3 for cron and monitoring.
    let run = repo.dbguard(["snapshot", "--json", "live.duckdb"]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report[0]["partial"], true);
    assert_eq!(
        report[0]["tables"]["ev"], 20000,
        "as of the last checkpoint"
    );
    assert_eq!(report[0]["missing"]["commits"], 30);
    assert_eq!(report[0]["missing"]["holder_pid"].to_string(), pid);
    assert!(report[0]["missing"]["wal_bytes"].as_u64().unwrap() > 0);
    assert!(
        run.stderr.contains("lacks 30 committed transactions"),
        "{}",
        run.stderr
    );
    let id = report[0]["id"].as_i64().unwrap();

    let log = repo.dbguard(["log", "--json"]).ok().json();
    let entry = log
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap();
    assert_eq!(entry["partial"], true);
    assert_eq!(entry["missing"]["commits"], 30);
    let log = repo.dbguard(["log"]).ok();
    assert!(log.stdout.contains("20,000 PARTIAL"), "{}", log.stdout);
    assert!(log.stderr.contains("is partial"), "{}", log.stderr);
    let show = repo
        .dbguard(["show", &id.to_string(), "--json"])
        .ok()
        .json();
    assert_eq!(show["partial"], true);
    assert_eq!(show["missing"]["commits"], 30);
    let show = repo.dbguard(["show", &id.to_string()]).ok();
    assert!(
        show.stdout
            .contains("NO: partial, lacks 30 committed transactions"),
        "{}",
        show.stdout
    );
    let status = repo.dbguard(["status", "--json"]).ok().json();
    let row = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "live.duckdb")
        .unwrap();
    assert_eq!(row["last_snapshot"]["partial"], true);
    assert_eq!(row["last_snapshot"]["missing"]["commits"], 30);
    let status = repo.dbguard(["status"]).ok();
    assert!(status.stdout.contains("PARTIAL"), "{}", status.stdout);

    // With the override, git runs (the user chose to).
    drop(writer);
    repo.dbguard(["--no-snapshot", "git", "clean", "-fdx"]).ok();
    assert!(!repo.root.join("live.duckdb").exists());
}

#[test]
fn duckdb_live_copy_of_a_v1_storage_file_keeps_its_format() {
    assert!(
        python_has("duckdb"),
        "this test needs the duckdb Python package"
    );
    let repo = TestRepo::new();
    let made = repo
        .command("python3", &repo.root)
        .args([
            "-c",
            "import duckdb; c = duckdb.connect(); \
             c.execute(\"ATTACH 'old.duckdb' (STORAGE_VERSION 'v1.0.0')\"); \
             c.execute(\"CREATE TABLE old.ev AS SELECT range + 1 AS id, repeat('p', 200) AS payload FROM range(5000)\")",
        ])
        .status()
        .unwrap();
    assert!(made.success());
    let db = repo.root.join("old.duckdb");
    let version = |path: &std::path::Path| {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[8..12], b"DUCK");
        u64::from_le_bytes(bytes[12..20].try_into().unwrap())
    };
    assert_eq!(version(&db), 64, "v1.0.0 storage");
    let writer = Writer::start(&repo, "old.duckdb", 0, 0, false);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let before = writer.committed();
        let report = repo
            .dbguard(["snapshot", "--json", "old.duckdb"])
            .ok()
            .json();
        assert_eq!(report[0]["partial"], false);
        assert!(
            report[0]["consistency"]
                .as_str()
                .unwrap()
                .starts_with("live-copy")
        );
        assert!(report[0]["tables"]["ev"].as_u64().unwrap() >= before);
        ids.push(report[0]["id"].as_i64().unwrap());
    }
    drop(writer);
    for id in ids {
        let out = repo.restore_to(id, &format!("old-{id}.duckdb"));
        assert_eq!(version(&out), 64, "the snapshot kept the v1.0.0 format");
    }
    assert_eq!(version(&db), 64, "the user's file was not upgraded");
}

#[test]
fn duckdb_weekly_schedule_backs_up_the_running_service_and_logs_complete_or_partial() {
    let repo = TestRepo::new();
    seed_live_db(&repo);
    let table = repo.path("crontab");
    let script = repo.path("fake-crontab");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nf='{}'\ncase \"$1\" in\n  -l) if [ -f \"$f\" ]; then cat \"$f\"; else echo \"no crontab for tester\" >&2; exit 1; fi ;;\n  -) cat > \"$f\" ;;\n  *) exit 2 ;;\nesac\n",
            table.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let crontab = [("DBGUARD_CRONTAB", script.to_str().unwrap())];
    let mut schedule = repo.command(dbguard_bin(), &repo.root);
    schedule.args(["schedule", "--every", "1w"]).envs(crontab);
    assert!(schedule.status().unwrap().success());
    let line = std::fs::read_to_string(&table).unwrap();
    assert!(line.starts_with("0 3 * * 0 "), "{line}");
    let command = line.splitn(6, ' ').nth(5).unwrap().trim().to_string();
    let run_job = || {
        repo.command("sh", std::path::Path::new("/"))
            .args(["-c", &command])
            .status()
            .unwrap()
    };

    // Twelve weeks of a running service: each run a complete live copy; the last 10 kept.
    {
        let writer = Writer::start(&repo, "live.duckdb", 0, 0, false);
        for _ in 0..12 {
            let before = writer.committed();
            assert!(run_job().success());
            let log = repo.dbguard(["log", "--json", "-n", "1"]).ok().json();
            assert!(log[0]["tables"]["ev"].as_u64().unwrap() >= before);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let log_text = std::fs::read_to_string(repo.store().join("schedule.log")).unwrap();
    let lines: Vec<&str> = log_text.lines().collect();
    assert_eq!(lines.len(), 12, "one line per run:\n{log_text}");
    assert!(
        lines.iter().all(|l| l.ends_with(", complete")),
        "{log_text}"
    );
    let kept = repo.dbguard(["log", "--json"]).ok().json();
    assert_eq!(kept.as_array().unwrap().len(), 10, "prune kept the last 10");

    // A week where no complete copy can be made: the run fails and its line says so.
    let mut writer = Writer::start(&repo, "live.duckdb", 0, 5, true);
    writer.expect("idle");
    assert!(!run_job().success(), "a partial run exits non-zero");
    let log_text = std::fs::read_to_string(repo.store().join("schedule.log")).unwrap();
    let partial: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains(" snapshot: "))
        .collect();
    assert_eq!(partial.len(), 13, "{log_text}");
    assert!(
        partial[12].contains("1 PARTIAL: live.duckdb #")
            // Every commit since the last checkpoint: the earlier weeks' and these 5.
            && partial[12].contains(" committed transactions ("),
        "{log_text}"
    );
}
