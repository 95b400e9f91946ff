#!/usr/bin/env bash
# FTP benchmark: 2,000 files in 20 folders uploaded to pyftpdlib on loopback, pairsync against
# lftp's `mirror -R` at --parallel=1 and --parallel=4, in one run. Also counts the per-file
# commands (STOR, RETR, MLST, SIZE, MDTM, MFMT, DELE, RNFR) each no-op sends.
# Usage: bash bench/ftp.sh        Env: BENCH_DIR (default /tmp/pairsync-ftp-bench), FILES (2000)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
WORK=${BENCH_DIR:-/tmp/pairsync-ftp-bench}
FILES=${FILES:-2000}
RESULTS=$HERE/ftp-results.md
say() { echo "bench-ftp: $*" >&2; }

# ---- peers -------------------------------------------------------------------------------------
if ! command -v lftp >/dev/null; then
    say "installing lftp"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lftp
fi
python3 -c 'import pyftpdlib' 2>/dev/null || python3 -m pip install -q pyftpdlib

(cd "$REPO" && cargo build --release --quiet)
PS=${CARGO_TARGET_DIR:-$REPO/target}/release/pairsync

case "$WORK" in /|"$HOME"|"") echo "refusing BENCH_DIR=$WORK" >&2; exit 1 ;; esac
rm -rf "$WORK"
mkdir -p "$WORK/root" "$WORK/home" "$WORK/state"
WORK=$(cd "$WORK" && pwd)

# ---- tree: FILES files in 20 folders, 0-64 KiB ---------------------------------------------------
python3 - "$WORK/src" "$FILES" <<'EOF'
import os, random, sys
root, files = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
pool = rng.randbytes(1 << 20)
for i in range(files):
    d = os.path.join(root, f"folder{i % 20:02d}")
    os.makedirs(d, exist_ok=True)
    size = rng.randrange(0, 64 * 1024)
    off = rng.randrange(0, len(pool) - size)
    with open(os.path.join(d, f"file{i:05d}.bin"), "wb") as f:
        f.write(pool[off:off + size])
EOF

# ---- server --------------------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOG=$WORK/server.log
python3 -m pyftpdlib -i 127.0.0.1 -p "$PORT" -w -d "$WORK/root" -u bench -P benchpw -D >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
mkdir -p "$WORK/root/ps" "$WORK/root/lftp1" "$WORK/root/lftp4"
printf 'machine 127.0.0.1 login bench password benchpw\n' >"$WORK/home/.netrc"
chmod 600 "$WORK/home/.netrc"

# measure NAME CMD...: wall seconds, and the per-file commands the server saw meanwhile.
declare -A SECS CMDS
measure() {
    local name=$1; shift
    local before after t0 t1
    before=$(wc -l <"$LOG")
    t0=$EPOCHREALTIME
    "$@" >"$WORK/$name.out" 2>&1 || { echo "bench-ftp: $name failed:" >&2; cat "$WORK/$name.out" >&2; exit 1; }
    t1=$EPOCHREALTIME
    sleep 0.2 # let the server flush its log
    after=$(wc -l <"$LOG")
    SECS[$name]=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
    CMDS[$name]=$(sed -n "$((before + 1)),${after}p" "$LOG" | grep -cE '<- (STOR|RETR|MLST|SIZE|MDTM|MFMT|DELE|RNFR) ' || true)
    say "$(printf '%-14s %8s s  %6s per-file commands' "$name" "${SECS[$name]}" "${CMDS[$name]}")"
}

URL=ftp://bench@127.0.0.1:$PORT/ps
ps() { HOME=$WORK/home "$PS" -q --state-dir "$WORK/state" sync --mode clone "$WORK/src" "$URL"; }
lftp1() { lftp -u bench,benchpw -e "set ftp:use-mdtm on; mirror -R --parallel=1 $WORK/src /lftp1; quit" "ftp://127.0.0.1:$PORT"; }
lftp4() { lftp -u bench,benchpw -e "set ftp:use-mdtm on; mirror -R --parallel=4 $WORK/src /lftp4; quit" "ftp://127.0.0.1:$PORT"; }

measure ps_initial ps
measure lftp1_initial lftp1
measure lftp4_initial lftp4
diff -r "$WORK/src" "$WORK/root/ps" >/dev/null || { echo "bench-ftp: pairsync upload differs" >&2; exit 1; }
measure ps_noop ps
measure lftp1_noop lftp1
measure lftp4_noop lftp4

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
{
    echo "# pairsync FTP benchmark"
    echo
    echo "Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc: $(nproc), $FILES files in 20 folders (0-64 KiB), pyftpdlib $(python3 -c 'import pyftpdlib; print(pyftpdlib.__ver__)') on loopback, $(lftp --version | head -1)"
    echo
    echo "| command | seconds | per-file commands |"
    echo "|---|---:|---:|"
    for n in ps_initial lftp1_initial lftp4_initial ps_noop lftp1_noop lftp4_noop; do
        echo "| $n | ${SECS[$n]} | ${CMDS[$n]} |"
    done
    echo
    echo "| ratio | value | target |"
    echo "|---|---:|---|"
    echo "| pairsync no-op / lftp --parallel=1 no-op | $(ratio "${SECS[ps_noop]}" "${SECS[lftp1_noop]}") | <= 1 |"
    echo "| pairsync no-op / lftp --parallel=4 no-op | $(ratio "${SECS[ps_noop]}" "${SECS[lftp4_noop]}") | <= 1 |"
    echo "| pairsync no-op per-file commands | ${CMDS[ps_noop]} | 0 |"
    echo "| pairsync initial / lftp --parallel=4 initial | $(ratio "${SECS[ps_initial]}" "${SECS[lftp4_initial]}") | <= 1 |"
    echo "| pairsync initial / lftp --parallel=1 initial | $(ratio "${SECS[ps_initial]}" "${SECS[lftp1_initial]}") | |"
    echo
    echo "pairsync: \`pairsync sync --mode clone SRC ftp://bench@127.0.0.1:PORT/ps\` (4 connections);"
    echo "lftp: \`lftp -e 'set ftp:use-mdtm on; mirror -R --parallel=N SRC /lftpN'\`."
} >"$RESULTS"
cat "$RESULTS"
