"""Export benchmark (issue 6: backups).

On a ~400 MB, ~900k-row SQLite database (bench's posts db, or with --shape bluesky the
seed-shaped one: the Bluesky posts table, 376 MiB, and two small tables), in one run:
`dbguard export <db> --format parquet,jsonl --compression gzip` vs the pandas script it
replaces (for every table: read_sql_query of the whole table, to_parquet gzip, to_json
lines gzip). Wall time and peak RSS of each, and the
ratios (goals: dbguard >= 10x faster and <= 1/10 of the peak memory).

dbguard's export snapshots the database first; a baseline snapshot is taken before timing
(as `dbguard install` or the schedule would have), so the timed runs reuse it through the
stat cache. Its time is printed separately. pandas' to_json cannot write bytes, so the
script base64-encodes the BLOB column first (as dbguard's JSON Lines does).
Usage: python3 bench/export.py [--shape posts|bluesky] [--rows N] [--body BYTES] [--dir DIR]
"""
import argparse
import os
import shutil
import statistics
import sys


def require_pandas():
    """The comparison runs a pandas script (to_parquet needs pyarrow): say so up front,
    before minutes of set-up, instead of failing later with a bare ModuleNotFoundError."""
    missing = []
    for module in ("pandas", "pyarrow"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        sys.exit(
            f"bench/export.py needs pandas and pyarrow for the script it compares against "
            f"(missing: {', '.join(missing)}).\n"
            f"Install them: {sys.executable} -m pip install pandas pyarrow "
            f"(or your distribution's python3-pandas and python3-pyarrow packages)"
        )


require_pandas()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from churn import Bluesky, Posts  # noqa: E402
from common import dbguard_bin, env, fresh_dir, git, peak_rss_kib, run  # noqa: E402

PANDAS_SCRIPT = """
import base64, sqlite3, sys
import pandas as pd
db, out = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(db)
tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
for table in tables:
    df = pd.read_sql_query(f'SELECT * FROM "{table}"', conn)
    df.to_parquet(f'{out}/{table}.parquet', compression='gzip')
    # to_json cannot write bytes (a BLOB column): base64 them, as dbguard's JSONL does.
    for c in df.columns:
        if df[c].map(lambda v: isinstance(v, bytes)).any():
            df[c] = df[c].map(lambda v: base64.b64encode(v).decode() if isinstance(v, bytes) else v)
    df.to_json(f'{out}/{table}.jsonl.gz', orient='records', lines=True, compression='gzip')
    del df
"""

parser = argparse.ArgumentParser()
parser.add_argument("--shape", choices=["posts", "bluesky"], default="posts")
parser.add_argument("--rows", type=int, default=900_000)
parser.add_argument("--body", type=int, default=380)
parser.add_argument("--dir", default="/tmp/dbguard-bench-export")
args = parser.parse_args()

binary = dbguard_bin()
base = fresh_dir(args.dir)
work = os.path.join(base, "work")
os.makedirs(work)
e = env(os.path.join(base, "home"), binary)
git(["init", "-q"], work, e)
shape = Posts(args.body) if args.shape == "posts" else Bluesky()
db = os.path.join(work, shape.file_name)
shape.make(db, args.rows, args.body)
size = os.path.getsize(db)
print(f"database ({shape.name}): {args.rows:,} rows, {size / 2**20:.0f} MiB")

script = os.path.join(base, "pandas_export.py")
with open(script, "w") as f:
    f.write(PANDAS_SCRIPT)


def out_dir(name):
    return fresh_dir(os.path.join(base, name))


def dbguard_cmd(out):
    return [binary, "export", shape.file_name, "--format", "parquet,jsonl", "--compression", "gzip", "--out", out]


def pandas_cmd(out):
    return [sys.executable, script, db, out]


def output_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


t_baseline = run([binary, "snapshot", shape.file_name], cwd=work, env=e)

# Let the writeback of the freshly made database and snapshot finish first, so neither
# side pays for the set-up's dirty pages; dbguard's time is the median of three runs.
os.sync()
times = []
for _ in range(3):
    out = out_dir("out-dbguard-time")
    times.append(run(dbguard_cmd(out), cwd=work, env=e))
t_dbguard = statistics.median(times)
dbguard_bytes = output_size(out)
rss_dbguard = peak_rss_kib(dbguard_cmd(out_dir("out-dbguard-rss")), cwd=work, env=e)

os.sync()
out = out_dir("out-pandas-time")
t_pandas = run(pandas_cmd(out), env=e)
pandas_bytes = output_size(out)
rss_pandas = peak_rss_kib(pandas_cmd(out_dir("out-pandas-rss")), env=e)

for name in ["out-dbguard-time", "out-dbguard-rss", "out-pandas-time", "out-pandas-rss"]:
    shutil.rmtree(os.path.join(base, name), ignore_errors=True)

print(f"baseline snapshot      {t_baseline:8.2f} s   (not included below)")
print(f"dbguard export         {t_dbguard:8.2f} s   peak {rss_dbguard / 1024:8.1f} MiB   output {dbguard_bytes / 2**20:.1f} MiB"
      f"   (median of {', '.join(f'{t:.2f}' for t in times)} s)")
print(f"pandas script          {t_pandas:8.2f} s   peak {rss_pandas / 1024:8.1f} MiB   output {pandas_bytes / 2**20:.1f} MiB")
speed = t_pandas / t_dbguard
memory = rss_dbguard / rss_pandas if rss_pandas > 0 else float("nan")
print(f"speed-up   {speed:6.1f}x   (goal >= 10x)  {'met' if speed >= 10 else 'NOT met'}")
print(f"peak RSS   {memory:6.3f} of pandas   (goal <= 0.1)  {'met' if memory <= 0.1 else 'NOT met'}")
