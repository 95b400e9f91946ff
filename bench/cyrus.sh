#!/usr/bin/env bash
# Cyrus benchmark (issue 12 item 7): `pairsync mail` on a Cyrus IMAP 3.6 spool against `rsync -a`
# of the spool, side by side in one run, warm cache, ROUNDS rounds per measurement (medians and
# min-max). A private Cyrus server (../shared/mail/cyrus-test-server.md: UUID layout, the default;
# hashimapspool: yes; sync_log: 1; no EVENTS, so nothing expires) runs in BENCH_DIR as the cyrus
# user; 5 users x 10 folders = 50 mailboxes (INBOX, Sent, ..., Archive.2024, ...) receive 1,000
# messages of 2-60 KB each over LMTP (bench/cyrus_gen.py: one connection, one message per
# transaction, the mailboxes in turn, as mail arrives). Then:
#   1. initial replication into an empty folder: `pairsync mail -A` (fresh replica, fresh state)
#      against `rsync -a` of what an admin would copy: the partition, configdirectory, sievedir;
#   2. no-op: the same again (`rsync -a --delete`);
#   3. one delivery (LMTP, which writes `APPEND`/`MAILBOX` to Cyrus's sync log):
#      the cycle of a running `pairsync -v mail -r -d 1` (the duration its `cycle:` line prints),
#      a one-shot `pairsync mail -r -1` process, a full `pairsync mail -A` pass, `rsync -a`;
#   4. 1,000 flag changes (an owner's IMAP `STORE 1:* +FLAGS.SILENT (\Seen)` on a mailbox of 1,000
#      messages, one session): `pairsync mail -r -1` (what it copies) against `rsync -a --delete
#      --stats` (Total bytes sent, Literal data).
# The sync log is consumed (`mail -r -1`) before every measured delivery and flag change, so each
# cycle carries only its own change. Nothing is dropped from the page cache (the same for every
# tool); `sync` before each measurement.
#
# Usage: bash bench/cyrus.sh           (as root: master runs as the cyrus user)
# Env:   BENCH_DIR (/tmp/pairsync-cyrus-bench, wiped at start, removed at exit unless KEEP=1),
#        MAILBOXES (50), MESSAGES (1000 per mailbox), ROUNDS (5), CYCLE_ROUNDS (3 x ROUNDS:
#        deliveries to the running replicator), SEED, LMTP_CONNECTIONS (1), IMAP_PORT (the first
#        free port from 15143), ROLL_DEADLINE (60: seconds to wait for a cycle line).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
WORK=${BENCH_DIR:-/tmp/pairsync-cyrus-bench}
MAILBOXES=${MAILBOXES:-50}
MESSAGES=${MESSAGES:-1000}
ROUNDS=${ROUNDS:-5}
CYCLE_ROUNDS=${CYCLE_ROUNDS:-$((3 * ROUNDS))}
SEED=${SEED:-20240601}
LMTP_CONNECTIONS=${LMTP_CONNECTIONS:-1}
ROLL_DEADLINE=${ROLL_DEADLINE:-60}
RESULTS=$HERE/cyrus-results.md
CYRUS_BIN=/usr/lib/cyrus/bin
GEN=$HERE/cyrus_gen.py
T_START=$EPOCHREALTIME

die() { echo "bench-cyrus: ERROR: $*" >&2; exit 1; }
say() { echo "bench-cyrus: $*" >&2; }

# ---- peers -------------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (Cyrus's master is started as the cyrus user)"
[ -x "$CYRUS_BIN/master" ] || die "cyrus-imapd is not installed ($CYRUS_BIN/master)"
id -u cyrus >/dev/null 2>&1 || die "no cyrus account"
missing=()
command -v rsync >/dev/null || missing+=(rsync)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v python3 >/dev/null || die "python3 is required (bench/cyrus_gen.py)"

# ---- build -------------------------------------------------------------------------------------
say "cargo build --release"
(cd "$REPO" && cargo build --release --quiet)
PS=${CARGO_TARGET_DIR:-$REPO/target}/release/pairsync
[ -x "$PS" ] || die "no binary at $PS"
# The commit measured: the one built (the tree may move while the bench runs).
COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | wc -l)
if [ "$DIRTY" -gt 0 ]; then COMMIT="$COMMIT + uncommitted changes to $DIRTY paths under src/ Cargo.*"; fi

# ---- work dir ----------------------------------------------------------------------------------
case "$WORK" in /|"$HOME"|"") die "refusing BENCH_DIR=$WORK" ;; esac
if [ -e "$WORK" ] && [ ! -e "$WORK/.pairsync-cyrus-bench" ] && [ -n "$(ls -A "$WORK")" ]; then
    die "$WORK exists, is not empty and is not a previous bench dir; pick another BENCH_DIR"
fi
if [ -s "$WORK/cyrus/run/master.pid" ]; then # a previous run killed before its cleanup
    old=$(cat "$WORK/cyrus/run/master.pid")
    if [ "$(cat /proc/"$old"/comm 2>/dev/null)" = master ]; then kill "$old" 2>/dev/null || true; sleep 2; fi
fi
rm -rf "$WORK"
mkdir -p "$WORK/logs"
touch "$WORK/.pairsync-cyrus-bench"
WORK=$(cd "$WORK" && pwd)
chmod 755 "$WORK"
BASE=$WORK/cyrus             # the Cyrus server: imapd.conf, cyrus.conf, conf/, spool/, sieve/, run/
SPOOL=$BASE/spool CONFDIR=$BASE/conf SIEVEDIR=$BASE/sieve
IMAPD_CONF=$BASE/imapd.conf
LMTP=$BASE/run/socket/lmtp
SYNCLOG=$CONFDIR/sync/log
SHUTDOWN=$CONFDIR/sync/shutdown # sync_shutdown_file: what stops the rolling replicator
LOGS=$WORK/logs RAW=$WORK/raw.tsv
: >"$RAW"
: >"$WORK/notes.tsv"
use_round() { # each initial round writes into its own folders; the later phases use the last round's
    PSR=$WORK/replica-pairsync.$1 # pairsync's replica
    RSR=$WORK/replica-rsync.$1    # rsync -a's copy
    STATE=$WORK/state.$1 CONF=$WORK/pairsync.$1.toml
}

# ---- the Cyrus server ----------------------------------------------------------------------------
free_port() { # the first port from $1 nobody listens on
    python3 - "$1" <<'PY'
import socket, sys
for port in range(int(sys.argv[1]), int(sys.argv[1]) + 500):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    sys.exit("no free port")
PY
}
IMAP_PORT=${IMAP_PORT:-$(free_port 15143)}
mkdir -p "$CONFDIR/socket" "$SPOOL" "$SIEVEDIR" "$BASE/run/proc" "$BASE/run/lock" "$BASE/run/socket"
cat >"$IMAPD_CONF" <<EOF
configdirectory: $CONFDIR
partition-default: $SPOOL
defaultpartition: default
sievedir: $SIEVEDIR
proc_path: $BASE/run/proc
mboxname_lockpath: $BASE/run/lock
lmtpsocket: $LMTP
idlesocket: $BASE/run/socket/idle
notifysocket: $BASE/run/socket/notify
admins: cyrus
allowplaintext: yes
sasl_pwcheck_method: alwaystrue
sasl_mech_list: PLAIN
hashimapspool: yes
unixhierarchysep: no
altnamespace: no
lmtp_downcase_rcpt: yes
sync_log: 1
sync_shutdown_file: $SHUTDOWN
syslog_prefix: pairsync-cyrus-bench
EOF
cat >"$BASE/cyrus.conf" <<EOF
START {
  recover cmd="ctl_cyrusdb -r -C $IMAPD_CONF"
}
SERVICES {
  imap     cmd="imapd -C $IMAPD_CONF"  listen="127.0.0.1:$IMAP_PORT" prefork=0
  lmtpunix cmd="lmtpd -C $IMAPD_CONF"  listen="$LMTP" prefork=0
}
EVENTS {
}
DAEMON {
}
EOF
chown -R cyrus:mail "$BASE"
chmod 755 "$BASE"

ROLL_PID= TAIL_PID= MASTER_PID=
stop_master() {
    [ -n "$MASTER_PID" ] || return 0
    kill "$MASTER_PID" 2>/dev/null || true
    local i
    for i in $(seq 300); do kill -0 "$MASTER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$MASTER_PID" 2>/dev/null && say "WARNING: Cyrus master $MASTER_PID still running 30 s after SIGTERM"
    MASTER_PID=
}
cleanup() {
    # A rolling replicator still running (the run stopped early): its pairsync (the child of
    # /usr/bin/time), then time and the tail following its output; by their ids.
    if [ -n "$ROLL_PID" ] && kill -0 "$ROLL_PID" 2>/dev/null; then
        kill $(pgrep -P "$ROLL_PID") "$ROLL_PID" 2>/dev/null || true
    fi
    [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null || true
    stop_master
    [ "${KEEP:-0}" = 1 ] && { say "KEEP=1: trees left in $WORK"; return; }
    rm -rf "$BASE" "$WORK"/replica-* "$WORK"/state.*
}
trap cleanup EXIT

say "starting Cyrus $(dpkg-query -W -f '${Version}' cyrus-imapd 2>/dev/null) in $BASE (IMAP 127.0.0.1:$IMAP_PORT, LMTP $LMTP)"
runuser -u cyrus -- "$CYRUS_BIN/master" -C "$IMAPD_CONF" -M "$BASE/cyrus.conf" -p "$BASE/run/master.pid" \
    -d -L "$BASE/master.log"
for i in $(seq 150); do
    [ -s "$BASE/run/master.pid" ] && MASTER_PID=$(cat "$BASE/run/master.pid")
    [ -S "$LMTP" ] && python3 -c "import imaplib; imaplib.IMAP4('127.0.0.1', $IMAP_PORT).logout()" 2>/dev/null && break
    [ "$i" -eq 150 ] && { tail -n 20 "$BASE/master.log" >&2; die "Cyrus did not answer within 30 s"; }
    sleep 0.2
done
[ -n "$MASTER_PID" ] || die "no master pid in $BASE/run/master.pid"

# ---- helpers -------------------------------------------------------------------------------------
write_conf() { # FILE REPLICA: the [mail] table for this Cyrus, one directory replica
    cat >"$1" <<EOF
[mail]
layout = "cyrus"
cyrus_config = "$IMAPD_CONF"

[[mail.replica]]
name = "bench"
directory = "$2"
EOF
}
ps_mail() { "$PS" -C "$CONF" --state-dir "$STATE" mail "$@"; }

# measure KEY CMD...: wall seconds (EPOCHREALTIME) and peak RSS (/usr/bin/time %M, the largest
# process) appended to $RAW; output in $LOGS/NNN.KEY.out (LAST_OUT). A non-zero exit stops the run.
RUN=0
measure() {
    local key=$1; shift
    RUN=$((RUN + 1))
    local base rc=0 t0 t1 kb secs
    base=$LOGS/$(printf '%03d' "$RUN").$key
    LAST_OUT=$base.out
    sync # the previous step's writeback must not land on this one
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%e %M' -o "$base.time" "$@" >"$base.out" 2>"$base.err" || rc=$?
    t1=$EPOCHREALTIME
    if [ "$rc" -ne 0 ]; then
        echo "bench-cyrus: ERROR: '$*' exited $rc" >&2
        tail -n 20 "$base.out" "$base.err" >&2
        [ "$rc" -eq 4 ] && echo "bench-cyrus: exit 4 is pairsync's safety stop" >&2
        exit 1
    fi
    kb=$(tail -n 1 "$base.time" | awk '{print $2}')
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')
    printf '%s\t%s\t%s\n' "$key" "$secs" "$kb" >>"$RAW"
    say "$(printf '%-14s %8.3f s %7.1f MB' "$key" "$secs" "$(awk -v k="$kb" 'BEGIN{print k/1024}')")"
}
note() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/notes.tsv"; } # KEY TEXT: a figure for the table
ps_summary() { grep -o '[0-9]* mailboxes: copied [0-9]* ([^)]*)' "$1" | tail -n 1 || echo "no summary line"; }
ps_copied_files() { # the files a -v run copied, by name within their folder, with their sizes
    sed -n 's|^copy .*/\([^/]*\) (\([0-9]*\) bytes)$|\1 \2 B|p' "$1" | sed 's/^[0-9]*\. / message /' |
        sort | uniq -c | awk '{$1 = $1 " x"; print}' | paste -sd ';' - | sed 's/;/; /g'
}
rsync_stat() { awk -F': ' -v k="$2" '$1 == k {gsub(",", "", $2); split($2, a, " "); print a[1]}' "$1"; }
# rotated ROUND TOOL...: the tools in a rotated order, so that no tool always runs first.
rotated() { local r=$1; shift; local a=("$@") i; for i in "${!a[@]}"; do echo "${a[$(((i + r) % ${#a[@]}))]}"; done; }
# log_consumed: Cyrus's sync log processed (neither log nor log-run), within ROLL_DEADLINE seconds.
log_consumed() {
    local deadline=$((SECONDS + ROLL_DEADLINE))
    while [ -e "$SYNCLOG" ] || [ -e "$SYNCLOG-run" ]; do
        [ "$SECONDS" -lt "$deadline" ] || die "the sync log was not consumed within ${ROLL_DEADLINE} s"
        sleep 0.05
    done
}
consume() { ps_mail -r -1 >"$LOGS/consume.out" 2>&1 || die "mail -r -1 (consuming the log): $(cat "$LOGS/consume.out")"; }
# same_tree WHEN: the spool (the stage. folder of lmtpd aside) and the user files against
# pairsync's replica, byte for byte, but for the users' conversations.db: lmtpd updates it with
# each delivery, and a cycle for an APPEND/MAILBOX line replicates the mailbox, not its owner's
# databases (a USER or META line, -u or -A does). How many differ is noted (CONV_DIFFS).
CONV_DIFFS=()
same_tree() {
    { diff -r -x 'stage.' "$SPOOL" "$PSR/data/default" && diff -r -x conversations.db "$CONFDIR/user" "$PSR/conf/user"; } \
        >"$LOGS/diff.out" 2>&1 || { head -n 20 "$LOGS/diff.out" >&2; die "pairsync's replica differs from the spool ($1)"; }
    local n=0 f
    while IFS= read -r f; do
        cmp -s "$f" "$PSR/conf/user/${f#"$CONFDIR/user/"}" || n=$((n + 1))
    done < <(find "$CONFDIR/user" -name conversations.db)
    CONV_DIFFS+=("$1: $n")
    [ "$n" -eq 0 ] || say "$n users' conversations.db differ from the replica's ($1)"
}
warm() { find "$SPOOL" "$CONFDIR" "$SIEVEDIR" -type f -exec cat {} + >/dev/null; }

LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
# ---- data --------------------------------------------------------------------------------------
say "creating $MAILBOXES mailboxes, delivering $MESSAGES messages into each over LMTP"
python3 "$GEN" setup "$IMAP_PORT" "$MAILBOXES" >&2
python3 "$GEN" deliver "$LMTP" "$MAILBOXES" "$MESSAGES" "$SEED" "$LMTP_CONNECTIONS" | tee "$WORK/gen.out" >&2
mapfile -t BOXES < <(python3 "$GEN" mailboxes "$MAILBOXES") # user TAB folder TAB internal name TAB rcpt
# The deliveries' sync log (an APPEND and a MAILBOX line each): what the -A passes replicate, so it
# goes, as an admin starting replication from a full pass would leave it.
LOG_LINES=$(wc -l <"$SYNCLOG")
rm -f "$SYNCLOG"
sync
SPOOL_BYTES=$(du -s --apparent-size -B1 "$SPOOL" "$CONFDIR" "$SIEVEDIR" | awk '{s += $1} END {print s}')
SPOOL_FILES=$(find "$SPOOL" "$CONFDIR" "$SIEVEDIR" -type f | wc -l)
MESSAGE_FILES=$(find "$SPOOL" -type f -name '[0-9]*.' | wc -l)
CONF_BYTES=$(du -s --apparent-size -B1 "$CONFDIR" | cut -f1)
[ "$MESSAGE_FILES" -eq $((MAILBOXES * MESSAGES)) ] || die "the spool holds $MESSAGE_FILES message files"
say "spool: $MESSAGE_FILES messages, $SPOOL_FILES files, $((SPOOL_BYTES / 1048576)) MiB (sync log of $LOG_LINES lines removed)"

# ---- 1. initial replication ----------------------------------------------------------------------
fresh() { case $1 in ps) mkdir "$PSR"; write_conf "$CONF" "$PSR" ;; rsync) mkdir "$RSR" ;; esac; }
run_tool() { # TOOL PHASE: one measured pass of TOOL
    local tool=$1 phase=$2
    case $tool in
        ps) if [ "$phase" = deliver ]; then # -v: which files the pass copied
                measure ps_deliver "$PS" -v -C "$CONF" --state-dir "$STATE" mail -A
                note ps_deliver_files "$(ps_copied_files "$LAST_OUT")"
            else
                measure "ps_$phase" "$PS" -C "$CONF" --state-dir "$STATE" mail -A
            fi
            note "ps_$phase" "$(ps_summary "$LAST_OUT")" ;;
        rsync)
            if [ "$phase" = init ]; then measure rsync_init rsync -a --stats "$SPOOL" "$CONFDIR" "$SIEVEDIR" "$RSR/"
            else measure "rsync_$phase" rsync -a --delete --stats "$SPOOL" "$CONFDIR" "$SIEVEDIR" "$RSR/"; fi
            note "rsync_$phase" "$(rsync_stat "$LAST_OUT" 'Total bytes sent') $(rsync_stat "$LAST_OUT" 'Literal data') $(rsync_stat "$LAST_OUT" 'Number of regular files transferred')" ;;
    esac
}
for r in $(seq "$ROUNDS"); do
    use_round "$r"
    warm # the spool stays in the page cache
    mapfile -t order < <(rotated "$r" ps rsync)
    say "initial replication, round $r/$ROUNDS: ${order[*]}"
    for tool in "${order[@]}"; do
        fresh "$tool"
        run_tool "$tool" init
    done
    # The round before's trees go now, after this round's measurements (keeps the disk in bounds).
    if [ "$r" -gt 1 ]; then rm -rf "$WORK/replica-pairsync.$((r - 1))" "$WORK/replica-rsync.$((r - 1))" "$WORK/state.$((r - 1))"; fi
done
same_tree "initial"
PS_REPLICA_BYTES=$(du -s --apparent-size -B1 "$PSR" | cut -f1)
RS_COPY_BYTES=$(du -s --apparent-size -B1 "$RSR" | cut -f1)

# ---- 2. no-op ------------------------------------------------------------------------------------
for r in $(seq "$ROUNDS"); do
    mapfile -t order < <(rotated "$r" ps rsync statwalk)
    say "no-op, round $r/$ROUNDS: ${order[*]}"
    for tool in "${order[@]}"; do
        if [ "$tool" = statwalk ]; then measure statwalk find "$SPOOL" "$CONFDIR" "$SIEVEDIR" -printf '%s %T@\n'; continue; fi
        run_tool "$tool" noop
        if [ "$tool" = ps ]; then
            grep -q 'copied 0 (0 B), renamed 0, deleted 0' "$LAST_OUT" || say "WARNING: pairsync's no-op did work: $(cat "$LAST_OUT")"
        fi
    done
done

# ---- 3. one delivery -------------------------------------------------------------------------------
# Recipients, one per delivery, in turn (INBOXes and folders of every user).
RCPTS=(alice bob+Sent carol+Archive.2024 dave+Junk erin+Work bob alice+Drafts)
rcpt_of() { echo "${RCPTS[$((($1 - 1) % ${#RCPTS[@]}))]}"; }
deliver() { python3 "$GEN" one "$LMTP" "$1" "$2" >&2; } # RCPT SEED
consume # whatever Cyrus logged so far (nothing: no IMAP or LMTP since the deliveries)

# 3a. The in-process cycle: one `pairsync -v mail -r -d 1` runs in the background, as a rolling
# replicator does for days; each round delivers one message over LMTP (lmtpd writes `APPEND` and
# `MAILBOX` to the sync log) and reads the duration the replicator prints for the cycle that carried
# it (`pairsync mail: cycle: <summary> in <secs> s`: the cycle's own work, not the wait between
# cycles). Its stdout is followed with `tail -f` and `read -t`, with a deadline; the next delivery
# waits until the log is consumed. It stops on sync_shutdown_file, as sync_client does.
STATE_ROLL=$STATE
ROLL_OUT=$LOGS/roll.out ROLL_ERR=$LOGS/roll.err ROLL_TIME=$LOGS/roll.time
rm -f "$SHUTDOWN"
sync
/usr/bin/time -f '%e %M' -o "$ROLL_TIME" "$PS" -v -C "$CONF" --state-dir "$STATE_ROLL" mail -r -d 1 \
    >"$ROLL_OUT" 2>"$ROLL_ERR" &
ROLL_PID=$!
exec {ROLL_FD}< <(exec tail -n +1 --pid="$ROLL_PID" -f "$ROLL_OUT")
TAIL_PID=$!
next_cycle() { # the replicator's next `cycle:` line (CYCLE_LINE), within ROLL_DEADLINE seconds
    local deadline=$((SECONDS + ROLL_DEADLINE)) line left
    while left=$((deadline - SECONDS)) && [ "$left" -gt 0 ]; do
        IFS= read -r -t "$left" -u "$ROLL_FD" line || break
        case $line in "pairsync mail: cycle: "*) CYCLE_LINE=$line; return 0 ;; esac
    done
    tail -n 20 "$ROLL_OUT" "$ROLL_ERR" >&2
    kill -0 "$ROLL_PID" 2>/dev/null && die "no cycle line from the rolling replicator within ${ROLL_DEADLINE} s"
    die "the rolling replicator ended before its cycle line"
}
ROLL_CYCLES=() ROLL_SEEN=() ROLL_NOTES=()
for r in $(seq "$CYCLE_ROUNDS"); do
    rcpt=$(rcpt_of "$r")
    log_consumed
    say "one delivery, running replicator, round $r/$CYCLE_ROUNDS: $rcpt"
    deliver "$rcpt" "$((200 + r))"
    t0=$EPOCHREALTIME
    next_cycle
    t1=$EPOCHREALTIME
    secs=$(sed -n 's/.* in \([0-9.]*\) s$/\1/p' <<<"$CYCLE_LINE")
    [ -n "$secs" ] || die "no duration in the cycle line: $CYCLE_LINE"
    ROLL_CYCLES+=("$secs")
    ROLL_SEEN+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')")
    ROLL_NOTES+=("$(grep -o '[0-9]* mailboxes: copied [0-9]* ([^)]*)' <<<"$CYCLE_LINE" || echo "$CYCLE_LINE")")
    grep -q 'cycle: 1 mailboxes: copied [1-9]' <<<"$CYCLE_LINE" || say "WARNING: the cycle did not copy the delivery: $CYCLE_LINE"
    say "$(printf '%-14s %8.3f s (cycle line; %.3f s from the delivery to it)' ps_roll "$secs" "${ROLL_SEEN[-1]}")"
done
log_consumed
say "stopping the rolling replicator: $SHUTDOWN"
touch "$SHUTDOWN"
deadline=$((SECONDS + ROLL_DEADLINE))
while left=$((deadline - SECONDS)) && [ "$left" -gt 0 ] && IFS= read -r -t "$left" -u "$ROLL_FD" _; do :; done
kill -0 "$ROLL_PID" 2>/dev/null && die "the rolling replicator is still running ${ROLL_DEADLINE} s after the shutdown file"
rc=0; wait "$ROLL_PID" || rc=$?
exec {ROLL_FD}<&-
wait "$TAIL_PID" 2>/dev/null || true
ROLL_PID= TAIL_PID=
[ "$rc" -eq 0 ] || { tail -n 20 "$ROLL_OUT" "$ROLL_ERR" >&2; die "the rolling replicator exited $rc"; }
[ ! -e "$SHUTDOWN" ] || say "WARNING: the shutdown file was not removed"
grep -q 'shutdown file found' "$ROLL_OUT" || say "WARNING: no shutdown line from the rolling replicator"
ROLL_EXTRA=$(($(grep -c '^pairsync mail: cycle: ' "$ROLL_OUT") - CYCLE_ROUNDS))
[ "$ROLL_EXTRA" -eq 0 ] || say "WARNING: the rolling replicator printed $ROLL_EXTRA more cycle lines than deliveries"
ROLL_KB=$(tail -n 1 "$ROLL_TIME" | awk '{print $2}')
for i in "${!ROLL_CYCLES[@]}"; do
    printf 'ps_roll\t%s\t%s\n' "${ROLL_CYCLES[$i]}" "$ROLL_KB" >>"$RAW"
    printf 'ps_roll_seen\t%s\t%s\n' "${ROLL_SEEN[$i]}" "$ROLL_KB" >>"$RAW"
    note ps_roll "${ROLL_NOTES[$i]}"
done
# What each cycle copied: the copy lines before each cycle line.
awk '/^copy /{print; next} /^pairsync mail: cycle: /{print "--"}' "$ROLL_OUT" >"$WORK/roll.copies"
while IFS= read -r -d '#' block; do
    [ -n "${block//[$'\n']/}" ] && note ps_roll_files "$(ps_copied_files <(printf '%s' "$block"))"
done < <(sed 's/^--$/#/' "$WORK/roll.copies")
same_tree "after the running replicator's cycles"

# 3b. One-shot processes: a delivery carried by `mail -r -1` (process start, state, the cycle),
# the fixed cost of such a run (no log), rsync; then another delivery carried by a full -A pass
# (its log lines then consumed, untimed), and rsync again.
for r in $(seq "$ROUNDS"); do
    rcpt=$(rcpt_of "$r")
    say "one delivery, one-shot processes, round $r/$ROUNDS: $rcpt"
    deliver "$rcpt" "$r"
    measure ps_once "$PS" -C "$CONF" --state-dir "$STATE" mail -r -1
    note ps_once "$(ps_summary "$LAST_OUT")"
    grep -q '1 mailboxes: copied [1-9]' "$LAST_OUT" || say "WARNING: the rolling cycle did not copy the delivery: $(cat "$LAST_OUT")"
    [ ! -e "$SYNCLOG" ] && [ ! -e "$SYNCLOG-run" ] || say "WARNING: the sync log was not consumed"
    measure ps_idle "$PS" -C "$CONF" --state-dir "$STATE" mail -r -1 # no log: the fixed cost
    run_tool rsync deliver
    deliver "$(rcpt_of "$((r + 3))")" "$((100 + r))"
    run_tool ps deliver
    grep -q 'copied [1-9]' "$LAST_OUT" || say "WARNING: the -A pass did not copy the delivery: $(cat "$LAST_OUT")"
    consume
    run_tool rsync deliver
done
same_tree "after the deliveries"

# ---- 4. flag changes -------------------------------------------------------------------------------
# Each round, one owner's Archive (1,000 messages, no delivery went there) gets \Seen on every
# message in one IMAP session: cyrus.index rewritten in place, `MAILBOX user.X.Archive` logged.
USERS=(alice bob carol dave erin)
for r in $(seq "$ROUNDS"); do
    user=${USERS[$(((r - 1) % ${#USERS[@]}))]}
    python3 "$GEN" flag "$IMAP_PORT" "$user" INBOX.Archive '\Seen' | tee "$WORK/flag.out" >&2
    FLAGGED=$(awk '{print $4}' "$WORK/flag.out")
    mapfile -t order < <(rotated "$r" ps rsync)
    say "$FLAGGED flag changes in user.$user.Archive, round $r/$ROUNDS: ${order[*]}"
    for tool in "${order[@]}"; do
        if [ "$tool" = ps ]; then
            measure ps_flags "$PS" -v -C "$CONF" --state-dir "$STATE" mail -r -1
            note ps_flags "$(ps_summary "$LAST_OUT"): $(ps_copied_files "$LAST_OUT")"
            ! grep -q '^copy .*/[0-9][0-9]*\. (' "$LAST_OUT" || say "WARNING: pairsync copied a message file after flag changes"
        else
            run_tool rsync flags
        fi
    done
done
same_tree "after the flag changes"
LOAD_END=$(cut -d" " -f1-3 /proc/loadavg)
stop_master

# ---- report ------------------------------------------------------------------------------------
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
FS=$(df --output=fstype "$WORK" | tail -n 1)
ELAPSED=$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", b-a}')
python3 - "$RAW" "$WORK/notes.tsv" "$FLAGGED" >"$WORK/table.md" <<'PY'
import re, statistics, sys
raw, notes_file, flagged = sys.argv[1:]
runs, notes = {}, {}
for line in open(raw):
    key, secs, kb = line.rstrip("\n").split("\t")[:3]
    runs.setdefault(key, []).append((float(secs), int(kb)))
for line in open(notes_file):
    key, text = line.rstrip("\n").split("\t", 1)
    notes.setdefault(key, []).append(text)
def med(k): return statistics.median(s for s, _ in runs[k])
def rng(k): return f"{min(s for s, _ in runs[k]):.3f}–{max(s for s, _ in runs[k]):.3f}"
def rss(k): return max(r for _, r in runs[k]) / 1024
def mb(b): return f"{b / 1e6:.2f} MB" if b >= 1e5 else f"{b / 1e3:.1f} KB"
def rsync_figures(k):
    rows = [tuple(int(x) for x in n.split()) for n in notes.get(k, [])]
    return rows
def note(k):
    xs = notes.get(k, [])
    if not xs: return ""
    if k.startswith("rsync"):
        rows = rsync_figures(k)
        sent = statistics.median(r[0] for r in rows)
        literal = statistics.median(r[1] for r in rows)
        files = sorted({r[2] for r in rows})
        return (f"sent {mb(sent)}, literal data {mb(literal)}, "
                f"{'/'.join(map(str, files))} files (medians)")
    if k in ("ps_roll", "ps_once", "ps_deliver"):  # one line per delivery: counted, sizes aside
        xs = [re.sub(r" \([^)]*\)", "", x) for x in xs]
        return "; ".join(f"{xs.count(x)} x {x}" for x in sorted(set(xs)))
    return "; ".join(sorted(set(xs)))
rows = [
    ("1. initial", "ps_init", "pairsync mail -A"),
    ("1. initial", "rsync_init", "rsync -a"),
    ("2. no-op", "ps_noop", "pairsync mail -A"),
    ("2. no-op", "rsync_noop", "rsync -a --delete"),
    ("2. no-op", "statwalk", "reference: find SPOOL CONF SIEVE -printf '%s %T@' (stat walk)"),
    ("3. one delivery", "ps_roll", "pairsync -v mail -r -d 1 running: the cycle's own time (its cycle line)"),
    ("3. one delivery", "ps_roll_seen", "reference: the same, delivery done -> cycle line read (waits for the -d 1 poll)"),
    ("3. one delivery", "ps_once", "pairsync mail -r -1, one-shot process"),
    ("3. one delivery", "ps_idle", "pairsync mail -r -1, no log (fixed cost of a process)"),
    ("3. one delivery", "ps_deliver", "pairsync -v mail -A (full pass)"),
    ("3. one delivery", "rsync_deliver", "rsync -a --delete"),
    (f"4. {flagged} flag changes", "ps_flags", "pairsync -v mail -r -1"),
    (f"4. {flagged} flag changes", "rsync_flags", "rsync -a --delete"),
]
out = ["| phase | command | median s | min–max s | runs | peak RSS MB | copied / sent |",
       "|---|---|---:|---|---:|---:|---|"]
for phase, k, label in rows:
    if k in runs:
        out.append(f"| {phase} | {label} | {med(k):.3f} | {rng(k)} | {len(runs[k])} | {rss(k):.1f} | {note(k)} |")
def ratio(a, b): return med(a) / med(b)
init_rounds = [p / r for (p, _), (r, _) in zip(runs["ps_init"], runs["rsync_init"])]
rolls = [c / med("ps_deliver") for c, _ in runs["ps_roll"]]
onces = [c / f for (c, _), (f, _) in zip(runs["ps_once"], runs["ps_deliver"])]
# bytes pairsync copied after the flag changes (its summary), against rsync's literal data / sent
def size(text):
    m = re.search(r"copied \d+ \(([\d.]+) (B|KiB|MiB|GiB)\)", text)
    return float(m.group(1)) * {"B": 1, "KiB": 1024, "MiB": 2**20, "GiB": 2**30}[m.group(2)] if m else float("nan")
ps_bytes = statistics.median(size(x) for x in notes["ps_flags"])
rs = rsync_figures("rsync_flags")
rs_sent = statistics.median(r[0] for r in rs); rs_lit = statistics.median(r[1] for r in rs)
only_index = all(re.search(r": 1 x cyrus\.index \d+ B$", x) for x in notes["ps_flags"])
out += ["", "| ratio | value (medians) | per round | reference (issue 12 sets no number; issue 10's Maildir targets) |",
        "|---|---:|---|---|"]
out.append(f"| pairsync initial / rsync -a initial | {ratio('ps_init', 'rsync_init'):.2f} | "
           f"{', '.join(f'{x:.2f}' for x in init_rounds)} (median {statistics.median(init_rounds):.2f}) | "
           f"≤ 1 by the per-round median: {'met' if statistics.median(init_rounds) <= 1 else '**not met**'} |")
out.append(f"| pairsync no-op / rsync -a no-op | {ratio('ps_noop', 'rsync_noop'):.2f} | | |")
out.append(f"| running rolling cycle / full -A pass, one delivery | {100 * ratio('ps_roll', 'ps_deliver'):.1f} % | "
           f"each cycle / -A median: {', '.join(f'{100 * x:.1f}' for x in rolls)} % | ≤ 2 %: "
           f"{'met' if ratio('ps_roll', 'ps_deliver') <= 0.02 else '**not met**'} |")
out.append(f"| one-shot mail -r -1 process / full -A pass | {100 * ratio('ps_once', 'ps_deliver'):.1f} % | "
           f"{', '.join(f'{100 * x:.1f}' for x in onces)} % | process start and state included |")
out.append(f"| full -A pass / rsync -a, one delivery | {ratio('ps_deliver', 'rsync_deliver'):.2f} | | |")
out.append(f"| flag changes: pairsync bytes copied / rsync literal data | {ps_bytes / rs_lit:.2f} "
           f"({mb(ps_bytes)} / {mb(rs_lit)}) | | pairsync copied only cyrus.index: {'yes' if only_index else '**no**'} |")
out.append(f"| flag changes: pairsync bytes copied / rsync total bytes sent | {ps_bytes / rs_sent:.3f} "
           f"({mb(ps_bytes)} / {mb(rs_sent)}) | | rsync's file list of the whole spool included |")
out.append(f"| flag changes: pairsync -r -1 / rsync -a time | {ratio('ps_flags', 'rsync_flags'):.2f} | | |")
def files(k, what):
    if k not in notes: return []
    passes = [re.sub(r" \d+ B", "", x) for x in notes[k]]
    sizes = {}
    for x in notes[k]:
        for m in re.finditer(r"(cyrus\.\w+|message) (\d+) B", x):
            sizes.setdefault(m.group(1), []).append(int(m.group(2)))
    shown = " or ".join(f"{passes.count(x)} x ({x})" for x in sorted(set(passes)))
    sz = ", ".join(f"{n} {statistics.median(v) / 1e3:.0f} KB" for n, v in sorted(sizes.items()))
    return ["", f"Files {what} copied: {shown}; median sizes: {sz}."]
out += files("ps_roll_files", "each cycle of the running replicator (phase 3a)")
out += files("ps_deliver_files", "each full -A pass of phase 3b")
print("\n".join(out))
PY

{
    echo "# pairsync Cyrus benchmark"
    echo
    echo "Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); commit $COMMIT; machine: $(nproc) cores ($CPU), $MEM RAM,"
    echo "kernel $(uname -r), $FS under $WORK; load average at start $LOAD_START, at end $LOAD_END"
    echo "(other work on the machine skews timings). pairsync $("$PS" --version | awk '{print $2}'),"
    echo "$(rsync --version | head -n1 | awk '{print "rsync " $3}'), Cyrus IMAP $(dpkg-query -W -f '${Version}' cyrus-imapd 2>/dev/null). Whole run: ${ELAPSED} s."
    echo
    echo "Spool: $(sed 's/^delivered //' "$WORK/gen.out")."
    echo "$MESSAGE_FILES message files; $SPOOL_FILES files, $((SPOOL_BYTES / 1048576)) MiB apparent in the partition,"
    echo "configdirectory ($((CONF_BYTES / 1048576)) MiB: mailboxes.db, deliver.db, user/*/conversations.db, ...) and sievedir."
    echo "UUID layout (\`spool/uuid/<u0>/<u1>/<uniqueid>/\`), hashimapspool: yes, sync_log: 1, no EVENTS."
    echo "Mailboxes: 5 users (alice, bob, carol, dave, erin) x 10 folders (INBOX, Sent, Drafts, Trash, Junk, Archive,"
    echo "Archive.2023, Archive.2024, Work, Lists), made by the admin; LMTP to \`user+Folder\` (\`anyone\` has \`p\`)."
    echo "The deliveries' sync log ($LOG_LINES lines) was removed before phase 1 (the -A passes replicate it all)."
    echo "After phase 1: pairsync's replica $((PS_REPLICA_BYTES / 1048576)) MiB, rsync's copy $((RS_COPY_BYTES / 1048576)) MiB (apparent)."
    echo
    echo "Warm cache: nothing dropped from the page cache (the same for both tools; the spool is read"
    echo "through before each initial round); \`sync\` before each measurement; tools in a rotated order each round;"
    echo "$ROUNDS rounds, $CYCLE_ROUNDS deliveries to the running replicator. Wall time by EPOCHREALTIME around"
    echo "\`/usr/bin/time -f '%e %M'\` (peak RSS: the largest process; for the running replicator, over its life)."
    echo
    cat "$WORK/table.md"
    echo
    echo "Commands (CONF: \`[mail] layout = \"cyrus\"\`, \`cyrus_config\` = the server's imapd.conf, one directory replica):"
    echo
    echo "- \`pairsync -C CONF --state-dir STATE mail -A\`, \`pairsync -C CONF --state-dir STATE mail -r -1\` (\`-v\` where the table says so)"
    echo "- running replicator: \`pairsync -v -C CONF --state-dir STATE mail -r -d 1\` in the background; each"
    echo "  round one LMTP delivery (lmtpd logs \`APPEND\` and \`MAILBOX\`), then its next"
    echo "  \`pairsync mail: cycle: ... in <secs> s\` line (followed with \`tail -f\`, deadline ${ROLL_DEADLINE} s); the next delivery"
    echo "  once the log is consumed; stopped by touching \`sync_shutdown_file\`. The one-shot and -A rows run after it"
    echo "  stopped (the pair is locked); after each -A row, its delivery's log lines are consumed by an untimed \`mail -r -1\`"
    echo "- \`rsync -a --stats SPOOL CONF SIEVE COPY/\` (initial), \`rsync -a --delete --stats SPOOL CONF SIEVE COPY/\` (later):"
    echo "  the partition, configdirectory and sievedir, as an admin would copy them (no lock taken: a live spool is not"
    echo "  copied consistently this way; pairsync reads each mailbox under Cyrus's lock on cyrus.index)"
    echo "- flag changes: \`cyrus_gen.py flag\`: LOGIN as the owner, SELECT INBOX.Archive, \`STORE 1:* +FLAGS.SILENT (\\Seen)\`"
    echo "- deliveries: \`cyrus_gen.py one\` (Python smtplib.LMTP on lmtpd's socket), a 2-60 KB message each"
    echo "- after phases 1, 3a, 3b and 4, \`diff -r\` of the spool (lmtpd's \`stage.\` aside) and \`conf/user\` against"
    echo "  pairsync's replica (\`data/default/\`, \`conf/user/\`): identical, but for the users' \`conversations.db\`"
    echo "  (lmtpd rewrites it at each delivery; a cycle for an APPEND/MAILBOX line does not copy the owner's databases,"
    echo "  a USER or META line, \`-u\` or \`-A\` does). conversations.db files differing from the replica's after"
    echo "  $(IFS=';'; echo "${CONV_DIFFS[*]}" | sed 's/;/; /g')"
} >"$RESULTS.new"
mv "$RESULTS.new" "$RESULTS"
echo
cat "$RESULTS"
say "raw timings: $RAW; logs: $LOGS; table written to $RESULTS"
