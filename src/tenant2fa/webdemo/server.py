"""``tenant2fa demo``: start the web demo and say how to use it."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler

from tenant2fa.webdemo.accounts import DEMO_PEOPLE, TENANTS, new_passwords
from tenant2fa.webdemo.app import PRODUCT, create_app
from tenant2fa.webdemo.seed import KeyFileMissing, key_file_for

if TYPE_CHECKING:
    import socket

    from flask import Flask

__all__ = ["DemoServer", "parse_smtp", "serve"]


class _Handler(WSGIRequestHandler):
    # HTTP/1.0, one request per connection, and an idle connection (a browser's speculative
    # pre-connect) is dropped after a while, so that it cannot hold a worker thread.
    timeout = 10


class _QuietHandler(_Handler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class DemoServer(BaseWSGIServer):
    """A WSGI server answering on a few long-lived threads.

    SQLiteStorage keeps one connection per thread, so a thread per request (Werkzeug's threaded
    server) would open a new connection at every click.
    """

    def __init__(self, host: str, port: int, app: Flask, *, quiet: bool = False) -> None:
        super().__init__(host, port, app, handler=_QuietHandler if quiet else _Handler)
        self._workers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tenant2fa-demo")

    def process_request(self, request: Any, client_address: Any) -> None:  # noqa: ANN401
        self._workers.submit(self._answer, request, client_address)

    def _answer(self, request: socket.socket, client_address: Any) -> None:  # noqa: ANN401
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - as socketserver does: report, and keep serving
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._workers.shutdown(wait=False, cancel_futures=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.server_port}/"


def parse_smtp(value: str) -> tuple[str, int]:
    """``HOST:PORT`` as a pair; ValueError otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--smtp takes HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)


def serve(
    *,
    host: str,
    port: int,
    db_path: Path,
    smtp: str | None,
    behind_proxy: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Start the demo on ``host:port`` (0: any free port) and serve until interrupted.

    ``behind_proxy``: trust the ``X-Forwarded-Proto`` header of a TLS-terminating proxy (see
    :func:`~tenant2fa.webdemo.app.create_app`).
    """
    try:
        smtp_address = parse_smtp(smtp) if smtp else None
    except ValueError as exc:
        print(f"tenant2fa demo: {exc}", file=sys.stderr)
        return 2
    passwords = new_passwords()
    db_path = db_path.resolve()
    new_db = not db_path.exists()
    try:
        app = create_app(
            db_path=db_path, passwords=passwords, smtp=smtp_address, behind_proxy=behind_proxy
        )
    except KeyFileMissing as exc:
        print(f"tenant2fa demo: {exc}", file=sys.stderr)
        return 1
    server = DemoServer(host, port, app)

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    say(f"{PRODUCT}: the user guide's story in your browser")
    say()
    say(f"  Open {server.url} in your browser (Ctrl+C stops the demo).")
    if behind_proxy:
        say("  Behind a proxy: open the address the proxy serves instead. Its X-Forwarded-Proto")
        say("  header is trusted (HTTPS there makes the session cookie Secure), so only the proxy")
        say("  should reach the address above.")
    say()
    say("  Sign in as (new passwords at every start):")
    roles = {
        "olga": f"owner of {' and '.join(TENANTS.values())}",
        "bob": "member of both tenants",
        "carol": "member of both tenants",
    }
    for user_id, email, _ in DEMO_PEOPLE:
        say(f"    {email:<20} {passwords[email]}   {roles.get(user_id, '')}")
    say()
    say("  Keep a phone at hand: you will scan a QR code with an authenticator app")
    say("  (Google Authenticator, Apple Passwords...). The Google and Microsoft sign-in")
    say("  buttons are simulated: they check the demo password.")
    if smtp_address is None:
        say(f"  E-mails: {server.url}mailbox, once signed in (each person sees their own)")
    else:
        say(f"  E-mails: sent to the SMTP server at {smtp}")
    state = "new, seeded with Tenant A and Tenant B" if new_db else "kept from the last run"
    say(f"  Database: {db_path} ({state}); key: {key_file_for(db_path)}")
    say("  To start over, stop the demo and delete both files.")
    say()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        say("Stopped.")
    finally:
        server.server_close()
    return 0
