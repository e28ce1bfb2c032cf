#!/bin/sh
# git's own test suite with dbguard's fsmonitor hook (issue 28).
#
# Runs git's status, untracked-cache, checkout, switch, restore, reset, clean, stash, rm,
# mv, merge, rebase, pull, worktree and submodule test scripts three times: with no
# fsmonitor, with git's reference hook (t/t7519/fsmonitor-all-v2: "everything changed")
# and with dbguard-fsmonitor, all through GIT_TEST_FSMONITOR; then lists the tests that
# fail only with dbguard's hook. Goal: none but t7063's internal trace counters.
#
# Needs a built git source checkout of the installed version (git 2.47.3 here):
#   git clone --branch v2.47.3 <git/git> /tmp/git-src   (or a worktree of a mirror)
#   cd /tmp/git-src && nice make -j2 NO_CURL=1 NO_GETTEXT=1 NO_TCLTK=1 NO_PYTHON=1
# and dbguard built (cargo build --all-targets) so that dbguard-fsmonitor and dbguard sit
# side by side in $CARGO_TARGET_DIR/debug (or DBGUARD_BIN_DIR).
#
# Usage: sh bench/git_testsuite.sh /tmp/git-src [out-dir] [script-glob ...]
# MODES="dbguard" (a subset of "none reference dbguard") runs only those; the comparison
# at the end reads whatever logs of the other modes are in out-dir already.
# Everything runs under `nice`, one script at a time (CPU is shared).
set -u

src=${1:?usage: git_testsuite.sh <git source dir> [out-dir] [script-glob ...]}
out=${2:-/tmp/dbguard-git-testsuite}
shift; [ $# -gt 0 ] && shift
src=$(cd "$src" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=${DBGUARD_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/dbguard-target}/debug}
hook="$bin_dir/dbguard-fsmonitor"
[ -x "$src/git" ] || { echo "build git first in $src (see the head of $0)" >&2; exit 2; }
[ -x "$hook" ] || { echo "no $hook: cargo build --all-targets in $here" >&2; exit 2; }

if [ $# -gt 0 ]; then
    globs="$*"
else
    # status, untracked cache, checkout, switch, restore, reset, clean, stash, rm, mv,
    # merge, rebase, pull, worktree, submodule
    globs="t7508-status.sh t7060-wtstatus.sh t7061-wtstatus-ignore.sh t7064-wtstatus-pv2.sh
        t7063-status-untracked-cache.sh
        t2013-checkout-submodule.sh t2018-checkout-branch.sh t2020-checkout-detach.sh
        t2022-checkout-paths.sh t2024-checkout-dwim.sh t2027-checkout-track.sh
        t2060-switch.sh t2070-restore.sh t2071-restore-patch.sh
        t7102-reset.sh t7104-reset-hard.sh t7105-reset-patch.sh t7110-reset-merge.sh
        t7111-reset-table.sh t7112-reset-submodule.sh
        t7300-clean.sh
        t3903-stash.sh t3904-stash-patch.sh t3905-stash-include-untracked.sh
        t3906-stash-submodule.sh t3908-stash-in-worktree.sh
        t3600-rm.sh t7001-mv.sh
        t7600-merge.sh t7607-merge-state.sh
        t3400-rebase.sh t3403-rebase-skip.sh
        t5520-pull.sh t5521-pull-options.sh
        t2400-worktree-add.sh t2401-worktree-prune.sh t2403-worktree-move.sh
        t7400-submodule-basic.sh t7406-submodule-update.sh t7402-submodule-rebase.sh
        t7519-status-fsmonitor.sh t7527-builtin-fsmonitor.sh"
fi

mkdir -p "$out"
cd "$src/t" || exit 2
# Each test repository starts a watcher; they leave with their trash directory, and
# after 20 idle seconds at the latest.
export DBGUARD_FSMONITOR_IDLE=20
for mode in ${MODES:-none reference dbguard}; do
    case $mode in
        none) fsmonitor= ;;
        reference) fsmonitor="$src/t/t7519/fsmonitor-all-v2" ;;
        dbguard) fsmonitor="$hook" ;;
    esac
    for glob in $globs; do
        for script in $glob; do
            [ -f "$script" ] || continue
            log="$out/$mode.${script%.sh}.log"
            if [ -n "$fsmonitor" ]; then
                GIT_TEST_FSMONITOR=$fsmonitor nice -n 19 sh "$script" --root="$out/trash-$mode" >"$log" 2>&1
            else
                (unset GIT_TEST_FSMONITOR; nice -n 19 sh "$script" --root="$out/trash-$mode" >"$log" 2>&1)
            fi
            echo "$mode $script: $(grep -E '^# (passed all|failed|still have)' "$log" | tr '\n' ' ')"
        done
    done
done | tee -a "$out/summary.txt"

# Tests that fail only with dbguard's hook: "not ok N - title" lines per script.
echo
echo "== failing only with dbguard-fsmonitor (not with none, not with the reference hook) =="
for log in "$out"/dbguard.*.log; do
    name=${log#"$out/dbguard."}
    grep -E '^not ok [0-9]+ ' "$log" | grep -v '# TODO' | sed 's/ *#.*//' | sort -u >"$out/fail.dbguard.$name"
    for other in none reference; do
        if [ -f "$out/$other.$name" ]; then
            grep -E '^not ok [0-9]+ ' "$out/$other.$name" | grep -v '# TODO' | sed 's/ *#.*//' | sort -u
        fi
    done | sort -u >"$out/fail.others.$name"
    comm -23 "$out/fail.dbguard.$name" "$out/fail.others.$name" | while read -r line; do
        echo "${name%.log}: $line"
    done
done | tee "$out/only-dbguard.txt"
[ -s "$out/only-dbguard.txt" ] || echo "(none)"
