"""Restore benchmark (issue 30, part 4: restores at the disk's speed).

On the seed-shaped database (the Bluesky posts, 900,000 rows, ~376 MiB; or bench's posts
db with --shape posts), snapshotted once by dbguard and backed up once by restic, in one
run, page cache warm for all three, median of --runs each:
  1. `dbguard restore <db> --to <new file>`: every page's hash checked, quick_check and
     census of the image, the file fsynced, renamed into place, its directory fsynced;
  2. `cp` of the database file followed by an fsync of the copy (os.fsync): the disk's
     speed, with no check at all;
  3. `restic restore latest --target <dir>` from a local restic repository (Debian's
     `restic`; RESTIC_PASSWORD set here). Skipped, and said so, when restic is missing.
Then the ratios dbguard / (cp + fsync) (goal <= 2.5) and dbguard / restic (goal < 1).
Every run writes a new file in the same directory and is followed by a sync, so no run
pays for the previous run's writeback.

Usage: python3 bench/restore.py [--shape bluesky|posts] [--rows N] [--body BYTES] [--dir DIR] [--runs N]
  e.g. python3 bench/restore.py --rows 50000        (a quick check)
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from churn import Bluesky, Posts  # noqa: E402
from common import dbguard_bin, env, fresh_dir, git, run  # noqa: E402

MiB = 2**20


def warm(path):
    """Read a file or every file under a directory once, so the page cache holds it."""
    paths = [path] if os.path.isfile(path) else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 22):
                pass


def cp_and_fsync(source, dest):
    """`cp`, then an fsync of the copy; the wall time of both."""
    start = time.perf_counter()
    subprocess.run(["cp", source, dest], check=True)
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def timed_runs(runs, clear, once):
    """`once()` `runs` times, each after `clear()` and a sync; the times."""
    times = []
    for _ in range(runs):
        clear()
        os.sync()
        times.append(once())
    clear()
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=["bluesky", "posts"], default="bluesky")
    ap.add_argument("--rows", type=int, default=900_000)
    ap.add_argument("--body", type=int, default=380)
    ap.add_argument("--dir", default="/tmp/dbguard-bench-restore")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    binary = dbguard_bin()
    base = fresh_dir(a.dir)
    repo = os.path.join(base, "repo")
    os.makedirs(repo)
    out = os.path.join(base, "out")
    e = env(os.path.join(base, "home"), binary)
    git(["init", "-q"], repo, e)
    shape = Bluesky() if a.shape == "bluesky" else Posts(a.body)
    db = os.path.join(repo, shape.file_name)
    print(f"making {shape.name} db: {a.rows:,} rows ...", flush=True)
    shape.make(db, a.rows, a.body)
    size = os.path.getsize(db)
    print(f"database: {size / MiB:.0f} MiB; dbguard: {binary}", flush=True)
    run([binary, "snapshot", shape.file_name, "--quiet"], cwd=repo, env=e)

    def clear():
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)

    restored = os.path.join(out, "restored.db")
    warm(db)
    warm(os.path.join(repo, ".git", "dbguard"))
    t_dbguard = timed_runs(a.runs, clear, lambda: run(
        [binary, "restore", shape.file_name, "--to", restored], cwd=repo, env=e))
    t_cp = timed_runs(a.runs, clear, lambda: cp_and_fsync(db, restored))

    t_restic = None
    if shutil.which("restic"):
        restic_env = dict(e, RESTIC_PASSWORD="bench-password", RESTIC_REPOSITORY=os.path.join(base, "restic"),
                          RESTIC_CACHE_DIR=os.path.join(base, "restic-cache"))
        run(["restic", "init"], env=restic_env)
        run(["restic", "backup", "--quiet", db], env=restic_env)
        warm(os.path.join(base, "restic"))
        t_restic = timed_runs(a.runs, clear, lambda: run(
            ["restic", "restore", "latest", "--target", out], env=restic_env))
    else:
        print("restic is not installed (Debian: apt install restic): its column is skipped")

    def line(name, times):
        return (f"{name:26} {statistics.median(times):7.3f} s   "
                f"(median of {', '.join(f'{t:.3f}' for t in times)})")

    print(line("dbguard restore --to", t_dbguard))
    print(line("cp + fsync of the copy", t_cp))
    if t_restic:
        print(line("restic restore", t_restic))
    d = statistics.median(t_dbguard)
    to_cp = d / statistics.median(t_cp)
    print(f"dbguard / (cp + fsync)  {to_cp:6.2f}x   (goal <= 2.5x)  {'met' if to_cp <= 2.5 else 'NOT met'}")
    if t_restic:
        to_restic = d / statistics.median(t_restic)
        print(f"dbguard / restic        {to_restic:6.2f}x   (goal < 1)      {'met' if to_restic < 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
