#!/usr/bin/env python3
"""Re-verify every claim in docs/fsmonitor.md against the installed git.

Usage: python3 bench/fsmonitor_probe.py [step ...]      (steps 1..6, 4big; default 1-6)
       FSMP_BIG=100000 FSMP_RUNS=21 python3 bench/fsmonitor_probe.py 4 6

Runs sequentially (one git at a time), everything under a fresh /tmp dir,
HOME pointed at a private dir so user config cannot interfere. Prints one
RESULT line per claim. No cargo, no network.
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = tempfile.mkdtemp(prefix="fsmp-")
HOME = os.path.join(ROOT, "home")
os.makedirs(HOME)
with open(os.path.join(HOME, ".gitconfig"), "w") as f:
    f.write("[user]\n\tname = probe\n\temail = probe@example.invalid\n"
            "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
HOOK = os.path.join(ROOT, "hook.sh")
HOOK_SP = os.path.join(ROOT, "dir with space", "hook.sh")
PREV = os.path.join(ROOT, "prev-hook.sh")
STATEFUL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fsmonitor_stateful_hook.py")
DBGUARD = "/root/.cache/dbguard-target/debug/dbguard"
RUNS = int(os.environ.get("FSMP_RUNS", "21"))
BIG = int(os.environ.get("FSMP_BIG", "100000"))

# The hook under test. Behaviour chosen at call time by $FSMP_MODE (git passes
# its environment through); every call appends a record to $FSMP_LOG.
HOOK_TEXT = r'''#!/bin/sh
if [ -n "$FSMP_LOG" ]; then
  gp=$(cut -d' ' -f4 /proc/$PPID/stat)
  {
    printf 'CALL argv0=%s args=%s\n' "$0" "$*"
    printf 'cwd=%s\n' "$(pwd)"
    printf 'parent=%s\n' "$(tr '\0' ' ' </proc/$PPID/cmdline)"
    printf 'gparent=%s\n' "$(tr '\0' ' ' </proc/$gp/cmdline)"
    printf 'env=%s\n' "$(env | grep '^GIT_' | sort | tr '\n' ' ')"
    printf 'stdin=%s\n' "$(readlink /proc/$$/fd/0)"
    if [ -t 2 ]; then echo stderr_tty=yes; else echo stderr_tty=no; fi
    if [ -e "$FSMP_GITDIR/index.lock" ]; then echo lock=held; else echo lock=free; fi
    if [ -n "$FSMP_WATCH" ]; then
      if [ -e "$FSMP_WATCH" ]; then printf 'watch=%s\n' "$(cksum <"$FSMP_WATCH")"; else echo watch=gone; fi
    fi
    echo END
  } >>"$FSMP_LOG"
fi
case "$FSMP_MODE" in
  slash-const)    printf 'const\0/\0' ;;
  slash-echo)     printf '%s\0/\0' "$2" ;;
  slash-changing) printf 't%s\0/\0' "$(date +%s%N)" ;;
  fail)           exit 1 ;;
  empty-list)     printf 'const\0' ;;
  empty-output)   exit 0 ;;
  exact|exact-changing|exact-untracked)
    tok=exact; [ "$FSMP_MODE" = exact-changing ] && tok="t$(date +%s%N)"
    printf '%s\0' "$tok"
    GIT_OPTIONAL_LOCKS=0 git -c core.fsmonitor=false diff-files --name-only -z
    if [ "$FSMP_MODE" = exact-untracked ]; then
      GIT_OPTIONAL_LOCKS=0 git -c core.fsmonitor=false ls-files -z -o --exclude-standard --directory
    fi ;;
  list-a)         printf 'const\0a.txt\0' ;;
  stateful)       exec /usr/bin/python3 "$FSMP_STATEFUL" "$@" ;;
  recurse)
    d=${FSMP_DEPTH:-0}; echo "depth=$d" >>"$FSMP_LOG"
    if [ "$d" -lt 3 ]; then FSMP_DEPTH=$((d+1)) git status --porcelain >/dev/null 2>&1; fi
    printf 'const\0/\0' ;;
  chain)
    # relay the previous hook's answer byte for byte, same arguments
    exec "$FSMP_PREV" "$@" ;;
  python)  /usr/bin/python3 -c pass; printf 'const\0/\0' ;;
  dbguard) "$FSMP_DBGUARD" --version >/dev/null; printf 'const\0/\0' ;;
  *)              printf 'const\0/\0' ;;
esac
'''

PREV_TEXT = r'''#!/bin/sh
# a stand-in "previous" fsmonitor hook with its own token scheme
n=$(cat "$FSMP_PREVSTATE" 2>/dev/null || echo 0); n=$((n+1)); echo $n >"$FSMP_PREVSTATE"
echo "prev got: $*" >>"$FSMP_PREVLOG"
printf 'prev:%s\0/\0' "$n"
'''

for p, t in ((HOOK, HOOK_TEXT), (HOOK_SP, HOOK_TEXT), (PREV, PREV_TEXT)):
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(t)
    os.chmod(p, 0o755)


def base_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "FSMP_"))}
    env.update(HOME=HOME, LC_ALL="C", FSMP_STATEFUL=STATEFUL, XDG_CONFIG_HOME=os.path.join(HOME, ".config"))
    env.update(extra)
    return env


def result(step, claim, value):
    print(f"RESULT [{step}] {claim}: {value}", flush=True)


def git(repo, *args, env=None, check=False, stdin=subprocess.DEVNULL, **kw):
    if "input" in kw:
        stdin = None
    e = base_env(FSMP_GITDIR=os.path.join(repo, ".git"))
    if env:
        e.update(env)
    r = subprocess.run(["git", *args], cwd=repo, env=e, stdin=stdin,
                       capture_output=True, text=True, **kw)
    if check and r.returncode:
        raise RuntimeError(f"git {args} failed: {r.stderr}")
    return r


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read_log(path):
    try:
        with open(path) as f:
            txt = f.read()
    except FileNotFoundError:
        return []
    calls, cur = [], None
    for line in txt.splitlines():
        if line.startswith("CALL "):
            cur = {"argv": line[5:]}
        elif line == "END" and cur is not None:
            calls.append(cur); cur = None
        elif cur is not None and "=" in line:
            k, v = line.split("=", 1); cur[k] = v
    return calls


def idx_stat(repo):
    st = os.stat(os.path.join(repo, ".git", "index"))
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def cksum(path):
    if not os.path.exists(path):
        return "gone"
    return subprocess.run(["cksum"], stdin=open(path, "rb"), capture_output=True, text=True).stdout.strip()


_n = [0]
def make_repo(name=None):
    """main: a.txt posts.db data/crawl2.db .gitignore; branch other = main + 3 commits to posts.db and a.txt"""
    _n[0] += 1
    repo = os.path.join(ROOT, name or f"r{_n[0]}")
    os.makedirs(repo)
    git(repo, "init", "-q", check=True)
    write(f"{repo}/a.txt", "a\n")
    write(f"{repo}/posts.db", "rows 5000\n")
    write(f"{repo}/data/crawl2.db", "crawl v1\n")
    write(f"{repo}/.gitignore", "ign.db\n")
    git(repo, "add", "-A", check=True)
    git(repo, "commit", "-qm", "base", check=True)
    git(repo, "branch", "other", check=True)
    git(repo, "checkout", "-q", "other", check=True)
    for i in (1, 2, 3):
        write(f"{repo}/posts.db", f"rows other {i}\n")
        write(f"{repo}/a.txt", f"a other {i}\n")
        git(repo, "commit", "-qam", f"other {i}", check=True)
    git(repo, "checkout", "-q", "main", check=True)
    write(f"{repo}/ign.db", "ignored rows 1000\n")
    return repo


def enable(repo, hook=HOOK, version="2"):
    git(repo, "config", "core.fsmonitor", hook, check=True)
    if version:
        git(repo, "config", "core.fsmonitorHookVersion", version, check=True)


# ---------------------------------------------------------------- step 1
def step1():
    S = 1
    repo = make_repo()
    log = os.path.join(ROOT, "log1a")
    enable(repo)
    git(repo, "status", env={"FSMP_MODE": "slash-const"})      # prime the fsmonitor extension
    r = git(repo, "-c", "foo.bar=baz", "status", "--porcelain", env={"FSMP_LOG": log, "FSMP_MODE": "slash-const"},
            stdin=subprocess.PIPE, input="")
    calls = read_log(log)
    c = calls[0] if calls else {}
    result(S, "calls for one `git -c foo.bar=baz status`", len(calls))
    result(S, "argv (absolute path, no metachar)", f"$0={c.get('argv')}")
    result(S, "cwd", c.get("cwd") + (" (= worktree root)" if c.get("cwd") == repo else " (NOT worktree root)"))
    result(S, "parent cmdline (abs path)", c.get("parent"))
    result(S, "grandparent cmdline (abs path)", c.get("gparent"))
    result(S, "GIT_* env seen by hook", c.get("env") or "(none)")
    result(S, "hook stdin when git's stdin is a pipe", c.get("stdin"))
    log = os.path.join(ROOT, "log1null")
    git(repo, "status", env={"FSMP_LOG": log})
    result(S, "hook stdin when git's stdin is /dev/null", (read_log(log) or [{}])[0].get("stdin"))
    # subdirectory cwd
    log = os.path.join(ROOT, "log1sub")
    git(os.path.join(repo, "data"), "status", env={"FSMP_LOG": log, "FSMP_GITDIR": os.path.join(repo, ".git")})
    c = (read_log(log) or [{}])[0]
    result(S, "cwd when git runs from data/", c.get("cwd"))
    result(S, "GIT_* env when git runs from data/", c.get("env") or "(none)")
    # command with a space: "sh -c"
    for label, val in (("path with space", HOOK_SP), ("single-quoted path with space", f"'{HOOK_SP}'"),
                       ("command + args 'hook.sh extra'", f"{HOOK} extra")):
        log = os.path.join(ROOT, "log1b" + str(len(val)))
        git(repo, "status", env={"FSMP_MODE": "slash-const"})  # leave a valid token behind
        git(repo, "config", "core.fsmonitor", val, check=True)
        r = git(repo, "status", env={"FSMP_LOG": log})
        c = (read_log(log) or [{}])[0]
        result(S, f"{label}: argv / git stderr", (c.get("argv"), r.stderr.strip()[:120]))
        result(S, f"{label}: parent", c.get("parent"))
        result(S, f"{label}: grandparent", c.get("gparent"))
    enable(repo)
    # strace: what git exec()s (shows sh -c and whether dash execs the hook)
    if shutil.which("strace"):
        git(repo, "config", "core.fsmonitor", f"{HOOK} extra", check=True)
        out = os.path.join(ROOT, "strace1")
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", out, "git", "status"], cwd=repo,
                       env=base_env(), capture_output=True)
        ex = [l.split("execve(", 1)[1][:160] for l in open(out) if "execve(" in l and "= 0" in l and "hook.sh" in l or ("execve(" in l and "/bin/sh" in l)]
        result(S, "execve with command+args (strace)", " | ".join(ex[:3]))
        enable(repo)
    # terminal on stderr
    log = os.path.join(ROOT, "log1tty")
    subprocess.run(["script", "-qec", "git status >/dev/null", "/dev/null"], cwd=repo,
                   env=base_env(FSMP_LOG=log, FSMP_GITDIR=os.path.join(repo, ".git")), capture_output=True)
    c = (read_log(log) or [{}])[0]
    result(S, "stderr is a tty when git runs on a terminal", c.get("stderr_tty"))
    result(S, "stdin when git runs on a terminal", c.get("stdin"))
    # hook's stderr reaches the user's stderr
    write(os.path.join(ROOT, "errhook.sh"), "#!/bin/sh\necho 'dbguard: hello from hook' >&2\nprintf 'c\\0/\\0'\n")
    os.chmod(os.path.join(ROOT, "errhook.sh"), 0o755)
    git(repo, "config", "core.fsmonitor", os.path.join(ROOT, "errhook.sh"), check=True)
    r = git(repo, "status", "--porcelain")
    result(S, "hook stderr reaches git's stderr", repr(r.stderr.strip()))
    enable(repo)
    # recursion
    log = os.path.join(ROOT, "log1rec")
    git(repo, "status", env={"FSMP_LOG": log, "FSMP_MODE": "recurse"})
    depths = [l for l in open(log).read().splitlines() if l.startswith("depth=")]
    result(S, "inner `git status` in hook re-enters the hook (depth guard 3)", " ".join(depths))
    # hook version unset: v2 then v1 on failure
    git(repo, "config", "--unset", "core.fsmonitorHookVersion")
    log = os.path.join(ROOT, "log1ver")
    git(repo, "status", env={"FSMP_LOG": log, "FSMP_MODE": "fail"})
    result(S, "version unset + failing hook: calls", [c["argv"].split(" args=")[1] for c in read_log(log)])
    log = os.path.join(ROOT, "log1ver2")
    git(repo, "status", env={"FSMP_LOG": log, "FSMP_MODE": "slash-const"})
    result(S, "version unset + v2 answer: calls", [c["argv"].split(" args=")[1] for c in read_log(log)])
    # missing program
    git(repo, "config", "core.fsmonitor", "/nonexistent/hook", check=True)
    r = git(repo, "status", "--porcelain")
    result(S, "missing hook program: rc / stderr", f"{r.returncode} / {r.stderr.strip()!r}")


# ---------------------------------------------------------------- step 2
CASES = [
    # (label, setup(repo) , argv, watched path relative)
    ("reset --hard", "mod", ["reset", "--hard"], "posts.db"),
    ("reset --keep other", None, ["reset", "--keep", "other"], "posts.db"),
    ("reset --merge other", None, ["reset", "--merge", "other"], "posts.db"),
    ("checkout other", None, ["checkout", "-q", "other"], "posts.db"),
    ("checkout -f other", "mod", ["checkout", "-qf", "other"], "posts.db"),
    ("checkout -- posts.db", "mod", ["checkout", "--", "posts.db"], "posts.db"),
    ("switch other", None, ["switch", "-q", "other"], "posts.db"),
    ("restore posts.db", "mod", ["restore", "posts.db"], "posts.db"),
    ("clean -fdx", None, ["clean", "-fdxq"], "ign.db"),
    ("stash push", "mod", ["stash", "push", "-q"], "posts.db"),
    ("stash -u", "untr", ["stash", "push", "-qu"], "untr.db"),
    ("stash -a", None, ["stash", "push", "-qa"], "ign.db"),
    ("stash pop", "stashed", ["stash", "pop", "-q"], "posts.db"),
    ("stash drop", "stashed", ["stash", "drop", "-q"], "posts.db"),
    ("rm -f posts.db", "mod", ["rm", "-qf", "posts.db"], "posts.db"),
    ("mv posts.db moved.db", None, ["mv", "posts.db", "moved.db"], "posts.db"),
    ("merge other (ff)", None, ["merge", "-q", "other"], "posts.db"),
    ("pull . other (merge)", "diverge", ["pull", "-q", "--no-rebase", "--no-edit", ".", "other"], "posts.db"),
    ("pull --rebase . other", "diverge", ["pull", "-q", "--rebase", ".", "other"], "posts.db"),
    ("rebase other", "diverge", ["rebase", "-q", "other"], "posts.db"),
    ("cherry-pick other~2", None, ["cherry-pick", "other~2"], "posts.db"),
    ("revert (on other)", "on-other", ["revert", "--no-edit", "HEAD"], "posts.db"),
    ("am", "patch", ["am", "-q", "PATCH"], "posts.db"),
    ("read-tree -u -m other", None, ["read-tree", "-u", "-m", "other"], "posts.db"),
    ("checkout-index -f -a", "mod", ["checkout-index", "-f", "-a"], "posts.db"),
    ("sparse-checkout set nothing", None, ["sparse-checkout", "set", "nothing"], "data/crawl2.db"),
    ("bisect start other main", None, ["bisect", "start", "other", "main"], "posts.db"),
    ("worktree add", None, ["worktree", "add", "-q", "WT", "other"], "posts.db"),
    ("status", "mod", ["status", "--porcelain"], "posts.db"),
    ("status --no-optional-locks", "mod", ["--no-optional-locks", "status", "--porcelain"], "posts.db"),
    ("diff", "mod", ["diff", "--quiet"], "posts.db"),
    ("add a.txt", "mod", ["add", "a.txt"], "posts.db"),
    ("commit -am", "mod", ["commit", "-qam", "x"], "posts.db"),
    ("log", None, ["log", "-1", "--format=%h"], "posts.db"),
    ("show", None, ["show", "--stat", "HEAD"], "posts.db"),
    ("ls-files", None, ["ls-files"], "posts.db"),
    ("ls-files -m", "mod", ["ls-files", "-m"], "posts.db"),
    ("-c core.fsmonitor=false reset --hard", "mod", ["-c", "core.fsmonitor=false", "reset", "--hard"], "posts.db"),
    ("fetch", None, ["fetch", "-q", "."], "posts.db"),
    ("update-index --refresh", "mod", ["update-index", "-q", "--refresh"], "posts.db"),
]


def setup_case(repo, kind):
    if kind == "mod":
        time.sleep(0.01)
        write(f"{repo}/posts.db", "rows 90000 local\n")
    elif kind == "untr":
        write(f"{repo}/untr.db", "untracked rows\n")
    elif kind == "stashed":
        write(f"{repo}/posts.db", "rows 90000 local\n")
        git(repo, "stash", "-q", check=True)
    elif kind == "diverge":
        write(f"{repo}/b.txt", "local\n")
        git(repo, "add", "b.txt", check=True)
        git(repo, "commit", "-qm", "local", check=True)
    elif kind == "on-other":
        git(repo, "checkout", "-q", "other", check=True)
    elif kind == "patch":
        r = git(repo, "format-patch", "-1", "--stdout", "other~2", check=True)
        write(f"{ROOT}/p.patch", r.stdout)


def step2():
    S = 2
    print(f"# [{S}] per command: n calls; per call: parent argv | index.lock | watched file at call time (pre=unchanged, POST=already written)")
    for label, kind, argv, watch in CASES:
        repo = make_repo()
        enable(repo)
        git(repo, "status", env={"FSMP_MODE": "slash-const"})  # prime
        setup_case(repo, kind)
        argv = [a.replace("PATCH", f"{ROOT}/p.patch").replace("WT", f"{repo}-wt") for a in argv]
        wpath = os.path.join(repo, watch)
        before = cksum(wpath)
        log = os.path.join(ROOT, f"log2-{_n[0]}")
        r = git(repo, *argv, env={"FSMP_LOG": log, "FSMP_WATCH": wpath, "GIT_EDITOR": "true"})
        after = cksum(wpath)
        calls = read_log(log)
        desc = []
        for c in calls:
            w = c.get("watch", "?")
            state = "pre" if w == before else ("POST" if w == after else f"other({w})")
            if before == after:
                state = "unchanged-by-cmd"
            parent = c.get("parent", "").strip()
            if "libexec" in parent:
                parent += " <- " + c.get("gparent", "").strip()
            if c.get("cwd") != repo:
                parent += f" (cwd {c.get('cwd')})"
            if c.get("stdin", "").startswith("pipe:"):
                parent += " (hook stdin = git's stdin pipe)"
            desc.append(f"[{parent} | lock={c.get('lock')} | {state}]")
        wrote = "writes watched file" if before != after else "watched file untouched"
        result(S, f"{label} (rc={r.returncode}, {wrote}) calls={len(calls)}", " ".join(desc) or "-")


# ---------------------------------------------------------------- step 3
def step3():
    S = 3
    for mode in ("slash-const", "empty-list", "fail", "empty-output", "exact", "exact-untracked", "list-a", "stateful"):
        res = {}
        for cmd in ("status", "checkout"):
            repo = make_repo()
            enable(repo)
            git(repo, "status", env={"FSMP_MODE": "slash-const"})  # prime: index written, all entries fsmonitor-valid
            time.sleep(1.1)  # not racy
            write(f"{repo}/a.txt", "local edit, different size\n")
            if cmd == "status":
                r = git(repo, "status", "--porcelain", env={"FSMP_MODE": mode})
                res["status lists a.txt"] = ("a.txt" in r.stdout)
                res["status stderr"] = r.stderr.strip()[:80]
            else:
                r = git(repo, "checkout", "-q", "other", env={"FSMP_MODE": mode})
                with open(f"{repo}/a.txt") as f:
                    content = f.read()
                res["checkout other refused"] = r.returncode != 0
                res["local edit kept"] = content.startswith("local edit")
        result(S, f"answer={mode}", res)
    # same-size edit within the same second as the index write (racy), exact answer
    for mode in ("exact", "empty-list", "stateful"):
        repo = make_repo()
        enable(repo)
        write(f"{repo}/a.txt", "b\n")
        git(repo, "status", env={"FSMP_MODE": "slash-const"})
        write(f"{repo}/a.txt", "c\n")      # same size, same second as the index write
        r = git(repo, "status", "--porcelain", env={"FSMP_MODE": mode})
        result(S, f"racy same-second same-size edit, answer={mode}: status lists a.txt", "a.txt" in r.stdout)
    # new untracked file with untracked cache on: exact (tracked only) vs exact-untracked
    for mode in ("exact", "exact-untracked", "slash-const", "stateful"):
        repo = make_repo()
        enable(repo)
        git(repo, "config", "core.untrackedCache", "true")
        git(repo, "status", env={"FSMP_MODE": "slash-const"})
        git(repo, "status", env={"FSMP_MODE": mode})
        time.sleep(1.1)
        write(f"{repo}/newfile.db", "x\n")
        write(f"{repo}/data/new2.db", "x\n")
        r = git(repo, "status", "--porcelain", env={"FSMP_MODE": mode})
        result(S, f"untrackedCache=true, new untracked files, answer={mode}: status shows them",
               ("newfile.db" in r.stdout, "data/" in r.stdout))


# ---------------------------------------------------------------- step 4
def count_rewrites(repo, mode, n=4, extra=(), env=None):
    e = {"FSMP_MODE": mode} if mode else {}
    if env:
        e.update(env)
    for _ in range(2):
        git(repo, *extra, "status", "--porcelain", env=e)  # settle
    changes = 0
    for _ in range(n):
        s0 = idx_stat(repo)
        time.sleep(0.02)
        git(repo, *extra, "status", "--porcelain", env=e)
        if idx_stat(repo) != s0:
            changes += 1
    return changes


def configure(repo, mode, uc):
    if mode is None:
        git(repo, "config", "--unset-all", "core.fsmonitor")
        git(repo, "config", "--unset-all", "core.fsmonitorHookVersion")
    else:
        enable(repo)
    git(repo, "config", "core.untrackedCache", uc)


MODES4 = [None, "slash-const", "slash-echo", "slash-changing", "fail", "exact", "exact-changing", "exact-untracked", "stateful"]


def editor_loop(repo, mode, n_max=12, idle=0.6):
    """poll .git/index mtime every 20 ms; run `git status` on each change (no --no-optional-locks)"""
    e = {"FSMP_MODE": mode} if mode else {}
    os.utime(os.path.join(repo, ".git", "index"))  # an external change starts the loop
    last, runs, quiet_since = None, 0, time.time()
    while runs < n_max and time.time() - quiet_since < idle:
        s = idx_stat(repo)
        if s != last:
            last = s
            git(repo, "status", "--porcelain", env=e)
            runs += 1
            quiet_since = time.time()
        time.sleep(0.02)
    return runs


def step4():
    S = 4
    for state in ("clean", "modified tracked file", "untracked file"):
        for uc in ("false", "true"):
            row = {}
            for mode in MODES4:
                repo = make_repo()
                configure(repo, mode, uc)
                git(repo, "status", env={"FSMP_MODE": mode or ""})
                time.sleep(1.1)
                if state == "modified tracked file":
                    write(f"{repo}/a.txt", "local edit\n")
                elif state == "untracked file":
                    write(f"{repo}/data/new.db", "x\n")
                time.sleep(1.1)
                row[mode or "no-hook"] = count_rewrites(repo, mode)
            result(S, f"index rewrites in 4 `git status` after settling ({state}, untrackedCache={uc})", row)
    row = {}
    for mode in MODES4[:3]:
        repo = make_repo(); configure(repo, mode, "false"); git(repo, "status", env={"FSMP_MODE": mode or ""})
        row[mode or "no-hook"] = count_rewrites(repo, mode, extra=("--no-optional-locks",))
    result(S, "index rewrites in 4 `git --no-optional-locks status`", row)
    # > 100 changed paths named in an exact answer forces a write (fsmonitor_force_update_threshold)
    for mode in ("exact", "stateful"):
        repo = make_repo()
        for i in range(150):
            write(f"{repo}/many/f{i}.txt", "x\n")
        git(repo, "add", "-A"); git(repo, "commit", "-qm", "many")
        enable(repo); git(repo, "status", env={"FSMP_MODE": mode}); git(repo, "status", env={"FSMP_MODE": mode})
        time.sleep(1.1)
        for i in range(150):
            write(f"{repo}/many/f{i}.txt", "changed\n")
        time.sleep(1.1)
        result(S, f"answer={mode}, 150 modified files: index rewrites in 4 status (after 2 settling runs)", count_rewrites(repo, mode))
        result(S, f"answer={mode}, 150 modified files: simulated editor runs (cap 12)", editor_loop(repo, mode))
    # simulated editor
    row = {}
    for mode, uc in [(None, "false"), ("slash-const", "false"), ("slash-echo", "false"), ("fail", "false"),
                     ("exact", "false"), ("exact", "true"), ("exact-untracked", "true"), ("stateful", "false"), ("stateful", "true")]:
        for state in ("clean", "modified+untracked"):
            repo = make_repo(); configure(repo, mode, uc)
            git(repo, "status", env={"FSMP_MODE": mode or ""}); time.sleep(1.1)
            if state != "clean":
                write(f"{repo}/a.txt", "local edit\n"); write(f"{repo}/data/new.db", "x\n"); time.sleep(1.1)
            row[f"{mode or 'no-hook'}/uc={uc}/{state}"] = editor_loop(repo, mode)
    result(S, "simulated editor: `git status` runs triggered by one external index touch (cap 12 = never settles)", row)
    if BIG:
        big4()


def timeit(fn, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)


def big4():
    S = 4
    repo = os.path.join(ROOT, "big")
    os.makedirs(repo)
    git(repo, "init", "-q", check=True)
    t0 = time.time()
    for d in range(BIG // 100):
        dp = os.path.join(repo, f"d{d:04}")
        os.makedirs(dp)
        for i in range(100):
            with open(os.path.join(dp, f"f{i:03}.txt"), "w") as f:
                f.write(f"{d} {i}\n")
    git(repo, "add", "-A", check=True)
    git(repo, "commit", "-qm", "big", check=True)
    result(S, f"big repo generated: files / index bytes / seconds", (BIG, os.path.getsize(f"{repo}/.git/index"), round(time.time() - t0)))
    n = max(5, RUNS // 3)
    modes = (None, "slash-const", "exact", "stateful")
    for uc in ("false", "true"):
        rew, ts = {}, {m: [] for m in modes}
        for mode in modes:
            configure(repo, mode, uc)
            e = {"FSMP_MODE": mode} if mode else {}
            for _ in range(2):
                git(repo, "status", "--porcelain", env=e)
            time.sleep(1.1)
            rew[mode] = count_rewrites(repo, mode, n=3)
        # blocks in order A B C D D C B A (2 warm-up runs per block) so load swings hit all modes alike
        for order in (modes, tuple(reversed(modes))):
            for mode in order:
                configure(repo, mode, uc)
                e = {"FSMP_MODE": mode} if mode else {}
                for _ in range(2):
                    git(repo, "status", "--porcelain", env=e)
                for _ in range((n + 1) // 2):
                    t = time.perf_counter()
                    git(repo, "status", "--porcelain", env=e)
                    ts[mode].append((time.perf_counter() - t) * 1000)
        base = statistics.median(ts[None])
        row = {(m or "no-hook"): f"{statistics.median(ts[m]):.0f} ms (+{statistics.median(ts[m]) - base:.0f}), rewrites {rew[m]}/3"
               for m in modes}
        result(S, f"{BIG}-file repo, `git status` median of {2 * ((n + 1) // 2)} (blocks ABCDDCBA), untrackedCache={uc}", row)
    shutil.rmtree(repo)


# ---------------------------------------------------------------- step 5
def step5():
    S = 5
    repo = make_repo()
    enable(repo)
    plog, pstate = os.path.join(ROOT, "prevlog"), os.path.join(ROOT, "prevstate")
    e = {"FSMP_MODE": "chain", "FSMP_PREV": PREV, "FSMP_PREVLOG": plog, "FSMP_PREVSTATE": pstate}
    for _ in range(3):
        git(repo, "status", env=e)
    result(S, "previous hook relayed through `exec prev \"$@\"`: tokens it received", open(plog).read().strip().splitlines())
    # previous hook given as a path relative to the worktree
    shutil.copy(PREV, os.path.join(repo, "relhook.sh"))
    git(repo, "config", "core.fsmonitor", "relhook.sh")
    os.remove(plog)
    r = git(repo, "status", env={k: v for k, v in e.items() if k != "FSMP_MODE"})
    result(S, "core.fsmonitor=relhook.sh (relative, no slash) runs?", os.path.exists(plog) or r.stderr.strip()[:100])
    git(repo, "config", "core.fsmonitor", "./relhook.sh")
    r = git(repo, "status", env={k: v for k, v in e.items() if k != "FSMP_MODE"})
    result(S, "core.fsmonitor=./relhook.sh runs (cwd=worktree)?", os.path.exists(plog) or r.stderr.strip()[:100])
    # git's watchman sample without watchman installed
    sample = "/usr/share/git-core/templates/hooks/fsmonitor-watchman.sample"
    if os.path.exists(sample):
        shutil.copy(sample, os.path.join(repo, ".git", "hooks", "query-watchman"))
        os.chmod(os.path.join(repo, ".git", "hooks", "query-watchman"), 0o755)
        git(repo, "config", "core.fsmonitor", ".git/hooks/query-watchman")
        r = git(repo, "status", "--porcelain")
        out = subprocess.run([os.path.join(repo, ".git/hooks/query-watchman"), "2", "x"], cwd=repo,
                             env=base_env(), capture_output=True)
        result(S, "watchman sample without watchman: its answer / git status rc / stderr",
               (out.stdout, out.returncode, r.returncode, r.stderr.strip()[:120]))
    # core.fsmonitor=true
    git(repo, "config", "core.fsmonitor", "true")
    r = git(repo, "status", "--porcelain")
    result(S, "core.fsmonitor=true: status rc / stderr", (r.returncode, r.stderr.strip()[:160]))
    result(S, "core.fsmonitor=true: index rewrites in 4 status", count_rewrites(repo, None))
    r = git(repo, "fsmonitor--daemon", "status")
    result(S, "git fsmonitor--daemon status", (r.returncode, (r.stderr or r.stdout).strip()[:160]))
    r = git(repo, "fsmonitor--daemon", "start")
    result(S, "git fsmonitor--daemon start", (r.returncode, (r.stderr or r.stdout).strip()[:160]))
    r = git(repo, "version", "--build-options")
    result(S, "build options mention fsmonitor", [l for l in r.stdout.splitlines() if "fsmonitor" in l.lower()] or "no")
    git(repo, "config", "core.fsmonitor", "false")
    log = os.path.join(ROOT, "log5f")
    git(repo, "status", env={"FSMP_LOG": log})
    result(S, "core.fsmonitor=false: hook calls", len(read_log(log)))


# ---------------------------------------------------------------- step 6
def step6():
    S = 6
    repo = make_repo()
    git(repo, "status")
    n = RUNS
    out = {}
    out["no hook"] = timeit(lambda: git(repo, "status", "--porcelain"), n)
    enable(repo)
    for mode in ("slash-const", "exact", "stateful", "python", "dbguard"):
        if mode == "dbguard" and not os.path.exists(DBGUARD):
            continue
        e = {"FSMP_MODE": mode, "FSMP_DBGUARD": DBGUARD}
        git(repo, "status", env=e)
        out[mode] = timeit(lambda: git(repo, "status", "--porcelain", env=e), n)
    out["diff, no hook"] = None
    base = out["no hook"]
    result(S, f"`git status` median ms of {n} (small repo)",
           {k: (f"{v:.1f} (+{v - base:.1f})" if v is not None else None) for k, v in out.items() if v is not None})
    if os.path.exists(DBGUARD):
        ms = timeit(lambda: subprocess.run([DBGUARD, "--version"], capture_output=True), n)
        result(S, f"`dbguard --version` alone median ms ({os.path.getsize(DBGUARD) // 2**20} MiB debug binary)", f"{ms:.1f}")
    ms = timeit(lambda: subprocess.run(["/bin/sh", "-c", ":"]), n)
    result(S, "`sh -c :` alone median ms", f"{ms:.1f}")


def step4big():
    big4()


def main():
    steps = sys.argv[1:] or ["1", "2", "3", "4", "5", "6"]
    print(f"# git: {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.strip()}; /bin/sh -> {os.path.realpath('/bin/sh')}; tmp {ROOT}")
    for s in steps:
        t = time.time()
        globals()[f"step{s}"]()
        print(f"# step {s} took {time.time() - t:.0f} s", flush=True)
    if not os.environ.get("FSMP_KEEP"):
        shutil.rmtree(ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
