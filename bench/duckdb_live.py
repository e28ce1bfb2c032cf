"""Live DuckDB benchmark (issue 14: a live DuckDB service).

On a ~400 MB DuckDB file that a writer process holds open read-write and commits to
(one small transaction every ~2 ms, automatic checkpoints as DuckDB sets them), in one run:
  - `cp` of its files (main file + WAL) vs dbguard's live copy (WAL and main file copied
    between two checkpoint-iteration reads, the copy opened, WAL replayed, checkpointed:
    the `copy` phase that DBGUARD_TIMING reports), goal <= 2x; the whole `dbguard
    snapshot` (copy + full-read verification + census + chunking into the store) too;
  - the writer's largest commit latency while snapshots run vs outside them;
  - the retries the snapshots reported (copies a checkpoint overlapped).
Usage: python3 bench/duckdb_live.py [--rows N] [--dir DIR] [--runs N]
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

from common import dbguard_bin, env, fresh_dir, git

WRITER = r"""
import duckdb, sys, time, json
path, out = sys.argv[1], sys.argv[2]
conn = duckdb.connect(path)
n = conn.execute("SELECT max(id) FROM posts").fetchone()[0]
print("ready", flush=True)
samples = []
try:
    while True:
        n += 1
        start = time.monotonic()
        conn.execute("INSERT INTO posts VALUES (?, 'live', md5(?::VARCHAR), 0.5)", [n, n])
        samples.append((start, time.monotonic() - start))
        time.sleep(0.002)
except KeyboardInterrupt:
    pass
except RuntimeError as error:  # DuckDB turns the SIGINT during a query into this
    if "interrupted" not in str(error):
        raise
with open(out, "w") as f:
    json.dump(samples, f)
"""

parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, default=4_000_000)
parser.add_argument("--dir", default="/tmp/dbguard-bench-duckdb-live")
parser.add_argument("--runs", type=int, default=3)
args = parser.parse_args()

binary = dbguard_bin()
base = fresh_dir(args.dir)
work = os.path.join(base, "work")
os.makedirs(work)
e = env(os.path.join(base, "home"), binary)
git(["init", "-q"], work, e)
db = os.path.join(work, "live.duckdb")
subprocess.run([sys.executable, "-c", f"""
import duckdb
c = duckdb.connect({db!r})
c.execute('''CREATE TABLE posts AS SELECT range AS id, 'author' || (range % 997) AS author,
    md5(range::VARCHAR) || md5((range * 7)::VARCHAR) || md5((range * 13)::VARCHAR) AS body,
    random() AS score FROM range({args.rows})''')
"""], check=True)
size = os.path.getsize(db)
print(f"database: {args.rows:,} rows, {size / 2**20:.0f} MiB")

samples_file = os.path.join(base, "latency.json")
writer = subprocess.Popen([sys.executable, "-c", WRITER, db, samples_file], stdout=subprocess.PIPE, text=True)
assert writer.stdout.readline().strip() == "ready"
time.sleep(1.0)
store = os.path.join(work, ".git", "dbguard")
windows = []


def timed(cmd, **kw):
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    end = time.monotonic()
    return start, end, proc


def seconds(text):
    """A Rust Duration's Debug text (412.3ms, 1.2s, 900µs) in seconds."""
    m = re.match(r"([\d.]+)(ns|µs|us|ms|s)$", text.strip())
    scale = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
    return float(m.group(1)) * scale


cp_times, copy_times, snapshot_times, retries = [], [], [], 0
partial = 0
for i in range(args.runs):
    dest = fresh_dir(os.path.join(base, "cp"))
    start, end, proc = timed(["cp", db, db + ".wal", dest] if os.path.exists(db + ".wal") else ["cp", db, dest])
    cp_times.append(end - start)
    time.sleep(0.5)
    shutil.rmtree(store, ignore_errors=True)  # a first snapshot: every chunk is new
    start, end, proc = timed([binary, "snapshot", "--json", "live.duckdb"], cwd=work,
                             env={**e, "DBGUARD_TIMING": "1"})
    windows.append((start, end))
    if proc.returncode not in (0, 3):
        sys.exit(f"dbguard snapshot failed: {proc.stderr}")
    report = json.loads(proc.stdout)[0]
    partial += report["partial"]
    retries += report.get("retries") or 0
    snapshot_times.append(end - start)
    copy_times.append(seconds(re.search(r"timing: copy (\S+)", proc.stderr).group(1)))
    time.sleep(0.5)

writer.send_signal(2)
writer.wait()
with open(samples_file) as f:
    samples = json.load(f)
inside = [lat for (t, lat) in samples if any(s <= t <= e2 for s, e2 in windows)]
outside = [lat for (t, lat) in samples if not any(s - 0.2 <= t <= e2 + 0.2 for s, e2 in windows)]
t_cp = statistics.median(cp_times)
t_copy = statistics.median(copy_times)
t_snap = statistics.median(snapshot_times)
print(f"cp of main file + WAL   {t_cp * 1000:8.0f} ms")
print(f"dbguard live copy       {t_copy * 1000:8.0f} ms   ratio to cp: {t_copy / t_cp:.2f}x (goal <= 2x)")
print(f"dbguard snapshot, whole {t_snap * 1000:8.0f} ms   ratio to cp: {t_snap / t_cp:.2f}x "
      f"(copy + full-read verification + census + chunks into the store)")
print(f"retries                 {retries:8d}      over {args.runs} snapshots; partial: {partial}")
print(f"writer commits          {len(samples):8d}      {len(inside)} during snapshots, {len(outside)} outside")
if inside and outside:
    print(f"largest commit latency  {max(inside) * 1000:8.1f} ms during snapshots vs {max(outside) * 1000:.1f} ms outside "
          f"({max(inside) / max(outside):.2f}x); median {statistics.median(inside) * 1000:.2f} vs "
          f"{statistics.median(outside) * 1000:.2f} ms")
