"""``tenant2fa`` / ``python -m tenant2fa``: the command line."""

from __future__ import annotations

import sys

USAGE = """usage: tenant2fa COMMAND [options]

commands:
  demo     walk through the user guide's story in the terminal (SQLite)

Run 'tenant2fa COMMAND --help' for a command's options."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from tenant2fa.demo import main as demo_main  # noqa: PLC0415 - keep start-up light

        return demo_main(rest)
    print(f"tenant2fa: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
