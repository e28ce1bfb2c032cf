"""Hooks benchmark (issue: hooks).

In one run, three identical repositories: no hooks ("plain"), the same hook files
dbguard installs but each only `#!/bin/sh` + `exit 0` ("empty": what any hook costs on
this machine, the floor for every hook manager), and dbguard's hooks ("dbguard").
Measured: `git checkout` of a branch pair that touches no database (goal <= +10 ms over
plain), and a local-branch commit (goal <= +5 ms over plain). Prints the added times and
ratios against both. With core.fsmonitor set (the default) dbguard installs no
reference-transaction or pre-rebase hook (git would run reference-transaction 8 times
per checkout, 5 per commit); HOOKS=all puts all six empty hooks into "empty" anyway, to
show what those cost. DBGUARD_BIN=<target>/release/dbguard measures a release build.
With --without-db the worktrees hold no database at all: the fsmonitor hook's fast path
(no dbguard start while the file watcher shows no database appearing) is what is measured.
Usage: python3 bench/hooks.py [--runs N] [--without-db]
"""
import argparse
import os
import shutil
import statistics
import time

from common import dbguard_bin, env, fresh_dir, git, make_posts_db, run

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=30)
parser.add_argument("--dir", default="/tmp/dbguard-bench-hooks")
parser.add_argument("--without-db", action="store_true",
                    help="no database in the worktrees (the fsmonitor hook's fast path)")
args = parser.parse_args()

binary = dbguard_bin()
base = fresh_dir(args.dir)
e = env(os.path.join(base, "home"), binary)


ALL_HOOKS = ["post-checkout", "post-merge", "post-rewrite", "pre-commit", "pre-rebase", "reference-transaction"]


def make_repo(name, hooks):
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
    if not args.without_db:
        make_posts_db(os.path.join(work, "app.db"), 10_000, 50)
    if hooks == "dbguard":
        run([binary, "install", "--quiet"], cwd=work, env=e)
    elif hooks == "empty":
        # The files dbguard's install made in its repository (made first), or all six.
        installed = [h for h in ALL_HOOKS if os.path.exists(os.path.join(base, "dbguard", ".git", "hooks", h))]
        for hook in (ALL_HOOKS if os.environ.get("HOOKS") == "all" else installed):
            path = os.path.join(work, ".git", "hooks", hook)
            with open(path, "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            os.chmod(path, 0o755)
    return work


made = {label: make_repo(label, label) for label in ("dbguard", "plain", "empty")}
repos = {label: made[label] for label in ("plain", "empty", "dbguard")}
for label in ("empty", "dbguard"):
    print(f"hook files ({label}):", " ".join(h for h in ALL_HOOKS
                                            if os.path.exists(os.path.join(made[label], ".git", "hooks", h))))
# Steady state, as when a user checks out minutes after `dbguard install`: the hooks'
# watch file is stamped a second before dbguard's last look, so let that second pass
# and let one checkout pair refresh it.
# Twice: the first pair may re-snapshot a database whose install-time snapshot was taken
# while it was still being written.
for _ in range(2):
    time.sleep(2.1)
    for work in repos.values():
        run(["git", "checkout", "-q", "other"], cwd=work, env=e)
        run(["git", "checkout", "-q", "main"], cwd=work, env=e)
checkout = {label: [] for label in repos}
commit = {label: [] for label in repos}
for i in range(args.runs):
    for label, work in repos.items():
        checkout[label].append(run(["git", "checkout", "-q", "other"], cwd=work, env=e)
                               + run(["git", "checkout", "-q", "main"], cwd=work, env=e))
        with open(os.path.join(work, "log.txt"), "a") as f:
            f.write(f"{i}\n")
        git(["add", "log.txt"], work, e)
        commit[label].append(run(["git", "commit", "-q", "--no-verify", "-m", f"c{i}"], cwd=work, env=e))

for name, data, goal, per in (("git checkout, no database touched", checkout, 10, 2),
                              ("local commit (--no-verify)", commit, 5, 1)):
    p, empty, d = (statistics.median(data[label]) * 1000 / per for label in ("plain", "empty", "dbguard"))
    verdict = "met" if d - p <= goal else "NOT met"
    print(f"{name}: plain {p:5.1f} ms, empty sh hooks {empty:5.1f} ms, dbguard {d:5.1f} ms per command")
    print(f"  dbguard adds {d - p:+5.1f} ms to plain git (goal <= +{goal} ms: {verdict}), ratio {d / p:.2f}x; "
          f"empty hooks alone add {empty - p:+5.1f} ms, so dbguard's own share is {d - empty:+5.1f} ms "
          f"(ratio to empty hooks {d / empty:.2f}x)")
shutil.rmtree(base, ignore_errors=True)
