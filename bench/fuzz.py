"""Property tests of the decoders of everything dbguard reads from outside, run for a
bounded time (issue 29): pack frames (`store::packs`), pack indexes, snapshot records and
block runs fetched from remotes (`store::replica`), Parquet metadata and damaged Parquet
files (`import`). They are the `fuzz_` tests of the library; `cargo test` runs each with
proptest's 256 cases, and this script runs them round after round, each round with new
random inputs, until the time is up.

Prints the number of cases run per property and in all. A failing case stops the run:
proptest prints the smallest input it found (and keeps it under proptest-regressions/).

Usage: python3 bench/fuzz.py [--seconds 300] [--cases 2000] [--filter fuzz_]
"""
import argparse
import os
import re
import subprocess
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300, help="time budget")
    parser.add_argument("--cases", type=int, default=2000, help="cases per property per round")
    parser.add_argument("--filter", default="fuzz_", help="test name filter")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PROPTEST_CASES=str(args.cases))
    command = ["cargo", "test", "--all-targets", "--quiet", "--", args.filter, "--test-threads=2"]
    started = time.monotonic()
    per_test = {}
    rounds = 0
    while time.monotonic() - started < args.seconds:
        run = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        output = run.stdout + run.stderr
        if run.returncode != 0:
            print(output[-6000:])
            print(f"FAILED in round {rounds + 1}", file=sys.stderr)
            sys.exit(1)
        passed = re.findall(r"^test (\S*fuzz_\S*) \.\.\. ok$", output, re.M)
        if not passed:
            # --quiet prints dots: ask for the names once.
            listed = subprocess.run(
                ["cargo", "test", "--all-targets", "--quiet", "--", args.filter, "--list"],
                cwd=root, capture_output=True, text=True,
            ).stdout
            passed = re.findall(r"^(\S*fuzz_\S*): test$", listed, re.M)
        for name in passed:
            per_test[name] = per_test.get(name, 0) + args.cases
        rounds += 1
    elapsed = time.monotonic() - started
    for name, cases in sorted(per_test.items()):
        print(f"{cases:>10,}  {name}")
    total = sum(per_test.values())
    print(f"{total:>10,}  cases in all, {rounds} rounds, {elapsed:.0f} s, no failure")


if __name__ == "__main__":
    main()
