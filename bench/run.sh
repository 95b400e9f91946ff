#!/usr/bin/env bash
# pairsync benchmark: initial copy and no-op re-run against cp -a, rsync, unison and a bare stat walk.
# Usage: bash bench/run.sh            (100,000 files)
#        BENCH_FILES=10000 bash bench/run.sh
# Env:   BENCH_FILES (default 100000), BENCH_DIR (default /tmp/pairsync-bench, wiped at start),
#        BENCH_REPS (no-op repetitions, default 3; the median is reported), BENCH_SEED.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
FILES=${BENCH_FILES:-100000}
WORK=${BENCH_DIR:-/tmp/pairsync-bench}
REPS=${BENCH_REPS:-3}
SEED=${BENCH_SEED:-20240601}
RESULTS=$HERE/results.md

die() { echo "bench: ERROR: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

# ---- peers -------------------------------------------------------------------------------------
if ! command -v rsync >/dev/null || ! command -v unison >/dev/null || [ ! -x /usr/bin/time ]; then
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    say "installing rsync unison time"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rsync unison time
fi
command -v python3 >/dev/null || die "python3 is required (bench/gen.py)"

# ---- build -------------------------------------------------------------------------------------
say "cargo build --release"
(cd "$REPO" && cargo build --release --quiet)
PS=${CARGO_TARGET_DIR:-$REPO/target}/release/pairsync
[ -x "$PS" ] || die "no binary at $PS"

# ---- work dir ----------------------------------------------------------------------------------
case "$WORK" in /|"$HOME"|"") die "refusing BENCH_DIR=$WORK" ;; esac
if [ -e "$WORK" ] && [ ! -e "$WORK/.pairsync-bench" ] && [ -n "$(ls -A "$WORK")" ]; then
    die "$WORK exists, is not empty and is not a previous bench dir; pick another BENCH_DIR"
fi
rm -rf "$WORK"
mkdir -p "$WORK/logs" "$WORK/unison-home"
touch "$WORK/.pairsync-bench"
WORK=$(cd "$WORK" && pwd)
SRC=$WORK/src DST=$WORK/dst DSTC=$WORK/dst-clone DST2=$WORK/dst-cp DST3=$WORK/dst-rsync DST4=$WORK/dst-unison
STATE=$WORK/state LOGS=$WORK/logs RAW=$WORK/raw.tsv
export UNISON=$WORK/unison-home
: >"$RAW"

# measure KEY keep|drop CMD... : wall seconds (EPOCHREALTIME) and peak RSS (/usr/bin/time %M) to $RAW.
# Output goes to $LOGS/N.KEY.{out,err} (stdout to /dev/null with drop); LAST_OUT names the stdout log.
# Any non-zero exit stops the benchmark loudly.
RUN=0
measure() {
    local key=$1 keep=$2; shift 2
    RUN=$((RUN + 1))
    local base
    base=$LOGS/$(printf '%02d' "$RUN").$key
    local out=/dev/null err=$base.err tf=$base.time rc=0 t0 t1
    [ "$keep" = keep ] && out=$base.out
    LAST_OUT=$out
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$out" 2>"$err" || rc=$?
    t1=$EPOCHREALTIME
    if [ "$rc" -ne 0 ]; then
        echo "bench: ERROR: '$*' exited $rc" >&2
        [ "$out" = /dev/null ] || tail -n 20 "$out" >&2
        tail -n 20 "$err" >&2
        [ "$rc" -eq 4 ] && echo "bench: exit 4 is pairsync's safety stop" >&2
        exit 1
    fi
    local kb
    kb=$(tail -n 1 "$tf" | awk '{print $2}')
    printf '%s\t%s\t%s\n' "$key" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" "$kb" >>"$RAW"
    say "$(printf '%-20s %7.3f s %7.1f MB   %s' "$key" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
        "$(awk -v k="$kb" 'BEGIN{print k/1024}')" "$*")"
}

settle() { sync; sleep 1; }

# Each pairsync run must report a no-op ("copied 0 ... deleted 0") when it should be one.
expect_noop() {
    local log=$1
    if ! grep -q 'copied 0 .*deleted 0,' "$log"; then
        echo "bench: WARNING: pairsync no-op run did work or printed an unexpected summary:" >&2
        cat "$log" >&2
        NOOP_WARN="${NOOP_WARN:-}$(cat "$log")"$'\n'
    fi
}

LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
# ---- data --------------------------------------------------------------------------------------
say "generating $FILES files in $SRC"
python3 "$HERE/gen.py" "$SRC" "$FILES" "$SEED" >&2
settle
find "$SRC" -printf '%s %T@\n' >/dev/null                       # warm metadata
find "$SRC" -type f -exec cat {} + >/dev/null                   # warm contents

# ---- initial copy ------------------------------------------------------------------------------
mkdir "$DST" "$DSTC" "$DST3" "$DST4"
measure ps_init keep "$PS" --state-dir "$STATE" sync "$SRC" "$DST"
settle
measure ps_clone_init keep "$PS" --state-dir "$STATE" sync --mode clone "$SRC" "$DSTC"
settle
measure cp_init drop cp -a "$SRC" "$DST2"
settle
measure rsync_init drop rsync -a "$SRC/" "$DST3/"
settle
measure unison_init keep unison "$SRC" "$DST4" -batch -auto -ui text -silent
settle

say "sanity: diff -r src dst"
diff -r "$SRC" "$DST" >"$LOGS/diff.out" 2>&1 || { head -n 20 "$LOGS/diff.out" >&2; die "diff -r $SRC $DST is not empty after the initial sync"; }
[ "$(find "$DST" -type f | wc -l)" -eq "$FILES" ] || die "dst does not hold $FILES files"

# ---- no-op re-runs: one warm-up round (discarded), then $REPS rounds, interleaved -------------
noop_round() {
    local tag=$1
    measure "ps_noop$tag" keep "$PS" --state-dir "$STATE" sync "$SRC" "$DST"
    expect_noop "$LAST_OUT"
    measure "ps_clone_noop$tag" keep "$PS" --state-dir "$STATE" sync --mode clone "$SRC" "$DSTC"
    expect_noop "$LAST_OUT"
    measure "rsync_noop$tag" drop rsync -a "$SRC/" "$DST3/"
    measure "unison_noop$tag" keep unison "$SRC" "$DST4" -batch -auto -ui text -silent
    measure "statwalk$tag" drop find "$SRC" -printf '%s %T@\n'
}
say "no-op warm-up round"
noop_round _warm
for i in $(seq "$REPS"); do
    say "no-op round $i/$REPS"
    noop_round ""
done

# ---- report ------------------------------------------------------------------------------------
LOAD_END=$(cut -d" " -f1-3 /proc/loadavg)
HEADER="Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc: $(nproc), files: $FILES in 1000 folders (0-16 KiB, seed $SEED), \
$(du -sh --apparent-size "$SRC" | cut -f1) apparent; no-op rows are the median of $REPS runs after a warm-up; pairsync $("$PS" --version | awk '{print $2}'), $(rsync --version | head -n1 | awk '{print "rsync " $3}'), $(unison -version | awk '{print "unison " $3}'); load average at start $LOAD_START, at end $LOAD_END (other work on the machine skews timings)"

python3 - "$RAW" "$HEADER" "$PS" "$SRC" "$DST" "$DSTC" "$DST2" "$DST3" "$DST4" "$STATE" >"$WORK/table.md" <<'PY'
import statistics, sys
raw, header, ps, src, dst, dstc, dst2, dst3, dst4, state = sys.argv[1:]
runs = {}
for line in open(raw):
    key, secs, kb = line.rstrip("\n").split("\t")
    runs.setdefault(key, []).append((float(secs), int(kb)))
def sec(k): return statistics.median(s for s, _ in runs[k])
def mb(k): return max(r for _, r in runs[k]) / 1024
rows = [
    ("ps_init",       f"pairsync sync SRC DST (initial, two-way)",            f"{ps} --state-dir {state} sync {src} {dst}"),
    ("ps_clone_init", f"pairsync sync --mode clone SRC DSTc (initial)",       f"{ps} --state-dir {state} sync --mode clone {src} {dstc}"),
    ("cp_init",       "cp -a SRC DST2 (initial)",                             f"cp -a {src} {dst2}"),
    ("rsync_init",    "rsync -a SRC/ DST3/ (initial)",                        f"rsync -a {src}/ {dst3}/"),
    ("unison_init",   "unison SRC DST4 (initial)",                            f"unison {src} {dst4} -batch -auto -ui text -silent"),
    ("ps_noop",       "pairsync sync SRC DST (no-op, two-way)",               f"{ps} --state-dir {state} sync {src} {dst}"),
    ("ps_clone_noop", "pairsync sync --mode clone SRC DSTc (no-op)",          f"{ps} --state-dir {state} sync --mode clone {src} {dstc}"),
    ("rsync_noop",    "rsync -a SRC/ DST3/ (no-op)",                          f"rsync -a {src}/ {dst3}/"),
    ("unison_noop",   "unison SRC DST4 -batch -auto (no-op)",                 f"unison {src} {dst4} -batch -auto -ui text -silent"),
    ("statwalk",      "find SRC -printf '%s %T@\\n' (stat walk)",             f"find {src} -printf '%s %T@\\n' > /dev/null"),
]
out = [f"# pairsync benchmark", "", header, "", "| command | seconds | peak RSS MB | runs |", "|---|---:|---:|---:|"]
for k, label, _ in rows:
    out.append(f"| {label} | {sec(k):.3f} | {mb(k):.1f} | {len(runs[k])} |")
ps_rss = max(mb(k) for k in ("ps_init", "ps_clone_init", "ps_noop", "ps_clone_noop", "ps_noop_warm", "ps_clone_noop_warm"))
def ratio(a, b): return sec(a) / sec(b) if sec(b) > 0 else float("inf")
checks = [
    ("pairsync two-way no-op / rsync no-op", ratio("ps_noop", "rsync_noop"), "<= 0.6", 0.6),
    ("pairsync clone no-op / rsync no-op", ratio("ps_clone_noop", "rsync_noop"), "", None),
    ("pairsync initial / cp -a", ratio("ps_init", "cp_init"), "<= 1.0", 1.0),
    ("pairsync initial / rsync initial", ratio("ps_init", "rsync_init"), "", None),
    ("pairsync peak RSS, MB (max of all pairsync runs)", ps_rss, "<= 64", 64),
    ("pairsync two-way no-op / unison no-op", ratio("ps_noop", "unison_noop"), "", None),
    ("pairsync two-way no-op / stat walk", ratio("ps_noop", "statwalk"), "", None),
]
out += ["", "| ratio | value | target | met |", "|---|---:|---:|:---:|"]
for name, v, target, limit in checks:
    met = "" if limit is None else ("yes" if v <= limit else "**no**")
    out.append(f"| {name} | {v:.2f} | {target} | {met} |")
out += ["", "Commands (wall time by bash EPOCHREALTIME around `/usr/bin/time -f '%e %M'`; RSS = max %M):", ""]
out += [f"- `{cmd}`" for _, _, cmd in rows]
print("\n".join(out))
PY

{
    cat "$WORK/table.md"
    if [ -n "${NOOP_WARN:-}" ]; then
        printf '\n**Warning**: a pairsync no-op run did work:\n\n```\n%s```\n' "$NOOP_WARN"
    fi
} >"$RESULTS"
echo
cat "$RESULTS"
say "raw timings: $RAW; logs: $LOGS; table written to $RESULTS"
