"""An SMTP sink for the job tests: every accepted message becomes a file.

    smtp_sink.py --port PORT --dir DIR [--greeting-delay SECONDS]
                 [--tls-cert PEM --tls-key PEM [--login USER:PASSWORD]]

Messages are written to DIR/<n>.eml (written aside, then renamed, so a file is complete
when it appears). Every connection appends a line to DIR/connections.log, so a test can see
that a client is waiting for the greeting. Recipients choose a failure:
  flaky<N>-...@  refused with 451 (try again later) the first N times, then accepted;
  tempfail...@   always refused with 451;
  reject...@     refused with 550 (permanent).
With --tls-cert/--tls-key the sink offers STARTTLS and requires it: before STARTTLS it
answers every command but EHLO/HELO/NOOP/QUIT with 530, so nothing reaches it in plain text.
With --login it also requires that login (AUTH PLAIN/LOGIN, only after STARTTLS). Each
accepted message appends a line to DIR/sessions.log: "tls" or "plain", and the login used.
Prints "ready" once listening. Runs until killed.
"""

import argparse
import asyncio
import os
import re
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.refusals = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        flaky = re.match(r"flaky(\d+)-", local)
        if flaky:
            seen = self.refusals.get(address, 0)
            if seen < int(flaky.group(1)):
                self.refusals[address] = seen + 1
                return "451 4.3.0 try again later (flaky test recipient)"
        elif local.startswith("tempfail"):
            return "451 4.3.0 try again later (tempfail test recipient)"
        elif local.startswith("reject"):
            return "550 5.1.1 no such mailbox (reject test recipient)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = "%d-%d.eml" % (os.getpid(), self.count)
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.directory, name))
        with open(os.path.join(self.directory, "sessions.log"), "a") as log:
            login = session.auth_data.login.decode() if session.auth_data else "-"
            log.write("%s %s %s\n" % (name, "tls" if session.ssl else "plain", login))
        return "250 Message accepted for delivery"


def authenticator(login):
    """Accepts exactly `login` ("user:password")."""
    user, password = login.encode().split(b":", 1)

    def check(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == user and auth_data.password == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return check


class SlowGreetingSMTP(SMTP):
    """Waits before the 220 greeting, so a test can stop a client in the middle."""

    greeting_delay = 0.0
    directory = "."

    async def _handle_client(self):
        with open(os.path.join(self.directory, "connections.log"), "a") as log:
            log.write("connection\n")
        if self.greeting_delay:
            await asyncio.sleep(self.greeting_delay)
        await super()._handle_client()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--greeting-delay", type=float, default=0.0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--login")
    args = parser.parse_args()
    options = {}
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        options.update(tls_context=context, require_starttls=True)
    if args.login:
        options.update(authenticator=authenticator(args.login), auth_required=True)
    os.makedirs(args.dir, exist_ok=True)
    SlowGreetingSMTP.greeting_delay = args.greeting_delay
    SlowGreetingSMTP.directory = args.dir
    handler = Sink(args.dir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SlowGreetingSMTP(
            handler, hostname="sink.test", data_size_limit=10_000_000, **options
        ),
        host=args.host,
        port=args.port,
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
