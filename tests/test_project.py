"""The project's own promises: the README's two commands, CI, static checks."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^    (python3 -m venv .+)$", text, flags=re.MULTILINE)


def test_readme_opens_with_the_demo_command_then_the_test_command() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("tenant2fa demo")
    assert "'.[demo]'" in demo
    assert tests.endswith("python -m pytest")
    assert "'.[test]'" in tests
    head = (ROOT / "README.md").read_text(encoding="utf-8").split("## ")[0]
    assert demo in head
    assert tests in head


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r'^TEST_COMMAND="(.+)"$', ci, flags=re.MULTILINE)
    assert match is not None
    assert match.group(1) == _readme_commands()[1]
    assert 'bash -c "$TEST_COMMAND"' in ci


def test_ci_holds_the_pure_core_to_full_branch_coverage() -> None:
    from test_pure_core import PURE_MODULES

    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r'^PURE_CORE="([a-z ]+)"$', ci, flags=re.MULTILINE)
    assert match is not None
    gated = match.group(1).split()
    assert len(gated) >= 13
    assert len(set(gated)) == len(gated)
    # Each one is a module of the pure core (a renamed or removed module would gate nothing).
    assert set(gated) <= set(PURE_MODULES)
    assert all((ROOT / "src" / "tenant2fa" / f"{name}.py").is_file() for name in gated)
    assert re.search(
        r"^TZ=America/New_York \.venv/bin/python -m coverage run -m pytest ", ci, flags=re.MULTILINE
    )
    assert '--fail-under=100 --include="${PURE_CORE_FILES%,}"' in ci
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    coverage_run = pyproject.split("[tool.coverage.run]\n", 1)[1].split("\n[", 1)[0]
    assert "\nbranch = true\n" in coverage_run
    assert '\npatch = ["subprocess"]\n' in coverage_run


def test_demo_terminal_tells_the_guide_story_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite3"
    run = subprocess.run(
        [sys.executable, "-m", "tenant2fa", "demo", "--terminal", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    expected_in_order = [
        "bob signs in to Tenant A with email + password -> DONE",
        "refused: only a tenant owner",
        "opens Tenant A -> VERIFY_IDENTITY",
        "next step -> ENROLL",
        "clicks Enable -> OK",
        "bob signs in to Tenant B -> CHALLENGE",
        "a wrong code -> INVALID",
        "the code from his app -> OK; step -> DONE",
        "bob signs in to B -> DONE (email + password only)",
        "To bob@example.com: Two-factor authentication enabled",
    ]
    position = 0
    for line in expected_in_order:
        found = out.find(line, position)
        assert found >= 0, f"missing or out of order: {line!r}"
        position = found
    assert db.exists()
    assert "otpauth://" not in out  # the secret is shown as a QR code and key, never as a URI


def test_demo_command_starts_the_web_demo_and_prints_where_to_point_the_browser(
    tmp_path: Path,
) -> None:
    db = tmp_path / "demo.sqlite3"
    demo = subprocess.Popen(
        [sys.executable, "-m", "tenant2fa", "demo", "--port", "0", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        banner = _read_until(demo, "Database:", timeout=60)
        match = re.search(r"Open (http://127\.0\.0\.1:\d+/) in your browser", banner)
        assert match is not None, banner
        passwords = re.findall(r"^\s+(\S+@example\.com)\s+(\S+)\s", banner, flags=re.MULTILINE)
        assert [email for email, _ in passwords] == [
            "olga@example.com",
            "bob@example.com",
            "carol@example.com",
        ]
        assert "simulated" in banner
        with urllib.request.urlopen(match.group(1) + "sign-in", timeout=10) as page:  # noqa: S310
            html = page.read().decode("utf-8")
            cookie = page.headers["Set-Cookie"]
        assert "<h1>Sign in</h1>" in html
        assert "Sign in with Google <small>(simulated)</small>" in html
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
    finally:
        demo.terminate()
        _, errors = demo.communicate(timeout=30)
    assert b"Traceback" not in errors
    assert db.exists()
    key_file = db.with_name(db.name + ".key")
    assert key_file.stat().st_mode & 0o777 == 0o600


def _read_until(process: subprocess.Popen[bytes], marker: str, *, timeout: float) -> str:
    """What ``process`` printed up to ``marker`` (it must print it within ``timeout``)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    out = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while marker.encode() not in out:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} within {timeout} s: {out.decode()}"
            if not selector.select(left):
                continue
            chunk = os.read(fd, 65536)
            assert chunk, f"exited before printing {marker!r}: {out.decode()}"
            out += chunk
    return out.decode("utf-8")


def test_cli_without_a_command_prints_usage_and_fails() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tenant2fa"], capture_output=True, text=True, check=False
    )
    assert run.returncode == 2
    assert "usage: tenant2fa" in run.stdout


def test_mypy_strict_is_clean() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "src", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_check_and_format_are_clean() -> None:
    check = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
