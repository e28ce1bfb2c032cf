"""Hooks benchmark (issue: hooks).

In one run: `git checkout` of a branch pair that touches no database, with and without
dbguard's hooks installed (goal <= +10 ms), and a local-branch commit, whose
reference-transaction hook must leave at once (goal <= +5 ms). Prints the ratios.
Usage: python3 bench/hooks.py [--runs N]
"""
import argparse
import os
import shutil
import statistics

from common import dbguard_bin, env, fresh_dir, git, make_posts_db, run

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=30)
parser.add_argument("--dir", default="/tmp/dbguard-bench-hooks")
args = parser.parse_args()

binary = dbguard_bin()
base = fresh_dir(args.dir)
e = env(os.path.join(base, "home"), binary)


def make_repo(name, install):
    work = os.path.join(base, name)
    os.makedirs(work)
    git(["init", "-q"], work, e)
    for i in range(50):
        with open(os.path.join(work, f"file{i}.txt"), "w") as f:
            f.write(f"content {i}\n")
    git(["add", "."], work, e)
    git(["commit", "-q", "-m", "init"], work, e)
    git(["branch", "other"], work, e)
    with open(os.path.join(work, "file0.txt"), "a") as f:
        f.write("changed on main\n")
    git(["commit", "-q", "-am", "change"], work, e)
    # A database that no checkout touches (ignored, unchanged): the common case.
    with open(os.path.join(work, ".git", "info", "exclude"), "a") as f:
        f.write("app.db\n")
    make_posts_db(os.path.join(work, "app.db"), 10_000, 50)
    if install:
        run([binary, "install", "--quiet"], cwd=work, env=e)
    return work


plain, hooked = make_repo("plain", False), make_repo("hooked", True)
checkout = {"plain": [], "hooked": []}
commit = {"plain": [], "hooked": []}
for i in range(args.runs):
    for label, work in (("plain", plain), ("hooked", hooked)):
        checkout[label].append(run(["git", "checkout", "-q", "other"], cwd=work, env=e)
                               + run(["git", "checkout", "-q", "main"], cwd=work, env=e))
        with open(os.path.join(work, "log.txt"), "a") as f:
            f.write(f"{i}\n")
        git(["add", "log.txt"], work, e)
        commit[label].append(run(["git", "commit", "-q", "--no-verify", "-m", f"c{i}"], cwd=work, env=e))

for name, data, goal in (("checkout (x2, no database touched)", checkout, 10), ("local commit (reference-transaction)", commit, 5)):
    p, h = statistics.median(data["plain"]) * 1000, statistics.median(data["hooked"]) * 1000
    per = 2 if name.startswith("checkout") else 1
    print(f"{name:40s} plain {p:6.1f} ms  hooked {h:6.1f} ms  added {(h - p) / per:+5.1f} ms per command "
          f"(goal <= +{goal} ms), ratio {h / p:.2f}x")
shutil.rmtree(base, ignore_errors=True)
