"""The project's own promises: the README's two commands, CI, static checks."""

from __future__ import annotations

import re
import subprocess
import sys
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


def test_demo_command_tells_the_guide_story_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite3"
    run = subprocess.run(
        [sys.executable, "-m", "tenant2fa", "demo", "--db", str(db)],
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
