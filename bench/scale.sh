#!/usr/bin/env bash
# Scale benchmark (issue 15 item 5): a generated tree of FILES small files in FOLDERS folders
# (default 1,000,000 in 10,000), local two-way. In one run, side by side: pairsync's initial
# copy, then no-op re-runs of pairsync (this build, and OLD_BIN when given: the binary before a
# change), rsync -a and a stat walk of both trees (find -printf), each with wall time and peak
# RSS (GNU time). Warm cache: every tool reads trees the previous one just read.
# Usage: bash bench/scale.sh
#        FILES=100000 FOLDERS=1000 ROUNDS=3 OLD_BIN=/tmp/head-target/release/pairsync bash bench/scale.sh
# Env:   BENCH_DIR (default /tmp/pairsync-scale, wiped at start and at the end; KEEP=1 keeps
#        it, REUSE=1 measures only the no-op rounds on a kept one).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
FILES=${FILES:-1000000}
FOLDERS=${FOLDERS:-10000}
ROUNDS=${ROUNDS:-3}
WORK=${BENCH_DIR:-/tmp/pairsync-scale}
OLD_BIN=${OLD_BIN:-}
RESULTS=$HERE/scale-results.md

say() { echo "bench-scale: $*" >&2; }
command -v rsync >/dev/null && [ -x /usr/bin/time ] || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync time
}

say "cargo build --release"
(cd "$REPO" && cargo build --release --quiet)
BIN=$REPO/target/release/pairsync
COMMIT=$(cd "$REPO" && git rev-parse --short HEAD)

SRC=$WORK/src DST=$WORK/dst
# REUSE=1: the trees, states and rsync copy of an earlier run are kept and only the no-op
# rounds are measured (the initial rows then come from that run's raw.tsv, if any).
if [ "${REUSE:-0}" = 1 ] && [ -d "$SRC" ] && [ -d "$WORK/state" ]; then
    say "reusing $WORK"
else
rm -rf "$WORK" && mkdir -p "$WORK"
say "generating $FILES files in $FOLDERS folders"
python3 - "$SRC" "$FILES" "$FOLDERS" <<'EOF'
import os, sys
root, files, folders = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = files // folders
for d in range(folders):
    path = f"{root}/d{d // 100:03d}/f{d:05d}"
    os.makedirs(path, exist_ok=True)
    for f in range(per):
        with open(f"{path}/file{f:04d}.txt", "w") as fh:
            fh.write("x" * (f % 13))
EOF

fi
TSV=$WORK/raw.tsv
[ "${REUSE:-0}" = 1 ] || : > "$TSV"
# measure NAME CMD...: wall seconds and peak RSS (KB) into the TSV.
measure() {
    local name=$1; shift
    /usr/bin/time -o "$WORK/time.out" -f '%e %M' "$@" >/dev/null 2>&1
    local out
    out=$(tail -n 1 "$WORK/time.out")
    echo -e "$name\t$out" >> "$TSV"
    say "$name: $out (s KB)"
}

if [ "${REUSE:-0}" != 1 ]; then
    say "initial: pairsync (two-way into an empty folder)"
    measure ps_initial "$BIN" --state-dir "$WORK/state" -q sync "$SRC" "$DST"
    if [ -n "$OLD_BIN" ]; then
        # The old binary's own state, on the same trees (its first run merges: nothing to copy).
        "$OLD_BIN" --state-dir "$WORK/state-old" -q sync "$SRC" "$DST"
    fi
    say "rsync -a (to a third tree, once, for its own no-op)"
    measure rsync_initial rsync -a "$SRC/" "$WORK/rsync/"
fi
for round in $(seq "$ROUNDS"); do
    say "no-op round $round"
    measure ps_noop "$BIN" --state-dir "$WORK/state" -q sync "$SRC" "$DST"
    [ -n "$OLD_BIN" ] && measure old_noop "$OLD_BIN" --state-dir "$WORK/state-old" -q sync "$SRC" "$DST"
    measure rsync_noop rsync -a "$SRC/" "$WORK/rsync/"
    measure find_both sh -c "find '$SRC' -printf '%s %T@\n' >/dev/null; find '$DST' -printf '%s %T@\n' >/dev/null"
done

cp "$TSV" "$RESULTS.tsv.tmp"
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
TSV=$RESULTS.tsv.tmp
trap 'rm -f "$TSV"' EXIT
python3 - "$TSV" "$RESULTS" "$FILES" "$FOLDERS" "$COMMIT" "${OLD_BIN:+yes}" <<'EOF'
import sys, statistics, collections, subprocess, os
tsv, out, files, folders, commit, old = sys.argv[1:7]
rows = collections.defaultdict(list)
for line in open(tsv):
    name, s, kb = line.split()
    rows[name].append((float(s), int(kb)))
def med(name, i):
    return statistics.median(r[i] for r in rows[name]) if rows[name] else float("nan")
names = [("ps_initial", "pairsync sync (initial, two-way)"), ("rsync_initial", "rsync -a (initial)"),
         ("ps_noop", "pairsync sync (no-op, two-way)"), ("old_noop", "pairsync before (no-op)"),
         ("rsync_noop", "rsync -a (no-op)"), ("find_both", "find -printf on both trees")]
load = os.getloadavg()
lines = [f"# Scale benchmark: {int(files):,} files in {int(folders):,} folders", "",
         f"commit {commit}; {os.cpu_count()} cores; load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
         "warm cache; medians (and every run) of wall time and peak RSS (GNU time).", "",
         "| command | median s | every run s | peak RSS MB |", "|---|---:|---|---:|"]
for key, label in names:
    if not rows[key]:
        continue
    every = " ".join(f"{s:.2f}" for s, _ in rows[key])
    lines.append(f"| {label} | {med(key, 0):.2f} | {every} | {med(key, 1) / 1024:.1f} |")
lines += ["", "| ratio | value |", "|---|---:|",
          f"| pairsync no-op / find on both trees | {med('ps_noop', 0) / med('find_both', 0):.2f} (target <= 0.7) |",
          f"| pairsync no-op / rsync -a no-op | {med('ps_noop', 0) / med('rsync_noop', 0):.2f} |",
          f"| pairsync no-op peak RSS | {med('ps_noop', 1) / 1024:.1f} MB (target <= 100) |",
          f"| pairsync initial peak RSS | {med('ps_initial', 1) / 1024:.1f} MB (target <= 150) |"]
if rows["old_noop"]:
    lines.append(f"| no-op peak RSS, before / now | {med('old_noop', 1) / 1024:.1f} MB / {med('ps_noop', 1) / 1024:.1f} MB |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
