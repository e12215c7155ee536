"""Every SQLite file the library, the command line and the demo create, with its ``-wal`` and
``-shm`` files, and every key file, is readable by its owner only (0600) from its first byte,
whatever the umask (issue 10: they hold encrypted secrets, recovery-code hashes and the audit log).

Each case runs in a fresh process started with umask 022, the usual default, under which a file
created the ordinary way is 0644 (readable by every local user).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")

TESTS = Path(__file__).parent
USUAL_UMASK = 0o022


def _run(code: str, cwd: Path, *args: str) -> None:
    """Run ``code`` (or, with ``args``, the ``tenant2fa`` command) in a new process, umask 022."""
    command = [sys.executable, "-c", textwrap.dedent(code)] if code else [*args]
    # The shell sets the umask and hands over (no preexec_fn: forking a threaded test process).
    done = subprocess.run(
        ["/bin/sh", "-c", f'umask {USUAL_UMASK:03o} && exec "$0" "$@"', *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in sorted(folder.iterdir())}


def test_the_umask_of_the_children_would_make_files_world_readable(tmp_path: Path) -> None:
    """The control: under umask 022 a plainly created file is 0644, so the tests below mean it."""
    _run(f"open({str(tmp_path / 'plain')!r}, 'w').close()", tmp_path)
    assert _modes(tmp_path) == {"plain": 0o644}


def test_the_sqlite_backend_creates_its_database_wal_and_shm_private(tmp_path: Path) -> None:
    # The files are looked at while the connection is open, when -wal and -shm exist.
    code = f"""
        import os, stat
        from tenant2fa import Keyring, TwoFactor
        from tenant2fa.storage.sqlite import SQLiteStorage
        storage = SQLiteStorage({str(tmp_path / "app.sqlite3")!r})
        tf = TwoFactor(storage=storage, keyring=Keyring.generate())
        tf.create_tenant("A", name="A", owner_id="olga")
        modes = {{n: stat.S_IMODE(os.stat(os.path.join({str(tmp_path)!r}, n)).st_mode)
                 for n in os.listdir({str(tmp_path)!r})}}
        assert modes == {{"app.sqlite3": 0o600, "app.sqlite3-wal": 0o600,
                         "app.sqlite3-shm": 0o600}}, modes
    """
    _run(code, tmp_path)
    assert _modes(tmp_path)["app.sqlite3"] == 0o600


def test_the_sqlalchemy_backend_on_sqlite_creates_its_file_private(tmp_path: Path) -> None:
    code = f"""
        from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage
        storage = SQLAlchemyStorage("sqlite:///{tmp_path / "sa.sqlite3"}")
        storage.create_schema()
        storage.engine.dispose()
    """
    _run(code, tmp_path)
    assert _modes(tmp_path) == {"sa.sqlite3": 0o600}


def test_a_sqlite_uri_url_creates_its_file_private_too(tmp_path: Path) -> None:
    code = f"""
        from tenant2fa.storage.sqlalchemy import SQLAlchemyStorage
        url = "sqlite:///file:{tmp_path / "uri.sqlite3"}?mode=rwc&uri=true"
        storage = SQLAlchemyStorage(url)
        storage.create_schema()
        storage.engine.dispose()
        memory = SQLAlchemyStorage("sqlite:///file:mem?mode=memory&cache=shared&uri=true")
        memory.create_schema()
        memory.engine.dispose()
    """
    _run(code, tmp_path)
    assert _modes(tmp_path) == {"uri.sqlite3": 0o600}  # and no file named after the memory one


def test_the_command_line_creates_its_database_private(tmp_path: Path) -> None:
    _run("", tmp_path, sys.executable, "-m", "tenant2fa", "--db", "cli.sqlite3", "init")
    _run(
        "",
        tmp_path,
        sys.executable,
        "-m",
        "tenant2fa",
        "--db",
        "cli.sqlite3",
        "tenant",
        "create",
        "acme",
        "--name",
        "Acme",
        "--owner",
        "olga",
    )
    modes = _modes(tmp_path)
    assert modes["cli.sqlite3"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes


def test_the_web_demo_creates_its_database_and_key_file_private(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    code = f"""
        from pathlib import Path
        from tenant2fa.webdemo.accounts import new_passwords
        from tenant2fa.webdemo.app import create_app
        create_app(db_path=Path({str(tmp_path / "demo.sqlite3")!r}), passwords=new_passwords())
    """
    _run(code, tmp_path)
    modes = _modes(tmp_path)
    assert modes["demo.sqlite3"] == 0o600
    assert modes["demo.sqlite3.key"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes


def test_an_existing_file_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    """Only new files are made private: an operator's own choice (a group-readable file for a
    backup job, say) is theirs."""
    db = tmp_path / "shared.sqlite3"
    db.touch()
    db.chmod(0o640)
    code = f"""
        from tenant2fa.storage.sqlite import SQLiteStorage
        SQLiteStorage({str(db)!r}).schema_version()
    """
    _run(code, tmp_path)
    assert _modes(tmp_path)["shared.sqlite3"] == 0o640
