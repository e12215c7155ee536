"""The docs cannot rot: the diagrams are drawn from the code, and the walk-through runs."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tenant2fa.enrollment import TRANSITIONS
from tenant2fa.flow import LOGIN_TRANSITIONS

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def diagrams() -> ModuleType:
    """docs/diagrams.py, imported from its file (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("tenant2fa_docs_diagrams", DOCS / "diagrams.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_diagrams_in_concepts_are_up_to_date(diagrams: ModuleType) -> None:
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    assert diagrams.regenerate(text) == text, "run: python docs/diagrams.py"
    assert diagrams.main(["--check"]) == 0


def test_enrollment_diagram_has_one_arrow_per_transition(diagrams: ModuleType) -> None:
    lines = diagrams.enrollment_diagram().splitlines()
    assert lines[0] == "stateDiagram-v2"
    arrows = {line.strip() for line in lines[1:]}
    expected = {f"{s.name} --> {t.name}: {e.value}" for (s, e), t in TRANSITIONS.items()}
    assert arrows == expected | {"[*] --> NONE"}


def test_login_diagram_has_one_arrow_per_possible_next_step(diagrams: ModuleType) -> None:
    lines = diagrams.login_diagram().splitlines()
    assert lines[0] == "stateDiagram-v2"
    expected = {
        f"{step.name} --> {target.name}: {event.value}"
        for (step, event), targets in LOGIN_TRANSITIONS.items()
        for target in targets
    }
    assert {line.strip() for line in lines[1:]} == expected
    assert len(lines) - 1 == len(expected)


def test_check_fails_on_stale_docs_and_a_rewrite_fixes_them(
    diagrams: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "concepts.md"
    shutil.copy(DOCS / "concepts.md", stale)
    text = stale.read_text(encoding="utf-8")
    edited = text.replace("PENDING --> ACTIVE: confirm", "PENDING --> ACTIVE: hand-edited", 1)
    assert edited != text
    stale.write_text(edited, encoding="utf-8")

    assert diagrams.main(["--check", "--file", str(stale)]) == 1
    assert "stale" in capsys.readouterr().out
    assert stale.read_text(encoding="utf-8") == edited
    assert diagrams.main(["--file", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text
    assert diagrams.main(["--check", "--file", str(stale)]) == 0


def test_regenerate_refuses_a_file_without_its_markers(diagrams: ModuleType) -> None:
    with pytest.raises(ValueError, match="enrollment"):
        diagrams.regenerate("# no markers here\n")


_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def test_integration_walk_through_runs_top_to_bottom(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = DOCS / "integration.md"
    text = path.read_text(encoding="utf-8")
    blocks = list(_PYTHON_BLOCK.finditer(text))
    assert len(blocks) >= 10
    # One module for all blocks, as if the reader pasted them into one file in order.
    module = ModuleType("integration_md")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for block in blocks:
        first_line = text.count("\n", 0, block.start(1))
        # Pad with blank lines so that a traceback names the line of the Markdown file, and do
        # not inherit this file's `from __future__ import annotations`: the reader's code has none.
        source = "\n" * first_line + block.group(1)
        code = compile(source, str(path), "exec", dont_inherit=True)
        exec(code, namespace)  # noqa: S102 - running the documented example is the test
    assert capsys.readouterr().out.startswith("TENANT2FA_KEYS=2026-01:")
    # The story ended where the guide ends: Tenant B is back to email + password.
    guard = namespace["guard"]
    assert callable(guard)
    assert guard(namespace["bob"], "B") is None
    # Bob's and olga's "enabled" emails, and olga's owner emails: 2FA switched on, then off, in B.
    sent = namespace["sent_mail"]
    assert isinstance(sent, list)
    subjects = [(m["to"], m["subject"]) for m in sent]
    assert ("bob@example.com", "Two-factor authentication enabled for Acme") in subjects
    switched = [
        subject for to, subject in subjects if to == "olga@example.com" and "switched" in subject
    ]
    assert len(switched) == 2
    assert " on " in switched[0]
    assert " off " in switched[1]


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", ["index.md", "concepts.md", "security.md", "integration.md"])
def test_relative_links_in_the_docs_lead_somewhere(page: str) -> None:
    source = DOCS / page
    for target in _LINK.findall(source.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (source.parent / file_part).resolve() if file_part else source
        assert linked.exists(), f"{page}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked.read_text(encoding="utf-8")), f"{page}: {target}"
