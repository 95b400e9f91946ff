#!/usr/bin/env bash
# Mail benchmark: `pairsync mail` against `rsync -a` and `doveadm backup` on a Dovecot Maildir++
# store of 50 mailboxes x 1,000 messages (2-50 KB, bench/mail_gen.py), side by side in one run,
# warm cache, ROUNDS rounds per measurement (medians and min-max):
#   1. initial replication into an empty directory (wall time, peak RSS);
#   2. no-op pass;
#   3. 1,000 flag changes (cur/X:2, -> cur/X:2,S in place): bytes each tool copies / sends, and
#      whether pairsync kept the replica's inodes;
#   4. one delivery (dovecot-lda) logged with `pairsync mail log APPEND`: the cycle of a running
#      `pairsync -v mail -r` (the duration it prints) against a full `mail -A` pass carrying one
#      delivery (target <= 2 %); a one-shot `mail -r -1` process (wall time) and
#      `rsync -a --delete` after one delivery for reference.
# Dovecot's tools run with no daemon (../shared/mail/dovecot-test-notes.md): as root, the store
# belongs to the system account MAIL_ACCOUNT and every doveadm / dovecot-lda runs as it through
# setpriv, with USER=<mail user>, HOME=<store>/<mail user> and a private dovecot.conf
# (mail_location = maildir:~/Maildir); as another user, as that user.
#
# Usage: bash bench/mail.sh
# Env:   BENCH_DIR (/tmp/pairsync-mail-bench, wiped at start; trees removed at exit unless KEEP=1),
#        MAILBOXES (50), MESSAGES (1000 per mailbox), ROUNDS (5), DOVEADM_INIT_ROUNDS (1: one
#        `doveadm backup` of the whole store takes 2-4 minutes here), FLAGS (1000), SEED,
#        MAIL_ACCOUNT (pairsync-bench), CYCLE_ROUNDS (3 x ROUNDS: deliveries to the running
#        replicator), ROLL_DEADLINE (60: seconds to wait for its cycle line).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
WORK=${BENCH_DIR:-/tmp/pairsync-mail-bench}
MAILBOXES=${MAILBOXES:-50}
MESSAGES=${MESSAGES:-1000}
ROUNDS=${ROUNDS:-5}
DV_INIT_ROUNDS=${DOVEADM_INIT_ROUNDS:-1}
FLAGS=${FLAGS:-1000}
SEED=${SEED:-20240601}
MAIL_ACCOUNT=${MAIL_ACCOUNT:-pairsync-bench}
RESULTS=$HERE/mail-results.md
LDA=/usr/lib/dovecot/dovecot-lda
T_START=$EPOCHREALTIME

die() { echo "bench-mail: ERROR: $*" >&2; exit 1; }
say() { echo "bench-mail: $*" >&2; }

# ---- peers -------------------------------------------------------------------------------------
missing=()
command -v rsync >/dev/null || missing+=(rsync)
{ command -v doveadm >/dev/null && [ -x "$LDA" ]; } || missing+=(dovecot-core)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    say "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v python3 >/dev/null || die "python3 is required (bench/mail_gen.py)"

# ---- build -------------------------------------------------------------------------------------
say "cargo build --release"
(cd "$REPO" && cargo build --release --quiet)
PS=${CARGO_TARGET_DIR:-$REPO/target}/release/pairsync
[ -x "$PS" ] || die "no binary at $PS"

# ---- the store's owner ---------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
    id -u "$MAIL_ACCOUNT" >/dev/null 2>&1 ||
        useradd --system --no-create-home --shell /usr/sbin/nologin "$MAIL_ACCOUNT" ||
        id -u "$MAIL_ACCOUNT" >/dev/null 2>&1 || die "cannot make the account $MAIL_ACCOUNT"
    OWNER=$MAIL_ACCOUNT
    OUID=$(id -u "$OWNER") OGID=$(id -g "$OWNER")
    SWITCH=(setpriv "--reuid=$OUID" "--regid=$OGID" --clear-groups)
else
    OWNER=$(id -un) OUID=$(id -u) OGID=$(id -g)
    SWITCH=()
fi

# ---- work dir ----------------------------------------------------------------------------------
case "$WORK" in /|"$HOME"|"") die "refusing BENCH_DIR=$WORK" ;; esac
if [ -e "$WORK" ] && [ ! -e "$WORK/.pairsync-mail-bench" ] && [ -n "$(ls -A "$WORK")" ]; then
    die "$WORK exists, is not empty and is not a previous bench dir; pick another BENCH_DIR"
fi
rm -rf "$WORK"
mkdir -p "$WORK/logs" "$WORK/etc" "$WORK/dovecot-log" "$WORK/run"
touch "$WORK/.pairsync-mail-bench"
WORK=$(cd "$WORK" && pwd)
chmod 755 "$WORK" "$WORK/etc"
STORE=$WORK/store          # the master: <user>/Maildir
DVR=$WORK/replica-doveadm  # doveadm backup's: <user>/Maildir
DCONF=$WORK/etc/dovecot.conf
# Each initial round writes into its own folders (deleting 50,000 files just before a measurement
# slows the next one down); phases 2-4 use the last round's.
use_round() {
    PSR=$WORK/replica-pairsync.$1 # pairsync's replica
    RSR=$WORK/replica-rsync.$1    # rsync -a's copy
    STATE=$WORK/state.$1 CONF=$WORK/pairsync.$1.toml
}
LOGS=$WORK/logs RAW=$WORK/raw.tsv
: >"$RAW"
ROLL_PID= TAIL_PID=
cleanup() {
    # A rolling replicator still running (the run stopped early): its pairsync (the child of
    # /usr/bin/time), then time and the tail following its output; by their ids.
    if [ -n "$ROLL_PID" ] && kill -0 "$ROLL_PID" 2>/dev/null; then
        kill $(pgrep -P "$ROLL_PID") "$ROLL_PID" 2>/dev/null || true
    fi
    [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] && { say "KEEP=1: trees left in $WORK"; return; }
    rm -rf "$STORE" "$WORK"/replica-* "$WORK"/state.* "$WORK/run"
}
trap cleanup EXIT

# write_conf FILE REPLICA: the [mail] table, one directory replica.
write_conf() {
    cat >"$1" <<EOF
[mail]
store = "$STORE"
layout = "maildir"
user_dir = "{user}/Maildir"

[[mail.replica]]
name = "bench"
type = "directory"
directory = "$2"
EOF
}
# The private Dovecot configuration (dovecot-test-notes.md): no daemon, the tools act on the user
# named by USER, whose HOME is <store>/<user>.
cat >"$DCONF" <<EOF
mail_location = maildir:~/Maildir
lda_mailbox_autocreate = yes
log_path = $WORK/dovecot-log/dovecot.log
info_log_path = $WORK/dovecot-log/dovecot.log
first_valid_gid = $OGID
base_dir = $WORK/run
stats_writer_socket_path =
protocols =
ssl = no
EOF
chmod 644 "$DCONF"
chown "$OUID:$OGID" "$WORK/dovecot-log" "$WORK/run"

# as_user USER CMD...: CMD as the store's owner, acting on mail user USER.
as_user() {
    local user=$1; shift
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin USER="$user" HOME="$STORE/$user" "${SWITCH[@]}" "$@"
}
# dv_backup DEST: `doveadm backup` of every user of the store into DEST/<user>/Maildir, in turn.
dv_backup() {
    local dest=$1 user
    for user in "${USERS[@]}"; do
        as_user "$user" doveadm -c "$DCONF" backup "maildir:$dest/$user/Maildir" || return
    done
}
# dovecot_sync: every mailbox opened by Dovecot, as any IMAP access would (index files updated).
dovecot_sync() {
    local user
    for user in "${USERS[@]}"; do
        as_user "$user" doveadm -c "$DCONF" mailbox status 'messages unseen' '*' >/dev/null
    done
}
export -f as_user dv_backup
ps_mail() { "$PS" -C "$CONF" --state-dir "$STATE" mail "$@"; }

# measure KEY CMD...: wall seconds (EPOCHREALTIME) and peak RSS (/usr/bin/time %M, the largest
# process) appended to $RAW; output in $LOGS/NN.KEY.out (LAST_OUT). A non-zero exit stops the run.
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
        echo "bench-mail: ERROR: '$*' exited $rc" >&2
        tail -n 20 "$base.out" "$base.err" >&2
        [ "$rc" -eq 4 ] && echo "bench-mail: exit 4 is pairsync's safety stop" >&2
        exit 1
    fi
    kb=$(tail -n 1 "$base.time" | awk '{print $2}')
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')
    printf '%s\t%s\t%s\t%s\n' "$key" "$secs" "$kb" "${NOTE:-}" >>"$RAW"
    say "$(printf '%-14s %8.3f s %7.1f MB  %s' "$key" "$secs" "$(awk -v k="$kb" 'BEGIN{print k/1024}')" "${NOTE:-}")"
}
# note KEY TEXT: a figure for the table (bytes copied, inodes kept...), one per run of KEY.
note() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/notes.tsv"; }
: >"$WORK/notes.tsv"
ps_summary() { grep -o 'copied [0-9]* ([^)]*), renamed [0-9]*' "$1" || echo "no summary line"; }
rsync_sent() { awk -F': ' '/^Total bytes sent/ {gsub(",", "", $2); print $2}' "$1"; }
inodes() { (cd "$PSR" && find . -type f \( -path '*/cur/*' -o -path '*/new/*' \) -printf '%i %P\n' | sed 's/:2,.*//' | sort); }
same_tree() { # WHEN [warn]: the store and pairsync's replica, byte for byte, Dovecot's caches aside
    diff -r -x 'dovecot.index*' -x 'dovecot.list.index*' -x 'dovecot.mailbox.log' "$STORE" "$PSR" >"$LOGS/diff.out" 2>&1 ||
        { head -n 20 "$LOGS/diff.out" >&2
          [ "${2:-}" = warn ] && { say "WARNING: pairsync's replica differs from the store ($1)"; return; }
          die "pairsync's replica differs from the store ($1)"; }
}
# tools rotated by round, so that no tool always runs first after a change.
rotated() { local r=$1; shift; local a=("$@") i; for i in "${!a[@]}"; do echo "${a[$(((i + r) % ${#a[@]}))]}"; done; }

LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
# ---- data --------------------------------------------------------------------------------------
say "generating $MAILBOXES mailboxes x $MESSAGES messages in $STORE"
python3 "$HERE/mail_gen.py" store "$STORE" "$MAILBOXES" "$MESSAGES" "$SEED" | tee "$WORK/gen.out" >&2
chown -R "$OUID:$OGID" "$STORE"
mapfile -t USERS < <(ls "$STORE")
dovecot_sync # Dovecot's own files (dovecot.index.log, dovecot.list.index.log), as a live server has them
STORE_SIZE=$(du -s --apparent-size -B1 "$STORE" | cut -f1)
STORE_FILES=$(find "$STORE" -type f | wc -l)
find "$STORE" -type f -exec cat {} + >/dev/null # warm cache
sync

# ---- 1. initial replication ----------------------------------------------------------------------
fresh() { # an empty replica for TOOL
    case $1 in
        ps) mkdir "$PSR"; write_conf "$CONF" "$PSR" ;;
        rsync) mkdir "$RSR" ;;
        doveadm) rm -rf "$DVR"; mkdir "$DVR"; chown "$OUID:$OGID" "$DVR" ;;
    esac
}
run_tool() { # TOOL PHASE: one measured pass of TOOL
    local tool=$1 phase=$2
    case $tool in
        ps) measure "ps_$phase" "$PS" -C "$CONF" --state-dir "$STATE" mail -A ;;
        rsync)
            if [ "$phase" = init ]; then measure rsync_init rsync -a --stats "$STORE/" "$RSR/"
            else measure "rsync_$phase" rsync -a --delete --stats "$STORE/" "$RSR/"; fi
            note "rsync_$phase" "$(rsync_sent "$LAST_OUT") B sent" ;;
        doveadm) measure "doveadm_$phase" bash -c "$(declare -p USERS STORE DCONF SWITCH); dv_backup $DVR" ;;
    esac
}
for r in $(seq "$ROUNDS"); do
    use_round "$r"
    find "$STORE" -type f -exec cat {} + >/dev/null # the store stays in the page cache
    tools=(ps rsync)
    mapfile -t order < <(rotated "$r" "${tools[@]}")
    # doveadm first: it adds dovecot.index files to the store's mailboxes the first time it runs.
    [ "$r" -le "$DV_INIT_ROUNDS" ] && order=(doveadm "${order[@]}")
    say "initial replication, round $r/$ROUNDS: ${order[*]}"
    for tool in "${order[@]}"; do
        fresh "$tool"
        run_tool "$tool" init
        [ "$tool" = ps ] && note ps_init "$(ps_summary "$LAST_OUT")"
    done
done
[ -d "$DVR" ] && [ -n "$(ls -A "$DVR")" ] || { fresh doveadm; say "doveadm backup for the later phases (not timed)"; dv_backup "$DVR"; }
same_tree "initial"
for r in $(seq $((ROUNDS - 1))); do rm -rf "$WORK/replica-pairsync.$r" "$WORK/replica-rsync.$r" "$WORK/state.$r"; done
DV_MESSAGES=$(find "$DVR" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)
[ "$DV_MESSAGES" -eq $((MAILBOXES * MESSAGES)) ] || say "WARNING: doveadm's replica holds $DV_MESSAGES messages"

# ---- 2. no-op ------------------------------------------------------------------------------------
for r in $(seq "$ROUNDS"); do
    mapfile -t order < <(rotated "$r" ps rsync doveadm statwalk)
    say "no-op, round $r/$ROUNDS: ${order[*]}"
    for tool in "${order[@]}"; do
        [ "$tool" = statwalk ] && { measure statwalk find "$STORE" -printf '%s %T@\n'; continue; }
        run_tool "$tool" noop
        if [ "$tool" = ps ]; then
            note ps_noop "$(ps_summary "$LAST_OUT")"
            grep -q 'copied 0 (0 B), renamed 0, deleted 0' "$LAST_OUT" || say "WARNING: pairsync's no-op did work: $(cat "$LAST_OUT")"
        fi
    done
done

# ---- 3. flag changes -------------------------------------------------------------------------------
for r in $(seq "$ROUNDS"); do
    python3 "$HERE/mail_gen.py" flag "$STORE" "$FLAGS" >&2
    dovecot_sync # Dovecot notices the new flags, as after `doveadm flags add`
    mapfile -t order < <(rotated "$r" ps rsync doveadm)
    say "$FLAGS flag changes, round $r/$ROUNDS: ${order[*]}"
    for tool in "${order[@]}"; do
        if [ "$tool" = ps ]; then
            inodes >"$WORK/inodes.before"
            run_tool ps flags
            inodes >"$WORK/inodes.after"
            kept=no; cmp -s "$WORK/inodes.before" "$WORK/inodes.after" && kept=yes
            note ps_flags "$(ps_summary "$LAST_OUT"), replica inodes unchanged: $kept"
            grep -q "copied 0 (0 B), renamed $FLAGS," "$LAST_OUT" || say "WARNING: pairsync after $FLAGS flag changes: $(cat "$LAST_OUT")"
        else
            run_tool "$tool" flags
        fi
    done
done
same_tree "after the flag changes"
# doveadm's replica: the same message names (so the same flags) as the store?
names() { (cd "$1" && find . -type f \( -path '*/cur/*' -o -path '*/new/*' \) -printf '%P\n' | sort); }
DV_DIFF=$(comm -3 <(names "$STORE") <(names "$DVR") | wc -l)
[ "$DV_DIFF" -eq 0 ] || say "WARNING: doveadm's replica and the store differ in $DV_DIFF message names after the flag changes"

# ---- 4. one delivery -------------------------------------------------------------------------------
# (user, Dovecot mailbox, Cyrus-style name for the sync log), one per round.
DELIVERIES=("alice|INBOX|user.alice" "john.doe|Work Stuff|user.john^doe.Work Stuff" "carol|Archive.2024|user.carol.Archive.2024"
    "bob|Sent|user.bob.Sent" "dave|Junk|user.dave.Junk")
deliver() { # USER MAILBOX SEED: one message through dovecot-lda, as the MTA hands it over
    python3 "$HERE/mail_gen.py" message "$3" >"$WORK/message"
    if [ "$2" = INBOX ]; then as_user "$1" "$LDA" -c "$DCONF" <"$WORK/message"
    else as_user "$1" "$LDA" -c "$DCONF" -m "$2" <"$WORK/message"; fi
}
# 4a. The in-process cycle: one `pairsync -v mail -r` runs in the background, as a rolling
# replicator does for days; each round delivers one message, logs it, and reads the duration the
# replicator prints for the cycle that carried it (`pairsync mail: cycle: <summary> in <secs> s`:
# the cycle's own work, from the merged log to the last mailbox replicated; not the wait between
# cycles, nor taking and unlinking the log). Its stdout is followed with `tail -f` (inotify) and
# `read -t`, so the bench waits for the line, with a deadline, and never sleeps a fixed time.
# pairsync locks (store, replica) (a second run exits 5), so the one-shot and -A rows (4b) run
# once it has stopped.
ROLL_DEADLINE=${ROLL_DEADLINE:-60}
# Rounds of the running replicator: cheap (about a second each), and a cycle of a few ms swings
# with the scheduling on a loaded machine, so more of them; the deliveries go round the 5 mailboxes.
CYCLE_ROUNDS=${CYCLE_ROUNDS:-$((3 * ROUNDS))}
STOPFILE=$WORK/roll.stop ROLL_OUT=$LOGS/roll.out ROLL_ERR=$LOGS/roll.err ROLL_TIME=$LOGS/roll.time
rm -f "$STOPFILE"
sync
/usr/bin/time -f '%e %M' -o "$ROLL_TIME" "$PS" -v -C "$CONF" --state-dir "$STATE" mail -r -d 1 -F "$STOPFILE" \
    >"$ROLL_OUT" 2>"$ROLL_ERR" &
ROLL_PID=$!
# tail ends when the replicator (its /usr/bin/time) does: read then sees end of file.
exec {ROLL_FD}< <(exec tail -n +1 --pid="$ROLL_PID" -f "$ROLL_OUT")
TAIL_PID=$!
# next_cycle: the replicator's next `cycle:` line (CYCLE_LINE), within ROLL_DEADLINE seconds.
next_cycle() {
    local deadline=$((SECONDS + ROLL_DEADLINE)) line left
    while left=$((deadline - SECONDS)) && [ "$left" -gt 0 ]; do
        IFS= read -r -t "$left" -u "$ROLL_FD" line || break # timeout, or the replicator has ended
        case $line in "pairsync mail: cycle: "*) CYCLE_LINE=$line; return 0 ;; esac
    done
    tail -n 20 "$ROLL_OUT" "$ROLL_ERR" >&2
    kill -0 "$ROLL_PID" 2>/dev/null && die "no cycle line from the rolling replicator within ${ROLL_DEADLINE} s"
    die "the rolling replicator ended before its cycle line"
}
ROLL_CYCLES=() ROLL_SEEN=() ROLL_NOTES=()
for r in $(seq "$CYCLE_ROUNDS"); do
    IFS='|' read -r user mailbox logged <<<"${DELIVERIES[$(((r - 1) % ${#DELIVERIES[@]}))]}"
    say "one delivery, running replicator, round $r/$CYCLE_ROUNDS: $logged"
    deliver "$user" "$mailbox" "$((200 + r))"
    sync
    t0=$EPOCHREALTIME
    ps_mail log APPEND "$logged"
    next_cycle
    t1=$EPOCHREALTIME
    secs=$(sed -n 's/.* in \([0-9.]*\) s$/\1/p' <<<"$CYCLE_LINE")
    [ -n "$secs" ] || die "no duration in the cycle line: $CYCLE_LINE"
    ROLL_CYCLES+=("$secs")
    ROLL_SEEN+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')")
    ROLL_NOTES+=("$(grep -o '[0-9]* mailboxes: copied [0-9]* ([^)]*)' <<<"$CYCLE_LINE" || echo "$CYCLE_LINE")")
    grep -q 'cycle: 1 mailboxes: copied [1-9]' <<<"$CYCLE_LINE" || say "WARNING: the cycle did not copy the delivery: $CYCLE_LINE"
    say "$(printf '%-14s %8.3f s (cycle line; %.3f s from the log line to it)' ps_roll "$secs" "${ROLL_SEEN[-1]}")"
done
say "stopping the rolling replicator: $STOPFILE"
touch "$STOPFILE"
deadline=$((SECONDS + ROLL_DEADLINE))
while left=$((deadline - SECONDS)) && [ "$left" -gt 0 ] && IFS= read -r -t "$left" -u "$ROLL_FD" _; do :; done
kill -0 "$ROLL_PID" 2>/dev/null && die "the rolling replicator is still running ${ROLL_DEADLINE} s after the stop file"
rc=0; wait "$ROLL_PID" || rc=$?
exec {ROLL_FD}<&-
wait "$TAIL_PID" 2>/dev/null || true
ROLL_PID= TAIL_PID=
[ "$rc" -eq 0 ] || { tail -n 20 "$ROLL_OUT" "$ROLL_ERR" >&2; die "the rolling replicator exited $rc"; }
[ ! -e "$STOPFILE" ] || say "WARNING: the stop file was not removed"
grep -q 'shutdown file found' "$ROLL_OUT" || say "WARNING: no shutdown line from the rolling replicator"
[ ! -e "$STATE/mail/log" ] && [ ! -e "$STATE/mail/log-run" ] || say "WARNING: the sync log was not consumed"
ROLL_KB=$(tail -n 1 "$ROLL_TIME" | awk '{print $2}')
for i in "${!ROLL_CYCLES[@]}"; do
    printf 'ps_roll\t%s\t%s\t\n' "${ROLL_CYCLES[$i]}" "$ROLL_KB" >>"$RAW"
    printf 'ps_roll_seen\t%s\t%s\t\n' "${ROLL_SEEN[$i]}" "$ROLL_KB" >>"$RAW"
    note ps_roll "${ROLL_NOTES[$i]}"
done
# A warning only: with fewer than 50 mailboxes, dovecot-lda creates a missing one, and the user's
# dovecot-uidvalidity file changes, which no APPEND line names (the -A passes of 4b carry it).
same_tree "after the running replicator's cycles" warn

# 4b. The same delivery carried by a one-shot `mail -r -1` process (total wall time: process start,
# opening the state, the cycle), the fixed cost of such a run (no log left), a stat walk of the
# mailbox, rsync; then another delivery (to another user's mailbox, not logged) carried by a full
# -A pass, and rsync again.
for r in $(seq "$ROUNDS"); do
    IFS='|' read -r user mailbox logged <<<"${DELIVERIES[$(((r - 1) % ${#DELIVERIES[@]}))]}"
    say "one delivery, one-shot processes, round $r/$ROUNDS: $logged"
    deliver "$user" "$mailbox" "$r"
    ps_mail log APPEND "$logged"
    measure ps_once "$PS" -C "$CONF" --state-dir "$STATE" mail -r -1
    note ps_once "$(grep -o '[0-9]* mailboxes: copied [0-9]* ([^)]*)' "$LAST_OUT")"
    grep -q '1 mailboxes: copied [1-9]' "$LAST_OUT" || say "WARNING: the rolling cycle did not copy the delivery: $(cat "$LAST_OUT")"
    [ ! -e "$STATE/mail/log" ] && [ ! -e "$STATE/mail/log-run" ] || say "WARNING: the sync log was not consumed"
    measure ps_idle "$PS" -C "$CONF" --state-dir "$STATE" mail -r -1 # no log left: the fixed cost
    measure statwalk_box find "$STORE/$user/Maildir/$([ "$mailbox" = INBOX ] || echo ".$mailbox")" -printf '%s %T@\n'
    run_tool rsync deliver
    IFS='|' read -r user mailbox logged <<<"${DELIVERIES[$(((r + 2) % ${#DELIVERIES[@]}))]}"
    deliver "$user" "$mailbox" "$((100 + r))"
    run_tool ps deliver
    note ps_deliver "$(ps_summary "$LAST_OUT")"
    run_tool rsync deliver
done
same_tree "after the deliveries"
LOAD_END=$(cut -d" " -f1-3 /proc/loadavg)

# ---- report ------------------------------------------------------------------------------------
COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$REPO" status --porcelain -- src tests Cargo.toml Cargo.lock 2>/dev/null | wc -l)
[ "$DIRTY" -gt 0 ] && COMMIT="$COMMIT + uncommitted changes to $DIRTY paths under src/ tests/ Cargo.*"
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
FS=$(df --output=fstype "$WORK" | tail -n 1)
ELAPSED=$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", b-a}')
python3 - "$RAW" "$WORK/notes.tsv" >"$WORK/table.md" <<PY
import re, statistics, sys
raw, notes_file = sys.argv[1:]
runs, notes = {}, {}
for line in open(raw):
    key, secs, kb, _ = (line.rstrip("\n").split("\t") + [""])[:4]
    runs.setdefault(key, []).append((float(secs), int(kb)))
for line in open(notes_file):
    key, text = line.rstrip("\n").split("\t", 1)
    notes.setdefault(key, []).append(text)
def med(k): return statistics.median(s for s, _ in runs[k])
def rng(k): return f"{min(s for s, _ in runs[k]):.3f}–{max(s for s, _ in runs[k]):.3f}"
def rss(k): return max(r for _, r in runs[k]) / 1024
def note(k):
    xs = notes.get(k, [])
    if not xs: return ""
    if k.startswith("rsync"):
        b = sorted(int(x.split()[0]) for x in xs)
        return f"sent {statistics.median(b) / 1e6:.2f} MB (median; {b[0] / 1e6:.2f}–{b[-1] / 1e6:.2f})"
    if k in ("ps_roll", "ps_once", "ps_deliver"):  # one line per delivery: counted, sizes aside
        xs = [re.sub(r" \([^)]*\)", "", x) for x in xs]
        return "; ".join(f"{xs.count(x)} x {x}" for x in sorted(set(xs)))
    return "; ".join(sorted(set(xs)))
rows = [
    ("1. initial", "ps_init", "pairsync mail -A"),
    ("1. initial", "rsync_init", "rsync -a"),
    ("1. initial", "doveadm_init", "doveadm backup (each user)"),
    ("2. no-op", "ps_noop", "pairsync mail -A"),
    ("2. no-op", "rsync_noop", "rsync -a --delete"),
    ("2. no-op", "doveadm_noop", "doveadm backup (each user)"),
    ("2. no-op", "statwalk", "reference: find STORE -printf '%s %T@' (stat walk)"),
    ("3. $FLAGS flag changes", "ps_flags", "pairsync mail -A"),
    ("3. $FLAGS flag changes", "rsync_flags", "rsync -a --delete"),
    ("3. $FLAGS flag changes", "doveadm_flags", "doveadm backup (each user)"),
    ("4. one delivery", "ps_roll", "pairsync -v mail -r running: the cycle's own time (its cycle line)"),
    ("4. one delivery", "ps_roll_seen", "reference: the same, log line written -> cycle line read (waits for the -d 1 poll)"),
    ("4. one delivery", "ps_once", "pairsync mail -r -1, one-shot process (APPEND logged)"),
    ("4. one delivery", "ps_idle", "pairsync mail -r -1, no log (fixed cost of a process)"),
    ("4. one delivery", "statwalk_box", "reference: find MAILBOX -printf (one mailbox)"),
    ("4. one delivery", "ps_deliver", "pairsync mail -A (full pass)"),
    ("4. one delivery", "rsync_deliver", "rsync -a --delete"),
]
out = ["| phase | command | median s | min–max s | runs | peak RSS MB | copied / sent |", "|---|---|---:|---|---:|---:|---|"]
for phase, k, label in rows:
    if k in runs:
        out.append(f"| {phase} | {label} | {med(k):.3f} | {rng(k)} | {len(runs[k])} | {rss(k):.1f} | {note(k)} |")
def ratio(a, b): return med(a) / med(b)
init_rounds = [p / r for (p, _), (r, _) in zip(runs["ps_init"], runs["rsync_init"])]
rolls = [c / med("ps_deliver") for c, _ in runs["ps_roll"]]  # each cycle against the -A median
onces = [c / f for (c, _), (f, _) in zip(runs["ps_once"], runs["ps_deliver"])]
flags_zero = all(x.startswith("copied 0 (0 B)") and x.endswith("unchanged: yes") for x in notes["ps_flags"])
out += ["", "| target | value (medians) | per round | met |", "|---|---:|---|:---:|"]
out.append(f"| pairsync initial / rsync -a initial <= 1 | {ratio('ps_init', 'rsync_init'):.2f} | "
           f"{', '.join(f'{x:.2f}' for x in init_rounds)} | {'yes' if ratio('ps_init', 'rsync_init') <= 1 else '**no**'} |")
out.append(f"| pairsync bytes copied after $FLAGS flag changes = 0, inodes kept | "
           f"{'0 B' if flags_zero else 'see table'} | | {'yes' if flags_zero else '**no**'} |")
out.append(f"| in-process rolling cycle / full -A pass <= 0.02 | {ratio('ps_roll', 'ps_deliver'):.3f} | "
           f"each cycle / -A median: {', '.join(f'{x:.3f}' for x in rolls)} | {'yes' if ratio('ps_roll', 'ps_deliver') <= 0.02 else '**no**'} |")
out.append(f"| one-shot mail -r -1 process / full -A pass (reference: start, state open, cycle) | "
           f"{ratio('ps_once', 'ps_deliver'):.3f} | {', '.join(f'{x:.3f}' for x in onces)} | "
           f"{'yes' if ratio('ps_once', 'ps_deliver') <= 0.02 else 'no'} |")
fixed = med("ps_once") - med("ps_idle")
out.append(f"| one-shot less its fixed cost (the no-log row) / full -A pass | "
           f"{fixed / med('ps_deliver'):.3f} | | {'yes' if fixed / med('ps_deliver') <= 0.02 else 'no'} |")
out.append(f"| pairsync initial / doveadm backup initial | {ratio('ps_init', 'doveadm_init'):.2f} | | |")
out.append(f"| pairsync no-op / rsync no-op | {ratio('ps_noop', 'rsync_noop'):.2f} | | |")
print("\n".join(out))
PY

{
    echo "# pairsync mail benchmark"
    echo
    echo "Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); commit $COMMIT; machine: $(nproc) cores ($CPU), $MEM RAM,"
    echo "kernel $(uname -r), $FS under $WORK; load average at start $LOAD_START, at end $LOAD_END"
    echo "(other work on the machine skews timings). pairsync $("$PS" --version | awk '{print $2}'),"
    echo "$(rsync --version | head -n1 | awk '{print "rsync " $3}'), Dovecot $(dovecot --version 2>/dev/null | awk '{print $1}' || echo '?'). Whole run: ${ELAPSED} s."
    echo
    echo "Store: $(cat "$WORK/gen.out" | sed 's/^generated //'), $STORE_FILES files, $((STORE_SIZE / 1048576)) MiB"
    echo "apparent (Dovecot names and control files, dovecot.index.log files made by Dovecot; bench/mail_gen.py)."
    echo "Warm cache; \`sync\` before each measurement; tools in a rotated order each round; $ROUNDS rounds"
    echo "(\`doveadm backup\` initial: $DV_INIT_ROUNDS, it takes minutes). Wall time by EPOCHREALTIME around"
    echo "\`/usr/bin/time -f '%e %M'\` (peak RSS: the largest process)."
    echo
    cat "$WORK/table.md"
    echo
    echo "Commands (CONF: a [mail] table with store = the store, one directory replica):"
    echo
    echo "- \`pairsync -C CONF --state-dir STATE mail -A\`; \`pairsync ... mail log APPEND user.X\` then \`pairsync ... mail -r -1\`"
    echo "- running replicator: \`pairsync -v -C CONF --state-dir STATE mail -r -d 1 -F STOPFILE\` in the background"
    echo "  for $CYCLE_ROUNDS rounds (one process, peak RSS over its life; the 5 mailboxes in turn, so the first 5 cycles"
    echo "  are each mailbox's first in the process); each round: one delivery, \`sync\`, \`mail log APPEND\`,"
    echo "  then its next \`pairsync mail: cycle: ... in <secs> s\` line on stdout (followed with \`tail -f\`, deadline"
    echo "  ${ROLL_DEADLINE} s); then the stop file. The one-shot and -A rows run after it has stopped (the state is locked)"
    echo "- \`rsync -a --stats STORE/ COPY/\` (initial), \`rsync -a --delete --stats STORE/ COPY/\` (later)"
    echo "- for each user: \`env -i USER=u HOME=STORE/u setpriv --reuid=$OWNER --regid=$OWNER --clear-groups doveadm -c dovecot.conf backup maildir:DEST/u/Maildir\`"
    echo "  (dovecot.conf: \`mail_location = maildir:~/Maildir\`, no daemon; no \`-u\`, which needs the auth service)"
    echo "- flag changes: \`cur/X:2,\` renamed \`cur/X:2,S\` in place (bench/mail_gen.py flag), then Dovecot syncs"
    echo "  the store (\`doveadm mailbox status 'messages unseen' '*'\`), as after \`doveadm flags add\`"
    echo "- after the flag changes, doveadm's replica and the store differ in $DV_DIFF message file names (0: same flags)"
    echo "- deliveries: \`dovecot-lda -c dovecot.conf [-m MAILBOX]\` as the user (it adds the message to new/ and"
    echo "  rewrites dovecot-uidlist); the -A row's delivery goes to another mailbox and is not logged"
} >"$RESULTS.new"
mv "$RESULTS.new" "$RESULTS"
echo
cat "$RESULTS"
say "raw timings: $RAW; logs: $LOGS; table written to $RESULTS"
