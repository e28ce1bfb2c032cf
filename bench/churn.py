"""Churn benchmark (issue 16: page-granular dedup in pack files).

For each database shape -- bench's posts db (common.make_posts_db) and the seed-shaped
Bluesky db (/work/shared/data/make_bluesky_db.py) -- in one run:
  1. random churn: a first snapshot, then rounds that each update 1% of the rows at
     random (a text column gets new random text of the same length, one transaction)
     and snapshot again. Per snapshot: the store's growth beside the physical floor,
     the pages of the database file that changed in the round (and new pages past its
     old end) compressed together with `zstd -1` (and `zstd -3`). Goals: growth / floor
     <= 2x for every snapshot; store after all snapshots / after the first <= 2x.
     Also the first snapshot's size / `zstd -1` of the whole file.
  2. append-only crawler: a fresh store, a first snapshot, then rounds that each insert
     1% new rows; growth / floor <= 2x per snapshot.
  3. speed: first snapshot into an empty store vs `sqlite3 .backup` and `cp` (median of
     3; goal <= 1.5x .backup on the bluesky shape), re-snapshot of the unchanged file
     (median of 15; goal <= 20 ms), `dbguard restore --from ID --to OUT` of the churn
     series' last snapshot (median of 3) beside `cp`.
  4. files in the store per GiB stored, after the churn series.
  5. prune of all but the newest churn snapshot (`prune --keep-last 1`): store size after
     / the size of that one snapshot in an empty store (goal <= 1.2x); then
     `dbguard verify` must pass and a restore of the kept snapshot must give back the
     same rows (asserted: row count, integrity_check, the last round's new values).
Then one table with every ratio, its goal, MET / NOT MET.

The store is measured generically (it must work for any store format): the bytes and
the number of every file under .git/dbguard/ except tmp/.

Usage: python3 bench/churn.py [--shape posts|bluesky|both] [--rows N] [--snapshots N]
                              [--body BYTES] [--dir DIR]
  e.g. DBGUARD_BIN=~/.cache/dbguard-target/debug/dbguard nice -n 10 python3 bench/churn.py
       python3 bench/churn.py --rows 20000           (a quick check, a few minutes)
--rows defaults to 900,000 (posts: 441 MiB at --body 380; bluesky: 376 MiB).
"""
import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import string
import subprocess
import sys
import time

from common import dbguard_bin, env, fresh_dir, git, make_posts_db, median_time

BLUESKY_SCRIPT = "/work/shared/data/make_bluesky_db.py"
BLUESKY_WORDS = ("bluesky post feed skyline research data model graph label sync "
                 "firehose cursor migration backup restore table row schema").split()
CHURN_FRACTION = 0.01
MiB = 2**20
GiB = 2**30


# --- the two database shapes ---------------------------------------------------------

class Shape:
    """A database shape: how to make it, which table and text column churn touches, and
    how a crawler's new rows look."""

    def __init__(self, name, file_name, table, text_column, words):
        self.name, self.file_name, self.table, self.text_column = name, file_name, table, text_column
        self.words = words

    def make(self, path, rows, body):
        raise NotImplementedError

    def append(self, con, first_id, count, rng):
        raise NotImplementedError


class Posts(Shape):
    def __init__(self, body):
        # Words of random letters: new text about as compressible as prose.
        rng = random.Random(7)
        words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randrange(2, 10))) for _ in range(5000)]
        super().__init__("posts", "posts.db", "posts", "body", words)
        self.body = body

    def make(self, path, rows, body):
        make_posts_db(path, rows, body)

    def append(self, con, first_id, count, rng):
        # The rows make_posts_db writes, continuing its ids.
        con.execute(f"""
            INSERT INTO posts(id, author, body, score, raw)
            WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i+1 FROM n WHERE i < ?)
            SELECT i, 'author' || (i % 997), printf('%.{self.body}c', 'x') || hex(randomblob(24)),
                   i * 0.5, CASE WHEN i % 10 = 0 THEN randomblob(16) END FROM n""",
                    (first_id, first_id + count - 1))


class Bluesky(Shape):
    def __init__(self):
        super().__init__("bluesky", "bluesky.db", "transformedrecordwithauthor", "text", BLUESKY_WORDS)

    def make(self, path, rows, body):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        subprocess.run([sys.executable, BLUESKY_SCRIPT, path, str(rows)], check=True)

    def append(self, con, first_id, count, rng):
        # The rows make_bluesky_db.py writes, continuing its ids.
        def did():
            return "did:plc:" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz234567", k=24))
        batch = []
        for i in range(first_id, first_id + count):
            d = did()
            batch.append((i, f"at://{d}/app.bsky.feed.post/{i:013d}", "bafyrei" + "%052x" % rng.getrandbits(208),
                          d, f"user{rng.randrange(10**6)}.bsky.social",
                          " ".join(rng.choice(BLUESKY_WORDS) for _ in range(rng.randrange(5, 40))),
                          "en", None, None, None,
                          f"2024-05-{rng.randrange(20, 29):02d}T{rng.randrange(24):02d}:00:00Z",
                          "2024-05-22-21:00:36", "2024-05-28-18:16:05"))
        con.executemany(f"INSERT INTO {self.table} VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)


def random_text(rng, length, words):
    """New text of exactly `length` characters made of random words."""
    parts, n = [], 0
    while n < length:
        w = rng.choice(words)
        parts.append(w)
        n += len(w) + 1
    return " ".join(parts)[:length]


def churn(db, shape, rng):
    """Update 1% of the rows, chosen at random, in one transaction; return the ids."""
    con = sqlite3.connect(db)
    t, col = shape.table, shape.text_column
    max_id = con.execute(f"SELECT max(id) FROM {t}").fetchone()[0]
    count = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
    ids = sorted(rng.sample(range(1, max_id + 1), max(1, round(count * CHURN_FRACTION))))
    with con:
        for i in ids:
            row = con.execute(f"SELECT length({col}) FROM {t} WHERE id = ?", (i,)).fetchone()
            if row is not None:
                con.execute(f"UPDATE {t} SET {col} = ? WHERE id = ?",
                            (random_text(rng, row[0] or 40, shape.words), i))
    checkpoint(con)
    con.close()
    return ids


def append(db, shape, rng, count):
    """Insert `count` new rows after the last id, in one transaction (a crawler's round)."""
    con = sqlite3.connect(db)
    first = con.execute(f"SELECT max(id) FROM {shape.table}").fetchone()[0] + 1
    with con:
        shape.append(con, first, count, rng)
    checkpoint(con)
    con.close()


def checkpoint(con_or_path):
    """Move everything a WAL holds into the main file (a no-op for rollback journals)."""
    con = sqlite3.connect(con_or_path) if isinstance(con_or_path, str) else con_or_path
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if isinstance(con_or_path, str):
        con.close()


def row_count(db, table):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


# --- the physical floor ----------------------------------------------------------------

def page_size(path):
    """From the SQLite header: a big-endian u16 at offset 16, where 1 means 65536."""
    with open(path, "rb") as f:
        header = f.read(100)
    if header[:16] != b"SQLite format 3\0":
        sys.exit(f"{path} is not a SQLite database")
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def changed_pages(old, new):
    """The pages of `new` that differ from `old`'s, and every page past old's end,
    concatenated; and how many pages that is, of how many."""
    ps = page_size(new)
    block = ps * 256
    out, changed, total = [], 0, 0
    with open(old, "rb") as fo, open(new, "rb") as fn:
        while True:
            b_new = fn.read(block)
            if not b_new:
                break
            b_old = fo.read(block)
            total += (len(b_new) + ps - 1) // ps
            if b_new == b_old:
                continue
            for off in range(0, len(b_new), ps):
                page = b_new[off:off + ps]
                if page != b_old[off:off + ps]:
                    out.append(page)
                    changed += 1
    return b"".join(out), changed, total


def zstd_size(level, data=None, path=None):
    """Bytes `zstd -LEVEL` makes of `data` (or of the file at `path`)."""
    cmd = ["zstd", f"-{level}", "-q", "-c"] + ([path] if path else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE)
    if data is not None:
        out, _ = proc.communicate(data)  # the compressed output is small enough to buffer
        size = len(out)
    else:
        size = 0
        while chunk := proc.stdout.read(1 << 20):
            size += len(chunk)
        proc.wait()
    if proc.returncode != 0:
        sys.exit(f"{cmd} failed")
    return size


# --- the store and the binary ----------------------------------------------------------

def store_usage(store):
    """(bytes, files) of everything under the store except tmp/."""
    total = files = 0
    for d, dirs, fs in os.walk(store):
        if d == store and "tmp" in dirs:
            dirs.remove("tmp")
        for f in fs:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
                files += 1
    return total, files


def human(n):
    """Bytes for a table column: 812.3 KiB, 41.20 MiB."""
    if n >= MiB:
        return f"{n / MiB:.2f} MiB"
    return f"{n / 1024:.1f} KiB"


def store_bytes(store):
    return store_usage(store)[0]


def output(cmd, cwd, env):
    """Run a command, failing loudly; return (stdout, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout, elapsed


class Repo:
    """A fresh git repository holding a copy of the database, with its own HOME."""

    def __init__(self, base, name, binary, pristine, shape):
        self.dir = fresh_dir(os.path.join(base, name))
        self.work = os.path.join(self.dir, "work")
        os.makedirs(self.work)
        self.env = env(os.path.join(self.dir, "home"), binary)
        git(["init", "-q"], self.work, self.env)
        self.binary, self.shape = binary, shape
        self.db = os.path.join(self.work, shape.file_name)
        shutil.copyfile(pristine, self.db)
        self.store = os.path.join(self.work, ".git", "dbguard")

    def dbguard(self, *args):
        return output([self.binary, *args], self.work, self.env)

    def snapshot(self):
        """`dbguard --json snapshot DB`: (its JSON entry, wall seconds)."""
        out, elapsed = self.dbguard("--json", "snapshot", self.shape.file_name)
        entries = json.loads(out)
        if len(entries) != 1 or entries[0].get("id") is None or entries[0].get("error"):
            sys.exit(f"unexpected snapshot output: {out}")
        return entries[0], elapsed

    def size(self):
        return store_bytes(self.store)


# --- the series ------------------------------------------------------------------------

def growth_series(repo, snapshots, mutate, label):
    """A first snapshot, then `snapshots - 1` rounds of mutate + snapshot; print per
    snapshot the store's growth beside the floor. Returns the rows and the last entry."""
    prev = os.path.join(repo.dir, "previous.db")
    checkpoint(repo.db)
    entry, elapsed = repo.snapshot()
    first = repo.size()
    whole1 = zstd_size(1, path=repo.db)
    whole3 = zstd_size(3, path=repo.db)
    pages = os.path.getsize(repo.db) // page_size(repo.db)
    print(f"\n{label}: {snapshots} snapshots of {repo.shape.file_name}")
    print(f"  {'#':>2} {'growth':>10} {'floor zstd-1':>12} {'zstd -3':>10} {'pages changed':>17} "
          f"{'growth/floor':>12} {'dbguard says':>12} {'time':>8}")
    def line(n, growth, f1, f3, changed, total, said, secs):
        print(f"  {n:>2} {human(growth):>10} {human(f1):>12} {human(f3):>10} "
              f"{changed:>8,}/{total:<8,} {growth / f1 if f1 else float('inf'):>11.2f}x "
              f"{human(said or 0):>12} {secs:>7.2f}s")
    line(1, first, whole1, whole3, pages, pages, entry.get("stored_bytes"), elapsed)
    rows = []
    for n in range(2, snapshots + 1):
        shutil.copyfile(repo.db, prev)
        last_change = mutate()
        data, changed, total = changed_pages(prev, repo.db)
        f1, f3 = zstd_size(1, data=data), zstd_size(3, data=data)
        before = repo.size()
        entry, elapsed = repo.snapshot()
        if entry.get("unchanged"):
            sys.exit(f"snapshot {n} found the database unchanged: {entry}")
        growth = repo.size() - before
        line(n, growth, f1, f3, changed, total, entry.get("stored_bytes"), elapsed)
        rows.append({"growth": growth, "floor": f1, "floor3": f3})
    os.remove(prev)
    total_size = repo.size()
    ratios = [r["growth"] / r["floor"] for r in rows if r["floor"]]
    print(f"  first snapshot {first / MiB:.2f} MiB = {first / whole1:.2f}x zstd -1 of the whole file "
          f"({whole1 / MiB:.2f} MiB; zstd -3 {whole3 / MiB:.2f} MiB)")
    if ratios:
        print(f"  growth/floor: median {statistics.median(ratios):.2f}x, worst {max(ratios):.2f}x (goal <= 2x)")
    print(f"  store after {snapshots} snapshots {total_size / MiB:.2f} MiB = {total_size / first:.2f}x the first")
    # What no store can beat: the whole file, then each round's changed pages, compressed.
    floor_total = whole1 + sum(r["floor"] for r in rows)
    print(f"  the floor for all {snapshots}: {floor_total / MiB:.2f} MiB = {floor_total / whole1:.2f}x the first's "
          f"floor; the store is {total_size / floor_total:.2f}x its floor")
    return {"first": first, "whole1": whole1, "total": total_size, "ratios": ratios,
            "last": entry, "last_change": last_change}


def run_shape(shape, args, binary, base, summary):
    rng = random.Random(16)
    print(f"\n=== {shape.name} ===")
    pristine = os.path.join(base, f"pristine-{shape.file_name}")
    start = time.perf_counter()
    shape.make(pristine, args.rows, args.body)
    checkpoint(pristine)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(pristine + suffix):
            os.remove(pristine + suffix)
    size = os.path.getsize(pristine)
    rows = row_count(pristine, shape.table)
    print(f"database: {rows:,} rows in {shape.table}, {size / MiB:.0f} MiB, page size "
          f"{page_size(pristine)} (made in {time.perf_counter() - start:.0f} s)")

    # Speed: first snapshot into an empty store vs sqlite3 .backup and cp.
    speed = Repo(base, f"{shape.name}-speed", binary, pristine, shape)
    backup_target = os.path.join(speed.dir, "backup.db")
    def clear_backup():
        if os.path.exists(backup_target):
            os.remove(backup_target)
    def clear_store():
        shutil.rmtree(speed.store, ignore_errors=True)
    snap = [binary, "snapshot", shape.file_name]
    t_backup = median_time(["sqlite3", speed.db, f".backup '{backup_target}'"], 3, setup=clear_backup)
    t_cp = median_time(["cp", speed.db, os.path.join(speed.dir, "copy.db")], 3)
    t_first = median_time(snap, 3, cwd=speed.work, env=speed.env, setup=clear_store)
    t_again = median_time(snap, 15, cwd=speed.work, env=speed.env)
    print(f"sqlite3 .backup        {t_backup * 1000:8.0f} ms")
    print(f"cp                     {t_cp * 1000:8.0f} ms")
    print(f"dbguard first snapshot {t_first * 1000:8.0f} ms   {t_first / t_backup:.2f}x .backup"
          f"{' (goal <= 1.5x)' if shape.name == 'bluesky' else ''}")
    print(f"dbguard re-snapshot    {t_again * 1000:8.1f} ms   (unchanged file; goal <= 20 ms)")
    shutil.rmtree(speed.dir)

    # Random churn.
    repo = Repo(base, f"{shape.name}-churn", binary, pristine, shape)
    churned = growth_series(repo, args.snapshots, lambda: churn(repo.db, shape, rng),
                            f"random churn ({CHURN_FRACTION:.0%} of rows updated per round)")
    stored, files = store_usage(repo.store)
    per_gib = files / (stored / GiB)
    print(f"  store: {files:,} files, {stored / MiB:.1f} MiB: {per_gib:,.0f} files per GiB stored")
    last_id = churned["last"]["id"]
    expected_rows = row_count(repo.db, shape.table)

    # Restore of the last snapshot beside cp.
    restored = os.path.join(repo.dir, "restored.db")
    def clear_restored():
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(restored + suffix):
                os.remove(restored + suffix)
    t_restore = median_time([binary, "restore", "--from", str(last_id), "--to", restored], 3,
                            cwd=repo.work, env=repo.env, setup=clear_restored)
    t_cp_db = median_time(["cp", repo.db, os.path.join(repo.dir, "copy.db")], 3)
    os.remove(os.path.join(repo.dir, "copy.db"))
    print(f"  restore --to of #{last_id}: {t_restore * 1000:.0f} ms; cp {t_cp_db * 1000:.0f} ms "
          f"({t_restore / t_cp_db:.1f}x cp)")

    # One snapshot of the final state, alone in an empty store: what pruning should reach.
    alone = Repo(base, f"{shape.name}-alone", binary, repo.db, shape)
    alone.snapshot()
    one = alone.size()
    shutil.rmtree(alone.dir)

    # Prune all but the newest; verify; restore the kept one and check it.
    out, _ = repo.dbguard("--json", "prune", "--keep-last", "1")
    pruned = json.loads(out)
    kept_ids = [k.get("id") for k in pruned.get("kept", [])]
    if len(pruned.get("removed", [])) != args.snapshots - 1 or kept_ids != [last_id]:
        sys.exit(f"prune --keep-last 1 removed {len(pruned.get('removed', []))} and kept {kept_ids}; "
                 f"expected {args.snapshots - 1} removed and #{last_id} kept")
    after_prune = repo.size()
    print(f"  prune --keep-last 1: removed {len(pruned['removed'])}, kept #{last_id}; store "
          f"{after_prune / MiB:.2f} MiB = {after_prune / one:.2f}x one snapshot alone "
          f"({one / MiB:.2f} MiB; goal <= 1.2x)")
    out, _ = repo.dbguard("--json", "verify")  # exits non-zero on any problem
    report = json.loads(out)
    if report.get("problems") or report.get("broken"):
        sys.exit(f"verify after prune reports problems: {out}")
    print(f"  verify after prune: ok ({report.get('unreferenced_chunks', '?')} unreferenced)")
    clear_restored()
    out, _ = repo.dbguard("--json", "restore", "--from", str(last_id), "--to", restored)
    got = row_count(restored, shape.table)
    con = sqlite3.connect(f"file:{restored}?mode=ro", uri=True)
    integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    live = sqlite3.connect(f"file:{repo.db}?mode=ro", uri=True)
    probe = churned["last_change"][:200]
    query = f"SELECT id, {shape.text_column} FROM {shape.table} WHERE id IN ({','.join('?' * len(probe))}) ORDER BY id"
    same = con.execute(query, probe).fetchall() == live.execute(query, probe).fetchall()
    con.close()
    live.close()
    if got != expected_rows or integrity != "ok" or not same:
        sys.exit(f"restore of #{last_id} after prune is wrong: {got:,} rows (expected {expected_rows:,}), "
                 f"integrity_check {integrity!r}, last round's values {'equal' if same else 'DIFFER'}")
    print(f"  restore of #{last_id} after prune: {got:,} rows, integrity ok, the last round's values present")
    clear_restored()
    shutil.rmtree(repo.dir)

    # Append-only crawler.
    repo = Repo(base, f"{shape.name}-append", binary, pristine, shape)
    new_rows = max(1, round(rows * CHURN_FRACTION))
    appended = growth_series(repo, args.snapshots, lambda: append(repo.db, shape, rng, new_rows),
                             f"append-only crawler ({new_rows:,} new rows per round)")
    shutil.rmtree(repo.dir)
    os.remove(pristine)

    n = shape.name
    worst = lambda rs: max(rs) if rs else 0.0
    summary += [
        (n, "churn: worst growth / floor (zstd -1)", worst(churned["ratios"]), "x", 2.0),
        (n, "churn: median growth / floor", statistics.median(churned["ratios"] or [0]), "x", None),
        (n, f"churn: store after {args.snapshots} / first snapshot", churned["total"] / churned["first"], "x", 2.0),
        (n, "first snapshot / zstd -1 of the file", churned["first"] / churned["whole1"], "x", None),
        (n, "append: worst growth / floor (zstd -1)", worst(appended["ratios"]), "x", 2.0),
        (n, "first snapshot / sqlite3 .backup", t_first / t_backup, "x", 1.5 if n == "bluesky" else None),
        (n, "first snapshot / cp", t_first / t_cp, "x", None),
        (n, "re-snapshot, unchanged file", t_again * 1000, "ms", 20.0),
        (n, "restore --to / cp", t_restore / t_cp_db, "x", None),
        (n, "files per GiB stored (after churn)", per_gib, "", None),
        (n, "after prune / one snapshot alone", after_prune / one, "x", 1.2),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=["posts", "bluesky", "both"], default="both")
    parser.add_argument("--rows", type=int, default=900_000)
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--body", type=int, default=380, help="posts shape: body length")
    parser.add_argument("--dir", default="/tmp/dbguard-bench-churn")
    args = parser.parse_args()
    if args.snapshots < 2:
        parser.error("--snapshots must be at least 2")

    binary = dbguard_bin()
    base = fresh_dir(args.dir)
    print(f"binary: {binary}")
    shapes = {"posts": [Posts(args.body)], "bluesky": [Bluesky()],
              "both": [Posts(args.body), Bluesky()]}[args.shape]
    summary = []
    for shape in shapes:
        run_shape(shape, args, binary, base, summary)
    shutil.rmtree(base, ignore_errors=True)

    print(f"\nsummary ({args.rows:,} rows, {args.snapshots} snapshots per series)")
    print(f"  {'shape':<8} {'measure':<40} {'value':>12} {'goal':>9}  result")
    for shape, name, value, unit, goal in summary:
        text = f"{value:,.2f}{unit}" if unit != "" else f"{value:,.0f}"
        goal_text = f"<= {goal:g}{unit}" if goal is not None else "-"
        result = "" if goal is None else ("MET" if value <= goal else "NOT MET")
        print(f"  {shape:<8} {name:<40} {text:>12} {goal_text:>9}  {result}")


if __name__ == "__main__":
    main()
