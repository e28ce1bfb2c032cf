"""fsmonitor benchmark (issues 13 and 28: plain git guarded before it writes, and as fast
as plain git with dbguard installed).

In one run, each shape built twice (plain, and `dbguard install`), modes alternating per
run so load hits both alike; medians:
1. small: 50 files, an ignored 10,000-row database: `git status`, `git diff` (goal <= +2
   ms), `.git/index` rewrites by a no-op status (goal 0).
2. tracked: 80,000 tracked files in 4,000 directories (FSM_TRACKED=n, 0 to skip): `git
   status` (goal: no slower than plain git), index rewrites, and `git checkout` of a
   branch that changes one text file (goal <= +10 ms, dbguard's planning included).
3. ignored: 300 tracked files, an ignored `.venv` (40,000 files) and `node_modules`
   (100,000 files) (FSM_IGNORED=0 to skip): `git status` (goal <= +5 ms), `git commit`
   (goal within 10%), `git checkout` (goal <= +10 ms); then the watcher: its memory, its
   CPU over 10 idle seconds, and the time from a cold start to the first answer that
   comes from it.
4. `git reset --hard` with one changed ~440 MiB database (FSM_DB_MIB to change, 0 to
   skip): plain git, with dbguard (the hook's snapshot), `dbguard snapshot` alone, `cp`.
Untracked cache on in 2 and 3 (`core.untrackedCache=true`). The watcher is started and
answering before any timing (`wait_for_watcher`).
Usage: python3 bench/fsmonitor.py [--runs N]
"""
import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import time

from common import dbguard_bin, env, fresh_dir, git, make_posts_db, run

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=41)
parser.add_argument("--dir", default="/tmp/dbguard-bench-fsmonitor")
args = parser.parse_args()

binary = dbguard_bin()
hook_program = os.path.join(os.path.dirname(binary), "dbguard-fsmonitor")
base = fresh_dir(args.dir)
e = env(os.path.join(base, "home"), binary)
TRACKED = int(os.environ.get("FSM_TRACKED", "80000"))
IGNORED = os.environ.get("FSM_IGNORED", "1") != "0"
DB_MIB = int(os.environ.get("FSM_DB_MIB", "440"))


def index_stamp(work):
    st = os.stat(os.path.join(work, ".git", "index"))
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def timed(work, cmd, runs_list, rewrites=None):
    before = index_stamp(work)
    runs_list.append(run(["git", *cmd], cwd=work, env=e))
    if rewrites is not None and index_stamp(work) != before:
        rewrites[0] += 1


def hook_token(work):
    out = subprocess.run([hook_program, "2", ""], cwd=work, env=e, capture_output=True).stdout
    return out.split(b"\0")[0].decode()


def wait_for_watcher(work, limit=120.0):
    """Seconds until the hook's answer comes from the watcher (it starts on demand)."""
    start = time.perf_counter()
    while not hook_token(work).startswith("dbguard:w:"):
        if time.perf_counter() - start > limit:
            raise SystemExit(f"no watcher in {work} after {limit} s")
        time.sleep(0.02)
    return time.perf_counter() - start


def settle(works, cmd):
    # git rewrites the index while an entry's mtime shares the index's second (racy git),
    # with or without a hook: start measuring after that second and a few priming runs.
    for work in works:
        if subprocess.run(["git", "config", "core.fsmonitor"], cwd=work, env=e,
                          capture_output=True).stdout.strip():
            wait_for_watcher(work)
    time.sleep(1.1)
    for work in works:
        for _ in range(3):
            run(["git", *cmd], cwd=work, env=e)


def compare(works, cmd, runs, goal_text, goal, rewrites_too=True, setup=None):
    # A command that needs its setup first (a commit needs something staged) is primed
    # with a status instead: the first priming commit would find nothing to commit.
    settle(works.values(), cmd if setup is None else ["status", "--porcelain"])
    times = {label: [] for label in works}
    rewrites = {label: [0] for label in works}
    for _ in range(runs):
        for label, work in works.items():
            if setup:
                setup(work)
            timed(work, cmd, times[label], rewrites[label] if rewrites_too else None)
    p, d = (statistics.median(times[label]) * 1000 for label in ("plain", "dbguard"))
    verdict = "met" if goal(p, d) else "NOT met"
    line = (f"git {' '.join(cmd)}: plain {p:6.1f} ms, dbguard {d:6.1f} ms: adds {d - p:+6.1f} ms, "
            f"ratio {d / p:.2f}x (goal {goal_text}: {verdict})")
    if rewrites_too:
        line += (f"; index rewritten {rewrites['plain'][0]}/{runs} plain, "
                 f"{rewrites['dbguard'][0]}/{runs} dbguard")
    return line


def commit_floor(work, runs, edit):
    """What any pre-commit hook costs a commit: the plain repository with and without one
    `sh` pre-commit that only exits 0 (through core.hooksPath), and with and without
    `core.fsmonitor` set to a program that only answers "everything may have changed"
    (git's own t7519 fsmonitor-all-v2, as a one-line sh script). dbguard runs both: its
    pre-commit refuses a staged database, its fsmonitor hook guards worktree writes."""
    hooks = os.path.join(base, "floor-hooks")
    os.makedirs(hooks, exist_ok=True)
    scripts = {"pre-commit": "#!/bin/sh\nexit 0\n",
               "fsmonitor-all": "#!/bin/sh\nprintf 'floor\\0/\\0'\n"}
    for name, text in scripts.items():
        with open(os.path.join(hooks, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(hooks, name), 0o755)
    variants = {
        "plain": [],
        "empty pre-commit": ["-c", f"core.hooksPath={hooks}"],
        "fsmonitor-all": ["-c", f"core.fsmonitor={hooks}/fsmonitor-all",
                          "-c", "core.fsmonitorHookVersion=2"],
    }
    times = {label: [] for label in variants}
    for _ in range(runs):
        for label, extra in variants.items():
            edit(work)
            times[label].append(run(["git", *extra, "commit", "-q", "-m", "edit"], cwd=work, env=e))
    p = statistics.median(times["plain"]) * 1000
    parts = []
    for label in ("empty pre-commit", "fsmonitor-all"):
        t = statistics.median(times[label]) * 1000
        parts.append(f"{label} {t:6.1f} ms ({t - p:+.1f} ms, {t / p:.2f}x)")
    return f"floor of a commit with a hook: plain {p:6.1f} ms; " + "; ".join(parts)


def new_repo(name, install, fill):
    work = os.path.join(base, name)
    os.makedirs(work)
    git(["init", "-q"], work, e)
    git(["config", "core.untrackedCache", "true"], work, e)
    fill(work)
    git(["add", "."], work, e)
    git(["commit", "-q", "-m", "init"], work, e)
    # A branch that changes one text file and no database, for checkout.
    git(["checkout", "-q", "-b", "other"], work, e)
    with open(os.path.join(work, "changed-on-other.txt"), "w") as f:
        f.write("other\n")
    git(["add", "changed-on-other.txt"], work, e)
    git(["commit", "-q", "-m", "other"], work, e)
    git(["checkout", "-q", "main"], work, e)
    if install:
        run([binary, "install", "--quiet"], cwd=work, env=e)
    return work


def pair(name, fill):
    return {"plain": new_repo(f"{name}-plain", False, fill),
            "dbguard": new_repo(f"{name}-dbguard", True, fill)}


def write_files(root, dirs, per_dir, prefix="d"):
    for d in range(dirs):
        sub = os.path.join(root, f"{prefix}{d:05}")
        os.makedirs(sub)
        for i in range(per_dir):
            with open(os.path.join(sub, f"f{i:03}.txt"), "w") as f:
                f.write(f"{d} {i}\n")


def compare_checkout(works, runs, goal_ms):
    times = {label: [] for label in works}
    settle(works.values(), ["status", "--porcelain"])
    branch = {w: "main" for w in works.values()}
    for _ in range(runs):
        for label, work in works.items():
            branch[work] = "other" if branch[work] == "main" else "main"
            times[label].append(run(["git", "checkout", "-q", branch[work]], cwd=work, env=e))
    p, d = (statistics.median(times[label]) * 1000 for label in ("plain", "dbguard"))
    verdict = "met" if d - p <= goal_ms else "NOT met"
    return (f"git checkout (one text file, no database): plain {p:6.1f} ms, dbguard {d:6.1f} ms: "
            f"adds {d - p:+6.1f} ms (goal <= +{goal_ms} ms: {verdict})")


def part_small():
    def fill(work):
        for i in range(50):
            with open(os.path.join(work, f"file{i}.txt"), "w") as f:
                f.write(f"content {i}\n")
        with open(os.path.join(work, ".git", "info", "exclude"), "a") as f:
            f.write("app.db\n")
        make_posts_db(os.path.join(work, "app.db"), 10_000, 50)
    works = pair("small", fill)
    for cmd in (["status", "--porcelain"], ["diff"]):
        print("small repo,", compare(works, cmd, args.runs, "<= +2 ms", lambda p, d: d - p <= 2))
    print("small repo,", compare_checkout(works, max(11, args.runs // 2), 10))


def part_tracked():
    if TRACKED <= 0:
        return
    works = pair("tracked", lambda work: write_files(work, TRACKED // 20, 20))
    runs = max(7, args.runs // 3)
    print(f"{TRACKED:,} tracked files,",
          compare(works, ["status", "--porcelain"], runs, "no slower than plain", lambda p, d: d <= p))
    print(f"{TRACKED:,} tracked files,", compare_checkout(works, runs, 10))
    for work in works.values():
        stop_watcher(work)
        shutil.rmtree(work, ignore_errors=True)


def stop_watcher(work):
    subprocess.run([binary, "uninstall", "--quiet"], cwd=work, env=e, capture_output=True)


def watcher_pid(work):
    out = subprocess.run([binary, "install", "--status"], cwd=work, env=e,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "file watcher" in line and "(pid " in line:
            return int(line.split("(pid ")[1].split(")")[0])
    return None


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def part_ignored():
    if not IGNORED:
        return

    def fill(work):
        for i in range(300):
            sub = os.path.join(work, "src", f"m{i // 30:02}")
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, f"f{i:03}.py"), "w") as f:
                f.write(f"x = {i}\n")
        with open(os.path.join(work, ".gitignore"), "w") as f:
            f.write(".venv/\nnode_modules/\n")
        write_files(os.path.join(work, ".venv"), 2_000, 20)
        write_files(os.path.join(work, "node_modules"), 5_000, 20)
    works = pair("ignored", fill)
    runs = max(11, args.runs // 2)
    label = "300 tracked + ignored .venv (40k) and node_modules (100k),"
    print(label, compare(works, ["status", "--porcelain"], runs, "<= +5 ms", lambda p, d: d - p <= 5))

    counter = {"n": 0}

    def edit(work):
        counter["n"] += 1
        with open(os.path.join(work, "src", "m00", "f000.py"), "w") as f:
            f.write(f"x = {counter['n']}\n")
        git(["add", "src/m00/f000.py"], work, e)
    print(label, compare(works, ["commit", "-q", "-m", "edit"], runs, "within 10%",
                         lambda p, d: d <= p * 1.1, rewrites_too=False, setup=edit))
    print(label, commit_floor(works["plain"], runs, edit))
    print(label, compare_checkout(works, runs, 10))

    work = works["dbguard"]
    pid = watcher_pid(work)
    status = subprocess.run([binary, "install", "--status"], cwd=work, env=e,
                            capture_output=True, text=True).stdout
    line = next((l.strip() for l in status.splitlines() if "file watcher" in l), "no watcher line")
    before = cpu_ticks(pid)
    time.sleep(10)
    idle = cpu_ticks(pid) - before
    print(f"watcher on that tree: {line}; CPU over 10 idle seconds: {idle} ticks ({idle * 10} ms)")
    colds = []
    for _ in range(3):
        subprocess.run(["kill", str(watcher_pid(work))], check=True)
        time.sleep(0.5)
        colds.append(wait_for_watcher(work))
    print(f"watcher cold start to its first answer (140k files, "
          f"{line.split(': ')[1].split(' directories')[0] if ': ' in line else '?'} directories): "
          f"median {statistics.median(colds) * 1000:.0f} ms of {', '.join(f'{c * 1000:.0f}' for c in colds)}")
    for work in works.values():
        stop_watcher(work)
        shutil.rmtree(work, ignore_errors=True)


def grow(path, rows):
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO posts(body) VALUES (?)", (("y" * 300,) for _ in range(rows)))
    conn.commit()
    conn.close()


def part_reset():
    if DB_MIB <= 0:
        return
    rows = DB_MIB * 1024 * 1024 // 330
    results = {}
    for label in ("plain", "dbguard"):
        work = os.path.join(base, f"reset-{label}")
        os.makedirs(work)
        git(["init", "-q"], work, e)
        db = os.path.join(work, "posts.db")
        make_posts_db(db, rows, 300)
        git(["add", "posts.db"], work, e)
        git(["commit", "-q", "-m", "db"], work, e)
        if label == "dbguard":
            run([binary, "install", "--quiet"], cwd=work, env=e)
        grow(db, 10_000)
        results[label] = run(["git", "reset", "-q", "--hard"], cwd=work, env=e)
        if label == "dbguard":
            grow(db, 10_000)
            results["dbguard snapshot"] = run([binary, "snapshot", "--quiet"], cwd=work, env=e)
            results["cp"] = run(["cp", db, os.path.join(base, "copy.db")], cwd=work, env=e)
        size = os.path.getsize(db)
    print(f"git reset --hard over one changed {size / 2**20:.0f} MiB database: plain {results['plain']:.2f} s, "
          f"with dbguard {results['dbguard']:.2f} s (its snapshot: +{results['dbguard'] - results['plain']:.2f} s); "
          f"dbguard snapshot alone {results['dbguard snapshot']:.2f} s, cp {results['cp']:.2f} s; "
          f"hook snapshot / dbguard snapshot = "
          f"{(results['dbguard'] - results['plain']) / results['dbguard snapshot']:.2f}x")


part_small()
part_tracked()
part_ignored()
part_reset()
for name in os.listdir(base):
    if os.path.isdir(os.path.join(base, name, ".git")):
        stop_watcher(os.path.join(base, name))
shutil.rmtree(base, ignore_errors=True)
