#!/usr/bin/env bash
# FTP benchmark: 2,000 files in 20 folders uploaded to pyftpdlib on loopback, pairsync against
# lftp's `mirror -R` at --parallel=1 and --parallel=4, in one run. Also counts the per-file
# commands (STOR, RETR, MLST, SIZE, MDTM, MFMT, DELE, RNFR) each sends. Medians of ROUNDS rounds.
# Usage: bash bench/ftp.sh   Env: BENCH_DIR (default /tmp/pairsync-ftp-bench), FILES (2000), ROUNDS (3),
#        DELAY_MS (0: a server DELAY_MS away each way, through bench/delay_proxy.py; results then
#        go to ftp-results-delay.md)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
WORK=${BENCH_DIR:-/tmp/pairsync-ftp-bench}
FILES=${FILES:-2000}
DELAY_MS=${DELAY_MS:-0}
RESULTS=$HERE/ftp-results.md
[ "$DELAY_MS" = 0 ] || RESULTS=$HERE/ftp-results-delay.md
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
trap 'kill $SERVER ${PROXY:-} 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
if [ "$DELAY_MS" != 0 ]; then
    # The clients talk to the proxy; the server's log still counts their commands.
    SERVER_PORT=$PORT
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    python3 "$HERE/delay_proxy.py" "$PORT" "$SERVER_PORT" "$(python3 -c "print($DELAY_MS / 1000)")" &
    PROXY=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
fi
printf 'machine 127.0.0.1 login bench password benchpw\n' >"$WORK/home/.netrc"
chmod 600 "$WORK/home/.netrc"

# The server's CPU seconds so far (user + system, from /proc): pyftpdlib runs on one thread, so
# when its CPU time over a run nears the run's wall time, the server, not the client, sets the pace.
TICKS=$(getconf CLK_TCK)
server_cpu() { awk -v hz="$TICKS" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$SERVER/stat"; }

# measure NAME CMD...: wall seconds (appended to SECS[NAME]), the server's CPU seconds
# meanwhile (SRV[NAME]), and the per-file commands it saw (CMDS[NAME]) and all commands, logins,
# EPSV/PASV and SITE included (ALL[NAME]), last round.
declare -A SECS SRV CMDS ALL
measure() {
    local name=$1; shift
    local before after t0 t1 c0 c1
    sync # the previous upload's writeback must not land on this one's time
    before=$(wc -l <"$LOG")
    c0=$(server_cpu)
    t0=$EPOCHREALTIME
    "$@" >"$WORK/$name.out" 2>&1 || { echo "bench-ftp: $name failed:" >&2; cat "$WORK/$name.out" >&2; exit 1; }
    t1=$EPOCHREALTIME
    c1=$(server_cpu)
    sleep 0.2 # let the server flush its log
    after=$(wc -l <"$LOG")
    local secs
    secs=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
    SECS[$name]="${SECS[$name]:-} $secs"
    SRV[$name]="${SRV[$name]:-} $(python3 -c "print(f'{$c1 - $c0:.2f}')")"
    CMDS[$name]=$(sed -n "$((before + 1)),${after}p" "$LOG" | grep -cE '<- (STOR|RETR|MLST|SIZE|MDTM|MFMT|DELE|RNFR) ' || true)
    ALL[$name]=$(sed -n "$((before + 1)),${after}p" "$LOG" | grep -c '<- ' || true)
    say "$(printf '%-14s %8s s  server CPU %5s s  %6s per-file commands' "$name" "$secs" "${SRV[$name]##* }" "${CMDS[$name]}")"
}

# Each round uploads into fresh folders, the three tools in a rotated order (this machine's disk
# is noisy: one file creation costs the server 0.03 ms or 1 ms from one minute to the next), then
# re-runs each as a no-op. Figures are medians over the rounds.
ps() { HOME=$WORK/home "$PS" -q --state-dir "$WORK/state$R" sync --mode clone "$WORK/src" "ftp://bench@127.0.0.1:$PORT/ps$R"; }
lftp1() { lftp -u bench,benchpw -e "set ftp:use-mdtm on; mirror -R --parallel=1 $WORK/src /lftp1-$R; quit" "ftp://127.0.0.1:$PORT"; }
lftp4() { lftp -u bench,benchpw -e "set ftp:use-mdtm on; mirror -R --parallel=4 $WORK/src /lftp4-$R; quit" "ftp://127.0.0.1:$PORT"; }
ROUNDS=${ROUNDS:-3}
TOOLS=(ps lftp1 lftp4)
for R in $(seq "$ROUNDS"); do
    mkdir -p "$WORK/root/ps$R" "$WORK/state$R"
    for i in 0 1 2; do
        tool=${TOOLS[$(((i + R - 1) % 3))]}
        measure "${tool}_initial" "$tool"
    done
    diff -r "$WORK/src" "$WORK/root/ps$R" >/dev/null || { echo "bench-ftp: pairsync upload differs" >&2; exit 1; }
    for tool in "${TOOLS[@]}"; do measure "${tool}_noop" "$tool"; done
done

median() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" $1; }
declare -A MED SMED
for n in "${!SECS[@]}"; do MED[$n]=$(median "${SECS[$n]}"); SMED[$n]=$(median "${SRV[$n]}"); done
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
# Per round: pairsync initial / lftp --parallel=4 initial.
RATIOS=$(python3 -c "import sys; a, b = sys.argv[1].split(), sys.argv[2].split(); print(' '.join(f'{float(x) / float(y):.2f}' for x, y in zip(a, b)))" "${SECS[ps_initial]}" "${SECS[lftp4_initial]}")
{
    echo "# pairsync FTP benchmark"
    echo
    echo "Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(cd "$REPO" && git rev-parse --short HEAD), nproc: $(nproc), $FILES files in 20 folders (0-64 KiB), pyftpdlib $(python3 -c 'import pyftpdlib; print(pyftpdlib.__ver__)') on loopback serving $WORK/root ($(df --output=fstype "$WORK" | tail -1)), $(lftp --version | head -1)"
    [ "$DELAY_MS" = 0 ] || { echo; echo "Control connections through bench/delay_proxy.py, $DELAY_MS ms each way (a round trip of $((2 * DELAY_MS)) ms a command)."; }
    echo
    echo "Medians of $ROUNDS rounds (each round: fresh folders, the tools in a rotated order)."
    echo
    echo "| command | median seconds | every round | server CPU s (median) | server busy | per-file commands | all commands |"
    echo "|---|---:|---|---:|---:|---:|---:|"
    for n in ps_initial lftp1_initial lftp4_initial ps_noop lftp1_noop lftp4_noop; do
        echo "| $n | ${MED[$n]} | ${SECS[$n]# } | ${SMED[$n]} | $(python3 -c "print(f'{100 * ${SMED[$n]} / ${MED[$n]}:.0f} %')") | ${CMDS[$n]} | ${ALL[$n]} |"
    done
    echo
    echo "| ratio (medians) | value | target |"
    echo "|---|---:|---|"
    echo "| pairsync no-op / lftp --parallel=1 no-op | $(ratio "${MED[ps_noop]}" "${MED[lftp1_noop]}") | <= 1 |"
    echo "| pairsync no-op / lftp --parallel=4 no-op | $(ratio "${MED[ps_noop]}" "${MED[lftp4_noop]}") | <= 1 |"
    echo "| pairsync no-op per-file commands | ${CMDS[ps_noop]} | 0 |"
    echo "| pairsync initial / lftp --parallel=4 initial | $(ratio "${MED[ps_initial]}" "${MED[lftp4_initial]}") | <= 1 |"
    echo "| pairsync initial / lftp --parallel=1 initial | $(ratio "${MED[ps_initial]}" "${MED[lftp1_initial]}") | |"
    echo
    echo "pairsync initial / lftp --parallel=4 initial, round by round: $RATIOS."
    echo "Server CPU for the initial upload, pairsync / lftp --parallel=4 (medians): $(ratio "${SMED[ps_initial]}" "${SMED[lftp4_initial]}")."
    echo "Server busy: its CPU seconds over the run's wall seconds; near 100 %, the one-threaded server sets the pace."
    echo
    echo "pairsync: \`pairsync sync --mode clone SRC ftp://bench@127.0.0.1:PORT/psN\` (4 connections);"
    echo "lftp: \`lftp -e 'set ftp:use-mdtm on; mirror -R --parallel=N SRC /lftpN-R'\`."
} >"$RESULTS"
cat "$RESULTS"
