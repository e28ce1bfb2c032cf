"""What DuckDB's optimisation level changes in dbguard's DuckDB work (issue 15).

Runs the same DuckDB work with several dbguard builds, in one run, on one ~400 MB DuckDB
file, and prints each phase's median time and its ratio to the first build:
  - `dbguard snapshot` of the file at rest: the copy, the check (every block read) and
    census, and the ingest into the store (the last is Rust, not DuckDB: a control);
  - a live copy while a Python writer holds the file open and commits (WAL replay and
    checkpoint of the copy inside DuckDB);
  - `dbguard export --format parquet` of the large table (DuckDB scans, Arrow, Parquet).
Python's duckdb wheel (DuckDB's own -O3 release build, same DuckDB version) opening,
replaying and checkpointing the same copied files is printed as the -O3 reference.

Usage: DBGUARD_BINS="O0=/path/dbguard,O2=/path/dbguard" python3 bench/duckdb_opt.py [--rows N]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

from common import env, fresh_dir, git

parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, default=4_000_000)
parser.add_argument("--runs", type=int, default=3)
parser.add_argument("--dir", default="/tmp/dbguard-bench-duckdb-opt")
args = parser.parse_args()

bins_spec = os.environ.get("DBGUARD_BINS")
if not bins_spec:
    sys.exit("set DBGUARD_BINS=\"LABEL=/path/to/dbguard,LABEL=/path/to/dbguard\" "
             "(e.g. the dev build and a `cargo install` build)")
binaries = [tuple(item.split("=", 1)) for item in bins_spec.split(",")]
for label, path in binaries:
    if not os.access(path, os.X_OK):
        sys.exit(f"{label}: {path} is not an executable dbguard")

base = fresh_dir(args.dir)
work = os.path.join(base, "work")
os.makedirs(work)
e = env(os.path.join(base, "home"), binaries[0][1])
git(["init", "-q"], work, e)
db = os.path.join(work, "big.duckdb")
subprocess.run([sys.executable, "-c", f"""
import duckdb
c = duckdb.connect({db!r})
c.execute('''CREATE TABLE posts AS SELECT range AS id, 'author' || (range % 997) AS author,
    md5(range::VARCHAR) || md5((range * 7)::VARCHAR) || md5((range * 13)::VARCHAR) AS body,
    random() AS score FROM range({args.rows})''')
"""], check=True)
print(f"database: {args.rows:,} rows, {os.path.getsize(db) / 2**20:.0f} MiB")
store = os.path.join(work, ".git", "dbguard")

WRITER = r"""
import duckdb, sys, time
conn = duckdb.connect(sys.argv[1])
conn.execute("SET wal_autocheckpoint = '1TB'")
n = conn.execute("SELECT max(id) FROM posts").fetchone()[0]
print("ready", flush=True)
while True:
    n += 1
    conn.execute("INSERT INTO posts VALUES (?, 'live', md5(?::VARCHAR), 0.5)", [n, n])
    time.sleep(0.002)
"""


def seconds(text):
    """A Rust Duration's Debug text (412.3ms, 1.2s, 900µs) in seconds."""
    m = re.match(r"([\d.]+)(ns|µs|us|ms|s)$", text.strip())
    return float(m.group(1)) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def snapshot(binary):
    """A first snapshot (empty store): its phases from DBGUARD_TIMING, and the snapshot id."""
    shutil.rmtree(store, ignore_errors=True)
    proc = subprocess.run([binary, "snapshot", "--json", "big.duckdb"], cwd=work, capture_output=True,
                          text=True, env={**e, "DBGUARD_TIMING": "1"})
    if proc.returncode not in (0, 3):
        sys.exit(f"{binary} snapshot failed: {proc.stderr}")
    phases = {name: seconds(value) for name, value in re.findall(r"timing: (\S+) (\S+)", proc.stderr)}
    return phases, json.loads(proc.stdout)[0]


results = {label: {} for label, _ in binaries}


def record(label, phase, value):
    results[label].setdefault(phase, []).append(value)


for run in range(args.runs):
    for label, binary in binaries:
        phases, report = snapshot(binary)
        for phase in ("copy", "check+census", "ingest"):
            record(label, f"at rest: {phase}", phases[phase])
        out = fresh_dir(os.path.join(base, "export"))
        start = time.monotonic()
        subprocess.run([binary, "export", str(report["id"]), "--format", "parquet", "--out", out],
                       cwd=work, env=e, check=True, capture_output=True)
        record(label, "export parquet", time.monotonic() - start)

# Live: one writer for all builds, WAL growing (no automatic checkpoint), so each copy
# replays a WAL of the same order of size.
writer = subprocess.Popen([sys.executable, "-c", WRITER, db], stdout=subprocess.PIPE, text=True)
assert writer.stdout.readline().strip() == "ready"
time.sleep(2.0)
reference = []
try:
    for run in range(args.runs):
        for label, binary in binaries:
            phases, _ = snapshot(binary)
            record(label, "live copy (replay+checkpoint)", phases["copy"])
        # The -O3 reference: Python's DuckDB replays and checkpoints a plain copy.
        dest = fresh_dir(os.path.join(base, "ref"))
        shutil.copy(db + ".wal", dest)
        shutil.copy(db, dest)
        copy_db = os.path.join(dest, "big.duckdb")
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", "import duckdb,sys; c=duckdb.connect(sys.argv[1]); "
                        "c.execute('CHECKPOINT'); c.close()", copy_db], check=True)
        reference.append(time.monotonic() - start)
finally:
    writer.kill()
    writer.wait()

first = binaries[0][0]
print(f"{'phase (median of ' + str(args.runs) + ')':36s}" + "".join(f"{label:>16s}" for label, _ in binaries))
for phase in results[first]:
    row = f"{phase:36s}"
    for label, _ in binaries:
        value = statistics.median(results[label][phase])
        ratio = value / statistics.median(results[first][phase])
        row += f"{value * 1000:9.0f} ms {ratio:4.2f}x" if label != first else f"{value * 1000:13.0f} ms"
    print(row)
print(f"{'python duckdb (-O3): open+replay+checkpoint':44s} {statistics.median(reference) * 1000:.0f} ms "
      "(includes Python start, ~60 ms)")
