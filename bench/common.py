"""Shared helpers for the benchmarks: locating the binary, timing commands, peak memory."""
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/dbguard-target"))


def dbguard_bin():
    """The dev-profile binary (deps optimised, see Cargo.toml); builds it if needed.

    Always `--all-targets`: a narrower build unifies dependency features differently and
    makes cargo compile DuckDB's C++ a second time. `DBGUARD_BIN=/path/to/dbguard` runs
    another build instead (to compare two versions in one session)."""
    if os.environ.get("DBGUARD_BIN"):
        return os.path.abspath(os.environ["DBGUARD_BIN"])
    subprocess.run(["cargo", "build", "--quiet", "--all-targets"],
                   cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": TARGET})
    return os.path.join(TARGET, "debug", "dbguard")


def env(home, binary):
    """A hermetic environment for git and dbguard, with `binary`'s directory first on PATH."""
    e = dict(os.environ)
    e.update({
        "HOME": home, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.path.join(home, ".gitconfig"),
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com",
        "DBGUARD_NO_PROMPT": "1", "NO_COLOR": "1",
    })
    e["PATH"] = os.path.dirname(binary) + os.pathsep + e["PATH"]
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, ".gitconfig"), "w") as f:
        f.write("[init]\n\tdefaultBranch = main\n")
    return e


def run(cmd, cwd=None, env=None):
    """Run a command, failing loudly; return its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd} failed: {proc.stderr.decode(errors='replace')}")
    return elapsed


def peak_rss_kib(cmd, cwd=None, env=None):
    """Peak RSS of one command, measured in a fresh interpreter so earlier children don't count."""
    code = ("import resource,subprocess,sys;"
            "p=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if p.returncode==0 else -1)")
    out = subprocess.run([sys.executable, "-c", code, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    return int(out.stdout.strip() or -1)


def median_time(cmd, repeat, cwd=None, env=None, setup=None):
    times = []
    for _ in range(repeat):
        if setup:
            setup()
        times.append(run(cmd, cwd=cwd, env=env))
    return statistics.median(times)


def git(args, cwd, env):
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def make_posts_db(path, rows, body_len):
    """A SQLite database like the crawler's: posts(id, author, body), rollback journal."""
    if os.path.exists(path):
        os.remove(path)
    sql = f"""
    PRAGMA journal_mode=DELETE;
    CREATE TABLE posts(id INTEGER PRIMARY KEY, author TEXT, body TEXT, score REAL, raw BLOB);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {rows})
    INSERT INTO posts(author, body, score, raw)
      SELECT 'author' || (i % 997), printf('%.{body_len}c', 'x') || hex(randomblob(24)), i * 0.5,
             CASE WHEN i % 10 = 0 THEN randomblob(16) END FROM n;
    """
    subprocess.run(["sqlite3", path], input=sql, text=True, check=True, stdout=subprocess.DEVNULL)
