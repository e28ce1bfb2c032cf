"""Fault campaign (issue 11): kill -9, full disks, read-only stores and hostile input.

What it proves, with real git repositories, real SQLite/DuckDB files, real processes and
real faults, for the dbguard binary it is given:
  kill9-snapshot   `dbguard snapshot` SIGKILLed at random moments (SQLite in WAL and
                   rollback-journal mode, idle and under a live writer process): `verify`
                   passes, the user's database is unchanged (same bytes and rows when idle,
                   every committed row of the writer), every listed snapshot restores with
                   its recorded row count.
  kill9-restore    `dbguard restore --from ID` SIGKILLed: the live database holds the old
                   state or the new one and nothing else, passes integrity_check; `status`
                   counts no `.dbguard-restore-*` debris as a database; `verify` passes.
  kill9-prune      `dbguard prune` SIGKILLed: `verify` passes and every listed snapshot restores.
  disk-full        worktree filesystem full during a restore (store on another filesystem):
                   the restore fails and the live file is byte-identical; store filesystem
                   full: snapshot fails naming the store or the disk (not "your database is
                   damaged") and guarded `git reset --hard` refuses instead of running git.
  read-only-store  store on a tmpfs remounted read-only: log, show, verify, status, diff and
                   restore --to work; snapshot and in-place restore refuse, saying why.
  plain-git        the hooks alone (issue 27): relative paths typed in a subdirectory and
                   through `git -C`, every git of a `!` alias, a typo in .dbguard.toml (saved,
                   said once), DBGUARD_SKIP / DBGUARD_GUARDED left in the environment.
  bad-inputs       60 hostile files, paths, ids, configs and crafted catalog rows: no
                   panic, an `Error:` line with a `Hint:` when a command fails, no data lost,
                   and the behaviour issue 11 asks for where it names one.
  terminal-offer   (issue 27) plain `git checkout -- posts.db` on a pseudo-terminal, the
                   hooks' restore offer answered y: no deadlock, the rows are back within
                   30 s, `status` is clean afterwards.
  busy-store       (issue 27) plain `git reset --hard` while `dbguard restore`'s picker
                   waits for its user, and while a prune rewrites packs: the reset's
                   snapshot is taken, nothing is "not saved", no hang.
  disk-full-ingest (issue 27) the store's tmpfs fills up during the ingest of a guarded
                   `dbguard git …`: it ends within 30 s saying the disk is full, git does
                   not run, the store is free again.

Every trial is one line of `AREA: ok/total`; each failed trial prints one line saying
what a user would have seen. Exit status 1 when any trial fails, 2 when no binary is
found. Areas that need tmpfs run as root and are skipped, with the reason printed, where
mounting is impossible. Runs about 2 minutes on 2 cores (`--quick`: under 1 minute);
`--seed` makes the kill delays repeatable.

Usage: python3 bench/faults.py [--bin PATH] [--quick] [--seed N] [--only AREA,...] [--keep]
The binary: --bin, else $DBGUARD_BIN, else `dbguard` on PATH, else
$CARGO_TARGET_DIR (default ~/.cache/dbguard-target)/debug/dbguard. It is copied first,
so a rebuild during the run does not mix two binaries.
"""
import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

from common import ROOT, TARGET
from common import env as bench_env

FIXTURES = os.path.join(ROOT, "fixtures")
MiB = 1 << 20
MODE = {"wal": "wal", "delete": "rollback"}  # SQLite journal_mode -> the label trials use

# Set by main(): the copied binary, the hermetic environment, the scratch directory, the RNG.
BIN = ENV = BASE = None
RNG = random.Random()


# --------------------------------------------------------------------------- checks

class Skip(Exception):
    """A trial or area that cannot run here (the reason is printed, nothing is counted)."""


class Fail(Exception):
    """A failed check after which the rest of the trial means nothing."""


class Trial:
    def __init__(self, label):
        self.label, self.reasons = label, []

    def check(self, ok, reason):
        if not ok:
            self.reasons.append(reason)
        return bool(ok)

    def require(self, ok, reason):
        if not ok:
            raise Fail(reason)

    def no_panic(self, run):
        if run.hung:
            return self.check(False, f"`{run.cmd}` hung (killed after {run.timeout:.0f} s)")
        return (self.check(run.code != 101 and "panicked" not in run.stderr and "RUST_BACKTRACE" not in run.stderr,
                           f"`{run.cmd}` panicked: {run.brief()}"))

    def succeeds(self, run):
        return self.no_panic(run) and self.check(run.code == 0, f"`{run.cmd}` failed (exit {run.code}): {run.brief()}")

    def fails_clearly(self, run):
        """Non-zero exit with an `Error:` line and a `Hint:` line, no panic."""
        if not self.no_panic(run):
            return False
        if not self.check(run.code != 0, f"`{run.cmd}` exited 0: {run.brief('out')}"):
            return False
        return self.clear(run)

    def clear(self, run):
        lines = run.stderr.splitlines()
        has_error = any(l.startswith("Error: ") for l in lines)
        has_hint = any(l.strip().startswith("Hint:") for l in lines)
        return (self.check(has_error, f"`{run.cmd}` (exit {run.code}) printed no `Error:` line: {run.brief()}")
                and self.check(has_hint, f"`{run.cmd}` printed no `Hint:`: {run.brief()}"))

    def clear_if_fails(self, run):
        if not self.no_panic(run):
            return False
        return run.code == 0 or self.clear(run)


class Area:
    def __init__(self, name):
        self.name, self.ok, self.total, self.failures, self.skips = name, 0, 0, [], []
        self.labels = []

    @contextlib.contextmanager
    def trial(self, label):
        trial = Trial(label)
        self.labels.append(label)
        try:
            yield trial
        except Skip as skip:
            self.skips.append(f"{label}: {skip}")
            return
        except Fail as fail:
            trial.reasons.append(str(fail))
        except Exception as error:  # the script's own trouble is reported, not hidden
            trial.reasons.append(f"{type(error).__name__}: {error}")
        self.total += 1
        if trial.reasons:
            self.failures.append(f"{label}: " + "; ".join(trial.reasons))
        else:
            self.ok += 1


# --------------------------------------------------------------------------- processes

class Run:
    def __init__(self, args, code, stdout, stderr, timeout, hung=False):
        self.cmd = "dbguard " + " ".join(a if isinstance(a, str) else os.fsdecode(a) for a in args)
        self.cmd = self.cmd.replace("\n", "\\n")
        self.code, self.stdout, self.stderr, self.timeout, self.hung = code, stdout, stderr, timeout, hung

    def brief(self, which="err"):
        """One line of what the user saw: the Error line, else the last line."""
        text = self.stderr if which == "err" else (self.stdout + self.stderr)
        lines = [l for l in text.splitlines() if l.strip()]
        panic = [i for i, l in enumerate(lines) if "panicked at" in l]
        if panic:  # the panic's own message is on the line after "panicked at …"
            return " ".join(lines[panic[0]:panic[0] + 2]).strip()[:240]
        error = [l for l in lines if l.startswith("Error: ")]
        line = (error or lines[-1:] or ["(no output)"])[0]
        return line[:200]

    def json(self):
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise Fail(f"`{self.cmd}` printed no JSON: {self.brief()}")


def dbguard(args, cwd, timeout=120, env=None):
    try:
        proc = subprocess.run([BIN, *args], cwd=cwd, env=env or ENV, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        return Run(args, None, (expired.stdout or b"").decode(errors="replace"),
                   (expired.stderr or b"").decode(errors="replace"), timeout, hung=True)
    return Run(args, proc.returncode, proc.stdout.decode(errors="replace"),
               proc.stderr.decode(errors="replace"), timeout)


def timed(args, cwd):
    start = time.perf_counter()
    run = dbguard(args, cwd)
    return run, time.perf_counter() - start


def kill_at(args, cwd, delay):
    """Start dbguard and SIGKILL it after `delay` s; True when it was still running then."""
    proc = subprocess.Popen([BIN, *args], cwd=cwd, env=ENV, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def git(args, cwd, check=True):
    proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, stdin=subprocess.DEVNULL, capture_output=True)
    if check and proc.returncode != 0:
        raise Fail(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace")


class Repo:
    """A git repository with one commit, in the hermetic environment."""

    def __init__(self, name, parent=None):
        self.root = os.path.join(parent or BASE, name)
        os.makedirs(self.root)
        git(["init", "-q"], self.root)
        with open(self.p("README"), "w") as f:
            f.write("faults\n")
        git(["add", "README"], self.root)
        git(["commit", "-q", "-m", "initial"], self.root)
        self.store = os.path.join(self.root, ".git", "dbguard")

    def p(self, *rel):
        return os.path.join(self.root, *rel)

    def dbg(self, *args, **kw):
        return dbguard(list(args), self.root, **kw)

    def set_store(self, path):
        git(["config", "dbguard.store", path], self.root)
        self.store = path

    def snapshot_id(self, rel):
        run = self.dbg("snapshot", rel, "--json")
        if run.code != 0:
            raise Fail(f"`{run.cmd}` failed: {run.brief()}")
        taken = [s for s in run.json() if s.get("id") is not None]
        if not taken:
            raise Fail(f"`{run.cmd}` took no snapshot: {run.stdout.strip()[:200]}")
        return taken[0]["id"]

    def listed(self):
        run = self.dbg("log", "--json", "-n", "1000000")
        if run.code != 0:
            raise Fail(f"`{run.cmd}` failed: {run.brief()}")
        return run.json()

    def catalog_rows(self, path):
        """{snapshot id: total rows} of `path`, read from the catalog itself (not via dbguard)."""
        catalog = os.path.join(self.store, "catalog.db")
        if not os.path.isfile(catalog):
            return {}
        conn = sqlite3.connect(f"file:{urllib.parse.quote(catalog)}?mode=ro", uri=True, timeout=10)
        try:
            return dict(conn.execute(
                "SELECT s.id, coalesce(sum(t.rows), 0) FROM snapshots s"
                " LEFT JOIN snapshot_tables t ON t.snapshot_id = s.id WHERE s.path = ? GROUP BY s.id", (path,)))
        finally:
            conn.close()


# --------------------------------------------------------------------------- databases

def add_rows(conn, rows, author="author"):
    conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                 " INSERT INTO posts(author, body) SELECT ? || (i % 97), hex(randomblob(100)) FROM n",
                 (rows, author))
    conn.commit()


def make_db(path, rows, journal="delete"):
    """posts(id, author, body) with `rows` rows of ~230 bytes (random, so chunks differ)."""
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode={journal}")
    conn.execute("CREATE TABLE IF NOT EXISTS posts(id INTEGER PRIMARY KEY, author TEXT, body TEXT)")
    add_rows(conn, rows)
    conn.close()


def change_db(path, round_no, added=10):
    """Rewrite a seventh of the rows (spread over every page) and append `added`."""
    conn = sqlite3.connect(path)
    conn.execute("UPDATE posts SET body = hex(randomblob(100)) WHERE id % 7 = ?", (round_no % 7,))
    add_rows(conn, added)
    conn.close()


def db_state(path):
    """(integrity_check, rows, content digest) through a read-only connection, which
    never checkpoints or rolls anything back."""
    conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=30)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM posts").fetchone()[0]
        digest = hashlib.sha256()
        for row in conn.execute("SELECT id, author, body FROM posts ORDER BY id"):
            digest.update(repr(row).encode())
        return integrity, rows, digest.hexdigest()
    except sqlite3.Error as error:
        return f"cannot read: {error}", None, None
    finally:
        conn.close()


def rows_of(path):
    return db_state(path)[1]


def sha(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def remove_db(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


# A crashed app: commits (WAL: frames stay in the -wal; no checkpoint) and dies.
LEAVE_WAL = r"""
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA wal_autocheckpoint=0")
conn.execute("BEGIN")
rows = int(sys.argv[2])
if rows:
    conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                 " INSERT INTO posts(author, body) SELECT 'crashed', hex(randomblob(100)) FROM n", (rows,))
else:
    conn.execute("UPDATE posts SET author = author WHERE id % 50 = 0")
conn.execute("COMMIT")
os._exit(0)
"""

# A crashed app in rollback-journal mode: dies mid-transaction after pages spilled into
# the database file, leaving a hot journal.
LEAVE_HOT_JOURNAL = r"""
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=DELETE")
conn.execute("PRAGMA cache_size=10")
conn.execute("BEGIN")
conn.execute("UPDATE posts SET body = hex(randomblob(100))")
conn.execute("DELETE FROM posts WHERE id % 2 = 0")
os.kill(os.getpid(), signal.SIGKILL)
"""

# A live app: commits 20 rows at a time until SIGTERM, then prints how many it committed.
WRITER = r"""
import signal, sqlite3, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
conn = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
conn.execute(f"PRAGMA journal_mode={sys.argv[2]}")
committed = 0
print("ready", flush=True)
while not stop:
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO posts(author, body)"
                     " SELECT 'writer', hex(randomblob(100)) FROM (SELECT 1 FROM posts LIMIT 20)")
        conn.execute("COMMIT")
        committed += 20
    except sqlite3.OperationalError:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    time.sleep(0.003)
conn.close()
print(committed, flush=True)
"""


def python(code, *args):
    subprocess.run([sys.executable, "-c", code, *map(str, args)], check=False)


class Writer:
    def __init__(self, path, journal):
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, path, journal],
                                     stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise Fail("the writer process did not start")

    def stop(self):
        """Committed rows, or None when the writer did not end cleanly."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None
        return int(out.strip()) if self.proc.returncode == 0 and out.strip().isdigit() else None


def restore_listed(t, repo, seen, expect_rows=None):
    """Every listed snapshot not checked yet restores (--to) with its recorded rows."""
    for snapshot in repo.listed():
        if snapshot["id"] in seen:
            continue
        seen.add(snapshot["id"])
        recorded = sum(snapshot["tables"].values())
        if expect_rows is not None:
            t.check(expect_rows(recorded), f"#{snapshot['id']} records {recorded} rows, not the state it was taken of")
        out = os.path.join(BASE, f"restored-{os.getpid()}-{snapshot['id']}.db")
        run = repo.dbg("restore", "--from", str(snapshot["id"]), "--to", out)
        if t.succeeds(run):
            integrity, rows, _ = db_state(out)
            t.check(integrity == "ok", f"#{snapshot['id']} restored to a damaged file: {integrity}")
            t.check(rows == recorded, f"#{snapshot['id']} restored {rows} rows, {recorded} recorded")
        remove_db(out)


def kill_label(variant, i, killed, delay):
    return f"{variant} kill {i + 1} ({'killed at' if killed else 'finished before'} {delay * 1000:.0f} ms)"


# --------------------------------------------------------------------------- areas

def area_kill9_snapshot(area, rounds):
    """SIGKILL `dbguard snapshot` at random delays; WAL and rollback journal, idle and live."""
    for journal in ("wal", "delete"):
        for live in (False, True):
            variant = f"{MODE[journal]}{'+writer' if live else ''}"
            repo = Repo(f"ks-{variant}")
            db = repo.p("posts.db")
            make_db(db, 20_000, journal)
            seen, times = set(), []
            with area.trial(f"{variant}: three uninterrupted snapshots restore") as t:
                # Their median time is the window the kills are spread over.
                for k in range(3):
                    if k:
                        change_db(db, 50 + k)
                    run, took = timed(["snapshot", "posts.db"], repo.root)
                    t.require(t.succeeds(run), "an uninterrupted snapshot failed; the kills below mean little")
                    times.append(took)
                    restore_listed(t, repo, seen, lambda r, want=rows_of(db): r == want)
            took = sorted(times)[len(times) // 2] if times else 1.0
            initial = rows_of(db)
            writer = Writer(db, journal) if live else None
            try:
                for i in range(rounds):
                    if not live:
                        change_db(db, i)
                    before = None if live else (sha(db), db_state(db))
                    delay = RNG.uniform(0, took * 1.1)
                    killed = kill_at(["snapshot", "posts.db"], repo.root, delay)
                    with area.trial(kill_label(variant, i, killed, delay)) as t:
                        t.succeeds(repo.dbg("verify"))
                        integrity, rows, digest = db_state(db)
                        t.check(integrity == "ok", f"posts.db damaged: {integrity}")
                        if before:
                            t.check(sha(db) == before[0], "posts.db's bytes changed")
                            t.check((rows, digest) == before[1][1:], f"posts.db rows changed: {before[1][1]} -> {rows}")
                            t.check(not os.path.exists(db + "-journal"), "a -journal was left next to posts.db")
                            restore_listed(t, repo, seen, lambda r, want=before[1][1]: r == want)
                        else:
                            restore_listed(t, repo, seen, lambda r: r >= initial)
            finally:
                committed = writer.stop() if writer else None
            if live:
                with area.trial(f"{variant} every committed row of the writer is there") as t:
                    t.require(committed is not None, "the writer process failed")
                    integrity, rows, _ = db_state(db)
                    t.check(integrity == "ok", f"posts.db damaged: {integrity}")
                    t.check(rows == initial + committed, f"{rows} rows, {initial + committed} committed")
            with area.trial(f"{variant} staging debris is gone after the next snapshot") as t:
                change_db(db, 99)
                t.succeeds(repo.dbg("snapshot", "posts.db"))
                debris = os.listdir(os.path.join(repo.store, "tmp")) if os.path.isdir(os.path.join(repo.store, "tmp")) else []
                t.check(not debris, f"store tmp/ still holds {len(debris)} files: {debris[:3]}")


def area_kill9_restore(area, rounds):
    """SIGKILL `dbguard restore --from ID` (in place): old state or new, never a mix."""
    restore_variant(area, rounds, "delete")
    restore_variant(area, rounds, "wal")
    # A store on another filesystem: the restore copies (no hard link) into the worktree,
    # so a kill finds the staged copy more often (issue 11.9's 46.7 MiB debris).
    try:
        with tmpfs(os.path.join(BASE, "kr-store-fs"), "256m") as fs:
            restore_variant(area, 2 * rounds, "delete", store=os.path.join(fs, "store"))
    except Skip as skip:
        area.skips.append(f"store on another filesystem: {skip}")


def restore_variant(area, rounds, journal, store=None):
    variant = MODE[journal] + (", store on another filesystem" if store else "")
    repo = Repo(f"kr-{journal}{'-other-fs' if store else ''}")
    if store:
        repo.set_store(store)
    db = repo.p("posts.db")
    make_db(db, 20_000, journal)
    ready = False
    with area.trial(f"{variant}: uninterrupted restore works") as t:
        old_id, old = repo.snapshot_id("posts.db"), db_state(db)
        conn = sqlite3.connect(db)
        add_rows(conn, 5_000)
        conn.close()
        new_id, new = repo.snapshot_id("posts.db"), db_state(db)
        # Three uninterrupted restores (old, new, old): they work, and their median time
        # is the window the kills are spread over.
        times = []
        for snapshot_id, state in ((old_id, old), (new_id, new), (old_id, old)):
            run, took = timed(["restore", "posts.db", "--from", str(snapshot_id)], repo.root)
            t.require(t.succeeds(run) and db_state(db)[2] == state[2], f"restoring #{snapshot_id} did not restore it")
            times.append(took)
        took = sorted(times)[1]
        ready = True
    if not ready:
        return
    states = {old[2]: old[1], new[2]: new[1]}
    debris_seen = set()  # each kill is charged only with the debris it left
    for i in range(rounds):
        if journal == "wal":
            python(LEAVE_WAL, db, 0)  # committed frames still in the -wal, as after a crash
        _, before_rows, before = db_state(db)
        target_id, target = (old_id, old[2]) if before == new[2] else (new_id, new[2])
        delay = RNG.uniform(0, took * 1.1)
        killed = kill_at(["restore", "posts.db", "--from", str(target_id)], repo.root, delay)
        with area.trial(kill_label(variant, i, killed, delay)) as t:
            integrity, rows, digest = db_state(db)
            t.check(integrity == "ok", f"posts.db damaged: {integrity}")
            t.check(digest in (before, target),
                    f"posts.db holds {rows} rows: neither the old state ({before_rows}) nor #{target_id} ({states.get(target)})")
            # Exit 4 is status's own word for "a database shrank": true whenever the
            # restore did not finish and posts.db still holds the smaller state.
            status = repo.dbg("status", "--json")
            if t.no_panic(status) and t.check(status.code in (0, 4), f"`{status.cmd}` failed (exit {status.code}): {status.brief()}"):
                paths = {row["path"] for row in status.json()}
                t.check("posts.db" in paths, "`dbguard status` does not list posts.db")
                counted = sorted(paths - {"posts.db"} - debris_seen)
                debris_seen.update(counted)
                t.check(not counted, f"`dbguard status` counts these as databases: {counted}")
            t.succeeds(repo.dbg("verify"))
    with area.trial(f"{variant}: the next restore leaves no restore debris") as t:
        t.succeeds(repo.dbg("restore", "posts.db", "--from", str(old_id)))
        debris = [n for n in os.listdir(repo.root) if "dbguard-restore" in n]
        t.check(not debris, f"left in the worktree: {debris}")


def area_kill9_prune(area, rounds):
    """SIGKILL `dbguard prune --keep-last 2`: the store verifies, listed snapshots restore."""
    repo = Repo("kp")
    db = repo.p("posts.db")
    make_db(db, 8_000)
    seen = set()

    def more_snapshots(n, base):
        for k in range(n):
            change_db(db, base + k)
            repo.snapshot_id("posts.db")

    more_snapshots(5, 0)
    run, took = timed(["prune", "--keep-last", "2"], repo.root)
    with area.trial("uninterrupted prune keeps 2 and verifies") as t:
        t.succeeds(run)
        t.check(len(repo.listed()) == 2, f"{len(repo.listed())} snapshots listed after --keep-last 2")
        t.succeeds(repo.dbg("verify"))
    for i in range(rounds):
        more_snapshots(3, 10 * (i + 1))
        delay = RNG.uniform(0, took * 1.1)
        killed = kill_at(["prune", "--keep-last", "2"], repo.root, delay)
        with area.trial(kill_label("prune", i, killed, delay)) as t:
            t.succeeds(repo.dbg("verify"))
            seen.clear()  # every snapshot still listed, not just new ones
            restore_listed(t, repo, seen)
            t.check(db_state(db)[0] == "ok", "posts.db damaged")


@contextlib.contextmanager
def tmpfs(path, size):
    if os.geteuid() != 0:
        raise Skip("needs root to mount tmpfs")
    os.makedirs(path, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        raise Skip(f"cannot mount tmpfs: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", path], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)


def fill(fs, leave):
    """Fill filesystem `fs` until at most `leave` bytes are free; returns the filler's path."""
    filler = os.path.join(fs, f"filler-{len(os.listdir(fs))}")
    block = b"\xa5" * MiB
    with open(filler, "wb") as f:
        while True:
            st = os.statvfs(fs)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                break
            try:
                f.write(block[:min(MiB, free - leave)])
                f.flush()
            except OSError:
                break
    return filler


def free_bytes(fs):
    st = os.statvfs(fs)
    return st.f_bavail * st.f_frsize


def blames_database(text):
    return any(w in text for w in ("not a usable", "damaged", "corrupt", "malformed", "not a database"))


def refuses_guarded_reset(t, repo, rel, rows_before):
    """`dbguard git reset --hard` must refuse (no snapshot possible): file and HEAD unchanged."""
    head = git(["rev-parse", "HEAD"], repo.root)
    digest = sha(repo.p(rel))
    run = repo.dbg("git", "reset", "--hard")
    t.fails_clearly(run)
    rows = rows_of(repo.p(rel))
    t.check(sha(repo.p(rel)) == digest and rows == rows_before,
            f"`dbguard git reset --hard` ran unguarded: {rel} {rows_before} -> {rows} rows")
    t.check(git(["rev-parse", "HEAD"], repo.root) == head, "HEAD moved")
    t.check("--no-snapshot" in run.stderr, f"the refusal does not mention --no-snapshot: {run.brief()}")


def tracked_db_repo(name, rel, committed, now, parent=None):
    """A repository tracking `rel` at `committed` rows, modified to `now` rows."""
    repo = Repo(name, parent)
    os.makedirs(os.path.dirname(repo.p(rel)) or repo.root, exist_ok=True)
    make_db(repo.p(rel), committed)
    git(["add", rel], repo.root)
    git(["commit", "-q", "-m", f"add {rel}"], repo.root)
    conn = sqlite3.connect(repo.p(rel))
    add_rows(conn, now - committed)
    conn.close()
    return repo


def area_disk_full(area, _rounds):
    """ENOSPC in the worktree during restore, and in the store during snapshot/guard."""
    outside_store = os.path.join(BASE, "df-store")
    with tmpfs(os.path.join(BASE, "df-worktree-fs"), "40m") as fs:
        for journal in ("delete", "wal"):
            with area.trial(f"restore onto a full worktree ({MODE[journal]}): fails, live file byte-identical") as t:
                repo = Repo(f"df-{journal}", parent=fs)
                repo.set_store(f"{outside_store}-{journal}")
                db = repo.p("posts.db")
                make_db(db, 20_000, journal)
                big = repo.snapshot_id("posts.db")
                remove_db(db)
                make_db(db, 2_000, journal)
                if journal == "wal":
                    python(LEAVE_WAL, db, 6_000)  # a crashed app's commits, still in the -wal
                    t.require(os.path.getsize(db + "-wal") > MiB, "set-up: no pending -wal")
                before = (sha(db), sha(db + "-wal"), db_state(db))
                filler = fill(fs, leave=256 * 1024)
                run = repo.dbg("restore", "posts.db", "--from", str(big))
                t.fails_clearly(run)
                t.check(sha(db) == before[0], "posts.db's bytes changed")
                if journal == "wal":
                    t.check(sha(db + "-wal") == before[1], "posts.db-wal was changed or removed"
                            if os.path.exists(db + "-wal") else "posts.db-wal was removed")
                integrity, rows, digest = db_state(db)
                t.check(integrity == "ok", f"posts.db damaged: {integrity}")
                t.check(digest == before[2][2], f"posts.db rows changed: {before[2][1]} -> {rows}")
                debris = [n for n in os.listdir(repo.root) if "dbguard-restore" in n]
                t.check(not debris, f"restore debris left on the full disk: {debris}")
                os.remove(filler)
                # The same restore with room to spare works: the failure above was the disk.
                t.succeeds(repo.dbg("restore", "posts.db", "--from", str(big)))
                t.check(rows_of(db) == 20_000, f"restore with free space gave {rows_of(db)} rows, not 20,000")

    with tmpfs(os.path.join(BASE, "df-store-fs"), "6m") as fs:
        repo = tracked_db_repo("df-store-full", "big.db", 1_000, 20_000)
        repo.set_store(os.path.join(fs, "store"))
        with area.trial("store on a full disk: snapshot fails naming the store or disk") as t:
            make_db(repo.p("small.db"), 50)
            repo.snapshot_id("small.db")  # the store exists and works
            fill(fs, leave=64 * 1024)
            digest = sha(repo.p("big.db"))
            run = repo.dbg("snapshot", "big.db")
            if t.fails_clearly(run):
                said = run.stderr
                t.check(not blames_database(said), f"blames the database for a full store: {run.brief()}")
                t.check(any(w in said.lower() for w in ("no space", "disk", "full", "store")) or repo.store in said,
                        f"names neither the store nor the disk: {run.brief()}")
            t.check(sha(repo.p("big.db")) == digest, "big.db changed")
        with area.trial("store on a full disk: guarded git reset --hard refuses") as t:
            refuses_guarded_reset(t, repo, "big.db", 20_000)
        fresh = tracked_db_repo("df-store-new", "big.db", 1_000, 20_000)
        fresh.set_store(os.path.join(fs, "store-new"))
        fill(fs, leave=0)
        with area.trial("new store on a full disk: snapshot fails naming the store or disk") as t:
            run = fresh.dbg("snapshot", "big.db")
            if t.fails_clearly(run):
                t.check(not blames_database(run.stderr), f"blames the database for a full store: {run.brief()}")
                t.check(any(w in run.stderr.lower() for w in ("no space", "disk", "full", "store")),
                        f"names neither the store nor the disk: {run.brief()}")
        with area.trial("new store on a full disk: guarded git reset --hard refuses") as t:
            refuses_guarded_reset(t, fresh, "big.db", 20_000)


def area_read_only_store(area, _rounds):
    """A store on a filesystem remounted read-only: reading works, writing says why not."""
    with tmpfs(os.path.join(BASE, "ro-fs"), "64m") as fs:
        repo = tracked_db_repo("ro", "posts.db", 1_000, 5_000)
        repo.set_store(os.path.join(fs, "store"))
        first = repo.snapshot_id("posts.db")
        conn = sqlite3.connect(repo.p("posts.db"))
        add_rows(conn, 1_000)
        conn.close()
        second = repo.snapshot_id("posts.db")
        remount = subprocess.run(["mount", "-o", "remount,ro", fs], capture_output=True, text=True)
        if remount.returncode != 0:
            raise Skip(f"cannot remount read-only: {remount.stderr.strip()}")
        conn = sqlite3.connect(repo.p("posts.db"))
        add_rows(conn, 500)  # something new to snapshot
        conn.close()
        live = sha(repo.p("posts.db"))
        for label, args in (("log", ["log"]), ("log --json", ["log", "--json"]), ("show ID", ["show", str(first)]),
                            ("show --json ID", ["show", "--json", str(second)]), ("verify", ["verify"]),
                            ("status", ["status"]), ("diff posts.db ID", ["diff", "posts.db", str(first)])):
            with area.trial(f"read-only store: {label} works") as t:
                run = repo.dbg(*args)
                t.succeeds(run)
                if label == "log --json" and run.code == 0:
                    t.check({s["id"] for s in run.json()} == {first, second}, "log does not list both snapshots")
        with area.trial("read-only store: restore --to NEWPATH works") as t:
            out = os.path.join(BASE, "ro-restored.db")
            t.succeeds(repo.dbg("restore", "--from", str(first), "--to", out))
            t.check(os.path.exists(out) and rows_of(out) == 5_000, "the restored file does not hold #1's 5,000 rows")
        with area.trial("read-only store: snapshot refuses, saying the store is read-only") as t:
            run = repo.dbg("snapshot", "posts.db")
            if t.fails_clearly(run):
                t.check("read-only" in run.stderr.lower(), f"does not say read-only: {run.brief()}")
                t.check(not blames_database(run.stderr), f"blames the database: {run.brief()}")
        with area.trial("read-only store: in-place restore refuses, live file unchanged") as t:
            run = repo.dbg("restore", "posts.db", "--from", str(first))
            t.fails_clearly(run)
            t.check(sha(repo.p("posts.db")) == live, "posts.db changed without an undo snapshot")
        with area.trial("read-only store: guarded git reset --hard refuses") as t:
            refuses_guarded_reset(t, repo, "posts.db", 6_500)


# --------------------------------------------------------------------------- bad inputs

def expect(t, run, outcome):
    """outcome: 'fail' (clear failure), 'ok' (success) or 'any' (success or clear failure)."""
    return {"fail": t.fails_clearly, "ok": t.succeeds, "any": t.clear_if_fails}[outcome](run)


def newer_duckdb_file(path):
    """A real DuckDB file whose header says a newer storage version (checksum re-stamped)."""
    try:
        import duckdb
    except ImportError:
        raise Skip("the python duckdb module is missing (pip install duckdb)")
    conn = duckdb.connect(path)
    conn.execute("CREATE TABLE t AS SELECT range AS i FROM range(1000)")
    conn.close()
    data = bytearray(open(path, "rb").read())

    def checksum(block):  # DuckDB's block checksum: 5381 xor each u64 * 0xbf58476d1ce4e5b9
        result = 5381
        for (word,) in struct.iter_unpack("<Q", block):
            result ^= (word * 0xBF58476D1CE4E5B9) % 2**64
        return result
    if checksum(bytes(data[8:4096])) != struct.unpack_from("<Q", data, 0)[0]:
        raise Skip("this DuckDB's header checksum is not the one this script knows")
    struct.pack_into("<Q", data, 12, 1000)  # storage version 1000
    struct.pack_into("<Q", data, 0, checksum(bytes(data[8:4096])))
    with open(path, "wb") as f:
        f.write(data)


def bad_inputs_files(area, repo, good):
    """Files that are not (usable) databases: refused or skipped, never changed."""
    cases = [("corrupt.db", ("corrupt", "integrity", "damaged", "malformed")), ("truncated.db", ()),
             ("zero-byte.db", ("empty",)), ("wrong-magic.db", ()), ("encrypted.db", ())]
    for name, words in cases:
        with area.trial(f"file {name}: snapshot refuses clearly, file untouched") as t:
            shutil.copy(os.path.join(FIXTURES, name), repo.p(name))
            digest = sha(repo.p(name))
            run = repo.dbg("snapshot", name)
            if t.fails_clearly(run) and words:
                t.check(any(w in run.stderr.lower() for w in words), f"does not say why: {run.brief()}")
            t.check(sha(repo.p(name)) == digest, f"{name} was changed")
            t.check(not repo.catalog_rows(name), f"{name} got a snapshot")
    with area.trial("file newer-duckdb.db: refused as newer, not as damaged") as t:
        newer_duckdb_file(repo.p("newer-duckdb.db"))
        digest = sha(repo.p("newer-duckdb.db"))
        run = repo.dbg("snapshot", "newer-duckdb.db")
        if t.fails_clearly(run):
            t.check("newer" in run.stderr.lower() or "version" in run.stderr.lower(),
                    f"does not say it is from a newer DuckDB: {run.brief()}")
            t.check("truncated or damaged" not in run.stderr, f"calls it truncated or damaged: {run.brief()}")
        t.check(sha(repo.p("newer-duckdb.db")) == digest, "the file was changed")
    with area.trial("file truncated.duckdb: refused clearly, untouched") as t:
        try:
            import duckdb
        except ImportError:
            raise Skip("the python duckdb module is missing")
        conn = duckdb.connect(repo.p("truncated.duckdb"))
        conn.execute("CREATE TABLE t AS SELECT range AS i, 'x' || range AS s FROM range(200000)")
        conn.close()
        with open(repo.p("truncated.duckdb"), "r+b") as f:
            f.truncate(16 * 1024)
        digest = sha(repo.p("truncated.duckdb"))
        t.fails_clearly(repo.dbg("snapshot", "truncated.duckdb"))
        t.check(sha(repo.p("truncated.duckdb")) == digest, "the file was changed")
    with area.trial("a directory named x.db: snapshot/status cope") as t:
        os.makedirs(repo.p("x.db"))
        t.clear_if_fails(repo.dbg("snapshot", "x.db"))
        t.succeeds(repo.dbg("status"))
    os.makedirs(repo.p("pipes"))
    os.mkfifo(repo.p("pipes", "f.db"))
    with area.trial("a fifo named f.db: a scan does not hang on it") as t:
        t.clear_if_fails(repo.dbg("snapshot", "pipes", timeout=30))
    with area.trial("a fifo named f.db: snapshot f.db refuses without hanging") as t:
        t.fails_clearly(repo.dbg("snapshot", "pipes/f.db", timeout=30))
    with area.trial("a symlink to a database: snapshot link.db refuses clearly") as t:
        os.symlink("good.db", repo.p("link.db"))
        t.fails_clearly(repo.dbg("snapshot", "link.db"))
        t.check(os.path.islink(repo.p("link.db")), "the symlink was replaced")
    with area.trial("a database with a non-UTF-8 name: status and snapshot cope") as t:
        raw = os.fsencode(repo.root) + b"/caf\xe9.db"
        make_db(repo.p("plain-name.db"), 20)
        os.rename(repo.p("plain-name.db"), raw)
        t.clear_if_fails(repo.dbg("status"))
        run = dbguard(["snapshot", b"caf\xe9.db"], repo.root)
        t.clear_if_fails(run)
    with area.trial("a scan over every bad file still saves good.db") as t:
        before = set(repo.catalog_rows("good.db"))
        change_db(good, 1)
        t.clear_if_fails(repo.dbg("snapshot", timeout=60))
        t.check(set(repo.catalog_rows("good.db")) - before, "good.db got no snapshot because of the bad files")
    with area.trial("status over every bad file") as t:
        run = repo.dbg("status", "--json", timeout=60)
        if t.clear_if_fails(run) and run.code == 0:
            t.check("good.db" in [r["path"] for r in run.json()], "good.db is not listed")
    with area.trial("a hot journal (app killed mid-transaction): snapshot holds the committed state") as t:
        hot = repo.p("hot.db")
        make_db(hot, 4_000)
        committed, clean = db_state(hot), sha(hot)
        python(LEAVE_HOT_JOURNAL, hot)
        t.require(os.path.exists(hot + "-journal") and os.path.getsize(hot + "-journal") > 0 and sha(hot) != clean,
                  "set-up: the crashed writer left no hot journal")
        files = (sha(hot), sha(hot + "-journal"))
        run = repo.dbg("snapshot", "hot.db", "--json")
        if t.succeeds(run):
            taken = [s for s in run.json() if s.get("id")]
            t.check(taken and taken[0].get("rows") == committed[1],
                    f"the snapshot holds {taken[0].get('rows') if taken else None} rows, {committed[1]} committed")
            if taken:
                out = os.path.join(BASE, "hot-restored.db")
                t.succeeds(repo.dbg("restore", "--from", str(taken[0]["id"]), "--to", out))
                t.check(os.path.exists(out) and db_state(out)[1:] == committed[1:], "restore --to does not give the committed rows")
        t.check((sha(hot), sha(hot + "-journal")) == files, "the user's database or journal was changed")


def bad_inputs_paths(area, repo, good):
    for label, args, outcome in (
        ("snapshot nothere.db", ["snapshot", "nothere.db"], "fail"),
        ("log nothere.db exits non-zero", ["log", "nothere.db"], "fail"),
        ("diff nothere.db exits non-zero", ["diff", "nothere.db"], "fail"),
        ("restore nothere.db", ["restore", "nothere.db"], "fail"),
        ("snapshot .. (outside the repo)", ["snapshot", ".."], "fail"),
        ("snapshot a name too long for the filesystem", ["snapshot", "x" * 300 + ".db"], "fail"),
        ("-C a directory that does not exist", ["-C", "/nonexistent-dbguard-dir", "status"], "fail"),
    ):
        with area.trial(f"path: {label}") as t:
            expect(t, repo.dbg(*args), outcome)
    with area.trial("path: snapshot a database outside the repo") as t:
        outside = os.path.join(BASE, "outside.db")
        make_db(outside, 10)
        t.fails_clearly(repo.dbg("snapshot", outside))
        t.check(not any(p.startswith("..") or p.startswith("/") for p in all_paths(repo)), "a path outside was stored")
    with area.trial("path: snapshot sub/../good.db is stored as good.db") as t:
        os.makedirs(repo.p("sub"), exist_ok=True)
        change_db(good, 2)
        run = repo.dbg("snapshot", "sub/../good.db", "--json")
        if t.clear_if_fails(run) and run.code == 0:
            t.check([s["path"] for s in run.json()] == ["good.db"], f"stored as {run.stdout.strip()[:100]}")
    with area.trial("path: a database whose name has a newline") as t:
        make_db(repo.p("new\nline.db"), 30)
        run = repo.dbg("snapshot", "new\nline.db", "--json")
        if t.clear_if_fails(run) and run.code == 0:
            t.check("new\nline.db" in all_paths(repo), "stored under another name")
    crontab = os.path.join(BASE, "fake-crontab")
    with open(crontab, "w") as f:
        f.write('#!/bin/sh\nif [ "$1" = -l ]; then cat "$FAKE_CRONTAB" 2>/dev/null; exit 0; fi\ncat > "$FAKE_CRONTAB"\n')
    os.chmod(crontab, 0o755)
    for label, name, outcome in (("schedule in a plain worktree writes one entry", "sched", "ok"),
                                 ("schedule refuses a worktree path with a newline", "sched\nevil", "fail")):
        with area.trial(f"path: {label}") as t:
            sched = Repo(name)
            table = os.path.join(BASE, f"crontab-{len(os.listdir(BASE))}")
            env = {**ENV, "DBGUARD_CRONTAB": crontab, "FAKE_CRONTAB": table}
            run = dbguard(["schedule", "--every", "8h"], sched.root, env=env)
            expect(t, run, outcome)
            entries = [l for l in open(table).read().splitlines() if l.strip()] if os.path.exists(table) else []
            want = 1 if outcome == "ok" else 0
            t.check(len(entries) == want, f"the crontab got {len(entries)} entries, {want} expected: {entries[:3]}")


def all_paths(repo):
    catalog = os.path.join(repo.store, "catalog.db")
    conn = sqlite3.connect(f"file:{urllib.parse.quote(catalog)}?mode=ro", uri=True)
    try:
        return [p for (p,) in conn.execute("SELECT path FROM snapshots")]
    finally:
        conn.close()



def bad_inputs_ids(area, repo, good, good_id):
    make_db(repo.p("other.db"), 40)
    other_id = repo.snapshot_id("other.db")
    for label, args in (("show abc", ["show", "abc"]), ("show #999", ["show", "#999"]),
                        ("show -- -1", ["show", "--", "-1"]),
                        ("restore --from=-1", ["restore", "good.db", "--from=-1"]),
                        ("restore --from a number too big", ["restore", "good.db", "--from", "9" * 25]),
                        ("diff good.db abc", ["diff", "good.db", "abc"]),
                        ("restore good.db --from another db's id", ["restore", "good.db", "--from", str(other_id)])):
        with area.trial(f"id: {label}") as t:
            digest = sha(good)
            t.fails_clearly(repo.dbg(*args))
            t.check(sha(good) == digest, "good.db changed")
    with area.trial("id: restore without PATH or --from: the hint names ids that exist") as t:
        run = repo.dbg("restore")
        if t.fails_clearly(run):
            named = {int(n) for n in re.findall(r"--from #?(\d+)", run.stderr)}
            ids = {s["id"] for s in repo.listed()}
            t.check(named <= ids, f"the hint suggests --from {sorted(named - ids)}, which does not exist")


def guarded_reset_case(area, label, configure):
    """Issue 11.1/11.2: with this configuration, `dbguard git reset --hard` on a modified
    tracked data/x.db (6,000 rows now, 1,000 committed) snapshots first or refuses."""
    with area.trial(f"config: {label}") as t:
        repo = tracked_db_repo(f"cfg-{len(os.listdir(BASE))}", "data/x.db", 1_000, 6_000)
        configure(repo)
        t.clear_if_fails(repo.dbg("status"))
        run = repo.dbg("git", "reset", "--hard")
        t.no_panic(run)
        rows = rows_of(repo.p("data/x.db"))
        saved = 6_000 in repo.catalog_rows("data/x.db").values()
        if rows != 6_000:
            t.check(saved, f"git reset --hard ran unguarded: data/x.db 6,000 -> {rows} rows, no snapshot (exit {run.code})")
        if run.code != 0:
            t.clear(run)
            t.check(rows == 6_000, f"refused, yet data/x.db has {rows} rows")
            t.check("--no-snapshot" in run.stderr, f"the refusal does not mention --no-snapshot: {run.brief()}")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def bad_inputs_config(area):
    toml = lambda text: lambda repo: write(repo.p(".dbguard.toml"), text)  # noqa: E731
    gitcfg = lambda key, value: lambda repo: git(["config", key, value], repo.root)  # noqa: E731
    guarded_reset_case(area, "invalid .dbguard.toml", toml("exclude = [\n"))
    guarded_reset_case(area, "top-level keep_last in .dbguard.toml", toml("keep_last = 3\n"))
    guarded_reset_case(area, "unknown section from a newer dbguard", toml("[future]\nsetting = true\n"))
    guarded_reset_case(area, "pre_commit = \"sometimes\"", toml('pre_commit = "sometimes"\n'))
    guarded_reset_case(area, "git config dbguard.precommit maybe", gitcfg("dbguard.precommit", "maybe"))
    guarded_reset_case(area, "git config dbguard.keepLast -5", gitcfg("dbguard.keepLast", "-5"))
    guarded_reset_case(area, "exclude = [\"data\"] covers the database", toml('exclude = ["data"]\n'))
    guarded_reset_case(area, "git config dbguard.exclude data", gitcfg("dbguard.exclude", "data"))
    guarded_reset_case(area, ".dbguard.toml is a directory", lambda repo: os.makedirs(repo.p(".dbguard.toml")))

    def store_is_a_file(repo):
        write(repo.store, "not a directory\n")
    guarded_reset_case(area, "the store directory was replaced by a file", store_is_a_file)
    with area.trial("config: log when the store is a file exits non-zero") as t:
        repo = Repo("store-file")
        write(repo.store, "not a directory\n")
        t.fails_clearly(repo.dbg("log"))
    with area.trial("config: git -c dbguard.precommit=allow commit is honoured by the hook") as t:
        repo = Repo("precommit")
        t.succeeds(repo.dbg("install", "--quiet"))
        make_db(repo.p("new.db"), 10)
        git(["add", "new.db"], repo.root)
        refused = subprocess.run(["git", "commit", "-q", "-m", "db"], cwd=repo.root, env=ENV, capture_output=True)
        t.check(refused.returncode != 0, "the hook did not refuse a database commit at all")
        allowed = subprocess.run(["git", "-c", "dbguard.precommit=allow", "commit", "-q", "-m", "db"],
                                 cwd=repo.root, env=ENV, capture_output=True, text=True)
        t.check(allowed.returncode == 0, f"-c dbguard.precommit=allow ignored: {allowed.stderr.strip()[:160]}")


def craft(repo, source_id, path, extra_rows=0):
    """A catalog row copied from `source_id` with another path (as an attacker would write it)."""
    conn = sqlite3.connect(os.path.join(repo.store, "catalog.db"))
    try:
        cols = [c[1] for c in conn.execute("PRAGMA table_info(snapshots)") if c[1] != "id"]
        values = ["?" if c == "path" else c for c in cols]
        cur = conn.execute(f"INSERT INTO snapshots({', '.join(cols)}) SELECT {', '.join(values)} FROM snapshots WHERE id = ?",
                           (path, source_id))
        new_id = cur.lastrowid
        conn.execute("INSERT INTO snapshot_tables(snapshot_id, name, rows)"
                     " SELECT ?, name, rows + ? FROM snapshot_tables WHERE snapshot_id = ?", (new_id, extra_rows, source_id))
        conn.commit()
        return new_id
    finally:
        conn.close()


def tree(root, skip):
    found = set()
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if os.path.join(d, x) != skip]
        found.update(os.path.join(d, x) for x in dirs + files)
    return found


def bad_inputs_catalog(area, repo, good, good_id):
    parent = os.path.dirname(repo.root)
    for path, written in (("../escape-x.db", os.path.join(parent, "escape-x.db")),
                          ("nested/.git/hooks/post-checkout", repo.p("nested", ".git", "hooks", "post-checkout")),
                          (".git/hooks/post-checkout", repo.p(".git", "hooks", "post-checkout")),
                          ("..", None), ("/tmp/dbguard-faults-escape.db", "/tmp/dbguard-faults-escape.db")):
        with area.trial(f"catalog row with path {path!r}: restore refuses, writes nothing") as t:
            crafted = craft(repo, good_id, path)
            before = {p: sha(p) for p in [written] if p}
            run = repo.dbg("restore", "--from", str(crafted))
            t.fails_clearly(run)
            for p, digest in before.items():
                t.check(sha(p) == digest, f"restore wrote {p}")
            t.check(os.path.isdir(parent) and os.path.isdir(repo.root), "the worktree or its parent was replaced")
    for path in ("..", "../escape-e.db", "../../escape-f.db"):
        with area.trial(f"catalog row with path {path!r}: export stays inside --out") as t:
            crafted = craft(repo, good_id, path)
            top = os.path.join(BASE, f"export-{crafted}")
            out = os.path.join(top, "a", "b", "out")
            os.makedirs(out)
            before = tree(top, out)
            t.clear_if_fails(repo.dbg("export", str(crafted), "--out", out))
            escaped = sorted(tree(top, out) - before)
            t.check(not escaped, f"export wrote outside --out: {escaped[:3]}")
    with area.trial("catalog row whose row counts lie: restore refuses, good.db intact") as t:
        crafted = craft(repo, good_id, "good.db", extra_rows=7)
        digest = sha(good)
        t.fails_clearly(repo.dbg("restore", "good.db", "--from", str(crafted)))
        t.check(sha(good) == digest, "good.db changed")


def packs_of(repo, snapshot_id):
    """The pack files a snapshot's blocks live in, from the catalog (names, in id order)."""
    conn = sqlite3.connect(os.path.join(repo.store, "catalog.db"))
    try:
        return [n for (n,) in conn.execute(
            "SELECT p.name FROM image_packs i JOIN packs p ON p.id = i.pack_id"
            " JOIN snapshots s ON s.image_id = i.image_id WHERE s.id = ? ORDER BY p.id", (snapshot_id,))]
    finally:
        conn.close()


def pack_file(repo, name):
    return os.path.join(repo.store, "packs", name + ".pack")


def bad_inputs_chunks(area):
    """Issue 11.4: a damaged chunk is never silently reused; verify names what it breaks."""
    repo = Repo("chunks")
    db = repo.p("posts.db")
    make_db(db, 15_000)  # ~3.5 MiB: one pack
    first = repo.snapshot_id("posts.db")
    damaged = pack_file(repo, packs_of(repo, first)[0])
    with open(damaged, "r+b") as f:
        f.seek(os.path.getsize(damaged) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with area.trial("damaged chunk: verify fails and names #1") as t:
        run = repo.dbg("verify")
        if t.fails_clearly(run):
            t.check(re.search(rf"#{first}\b", run.stdout + run.stderr), f"does not name #{first}: {run.brief('out')}")
    with area.trial("damaged chunk: in-place restore of #1 refuses, posts.db intact") as t:
        digest = sha(db)
        t.fails_clearly(repo.dbg("restore", "posts.db", "--from", str(first)))
        t.check(sha(db) == digest, "posts.db changed")
    with area.trial("damaged chunk: a new snapshot after a change restores") as t:
        conn = sqlite3.connect(db)
        add_rows(conn, 50)
        conn.close()
        run = repo.dbg("snapshot", "posts.db", "--json")
        t.require(t.succeeds(run), "no new snapshot")
        second = [s for s in run.json() if s.get("id")][0]["id"]
        out = os.path.join(BASE, "chunk-restored.db")
        t.succeeds(repo.dbg("restore", "--from", str(second), "--to", out))
        t.check(os.path.exists(out) and rows_of(out) == 15_050, "the new snapshot does not restore its 15,050 rows")
    with area.trial("damaged chunk: the fresh snapshot repaired it (verify passes, #1 restores)") as t:
        t.succeeds(repo.dbg("verify"))
        out = os.path.join(BASE, "chunk-restored-1.db")
        t.succeeds(repo.dbg("restore", "--from", str(first), "--to", out))
    with area.trial("missing chunk: verify fails and names every snapshot it breaks") as t:
        both = [n for n in packs_of(repo, first) if n in packs_of(repo, second)] or packs_of(repo, first)
        shared = both[0]
        os.remove(pack_file(repo, shared))
        run = repo.dbg("verify")
        if t.fails_clearly(run):
            text = run.stdout + run.stderr
            users = [s for s in (first, second) if shared in packs_of(repo, s)]
            missing = [s for s in users if not re.search(rf"#{s}\b", text)]
            t.check(not missing, f"does not name {', '.join(f'#{s}' for s in missing)}: {run.brief('out')}")


def area_bad_inputs(area, _rounds):
    """Hostile files, paths, ids, configs and catalog rows."""
    repo = Repo("bad")
    good = repo.p("good.db")
    make_db(good, 3_000)
    good_id = repo.snapshot_id("good.db")
    good_before = db_state(good)
    bad_inputs_files(area, repo, good)
    bad_inputs_paths(area, repo, good)
    bad_inputs_ids(area, repo, good, good_id)
    bad_inputs_config(area)
    bad_inputs_catalog(area, repo, good, good_id)
    bad_inputs_chunks(area)
    with area.trial("good.db survived every bad input (only the script's own changes)") as t:
        integrity, rows, _ = db_state(good)
        t.check(integrity == "ok" and rows == good_before[1] + 20, f"good.db: {integrity}, {rows} rows")


# --------------------------------------------------------------------------- plain git (issue 27)

def plain_git(args, cwd, env=None):
    """A git command as a user types it (the installed hooks run): (exit code, stderr)."""
    proc = subprocess.run(["git", *args], cwd=cwd, env=env or ENV, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=300)
    return proc.returncode, proc.stderr.decode(errors="replace")


def committed_data_repo(name):
    """A repository with data/posts.db committed at 1,000 rows."""
    repo = Repo(name)
    os.makedirs(repo.p("data"))
    make_db(repo.p("data/posts.db"), 1_000)
    git(["add", "data/posts.db"], repo.root)
    git(["commit", "-q", "-m", "add data/posts.db"], repo.root)
    return repo


def installed_data_repo(name):
    """data/posts.db committed at 1,000 rows, grown to 6,000, an untracked data/cache.db
    of 700 rows, dbguard installed (hooks and core.fsmonitor)."""
    repo = committed_data_repo(name)
    run = repo.dbg("install", "--quiet")  # its baseline holds the committed 1,000 rows
    if run.code != 0:
        raise Fail(f"`{run.cmd}` failed: {run.brief()}")
    conn = sqlite3.connect(repo.p("data/posts.db"))
    add_rows(conn, 5_000)
    conn.close()
    make_db(repo.p("data/cache.db"), 700)
    return repo


def saved_rows(t, repo, rel, rows, what, stderr):
    """The command must have left a snapshot of `rel` with `rows` rows."""
    t.check(rows in repo.catalog_rows(rel).values(),
            f"{what} lost {rel} ({rows:,} rows) without a snapshot: {stderr.strip()[-200:]}")


def plain_git_subdirectory(area):
    """Issue 27.3: relative paths typed in a subdirectory, and through `git -C`."""
    commands = [(["restore", "posts.db"], "data/posts.db", 6_000),
                (["checkout", "--", "posts.db"], "data/posts.db", 6_000),
                (["clean", "-f", "-q", "cache.db"], "data/cache.db", 700),
                (["rm", "-q", "-f", "posts.db"], "data/posts.db", 6_000),
                (["stash", "push", "-q", "--", "posts.db"], "data/posts.db", 6_000)]
    for args, rel, rows in commands:
        for dash_c in (False, True):
            what = ("git -C data " if dash_c else "cd data && git ") + " ".join(args)
            with area.trial(f"subdirectory: {what}") as t:
                repo = installed_data_repo(f"sub-{len(os.listdir(BASE))}")
                code, err = (plain_git(["-C", "data", *args], repo.root) if dash_c
                             else plain_git(args, repo.p("data")))
                t.check(code == 0, f"{what} failed: {err.strip()[-200:]}")
                saved_rows(t, repo, rel, rows, what, err)


def plain_git_aliases(area):
    """Issue 27.4: every git a `!` alias runs is planned on its own."""
    with area.trial("alias: nuke = !git clean -fd && git reset --hard") as t:
        repo = installed_data_repo("alias-nuke")
        git(["config", "alias.nuke", "!git clean -fdq && git reset -q --hard"], repo.root)
        code, err = plain_git(["nuke"], repo.root)
        t.check(code == 0, f"git nuke failed: {err.strip()[-200:]}")
        saved_rows(t, repo, "data/cache.db", 700, "the alias's clean", err)
        saved_rows(t, repo, "data/posts.db", 6_000, "the alias's reset --hard", err)
    with area.trial("alias: sw = !git stash && git checkout other (from data/)") as t:
        # The stash saves the modified posts.db; the checkout after it replaces the
        # ignored data/cache.db with the one `other` tracks: it must be planned too.
        repo = committed_data_repo("alias-sw")
        write(repo.p(".gitignore"), "data/cache.db\n")
        git(["add", ".gitignore"], repo.root)
        git(["commit", "-q", "-m", "ignore the cache"], repo.root)
        git(["checkout", "-q", "-b", "other"], repo.root)
        make_db(repo.p("data/cache.db"), 10)
        git(["add", "-f", "data/cache.db"], repo.root)
        git(["commit", "-q", "-m", "a sample cache"], repo.root)
        git(["checkout", "-q", "main"], repo.root)
        run = repo.dbg("install", "--quiet")
        if run.code != 0:
            raise Fail(f"`{run.cmd}` failed: {run.brief()}")
        conn = sqlite3.connect(repo.p("data/posts.db"))
        add_rows(conn, 5_000)
        conn.close()
        make_db(repo.p("data/cache.db"), 700)
        git(["config", "alias.sw", "!git stash -q && git checkout -q other"], repo.root)
        code, err = plain_git(["sw"], repo.p("data"))
        t.check(code == 0, f"git sw failed: {err.strip()[-200:]}")
        t.check(rows_of(repo.p("data/cache.db")) == 10, "the checkout did not replace data/cache.db")
        saved_rows(t, repo, "data/posts.db", 6_000, "the alias's stash", err)
        saved_rows(t, repo, "data/cache.db", 700, "the alias's checkout", err)


def plain_git_bad_settings(area):
    """Issue 27.6: a broken shared setting, and dbguard's variables left in an environment."""
    with area.trial("settings: typo in .dbguard.toml, then git reset --hard") as t:
        repo = installed_data_repo("bad-toml")
        write(repo.p(".dbguard.toml"), 'exclude = "vendor"\n')
        code, err = plain_git(["reset", "-q", "--hard"], repo.root)
        t.check(code == 0, f"git reset --hard failed: {err.strip()[-200:]}")
        saved_rows(t, repo, "data/posts.db", 6_000, "git reset --hard with a typo in .dbguard.toml", err)
        t.check(".dbguard.toml" in err, f"the typo was not mentioned: {err.strip()[-200:]}")
        change_db(repo.p("data/posts.db"), 1, added=500)
        code, err = plain_git(["checkout", "-q", "--", "data/posts.db"], repo.root)
        t.check(".dbguard.toml" not in err, "the same typo was mentioned again at the next command")
        saved_rows(t, repo, "data/posts.db", 1_500, "the next checkout --", err)
    with area.trial("settings: DBGUARD_SKIP=1 left exported says so") as t:
        repo = installed_data_repo("skip")
        code, err = plain_git(["reset", "-q", "--hard"], repo.root, env={**ENV, "DBGUARD_SKIP": "1"})
        t.check("DBGUARD_SKIP=1" in err, f"the skip was silent: {err.strip()[-200:]}")
    for leftover in ("1", "99999-1"):
        with area.trial(f"settings: DBGUARD_GUARDED={leftover} left exported guards nothing") as t:
            repo = installed_data_repo(f"guarded-{leftover}")
            code, err = plain_git(["reset", "-q", "--hard"], repo.root,
                                  env={**ENV, "DBGUARD_GUARDED": leftover})
            saved_rows(t, repo, "data/posts.db", 6_000, f"git reset --hard with DBGUARD_GUARDED={leftover}", err)


def area_plain_git(area, _rounds):
    plain_git_subdirectory(area)
    plain_git_aliases(area)
    plain_git_bad_settings(area)


# --------------------------------------------------------------------------- busy store

def pty_run(argv, cwd, answers, timeout=120, env=None):
    """Run `argv` on a pseudo-terminal of its own (prompts on), typing each answer once
    its prompt text has appeared: (exit code or None when it hung, what it showed)."""
    import pty
    import select
    env = dict(env or ENV)
    env.pop("DBGUARD_NO_PROMPT", None)
    env.pop("CI", None)
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        os.execvpe(argv[0], argv, env)
    shown, pending, deadline = b"", list(answers), time.monotonic() + timeout
    answered_at = 0
    while True:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(fd)
            return None, shown.decode(errors="replace")
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            shown += data
        if pending and pending[0][0].encode() in shown[answered_at:]:
            os.write(fd, pending.pop(0)[1].encode())
            answered_at = len(shown)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def grown_tracked_repo(name, committed=5_000, grown=90_000):
    """posts.db committed at `committed` rows, dbguard installed (hooks and core.fsmonitor),
    then grown to `grown` rows: a plain checkout -- posts.db or reset --hard shrinks it."""
    repo = Repo(name)
    make_db(repo.p("posts.db"), committed)
    git(["add", "posts.db"], repo.root)
    git(["commit", "-q", "-m", "add posts.db"], repo.root)
    run = repo.dbg("install")
    if run.code != 0:
        raise Fail(f"`{run.cmd}` failed: {run.brief()}")
    conn = sqlite3.connect(repo.p("posts.db"))
    add_rows(conn, grown - committed)
    conn.close()
    return repo


def timed_git(args, cwd, timeout=120):
    """Plain git as a user types it (hooks run): (exit code or None when hung, stderr, s)."""
    start = time.monotonic()
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", time.monotonic() - start
    return proc.returncode, proc.stderr.decode(errors="replace"), time.monotonic() - start


def newest_command(repo):
    listed = repo.listed()
    return " ".join(listed[0]["operation"]["argv"]) if listed else ""


def area_terminal_offer(area, rounds):
    """The post-checkout hook's restore offer answered y on a terminal: no deadlock, the
    rows come back in seconds, status is honest afterwards."""
    for i in range(rounds):
        repo = grown_tracked_repo(f"offer-{i}")
        with area.trial(f"offer {i + 1}: git checkout -- posts.db, answer y on the terminal") as t:
            start = time.monotonic()
            code, shown = pty_run(["git", "checkout", "--", "posts.db"], repo.root, [("[Y/n]", "y\n")])
            took = time.monotonic() - start
            t.require(code is not None, f"hung for 120 s: {shown.strip()[-200:]}")
            t.check(code == 0, f"git exited {code}: {shown.strip()[-200:]}")
            t.check("restored posts.db from #" in shown, f"not restored: {shown.strip()[-200:]}")
            t.check(took < 30, f"took {took:.1f} s")
            t.check(rows_of(repo.p("posts.db")) == 90_000, f"{rows_of(repo.p('posts.db'))} rows, not 90,000")
            status = repo.dbg("status")
            t.check(status.code == 0 and "SHRANK" not in status.stdout,
                    f"status after the restore: exit {status.code}, {status.brief()}")


def area_busy_store(area, rounds):
    """A plain git command's snapshot while the store is busy: a restore picker left open
    on a terminal, a long prune. It gets through, in its turn, never given up."""
    import pty
    import select
    half = max(1, rounds // 2)
    for i in range(half):
        repo = grown_tracked_repo(f"busy-picker-{i}")
        repo.dbg("snapshot", "posts.db")
        with area.trial(f"picker {i + 1}: plain reset --hard while `dbguard restore` waits for its user") as t:
            env = dict(ENV)
            env.pop("DBGUARD_NO_PROMPT", None)
            pid, fd = pty.fork()
            if pid == 0:
                os.chdir(repo.root)
                os.execvpe(BIN, [BIN, "restore"], env)
            shown, deadline = b"", time.monotonic() + 60
            while b"Restore which snapshot?" not in shown and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.05)[0]:
                    with contextlib.suppress(OSError):
                        shown += os.read(fd, 65536)
            try:
                t.require(b"Restore which snapshot?" in shown, "the picker did not open")
                conn = sqlite3.connect(repo.p("posts.db"))
                add_rows(conn, 1_000)
                conn.close()
                code, stderr, took = timed_git(["reset", "-q", "--hard"], repo.root)
                t.require(code is not None, "plain reset --hard hung")
                t.check(code == 0 and "not saved" not in stderr, f"reset: exit {code}: {stderr.strip()[-200:]}")
                t.check(took < 20, f"reset took {took:.1f} s")
                t.check(newest_command(repo) == "git reset -q --hard", "no snapshot before the reset")
            finally:
                os.write(fd, b"q")
                with contextlib.suppress(ChildProcessError):
                    for _ in range(200):
                        if os.waitpid(pid, os.WNOHANG)[0]:
                            break
                        time.sleep(0.05)
                    else:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                os.close(fd)
    repo = grown_tracked_repo("busy-prune")
    with open(repo.p(".gitignore"), "w") as f:
        f.write("big.db\n")
    big = repo.p("big.db")
    conn = sqlite3.connect(big)
    conn.execute("CREATE TABLE pages(id INTEGER PRIMARY KEY, fill BLOB)")
    conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)"
                 " INSERT INTO pages(fill) SELECT randomblob(3000) FROM n")
    conn.commit()
    for i in range(rounds - half):
        with area.trial(f"prune {i + 1}: plain reset --hard while prune rewrites packs") as t:
            for step in range(3):  # garbage for the prune: a third of the pages each time
                conn.execute("UPDATE pages SET fill = randomblob(3000) WHERE (id + ?) % 3 = 0", (step,))
                conn.commit()
                t.succeeds(repo.dbg("snapshot", "big.db"))
            # A state of its own each time (an identical one would only be referred to).
            posts = sqlite3.connect(repo.p("posts.db"))
            add_rows(posts, 1 + i, author=f"trial-{i}")
            posts.close()
            lock = os.path.join(repo.store, "lock")
            prune = subprocess.Popen([BIN, "prune", "--keep-last", "1"], cwd=repo.root, env=ENV,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 60
            while prune.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError), open(lock) as f:
                    if "prune" in f.read():
                        break
                time.sleep(0.005)
            code, stderr, took = timed_git(["reset", "-q", "--hard"], repo.root)
            overlapped = prune.poll() is None
            try:
                _, prune_err = prune.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                prune.kill()
                raise Fail("prune hung")
            t.require(code is not None, "plain reset --hard hung")
            t.check(prune.returncode == 0, f"prune failed: {prune_err.decode(errors='replace').strip()[-200:]}")
            t.check(code == 0 and "not saved" not in stderr, f"reset: exit {code}: {stderr.strip()[-200:]}")
            t.check(took < 60, f"reset took {took:.1f} s")
            t.check(newest_command(repo) == "git reset -q --hard", "no snapshot before the reset")
            if not overlapped:
                area.skips.append(f"prune {i + 1}: the prune ended before the reset did (no overlap measured)")
    conn.close()


def area_disk_full_ingest(area, rounds):
    """The store's disk fills up in the middle of an ingest: the guarded command ends
    promptly with an error, git does not run, and the store is free for the next one."""
    with tmpfs(os.path.join(BASE, "ingest-full-fs"), "3m") as fs:
        repo = Repo("ingest-full")
        repo.set_store(os.path.join(fs, "store"))
        conn = sqlite3.connect(repo.p("noise.db"))
        conn.execute("CREATE TABLE noise(b BLOB)")
        conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 16000)"
                     " INSERT INTO noise SELECT randomblob(1000) FROM n")
        conn.commit()
        conn.close()
        git(["add", "noise.db"], repo.root)
        git(["commit", "-q", "-m", "noise"], repo.root)
        conn = sqlite3.connect(repo.p("noise.db"))
        conn.execute("DELETE FROM noise WHERE rowid > 8000")
        conn.commit()
        conn.close()
        digest = sha(repo.p("noise.db"))
        for i in range(rounds):
            command = ["git", "checkout", "--", "noise.db"] if i % 2 else ["git", "reset", "--hard"]
            with area.trial(f"full store {i + 1}: dbguard {' '.join(command)}") as t:
                start = time.monotonic()
                run = repo.dbg(*command, timeout=60)
                took = time.monotonic() - start
                t.require(not run.hung, "hung with the store's disk full")
                t.fails_clearly(run)
                t.check("full" in run.stderr, f"does not say the disk is full: {run.brief()}")
                t.check(sha(repo.p("noise.db")) == digest, "noise.db changed: git ran")
                t.check(took < 30, f"took {took:.1f} s")
                t.check(not repo.dbg("log", timeout=30).hung, "the store stayed locked")


AREAS = [("kill9-snapshot", area_kill9_snapshot), ("kill9-restore", area_kill9_restore),
         ("kill9-prune", area_kill9_prune), ("disk-full", area_disk_full),
         ("read-only-store", area_read_only_store), ("bad-inputs", area_bad_inputs),
         ("plain-git", area_plain_git), ("terminal-offer", area_terminal_offer),
         ("busy-store", area_busy_store), ("disk-full-ingest", area_disk_full_ingest)]


# --------------------------------------------------------------------------- main

def find_binary(given):
    if given:
        if not os.access(given, os.X_OK):
            sys.exit(f"--bin {given}: not an executable file")
        return os.path.abspath(given)
    for candidate in (os.environ.get("DBGUARD_BIN"), shutil.which("dbguard"), os.path.join(TARGET, "debug", "dbguard")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    print("no dbguard binary: pass --bin PATH, set DBGUARD_BIN, or build with `cargo build --all-targets`",
          file=sys.stderr)
    sys.exit(2)


def hermetic_env(home, binary):
    """As src/testing.rs's hermetic_env: HOME in the scratch dir, no system/global git config,
    no prompts, no colour, the binary's directory first on PATH, no inherited DBGUARD_*."""
    e = bench_env(home, binary)
    for key in list(e):
        if key.startswith("DBGUARD_") or key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
            del e[key]
    e.update({"XDG_CONFIG_HOME": os.path.join(home, ".config"), "GIT_TERMINAL_PROMPT": "0",
              "DBGUARD_NO_PROMPT": "1", "NO_COLOR": "1", "LC_ALL": "C"})
    with open(os.path.join(home, ".gitconfig"), "a") as f:
        f.write("[advice]\n\tdetachedHead = false\n")
    return e


def main():
    global BIN, ENV, BASE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", help="the dbguard binary to test")
    parser.add_argument("--quick", action="store_true", help="fewer kills per variant (about a minute)")
    parser.add_argument("--seed", type=int, default=11, help="seed for the kill delays (default 11)")
    parser.add_argument("--only", help="comma-separated areas: " + ",".join(name for name, _ in AREAS))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    wanted = args.only.split(",") if args.only else [name for name, _ in AREAS]
    unknown = set(wanted) - {name for name, _ in AREAS}
    if unknown:
        parser.error(f"unknown area(s): {', '.join(sorted(unknown))}")
    RNG.seed(args.seed)
    source = find_binary(args.bin)
    BASE = tempfile.mkdtemp(prefix="dbguard-faults-")
    os.makedirs(os.path.join(BASE, "bin"))
    BIN = shutil.copy2(source, os.path.join(BASE, "bin", "dbguard"))
    # `dbguard install` names the fsmonitor hook program next to the binary.
    hook_program = os.path.join(os.path.dirname(source), "dbguard-fsmonitor")
    if os.path.isfile(hook_program):
        shutil.copy2(hook_program, os.path.join(BASE, "bin", "dbguard-fsmonitor"))
    ENV = hermetic_env(os.path.join(BASE, "home"), BIN)
    version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.strip()
    # Kills per variant: snapshot has 4 variants, restore 2 (so 30 restore kills), prune 1.
    rounds = {"kill9-snapshot": 3, "kill9-restore": 4, "kill9-prune": 3} if args.quick else \
             {"kill9-snapshot": 15, "kill9-restore": 15, "kill9-prune": 15}
    # The busy-store cases (terminal offer, busy store, disk full during the ingest).
    rounds.update(dict.fromkeys(("terminal-offer", "busy-store", "disk-full-ingest"), 5 if args.quick else 20))
    print(f"fault campaign: {version} ({source}), seed {args.seed}, {'quick' if args.quick else 'full'} run")
    started, results, failed = time.perf_counter(), [], False
    try:
        for name, function in AREAS:
            if name not in wanted:
                continue
            area, t0 = Area(name), time.perf_counter()
            try:
                function(area, rounds.get(name, 0))
                summary = f"{name}: {area.ok}/{area.total}"
                killed = sum("(killed at" in label for label in area.labels)
                finished = sum("(finished before" in label for label in area.labels)
                if killed or finished:  # kills that land after the command ended prove little
                    summary += f" ({killed} killed mid-run, {finished} finished before the kill)"
            except Skip as skip:
                summary = f"{name}: skipped ({skip})" + (f" after {area.ok}/{area.total}" if area.total else "")
            except (Fail, OSError, sqlite3.Error, subprocess.SubprocessError) as fail:
                # Set-up that could not be made: the area's figures stop here, counted as a failure.
                area.failures.append(f"set-up: {type(fail).__name__ if not isinstance(fail, Fail) else ''} {fail}".strip())
                area.total += 1
                summary = f"{name}: {area.ok}/{area.total} (stopped)"
            print(f"{summary}   [{time.perf_counter() - t0:.1f} s]", flush=True)
            for line in area.failures:
                print(f"  FAIL {line}")
            for line in area.skips:
                print(f"  skip {line}")
            failed |= bool(area.failures)
            results.append(summary)
    finally:
        if args.keep:
            print(f"scratch directory kept: {BASE}")
        else:
            # The fsmonitor watchers the hooks started (one per repository) would
            # otherwise write cookies into the tree while it is being removed.
            subprocess.run(["pkill", "-f", os.path.join(BASE, "bin", "dbguard-fsmonitor")],
                           capture_output=True)
            time.sleep(0.2)
            shutil.rmtree(BASE, ignore_errors=True)
    print(f"total {time.perf_counter() - started:.0f} s: " + "; ".join(results))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
