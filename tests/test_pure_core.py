"""The core is pure: no module of it imports anything that does I/O, and importing does nothing.

STYLE.md rule 1 (sans-I/O core, one shell) and rule 7 (nothing happens at import), checked two ways:

- statically: every import statement of every pure module (at module level, inside functions and
  under ``if TYPE_CHECKING``), and every ``importlib.import_module``/``__import__`` call with a
  constant name, is read from the source and checked against the forbidden list;
- dynamically: each pure module is imported in a fresh interpreter *without* running
  ``tenant2fa/__init__.py`` (which imports the service, the shell), and the modules it actually
  loaded, its own dependencies' included, are checked against the same list.

The package as a whole (service and in-memory storage included) may use ``logging`` and
``threading``, but importing it must not load network, database or process modules, start a
thread, or open anything but its own module files.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import pkgutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import tenant2fa

PURE_MODULES = (
    "attempts",
    "audit",
    "clock",
    "config",
    "enrollment",
    "errors",
    "factor",
    "flow",
    "keyring",
    "notification",
    "operations",
    "policy",
    "recovery",
    "results",
    "session",
    "throttle",
    "totp",
)
"""The sans-I/O core: frozen values and ``now`` in, a decision out."""

SHELL_PREFIXES = (
    "tenant2fa.__main__",
    "tenant2fa.cli",
    "tenant2fa.demo",
    "tenant2fa.dispatch",
    "tenant2fa.notify",
    "tenant2fa.outbox",
    "tenant2fa.service",
    "tenant2fa.smtp",
    "tenant2fa.storage",
    "tenant2fa.templates",
    "tenant2fa.testing",
    "tenant2fa.webdemo",
)
"""The I/O shell and the tools around it: allowed to do I/O, never imported by the core."""

IO_MODULES = (
    "asyncio",
    "concurrent",
    "ftplib",
    "http",
    "imaplib",
    "multiprocessing",
    "poplib",
    "select",
    "selectors",
    "smtplib",
    "socket",
    "socketserver",
    "sqlalchemy",
    "sqlite3",
    "ssl",
    "subprocess",
    "urllib.request",
    "xmlrpc",
)
"""Modules that talk to the network, a database or other processes."""

FORBIDDEN_IN_CORE = (*IO_MODULES, "logging", "threading", *SHELL_PREFIXES)
"""The core also neither logs (the service decides what is logged) nor starts or locks threads."""

EAGER_FORBIDDEN_IN_CORE = ("segno",)
"""Allowed only inside a function: importing segno loads xml.sax, urllib.request and socket."""


def _matches(module: str, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if module == n or module.startswith(n + ".")), None)


@dataclass(frozen=True, slots=True)
class FoundImport:
    module: str
    line: int
    eager: bool
    """Runs when the module is imported (module level, not under ``if TYPE_CHECKING``)."""


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, package: str) -> None:
        self.package = package
        self.found: list[FoundImport] = []
        self._lazy = 0

    def _add(self, module: str, node: ast.AST) -> None:
        self.found.append(FoundImport(module, getattr(node, "lineno", 0), eager=self._lazy == 0))

    def _nested(self, node: ast.AST) -> None:
        self._lazy += 1
        self.generic_visit(node)
        self._lazy -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._nested(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._nested(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._nested(node)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            self._lazy += 1
            for child in node.body:
                self.visit(child)
            self._lazy -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            module = f"{base}.{node.module}" if node.module else base
        else:
            module = node.module or ""
        self._add(module, node)
        # "from tenant2fa import service" imports the submodule tenant2fa.service.
        for alias in node.names:
            self._add(f"{module}.{alias.name}", node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self._add(first.value, node)
        self.generic_visit(node)


def imports_of(source: str, package: str = "tenant2fa") -> list[FoundImport]:
    """Every import in ``source`` (a module of ``package``), resolved to absolute names."""
    collector = _ImportCollector(package)
    collector.visit(ast.parse(source))
    return collector.found


def violations(source: str) -> list[str]:
    """``"line N: <forbidden module>"`` for each forbidden import in ``source``."""
    found: dict[str, None] = {}
    for imp in imports_of(source):
        bad = _matches(imp.module, FORBIDDEN_IN_CORE)
        if bad is None and imp.eager:
            bad = _matches(imp.module, EAGER_FORBIDDEN_IN_CORE)
        if bad is not None:
            found[f"line {imp.line}: {bad}"] = None
    return list(found)


def _source_of(module: str) -> str:
    spec = importlib.util.find_spec(f"tenant2fa.{module}")
    assert spec is not None
    assert spec.origin is not None
    return Path(spec.origin).read_text(encoding="utf-8")


def test_the_import_checker_sees_every_way_of_importing() -> None:
    source = textwrap.dedent(
        """
        import os, sqlite3 as db
        from . import service
        from .storage.memory import MemoryStorage
        from tenant2fa import notify
        from urllib.request import urlopen
        from urllib.parse import quote
        if TYPE_CHECKING:
            import segno
            from logging import Logger
        def later():
            import segno
            import threading
            importlib.import_module("socket")
            __import__("smtplib")
        class K:
            def m(self):
                from asyncio import run
        """
    )
    assert violations(source) == [
        "line 2: sqlite3",
        "line 3: tenant2fa.service",
        "line 4: tenant2fa.storage",
        "line 5: tenant2fa.notify",
        "line 6: urllib.request",
        "line 10: logging",
        "line 13: threading",
        "line 14: socket",
        "line 15: smtplib",
        "line 18: asyncio",
    ]
    assert violations("import segno\n") == ["line 1: segno"]
    assert violations("import segno.helpers as h\n") == ["line 1: segno"]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_source_imports_nothing_that_does_io(module: str) -> None:
    assert violations(_source_of(module)) == []


def test_every_module_of_the_package_is_classified_as_core_or_shell() -> None:
    names = [m.name for m in pkgutil.walk_packages(tenant2fa.__path__, "tenant2fa.")]
    unclassified = [
        name
        for name in names
        if name.removeprefix("tenant2fa.") not in PURE_MODULES
        and _matches(name, SHELL_PREFIXES) is None
    ]
    assert unclassified == [], "add them to PURE_MODULES or SHELL_PREFIXES in this file"
    assert {f"tenant2fa.{m}" for m in PURE_MODULES} <= set(names)


_LOAD_WITHOUT_PACKAGE_INIT = """
import importlib, importlib.util, json, sys, types
spec = importlib.util.find_spec("tenant2fa")
package = types.ModuleType("tenant2fa")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["tenant2fa"] = package
before = set(sys.modules)
importlib.import_module("tenant2fa." + sys.argv[1])
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _fresh_python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-I", "-B", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("module", PURE_MODULES)
def test_importing_a_pure_module_loads_nothing_that_does_io(module: str) -> None:
    loaded: list[str] = json.loads(_fresh_python(_LOAD_WITHOUT_PACKAGE_INIT, module))
    assert f"tenant2fa.{module}" in loaded
    assert [m for m in loaded if _matches(m, FORBIDDEN_IN_CORE + EAGER_FORBIDDEN_IN_CORE)] == []


_IMPORT_THE_PACKAGE = """
import json, os, sys, threading
events = []
IO_EVENTS = (
    "socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
    "os.kill", "sqlite3.", "_thread.", "urllib.", "http.", "smtplib.", "ftplib.", "os.remove",
    "os.rename", "os.mkdir", "os.rmdir", "os.truncate", "os.chmod", "shutil.", "tempfile.",
)
MODULE_FILES = (".py", ".pyc", ".so", ".pyd")

def hook(event, args):
    if event == "open":
        path, mode = str(args[0]), args[1]
        if not (path.endswith(MODULE_FILES) and mode in (None, "r", "rb")):
            events.append(f"open {path} {mode}")
    elif event.startswith(IO_EVENTS):
        events.append(event)

def fds():
    return sorted(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else []

threads = threading.active_count()
open_fds = fds()
before = set(sys.modules)
sys.addaudithook(hook)
import tenant2fa
print(json.dumps({
    "events": events,
    "loaded": sorted(set(sys.modules) - before),
    "threads": [threads, threading.active_count()],
    "fds": [open_fds, fds()],
}))
"""


def test_importing_the_package_does_no_io_and_starts_no_thread() -> None:
    report = json.loads(_fresh_python(_IMPORT_THE_PACKAGE))
    assert "tenant2fa.service" in report["loaded"]
    assert [m for m in report["loaded"] if _matches(m, IO_MODULES)] == []
    assert report["events"] == []
    before, after = report["threads"]
    assert after == before
    before_fds, after_fds = report["fds"]
    assert after_fds == before_fds
