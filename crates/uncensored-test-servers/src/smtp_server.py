"""An SMTP server for the tests, on aiosmtpd (PyPI), started by
uncensored-test-servers' smtp() with this venv's Python:

    python smtp_server.py PORT MAILDIR USER PASSWORD

It listens on 127.0.0.1:PORT without TLS, offers AUTH PLAIN and LOGIN over the
plain connection, and requires a login before MAIL FROM (530 otherwise). Only
USER with PASSWORD logs in; anything else gets aiosmtpd's 535. Each accepted
message is written to MAILDIR as one JSON file (written aside, then renamed, so
that a reader never sees half a file):

    {"mail_from": ..., "rcpt_tos": [...], "login": ..., "data": "<the raw message>"}

Recipients whose local part is `busy` are refused with a transient 451, those
whose local part is `unknown` with a permanent 550, so that the tests can see
how a client types both answers.
"""

import asyncio
import itertools
import json
import os
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

PORT, MAILDIR, USER, PASSWORD = sys.argv[1:5]
COUNTER = itertools.count()


def authenticator(server, session, envelope, mechanism, auth_data):
    if (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode("utf-8", "replace") == USER
        and auth_data.password.decode("utf-8", "replace") == PASSWORD
    ):
        return AuthResult(success=True, auth_data=auth_data)
    return AuthResult(success=False, handled=False)


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.rsplit("@", 1)[0].lower()
        if local == "busy":
            return "451 4.3.0 Mailbox busy, try again later"
        if local == "unknown":
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        login = getattr(session.auth_data, "login", None)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": login.decode("utf-8", "replace") if login else None,
            "data": envelope.original_content.decode("utf-8", "replace"),
        }
        name = f"{time.time_ns():020d}-{next(COUNTER):06d}.json"
        aside = os.path.join(MAILDIR, "." + name)
        with open(aside, "w", encoding="utf-8") as file:
            json.dump(record, file)
        os.replace(aside, os.path.join(MAILDIR, name))
        return "250 2.0.0 Message accepted"


def factory():
    return SMTP(
        Handler(),
        hostname="smtp.test",
        auth_required=True,
        auth_require_tls=False,
        authenticator=authenticator,
    )


async def main():
    os.makedirs(MAILDIR, exist_ok=True)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host="127.0.0.1", port=int(PORT))
    print(f"listening on 127.0.0.1:{PORT}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
