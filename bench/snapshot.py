"""Snapshot benchmark (issue: snapshot store).

On a ~400 MB, ~900k-row SQLite database, in one run:
  first snapshot vs `sqlite3 .backup` (goal <= 2x), re-snapshot of the unchanged file
  (goal <= 20 ms), peak memory of dbguard vs the database size (goal: bounded), and `cp`.
Usage: python3 bench/snapshot.py [--rows N] [--body BYTES] [--dir DIR]
"""
import argparse
import os
import shutil

from common import dbguard_bin, env, fresh_dir, git, make_posts_db, median_time, peak_rss_kib, run

parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, default=900_000)
parser.add_argument("--body", type=int, default=380)
parser.add_argument("--dir", default="/tmp/dbguard-bench-snapshot")
args = parser.parse_args()

binary = dbguard_bin()
base = fresh_dir(args.dir)
work = os.path.join(base, "work")
os.makedirs(work)
e = env(os.path.join(base, "home"), binary)
git(["init", "-q"], work, e)
db = os.path.join(work, "posts.db")
make_posts_db(db, args.rows, args.body)
size = os.path.getsize(db)
print(f"database: {args.rows:,} rows, {size / 2**20:.0f} MiB")

store = os.path.join(work, ".git", "dbguard")
backup_target = os.path.join(base, "backup.db")

def clear_backup():
    if os.path.exists(backup_target):
        os.remove(backup_target)

def clear_store():
    shutil.rmtree(store, ignore_errors=True)

t_backup = median_time(["sqlite3", db, f".backup '{backup_target}'"], 3, setup=clear_backup)
t_cp = median_time(["cp", db, os.path.join(base, "copy.db")], 3)
t_first = median_time([binary, "snapshot", "posts.db"], 3, cwd=work, env=e, setup=clear_store)
# The last first-snapshot left a store; the file is unchanged since: re-snapshots reuse it.
t_again = median_time([binary, "snapshot", "posts.db"], 15, cwd=work, env=e)
# One row changed: the stat cache misses, the file is read and every chunk but one
# already exists, so this is what dedup's check of existing chunks costs.
counter = [0]
def touch_one_row():
    counter[0] += 1
    run(["sqlite3", db, f"UPDATE posts SET author = 'bench{counter[0]}' WHERE id = 1"])
t_changed = median_time([binary, "snapshot", "posts.db"], 3, cwd=work, env=e, setup=touch_one_row)
clear_store()
rss_first = peak_rss_kib([binary, "snapshot", "posts.db"], cwd=work, env=e)
rss_backup = peak_rss_kib(["sqlite3", db, f".backup '{backup_target}.2'"])
stored = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(store) if not d.endswith("tmp") for f in fs)

print(f"sqlite3 .backup        {t_backup * 1000:8.0f} ms")
print(f"cp                     {t_cp * 1000:8.0f} ms")
print(f"dbguard first snapshot {t_first * 1000:8.0f} ms   ratio to .backup: {t_first / t_backup:.2f}x (goal <= 2x)")
print(f"dbguard re-snapshot    {t_again * 1000:8.1f} ms   (goal <= 20 ms; {t_again / t_cp:.3f}x of cp)")
print(f"dbguard one-row change {t_changed * 1000:8.0f} ms   ratio to .backup: {t_changed / t_backup:.2f}x (existing chunks checked before reuse)")
print(f"peak memory            {rss_first / 1024:8.1f} MiB  for a {size / 2**20:.0f} MiB database "
      f"({rss_first / (size / 1024):.3f}x its size; sqlite3 .backup: {rss_backup / 1024:.1f} MiB)")
print(f"stored                 {stored / 2**20:8.1f} MiB  ({stored / size:.2f}x the database)")
