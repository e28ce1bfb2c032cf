#!/usr/bin/env python3
"""PROTOTYPE (probe only, not dbguard code): a stateful, monitor-less fsmonitor v2 hook.

The token names a saved stat snapshot of the whole worktree (tracked, untracked,
ignored; .git excluded). The answer is exactly the paths whose lstat data differ
between that snapshot and now (added, removed, changed), plus "racy" paths whose
mtime is within RACY_NS of the old snapshot's scan start (a same-jiffy write after
the scan keeps the same mtime). Unknown/missing token => "/" (always correct).
Because git passes the token stored in .git/index, "changed since token" is always
relative to the on-disk index state, even when git does not rewrite the index.
"""
import json, os, sys, time, uuid

RACY_NS = int(os.environ.get("FSMP_RACY_NS", str(50_000_000)))  # 50 ms
tok = sys.argv[2] if len(sys.argv) > 2 else ""
wt = os.getcwd()
sd = os.path.join(wt, ".git", "fsmp-state")
os.makedirs(sd, exist_ok=True)
t_scan = time.time_ns()
cur = {}
for dp, dns, fns in os.walk(wt):
    if dp == wt and ".git" in dns:
        dns.remove(".git")
    rel = os.path.relpath(dp, wt)
    for fn in fns:
        p = fn if rel == "." else f"{rel}/{fn}"
        try:
            st = os.lstat(os.path.join(dp, fn))
        except FileNotFoundError:
            continue
        cur[p] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)
new = uuid.uuid4().hex
with open(os.path.join(sd, new + ".json"), "w") as f:
    json.dump({"t": t_scan, "files": cur}, f)
prev = None
if tok and all(c in "0123456789abcdef" for c in tok):
    try:
        with open(os.path.join(sd, tok + ".json")) as f:
            prev = json.load(f)
    except (OSError, ValueError):
        prev = None
out = sys.stdout.buffer
out.write(new.encode() + b"\0")
if prev is None:
    out.write(b"/\0")
else:
    old, t0 = prev["files"], prev["t"]
    changed = {p for p, s in cur.items() if tuple(old.get(p, ())) != s or s[1] >= t0 - RACY_NS}
    changed |= set(old) - set(cur)
    for p in sorted(changed):
        out.write(p.encode() + b"\0")
# prune: keep the token we were given and the 8 newest snapshots
keep = {tok + ".json", new + ".json"}
snaps = sorted(os.listdir(sd), key=lambda n: os.path.getmtime(os.path.join(sd, n)))
for n in snaps[:-8]:
    if n not in keep:
        try:
            os.remove(os.path.join(sd, n))
        except OSError:
            pass
