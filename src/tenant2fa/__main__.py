"""``tenant2fa`` / ``python -m tenant2fa``: the command line.

``demo`` is handled here; every other command, and ``--help``, by :mod:`tenant2fa.cli`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEMO_DB = Path("tenant2fa-demo.sqlite3")
EXIT_USAGE = 2


def _demo(argv: list[str]) -> int:
    """``tenant2fa demo``: the web demo (Flask), or with ``--terminal`` the story in the terminal."""
    parser = argparse.ArgumentParser(
        prog="tenant2fa demo",
        description="The user guide's story as a small web app (Flask, SQLite): sign in, switch "
        "two-factor authentication on as an owner, enable it with your phone, sign in with a code.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on (8000; 0 picks a free one)"
    )
    parser.add_argument(
        "--db",
        type=Path,
        help=f"SQLite file (default: ./{DEMO_DB}, created and seeded if absent; with "
        "--terminal, a new temporary file)",
    )
    parser.add_argument(
        "--smtp",
        metavar="HOST:PORT",
        help="send the e-mails to this SMTP server (plain SMTP, e.g. a local mail catcher) "
        "instead of showing them on the demo's mailbox page",
    )
    parser.add_argument(
        "--behind-proxy",
        action="store_true",
        help="the demo runs behind a TLS-terminating reverse proxy that sets X-Forwarded-Proto: "
        "trust that header (and no other forwarded header), so that the session cookie is Secure "
        "over HTTPS. Only with such a proxy: otherwise any client could send the header",
    )
    parser.add_argument(
        "--terminal",
        action="store_true",
        help="tell the story in the terminal instead, with a simulated phone (no Flask needed)",
    )
    parser.add_argument(
        "--interactive",
        action="store_true",
        help="with --terminal: scan the QR code with a real authenticator app and type its codes",
    )
    args = parser.parse_args(argv)
    if args.terminal:
        from tenant2fa.demo import main as terminal_demo  # noqa: PLC0415 - keep start-up light

        story = [] if args.db is None else ["--db", str(args.db)]
        return terminal_demo(story + (["--interactive"] if args.interactive else []))
    if args.interactive:
        parser.error("--interactive goes with --terminal (the web demo is interactive already)")
    try:
        from tenant2fa.webdemo.server import serve  # noqa: PLC0415 - imports Flask
    except ImportError as exc:
        print(
            f"tenant2fa demo: the web demo needs Flask ({exc}).\n"
            "Install it with: pip install 'tenant2fa[demo]'  (or run 'tenant2fa demo --terminal')",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return serve(
        host=args.host,
        port=args.port,
        db_path=args.db or DEMO_DB,
        smtp=args.smtp,
        behind_proxy=args.behind_proxy,
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "demo":
        return _demo(rest)
    # Every other command (and its errors) belongs to the operator's command line.
    from tenant2fa.cli import main as cli_main  # noqa: PLC0415

    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
