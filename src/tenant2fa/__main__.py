"""``tenant2fa`` / ``python -m tenant2fa``: the command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenant2fa.notify import Notifier

USAGE = """usage: tenant2fa COMMAND [options]

commands:
  demo              walk through the user guide's story in the terminal (SQLite)
  outbox dispatch   deliver pending notifications from the outbox (for cron)

Run 'tenant2fa COMMAND --help' for a command's options."""

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 1


def _load_notifier(spec: str) -> Notifier:
    """``package.module:factory`` → ``factory()``, which must return a Notifier."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError("--notifier takes 'package.module:factory'")
    factory = getattr(importlib.import_module(module_name), attribute)
    if not callable(factory):
        raise ValueError(f"{spec} is not callable")
    notifier = factory()
    if not callable(getattr(notifier, "notify", None)):
        raise ValueError(f"{spec}() returned an object without a notify() method")
    return notifier  # type: ignore[no-any-return]


def _outbox_dispatch(argv: list[str]) -> int:
    from tenant2fa.dispatch import Dispatcher  # noqa: PLC0415
    from tenant2fa.errors import Tenant2FAError  # noqa: PLC0415
    from tenant2fa.storage import open_storage  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="tenant2fa outbox dispatch",
        description="Deliver the notifications that are due, then exit (run it from cron).",
    )
    parser.add_argument(
        "--db", required=True, help="database URL or SQLite file (as for tenant2fa's storage)"
    )
    parser.add_argument(
        "--notifier",
        required=True,
        help="'package.module:factory' returning your Notifier (e.g. a configured SMTPNotifier)",
    )
    args = parser.parse_args(argv)
    try:
        notifier = _load_notifier(args.notifier)
    except (ImportError, AttributeError, ValueError) as exc:
        print(f"tenant2fa: cannot load the notifier: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = Dispatcher(open_storage(args.db), notifier).dispatch_all()
    except Tenant2FAError as exc:
        print(f"tenant2fa: outbox dispatch failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"delivered {report.delivered}, retrying {report.retrying}, "
        f"abandoned {report.abandoned}, lost to another dispatcher {report.lost}"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return EXIT_OK if args else EXIT_USAGE
    command, rest = args[0], args[1:]
    if command == "demo":
        from tenant2fa.demo import main as demo_main  # noqa: PLC0415 - keep start-up light

        return demo_main(rest)
    if command == "outbox" and rest[:1] == ["dispatch"]:
        return _outbox_dispatch(rest[1:])
    print(f"tenant2fa: unknown command {' '.join(args[:2])!r}\n\n{USAGE}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
