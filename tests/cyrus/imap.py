#!/usr/bin/env python3
"""IMAP and ManageSieve client for the Cyrus test harness (tests/cyrus/mod.rs).

Reads one JSON request on stdin:
    {"host": "127.0.0.1", "port": 143, "sieve_port": 4190 or null,
     "user": "alice", "password": "x", "ops": [{"op": "create", "mailbox": "INBOX.Sent"}, ...]}
logs in once as "user" (sasl_pwcheck_method alwaystrue: any password works; "cyrus" is the
admin), runs the ops in order in that one session and prints a JSON list with one result per op
on stdout. The first failing op (a NO/BAD answer, or an unexpected one) stops everything: the
error, the op and the IMAP/ManageSieve transcript go to stderr and the exit status is 1.

Mailbox names are passed as the server shows them to the logged-in user: "INBOX", "INBOX.Sent"
(or "INBOX/Sent" with unixhierarchysep), "user.bob.Work" for the admin. Non-ASCII names are
modified UTF-7, as on the wire. Message bytes travel as hex.
"""

import base64
import imaplib
import json
import re
import socket
import sys
import traceback

imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("MOVE", ("SELECTED",))
imaplib._MAXLINE = 10_000_000

TRANSCRIPT = []


class Failure(Exception):
    pass


def note(line):
    TRANSCRIPT.append(line if isinstance(line, str) else repr(line))


class Imap(imaplib.IMAP4):
    """imaplib with every exchanged line kept for the failure report."""

    def _mesg(self, s, secs=None):
        note(s)


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check(what, answer):
    typ, data = answer
    if typ != "OK":
        raise Failure(f"{what}: {typ} {[d.decode(errors='replace') if isinstance(d, bytes) else d for d in data]}")
    return data


def text(data):
    return [d.decode(errors="replace") if isinstance(d, bytes) else d for d in data if d is not None]


LIST_LINE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?P<sep>NIL|"(?:[^"\\]|\\.)*") (?P<name>.*)$')


def parse_names(data):
    """Mailbox names from imaplib's LIST/LSUB data (quoted, atom or literal names)."""
    names = []
    i = 0
    while i < len(data):
        item = data[i]
        i += 1
        if item is None:
            continue
        if isinstance(item, tuple):  # (b'(\\HasNoChildren) "." {11}', b'INBOX.A "b"')
            names.append(item[1].decode())
            continue
        m = LIST_LINE.match(item)
        if not m:
            raise Failure(f"cannot parse LIST line {item!r}")
        name = m.group("name")
        if name.startswith(b'"'):
            name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
        names.append(name.decode())
    return sorted(names)


FETCH_ITEM = {
    "uid": re.compile(rb"\bUID (\d+)"),
    "flags": re.compile(rb"\bFLAGS \(([^)]*)\)"),
    "internaldate": re.compile(rb'\bINTERNALDATE "([^"]*)"'),
    "size": re.compile(rb"\bRFC822\.SIZE (\d+)"),
    "modseq": re.compile(rb"\bMODSEQ \((\d+)\)"),
}


def parse_fetch(data):
    """imaplib's FETCH data -> list of dicts (uid, flags, internaldate, size, body hex)."""
    messages = []
    current = None
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            head, literal = item
            if re.match(rb"^\d+ \(", head):
                current = {"head": head, "body": literal}
                messages.append(current)
            else:  # a second literal in the same response: not requested
                raise Failure(f"unexpected literal after {head!r}")
        elif re.match(rb"^\d+ \(", item):
            current = {"head": item, "body": None}
            messages.append(current)
        elif current is not None:
            current["head"] += b" " + item
    out = []
    for m in messages:
        head = m["head"]
        msg = {}
        for key, rx in FETCH_ITEM.items():
            found = rx.search(head)
            if found:
                msg[key] = found.group(1).decode()
        if "uid" not in msg or "flags" not in msg:
            raise Failure(f"cannot parse FETCH response {head!r}")
        flags = [f for f in msg["flags"].split() if f != "\\Recent"]
        out.append({
            "uid": int(msg["uid"]),
            "flags": sorted(flags),
            "internaldate": msg.get("internaldate", ""),
            "size": int(msg.get("size", "0")),
            "modseq": int(msg["modseq"]) if "modseq" in msg else None,
            "body": m["body"].hex() if m["body"] is not None else "",
        })
    out.sort(key=lambda m: m["uid"])
    return out


class Sieve:
    """A ManageSieve (RFC 5804) session on timsieved."""

    def __init__(self, host, port, user, password):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.response("greeting")
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        self.command(f'AUTHENTICATE "PLAIN" "{token}"', "AUTHENTICATE")

    def send(self, data):
        note(b"S> " + data[:300])
        self.sock.sendall(data)

    def line(self):
        line = self.file.readline()
        if not line:
            raise Failure("ManageSieve connection closed")
        note(b"S< " + line)
        return line

    def response(self, what):
        """Lines (literals inlined) up to the OK/NO/BYE line; raises unless OK."""
        lines = []
        while True:
            line = self.line()
            m = re.match(rb"^\{(\d+)\+?\}\r\n$", line)
            if m:
                lines.append(self.file.read(int(m.group(1))))
                continue
            if re.match(rb"^(OK|NO|BYE)\b", line):
                if not line.startswith(b"OK"):
                    raise Failure(f"ManageSieve {what}: {line.decode(errors='replace').strip()}")
                return lines
            lines.append(line)

    def command(self, line, what, literal=None):
        data = line.encode()
        if literal is not None:
            data += b" {%d+}\r\n" % len(literal) + literal
        self.send(data + b"\r\n")
        return self.response(what)

    def close(self):
        try:
            self.send(b"LOGOUT\r\n")
            self.response("LOGOUT")
        except Exception:
            pass
        self.sock.close()


def main():
    request = json.load(sys.stdin)
    host, port = request.get("host", "127.0.0.1"), request["port"]
    user, password = request["user"], request.get("password", "x")
    results = []
    imap = None
    sieve = None

    def session():
        nonlocal imap
        if imap is None:
            imap = Imap(host, port, timeout=30)
            imap.debug = 4
            check("LOGIN", imap.login(user, password))
        return imap

    def sieve_session():
        nonlocal sieve
        if sieve is None:
            if not request.get("sieve_port"):
                raise Failure("no ManageSieve service: start the server with Options { sieve: true, .. }")
            sieve = Sieve(host, request["sieve_port"], user, password)
        return sieve

    def select(mailbox, readonly=False):
        return check(f"{'EXAMINE' if readonly else 'SELECT'} {mailbox}", session().select(quote(mailbox), readonly))

    for op in request["ops"]:
        kind = op["op"]
        note(f"--- op {json.dumps(op)[:300]}")
        if kind == "create":
            data = check(f"CREATE {op['mailbox']}", session().create(quote(op["mailbox"])))
            results.append(text(data))
        elif kind == "delete":
            results.append(text(check(f"DELETE {op['mailbox']}", session().delete(quote(op["mailbox"])))))
        elif kind == "rename":
            results.append(text(check(f"RENAME {op['from']} {op['to']}",
                                      session().rename(quote(op["from"]), quote(op["to"])))))
        elif kind == "subscribe":
            results.append(text(check(f"SUBSCRIBE {op['mailbox']}", session().subscribe(quote(op["mailbox"])))))
        elif kind == "unsubscribe":
            results.append(text(check(f"UNSUBSCRIBE {op['mailbox']}",
                                      session().unsubscribe(quote(op["mailbox"])))))
        elif kind == "setacl":
            results.append(text(check(f"SETACL {op['mailbox']}",
                                      session().setacl(quote(op["mailbox"]), quote(op["who"]), quote(op["rights"])))))
        elif kind == "getacl":
            data = check(f"GETACL {op['mailbox']}", session().getacl(quote(op["mailbox"])))
            results.append(text(data))
        elif kind == "allow_post":
            # LMTP to user+detail files into the folder only when "anyone" may post (p).
            data = text(check(f"GETACL {op['mailbox']}", session().getacl(quote(op["mailbox"]))))
            words = " ".join(data).split()
            rights = dict(zip(words[1::2], words[2::2]))
            if "p" in rights.get("anyone", ""):
                results.append(False)
            else:
                check(f"SETACL {op['mailbox']} anyone +p",
                      session().setacl(quote(op["mailbox"]), "anyone", "+p"))
                results.append(True)
        elif kind == "setquota":
            results.append(text(check(f"SETQUOTA {op['root']}",
                                      session().setquota(quote(op["root"]), f"({op['limits']})"))))
        elif kind == "getquotaroot":
            typ, data = session().getquotaroot(quote(op["mailbox"]))
            check(f"GETQUOTAROOT {op['mailbox']}", (typ, data))
            results.append([text(d) for d in data])
        elif kind == "setmetadata":
            value = "NIL" if op.get("value") is None else quote(op["value"])
            results.append(text(check(f"SETMETADATA {op['mailbox']!r} {op['entry']}",
                                      session()._simple_command("SETMETADATA", quote(op["mailbox"]),
                                                                f"({op['entry']} {value})"))))
        elif kind == "getmetadata":
            s = session()
            typ, data = s._simple_command("GETMETADATA", quote(op["mailbox"]), op["entry"])
            check(f"GETMETADATA {op['mailbox']!r} {op['entry']}", (typ, data))
            typ, data = s._untagged_response(typ, data, "METADATA")
            results.append([text(list(d)) if isinstance(d, tuple) else text([d]) for d in data if d is not None])
        elif kind == "store":
            select(op["mailbox"])
            flags = "(" + " ".join(op["flags"]) + ")"
            results.append(text(check(f"UID STORE {op['uids']} {op['action']} {flags}",
                                      session().uid("STORE", op["uids"], op["action"], flags))))
        elif kind == "copy":
            select(op["mailbox"])
            results.append(text(check(f"UID COPY {op['uids']} {op['to']}",
                                      session().uid("COPY", op["uids"], quote(op["to"])))))
        elif kind == "move":
            select(op["mailbox"])
            results.append(text(check(f"UID MOVE {op['uids']} {op['to']}",
                                      session().uid("MOVE", op["uids"], quote(op["to"])))))
        elif kind == "expunge":
            select(op["mailbox"])
            s = session()
            if op.get("uids"):
                check(f"UID STORE {op['uids']} +FLAGS.SILENT (\\Deleted)",
                      s.uid("STORE", op["uids"], "+FLAGS.SILENT", "(\\Deleted)"))
                results.append(text(check(f"UID EXPUNGE {op['uids']}", s.uid("EXPUNGE", op["uids"]))))
            else:
                results.append(text(check("EXPUNGE", s.expunge())))
        elif kind == "append":
            flags = "(" + " ".join(op.get("flags", [])) + ")"
            date = op.get("internaldate")
            data = check(f"APPEND {op['mailbox']}",
                         session().append(quote(op["mailbox"]), flags, f'"{date}"' if date else None,
                                          bytes.fromhex(op["message"])))
            found = re.search(rb"APPENDUID \d+ (\d+)", b" ".join(d for d in data if isinstance(d, bytes)))
            results.append(int(found.group(1)) if found else None)
        elif kind == "list":
            results.append(parse_names(check("LIST", session().list('""', op.get("pattern", "*")))))
        elif kind == "lsub":
            results.append(parse_names(check("LSUB", session().lsub('""', op.get("pattern", "*")))))
        elif kind == "status":
            data = check(f"STATUS {op['mailbox']}", session().status(quote(op["mailbox"]), f"({op['items']})"))
            found = re.search(rb"\((.*)\)\s*$", data[0])
            words = found.group(1).decode().split() if found else []
            results.append({k: int(v) if v.isdigit() else v for k, v in zip(words[0::2], words[1::2])})
        elif kind == "messages":
            s = session()
            data = select(op["mailbox"], readonly=True)
            if int(data[0] or 0) == 0:
                results.append([])
                continue
            items = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"
            if op.get("modseq"):
                items = "(UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ BODY.PEEK[])"
            data = check(f"UID FETCH 1:* {items}", s.uid("FETCH", "1:*", items))
            results.append(parse_fetch(data))
        elif kind == "raw":
            s = session()
            if op.get("select"):
                select(op["select"])
            typ, data = s._simple_command(op["command"], *op.get("args", []))
            untagged = {}
            for name in op.get("untagged", []):
                _, got = s._untagged_response("OK", [None], name)
                untagged[name] = [text(list(d)) if isinstance(d, tuple) else text([d]) for d in got if d is not None]
            results.append({"status": typ, "data": text(data), "untagged": untagged})
        elif kind == "sieve_put":
            sv = sieve_session()
            sv.command(f"PUTSCRIPT {quote(op['name'])}", "PUTSCRIPT", op["script"].encode())
            if op.get("activate"):
                sv.command(f"SETACTIVE {quote(op['name'])}", "SETACTIVE")
            results.append(None)
        elif kind == "sieve_activate":
            sieve_session().command(f"SETACTIVE {quote(op.get('name') or '')}", "SETACTIVE")
            results.append(None)
        elif kind == "sieve_delete":
            sieve_session().command(f"DELETESCRIPT {quote(op['name'])}", "DELETESCRIPT")
            results.append(None)
        elif kind == "sieve_get":
            lines = sieve_session().command(f"GETSCRIPT {quote(op['name'])}", "GETSCRIPT")
            results.append(b"".join(lines).decode())
        elif kind == "sieve_list":
            scripts = []
            for line in sieve_session().command("LISTSCRIPTS", "LISTSCRIPTS"):
                m = re.match(rb'^"((?:[^"\\]|\\.)*)"( ACTIVE)?\r\n$', line)
                if not m:
                    raise Failure(f"cannot parse LISTSCRIPTS line {line!r}")
                scripts.append([m.group(1).decode(), bool(m.group(2))])
            results.append(sorted(scripts))
        else:
            raise Failure(f"unknown op {kind!r}")

    if imap is not None:
        imap.logout()
    if sieve is not None:
        sieve.close()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - everything is reported to the harness
        sys.stderr.write(f"error: {e}\n")
        if not isinstance(e, Failure):
            traceback.print_exc()
        sys.stderr.write("--- transcript\n")
        for line in TRANSCRIPT[-80:]:
            sys.stderr.write(line.rstrip("\n") + "\n")
        sys.exit(1)
