#!/usr/bin/env python3
"""Mail for bench/cyrus.sh: a Cyrus IMAP spool filled the way mail arrives, over LMTP, and
changed the way clients change it, over IMAP (python3 stdlib; message text from bench/mail_gen.py).

Mailboxes: 5 users (USERS) x 10 folders (FOLDERS: INBOX, Sent, ..., Archive.2024, ...), created by
the admin; `anyone` gets the `p` right on every folder but INBOX, so that LMTP to `user+Folder`
lands in it. Any password logs in (sasl_pwcheck_method: alwaystrue); `cyrus` is the admin.

usage:
  cyrus_gen.py mailboxes [COUNT]
      the COUNT (50) mailboxes, one a line: user<TAB>folder<TAB>internal name<TAB>LMTP recipient
  cyrus_gen.py setup PORT [COUNT]
      creates them (IMAP on 127.0.0.1:PORT, as the admin)
  cyrus_gen.py deliver SOCKET COUNT MESSAGES SEED [CONNECTIONS]
      MESSAGES messages of 2-60 KB into each of the COUNT mailboxes over LMTP (unix SOCKET), one
      message per transaction, each connection delivering many (CONNECTIONS in parallel, 1: one
      connection); the mailboxes are filled round-robin, as mail arrives
  cyrus_gen.py one SOCKET RECIPIENT SEED
      one message to RECIPIENT (`alice`, `alice+Sent`)
  cyrus_gen.py flag PORT USER FOLDER FLAG
      logs in as USER (the owner), SELECTs FOLDER (INBOX, INBOX.Archive), and sets FLAG
      (`\\Seen`) on every message with one STORE 1:* +FLAGS.SILENT; prints how many messages
"""
import imaplib
import os
import random
import smtplib
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mail_gen  # noqa: E402

mail_gen.MIN_SIZE, mail_gen.MAX_SIZE = 2 * 1024, 60 * 1024

USERS = ["alice", "bob", "carol", "dave", "erin"]
FOLDERS = ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Archive.2023", "Archive.2024",
           "Work", "Lists"]
ADMIN, PASSWORD = "cyrus", "x"


def mailboxes(count: int) -> list[tuple[str, str, str, str]]:
    per_user, extra = divmod(count, len(USERS))
    out = []
    for u, user in enumerate(USERS):
        n = per_user + (1 if u < extra else 0)
        if n > len(FOLDERS):
            sys.exit(f"at most {len(FOLDERS) * len(USERS)} mailboxes")
        for folder in FOLDERS[:n]:
            if folder == "INBOX":
                out.append((user, folder, f"user.{user}", user))
            else:
                out.append((user, folder, f"user.{user}.{folder}", f"{user}+{folder}"))
    return out


def check(what, answer):
    typ, data = answer
    if typ != "OK":
        sys.exit(f"cyrus_gen: {what}: {typ} {data}")
    return data


def setup(port: int, count: int) -> None:
    a = imaplib.IMAP4("127.0.0.1", port)
    check("login", a.login(ADMIN, PASSWORD))
    for _user, folder, name, _rcpt in mailboxes(count):
        check(f"create {name}", a.create(name))
        if folder != "INBOX":
            check(f"setacl {name}", a.setacl(name, "anyone", "p"))
    a.logout()
    print(f"created {count} mailboxes of {len(USERS)} users")


def crlf(body: bytes) -> bytes:
    return body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def rfc5322(rng, pool, starts, n: int, secs: int, user: str) -> bytes:
    body = mail_gen.message(rng, pool, starts, n, secs, user)
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(secs)).encode()
    return crlf(b"Date: " + date + b"\n" + body)


def deliver(socket_path: str, count: int, messages: int, seed: int, connections: int) -> None:
    boxes = mailboxes(count)
    rng = random.Random(seed)
    pool, starts = mail_gen.text_pool(rng)
    # Messages made as they are sent (deterministic order: the mailboxes round-robin, as mail
    # arrives), pulled by each connection from one generator.
    state = {"secs": 1_600_000_000, "total": 0}

    def produce():
        for m in range(messages):
            for b, (user, _folder, _name, rcpt) in enumerate(boxes):
                state["secs"] += rng.randrange(1, 120)
                msg = rfc5322(rng, pool, starts, m * len(boxes) + b, state["secs"], user)
                state["total"] += len(msg)
                yield rcpt, msg

    source = produce()
    lock = threading.Lock()

    def run(_k):
        lmtp = smtplib.LMTP(socket_path)
        n = 0
        while True:
            with lock:
                item = next(source, None)
            if item is None:
                break
            rcpt, msg = item
            refused = lmtp.sendmail("sender@example.net", [rcpt], msg)
            if refused:
                raise RuntimeError(f"LMTP refused {rcpt}: {refused}")
            n += 1
        lmtp.quit()
        return n

    t0 = time.monotonic()
    with ThreadPoolExecutor(connections) as pool_:
        done = sum(pool_.map(run, range(connections)))
    secs_taken = time.monotonic() - t0
    total = state["total"]
    print(f"delivered {done} messages ({total / 2**30:.2f} GiB as sent) into {count} mailboxes of "
          f"{len({b[0] for b in boxes})} users over LMTP in {secs_taken:.0f} s "
          f"({done / secs_taken:.0f} messages/s, {connections} connection(s)), seed {seed}")


def one(socket_path: str, rcpt: str, seed: int) -> None:
    rng = random.Random(seed)
    pool, starts = mail_gen.text_pool(random.Random(1))
    msg = rfc5322(rng, pool, starts, seed, 1_700_000_000 + seed, rcpt.split("+")[0])
    lmtp = smtplib.LMTP(socket_path)
    refused = lmtp.sendmail("sender@example.net", [rcpt], msg)
    lmtp.quit()
    if refused:
        sys.exit(f"cyrus_gen: LMTP refused {rcpt}: {refused}")


def flag(port: int, user: str, folder: str, flag_: str) -> None:
    u = imaplib.IMAP4("127.0.0.1", port)
    check("login", u.login(user, PASSWORD))
    data = check(f"select {folder}", u.select(folder))
    n = int(data[0])
    check("store", u.store("1:*", "+FLAGS.SILENT", f"({flag_})"))
    u.logout()
    print(f"{flag_} set on {n} messages of {user}'s {folder} (one STORE)")


def main() -> None:
    a = sys.argv[1:]
    if a[:1] == ["mailboxes"] and len(a) <= 2:
        for row in mailboxes(int(a[1]) if len(a) > 1 else 50):
            print("\t".join(row))
    elif a[:1] == ["setup"] and len(a) in (2, 3):
        setup(int(a[1]), int(a[2]) if len(a) > 2 else 50)
    elif a[:1] == ["deliver"] and len(a) in (5, 6):
        deliver(a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]) if len(a) > 5 else 1)
    elif a[:1] == ["one"] and len(a) == 4:
        one(a[1], a[2], int(a[3]))
    elif a[:1] == ["flag"] and len(a) == 5:
        flag(int(a[1]), a[2], a[3], a[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
