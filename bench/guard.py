"""Guard benchmark (issue: guarded git commands).

`dbguard pull` vs `git pull` against a local remote with nothing new and five unchanged
databases in the worktree: goal <= +15 ms median added. Prints the ratio.
Usage: python3 bench/guard.py [--runs N]
"""
import argparse
import os
import statistics

from common import dbguard_bin, env, fresh_dir, git, make_posts_db, run

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=40)
parser.add_argument("--dir", default="/tmp/dbguard-bench-guard")
args = parser.parse_args()

binary = dbguard_bin()
base = fresh_dir(args.dir)
e = env(os.path.join(base, "home"), binary)
origin = os.path.join(base, "origin")
os.makedirs(origin)
git(["init", "-q"], origin, e)
with open(os.path.join(origin, "README"), "w") as f:
    f.write("bench\n")
git(["add", "README"], origin, e)
git(["commit", "-q", "-m", "init"], origin, e)
remote = os.path.join(base, "remote.git")
git(["clone", "-q", "--bare", origin, remote], base, e)
work = os.path.join(base, "work")
git(["clone", "-q", remote, work], base, e)
for i in range(5):
    make_posts_db(os.path.join(work, f"db{i}.db"), 20_000, 50)

plain, guarded = [], []
for _ in range(args.runs):
    # Interleave so both see the same machine state.
    plain.append(run(["git", "pull", "-q"], cwd=work, env=e))
    guarded.append(run([binary, "pull", "-q"], cwd=work, env=e))
p, g = statistics.median(plain), statistics.median(guarded)
print(f"git pull      median {p * 1000:6.1f} ms")
print(f"dbguard pull  median {g * 1000:6.1f} ms   added {(g - p) * 1000:+.1f} ms (goal <= +15 ms), ratio {g / p:.2f}x")
