#!/usr/bin/env python3
"""Mail store for bench/mail.sh: Dovecot-style Maildir++ stores, deterministic (python3 stdlib).

usage:
  mail_gen.py store ROOT [MAILBOXES] [MESSAGES] [SEED]
      ROOT/<user>/Maildir for 5 users (one with a '.' in its name), MAILBOXES in all (INBOX plus
      Maildir++ folders such as .Sent, .Archive.2024, '.Work Stuff'), MESSAGES each of 2-50 KB.
      Names as Dovecot 2.3 writes them: cur/<secs>.M<usecs>P<pid>.<host>,S=<size>,W=<size+lines>:2,<flags>
      (the newest 2 % of each mailbox in new/ without ':2,'); mtime = the received date in the
      name. Control files: dovecot-uidlist (v3), dovecot-keywords, maildirfolder, subscriptions,
      dovecot-uidvalidity(.<hex>). Dovecot's caches (dovecot.index*) are left for Dovecot to make.
  mail_gen.py flag ROOT COUNT
      renames COUNT unflagged messages (cur/X:2, -> cur/X:2,S), spread evenly over the mailboxes,
      in place (same inode), as `doveadm flags add '\\Seen'` does; a later call picks others.
      Prints the renamed paths' count and how many mailboxes they span.
  mail_gen.py message SEED
      one RFC 5322 message of 2-50 KB on stdout (for dovecot-lda).
"""
import os
import random
import sys

USERS = ["alice", "bob", "carol", "dave", "john.doe"]
# INBOX first; Maildir++ folder names (hierarchy separator '.'); a space stays a space.
FOLDERS = ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Archive.2023", "Archive.2024",
           "Work", "Work Stuff"]
HOST = "mx1.example.org"
MIN_SIZE, MAX_SIZE = 2 * 1024, 50 * 1024
NEW_SHARE = 0.02
# Flags of messages in cur/ (Dovecot writes them in ASCII order, keywords a-z after).
FLAGS = [("S", 55), ("", 25), ("RS", 8), ("FS", 4), ("Sa", 5), ("ST", 2), ("DS", 1)]
KEYWORDS = "0 $Label1\n1 NonJunk\n"
START = 1_600_000_000  # received dates from September 2020 on


def text_pool(rng: random.Random) -> tuple[bytes, list[int]]:
    """4 MB of 76-character lines (base64-like attachment text and prose), and the line starts."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    words = [b"the", b"mail", b"server", b"backup", b"please", b"meeting", b"report", b"quarter",
             b"attached", b"thanks", b"regards", b"invoice", b"project", b"tomorrow", b"review"]
    lines = []
    for i in range(4 * 1024 * 1024 // 77):
        if (i // 40) % 3 == 0:  # prose paragraphs between attachment blocks
            line = b" ".join(rng.choice(words) for _ in range(12))[:76]
        else:
            line = bytes(rng.choice(alphabet) for _ in range(76)) if i < 2000 else None
            if line is None:  # reuse early random lines, shifted, to keep generation fast
                src = lines[rng.randrange(2000)]
                k = rng.randrange(76)
                line = src[k:] + src[:k]
        lines.append(line)
    pool = b"\n".join(lines) + b"\n"
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    return pool, starts


def message(rng: random.Random, pool: bytes, starts: list[int], n: int, secs: int, user: str) -> bytes:
    size = rng.randint(MIN_SIZE, MAX_SIZE)
    date = secs
    header = (
        f"Return-Path: <sender{n % 97}@example.net>\n"
        f"Delivered-To: {user}@example.org\n"
        f"Received: from relay{n % 7}.example.net (relay{n % 7}.example.net [192.0.2.{n % 250 + 1}])\n"
        f"\tby {HOST} with ESMTPS id {n:08X}\n\tfor <{user}@example.org>; {date}\n"
        f"Message-ID: <{secs}.{n}@example.net>\n"
        f"From: Sender {n % 97} <sender{n % 97}@example.net>\n"
        f"To: {user}@example.org\n"
        f"Subject: benchmark message {n} for {user}\n"
        f"MIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset=us-ascii\n\n"
    ).encode()
    want = max(size - len(header), 1)
    i = rng.randrange(len(starts) - want // 60 - 2)
    off = starts[i]
    body = pool[off:off + want]
    if not body.endswith(b"\n"):
        body = body[:-1] + b"\n"
    return header + body


def mailbox_dir(maildir: str, folder: str) -> str:
    return maildir if folder == "INBOX" else os.path.join(maildir, "." + folder)


def store(root: str, mailboxes: int, messages: int, seed: int) -> None:
    rng = random.Random(seed)
    pool, starts = text_pool(rng)
    flag_names = [f for f, _ in FLAGS]
    flag_weights = [w for _, w in FLAGS]
    per_user, extra = divmod(mailboxes, len(USERS))
    total = count = 0
    uidvalidity = START
    pid = 1000
    for u, user in enumerate(USERS):
        n_folders = per_user + (1 if u < extra else 0)
        if n_folders > len(FOLDERS):
            sys.exit(f"at most {len(FOLDERS) * len(USERS)} mailboxes")
        maildir = os.path.join(root, user, "Maildir")
        folders = FOLDERS[:n_folders]
        for folder in folders:
            d = mailbox_dir(maildir, folder)
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(d, sub), exist_ok=True)
            if folder != "INBOX":
                open(os.path.join(d, "maildirfolder"), "wb").close()
            uidvalidity += 1
            # Received dates spread over ~3 years, oldest first; the newest few still in new/.
            secs = START + rng.randrange(86400)
            uidlist = []
            in_new = int(messages * NEW_SHARE)
            for m in range(messages):
                secs += rng.randrange(60, 2 * 86400)
                pid = 1000 + (pid * 7 + m) % 60000
                body = message(rng, pool, starts, count, secs, user)
                size = len(body)
                vsize = size + body.count(b"\n")
                unique = f"{secs}.M{rng.randrange(1_000_000)}P{pid}.{HOST},S={size},W={vsize}"
                if m >= messages - in_new:
                    path = os.path.join(d, "new", unique)
                else:
                    flags = rng.choices(flag_names, flag_weights)[0]
                    path = os.path.join(d, "cur", f"{unique}:2,{flags}")
                with open(path, "wb") as f:
                    f.write(body)
                os.utime(path, (secs, secs))
                uidlist.append(f"{m + 1} :{unique}\n")
                total += size
                count += 1
            guid = "%032x" % rng.getrandbits(128)
            with open(os.path.join(d, "dovecot-uidlist"), "w") as f:
                f.write(f"3 V{uidvalidity} N{messages + 1} G{guid}\n")
                f.writelines(uidlist)
            with open(os.path.join(d, "dovecot-keywords"), "w") as f:
                f.write(KEYWORDS)
        with open(os.path.join(maildir, "subscriptions"), "w") as f:
            f.write("".join(f"{folder}\n" for folder in folders if folder != "INBOX"))
        with open(os.path.join(maildir, "dovecot-uidvalidity"), "w") as f:
            f.write(f"{uidvalidity + 1:x}\n")
        open(os.path.join(maildir, f"dovecot-uidvalidity.{uidvalidity:x}"), "wb").close()
    print(f"generated {count} messages in {mailboxes} mailboxes of {len(USERS)} users, "
          f"{total / 2**30:.2f} GiB, seed {seed}")


def flag(root: str, count: int) -> None:
    """COUNT unflagged cur/ messages get \\Seen, the same number from each mailbox (rest spread)."""
    boxes = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        if os.path.basename(dirpath) == "cur":
            names = sorted(n for n in os.listdir(dirpath) if n.endswith(":2,"))
            boxes.append((dirpath, names))
    boxes.sort()
    picked = []
    depth = 0
    while len(picked) < count and any(len(names) > depth for _, names in boxes):
        for dirpath, names in boxes:
            if len(names) > depth and len(picked) < count:
                picked.append((dirpath, names[depth]))
        depth += 1
    if len(picked) < count:
        sys.exit(f"only {len(picked)} unflagged messages left")
    for dirpath, name in picked:
        os.rename(os.path.join(dirpath, name), os.path.join(dirpath, name + "S"))
    print(f"flagged {len(picked)} messages in {len({d for d, _ in picked})} mailboxes")


def one_message(seed: int) -> None:
    rng = random.Random(seed)
    pool, starts = text_pool(random.Random(1))
    sys.stdout.buffer.write(message(rng, pool, starts, seed, 1_700_000_000 + seed, "rcpt"))


def main() -> None:
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    if args[0] == "store" and len(args) >= 2:
        store(args[1], int(args[2]) if len(args) > 2 else 50, int(args[3]) if len(args) > 3 else 1000,
              int(args[4]) if len(args) > 4 else 20240601)
    elif args[0] == "flag" and len(args) == 3:
        flag(args[1], int(args[2]))
    elif args[0] == "message" and len(args) == 2:
        one_message(int(args[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
