#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) for Steward's notification tests.

Stores every accepted message decoded by Python's own email package, one
folder per message under --dir:

    <dir>/<seq>/to           envelope recipients, one a line
    <dir>/<seq>/from         envelope sender
    <dir>/<seq>/subject      decoded Subject header
    <dir>/<seq>/text         text/plain part (decoded)
    <dir>/<seq>/html         text/html part (decoded, may be empty)
    <dir>/<seq>/received_at  unix time in nanoseconds when DATA ended
    <dir>/<seq>/tls          the TLS version the session ran (empty: plain)
    <dir>/<seq>/login        the user the session authenticated as (or empty)
    <dir>/<seq>/done         written last: the folder is complete

Answers on demand by recipient local part:
    nosuchuser*  RCPT -> 550 5.1.1 no such user (a hard bounce)
    greylist*    RCPT -> 451 4.7.1 for the first --greylist attempts of
                 that address, then accepted
    down*        RCPT -> 421 4.3.2 always (transient, never accepted)

With --tls-cert/--tls-key the server requires STARTTLS before MAIL, or
with --implicit-tls speaks TLS from the first byte (SMTPS, port 465); with
--auth USER:PASSWORD it requires AUTH (PLAIN or LOGIN, over TLS only) with
exactly those credentials and answers 535 to any others.

Prints "ready <port>" on stdout once listening; stops on SIGTERM/SIGINT or
when stdin closes (the test process died).
"""

import argparse
import asyncio
import email
import email.policy
import os
import signal
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, directory, greylist):
        self.directory = directory
        self.greylist = greylist
        self.attempts = {}
        self.seq = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("nosuchuser"):
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % address
        if local.startswith("down"):
            return "421 4.3.2 service not available, closing channel"
        if local.startswith("greylist"):
            with self.lock:
                seen = self.attempts.get(address, 0) + 1
                self.attempts[address] = seen
            if seen <= self.greylist:
                return "451 4.7.1 <%s>: greylisted, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        received = time.time_ns()
        tls = server.transport.get_extra_info("ssl_object")
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        with self.lock:
            self.seq += 1
            seq = self.seq
        folder = os.path.join(self.directory, "%08d" % seq)
        os.makedirs(folder)
        parts = {
            "to": "\n".join(envelope.rcpt_tos),
            "from": envelope.mail_from or "",
            "subject": str(message.get("Subject", "")),
            "text": text.get_content() if text is not None else "",
            "html": html.get_content() if html is not None else "",
            "received_at": str(received),
            "tls": tls.version() if tls else "",
            "login": session.auth_data.decode() if session.authenticated else "",
        }
        for name, value in parts.items():
            with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
                f.write(value)
        with open(os.path.join(folder, "done"), "w") as f:
            f.write("")
        return "250 2.0.0 OK queued as %d" % seq


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--greylist", type=int, default=2)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--auth", help="USER:PASSWORD")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    options = {}
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.implicit_tls:
            # aiosmtpd counts only STARTTLS as encryption for AUTH.
            options.update(ssl_context=context, auth_require_tls=False)
        else:
            options.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)
        expected = LoginPassword(user.encode(), password.encode())

        def authenticate(server, session, envelope, mechanism, data):
            if data == expected:
                return AuthResult(success=True, auth_data=data.login)
            return AuthResult(success=False, handled=False)

        options.update(authenticator=authenticate, auth_required=True)
    controller = Controller(
        Handler(args.dir, args.greylist),
        hostname="127.0.0.1",
        port=args.port,
        ready_timeout=10,
        **options,
    )
    controller.start()
    print("ready %d" % args.port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
