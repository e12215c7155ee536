"""Draw the state diagrams and the rules table in docs/concepts.md from the code's own tables.

The enrollment diagram comes from :data:`tenant2fa.enrollment.TRANSITIONS`, the login diagram
from :data:`tenant2fa.flow.LOGIN_TRANSITIONS`, and the membership diagram and the table of who
may do what to whom from :data:`tenant2fa.policy.MEMBER_RULES`: Mermaid ``stateDiagram-v2``
blocks and a Markdown table, written between marker comments::

    <!-- BEGIN GENERATED: enrollment -->
    ...
    <!-- END GENERATED: enrollment -->

Usage::

    python docs/diagrams.py            # rewrite the blocks in docs/concepts.md
    python docs/diagrams.py --check    # exit 1 if they are stale (CI and tests/test_docs.py)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tenant2fa.enrollment import TRANSITIONS, EnrollmentEvent, EnrollmentState
from tenant2fa.flow import LOGIN_TRANSITIONS, LoginEvent, StepKind
from tenant2fa.policy import DEFAULT_TOGGLE_ROLES, GATED_ACTIONS, MEMBER_RULES, Action, Role

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

CONCEPTS = Path(__file__).resolve().parent / "concepts.md"


def _edge(source: str, target: str, label: str) -> str:
    if ":" in label or "\n" in label:
        raise ValueError(f"a Mermaid transition label cannot contain ':' or a newline: {label!r}")
    return f"    {source} --> {target}: {label}"


def enrollment_diagram() -> str:
    """The per-user enrollment state machine, one arrow per allowed (state, event) move."""
    states = list(EnrollmentState)
    events = list(EnrollmentEvent)
    lines = ["stateDiagram-v2", f"    [*] --> {EnrollmentState.NONE.name}"]
    moves = sorted(
        TRANSITIONS.items(), key=lambda item: (states.index(item[0][0]), events.index(item[0][1]))
    )
    for (state, event), target in moves:
        lines.append(_edge(state.name, target.name, event.value))
    return "\n".join(lines)


def login_diagram() -> str:
    """The login steps within one tenant, one arrow per (step, event, possible next step)."""
    steps = list(StepKind)
    events = list(LoginEvent)
    lines = ["stateDiagram-v2"]
    moves = sorted(
        LOGIN_TRANSITIONS.items(),
        key=lambda item: (steps.index(item[0][0]), events.index(item[0][1])),
    )
    for (step, event), targets in moves:
        for target in sorted(targets, key=steps.index):
            lines.append(_edge(step.name, target.name, event.value))
    return "\n".join(lines)


def _who(action: Action, target: Role, new_role: Role | None = None) -> str:
    """The roles that may do ``action`` to a member with role ``target`` (and ``new_role``)."""
    roles = [
        actor.value
        for actor in Role
        if target in MEMBER_RULES.get((actor, action), frozenset())
        and (new_role is None or new_role in MEMBER_RULES[(actor, action)])
        and (action not in GATED_ACTIONS or actor in DEFAULT_TOGGLE_ROLES)
    ]
    return ", ".join([*roles, "operator"])


def membership_diagram() -> str:
    """A user's membership of one tenant: added, role changes, removed; each arrow names who
    may make it (besides leaving, which every member may do)."""
    lines = ["stateDiagram-v2"]
    for role in Role:
        lines.append(_edge("[*]", role.name, f"add_member by {_who(Action.ADD_MEMBER, role)}"))
    for old in Role:
        for new in Role:
            if old is not new:
                who = _who(Action.CHANGE_ROLE, old, new)
                lines.append(_edge(old.name, new.name, f"set_role by {who}"))
    for role in Role:
        who = _who(Action.REMOVE_MEMBER, role)
        lines.append(_edge(role.name, "[*]", f"remove_member by {who} or themselves"))
    return "\n".join(lines)


def rules_table() -> str:
    """MEMBER_RULES as a Markdown table: for each actor role and action, whom it may act on."""
    lines = [
        "| actor | " + " | ".join(f"`{a.value}`" for a in Action) + " |",
        "|---|" + "---|" * len(Action),
    ]
    for actor in Role:
        cells = []
        for action in Action:
            targets = MEMBER_RULES.get((actor, action), frozenset())
            if action in GATED_ACTIONS and actor not in DEFAULT_TOGGLE_ROLES:
                targets = frozenset()
            cells.append(", ".join(r.value + "s" for r in Role if r in targets) or "nobody")
        lines.append(f"| {actor.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


DIAGRAMS: dict[str, Callable[[], str]] = {
    "enrollment": enrollment_diagram,
    "login": login_diagram,
    "membership": membership_diagram,
}
TABLES: dict[str, Callable[[], str]] = {
    "member-rules": rules_table,
}


def _block(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- BEGIN GENERATED: {name} -->\n)(.*?)(<!-- END GENERATED: {name} -->)", re.DOTALL
    )


def regenerate(text: str) -> str:
    """``text`` with every generated block replaced by a freshly drawn diagram.

    Raises :class:`ValueError` if a block's markers are missing or repeated.
    """
    for name, draw in DIAGRAMS.items():
        matches = list(_block(name).finditer(text))
        if len(matches) != 1:
            raise ValueError(f"expected one '{name}' block between markers, found {len(matches)}")
        start, end = matches[0].span(2)
        text = text[:start] + f"```mermaid\n{draw()}\n```\n" + text[end:]
    for name, make in TABLES.items():
        matches = list(_block(name).finditer(text))
        if len(matches) != 1:
            raise ValueError(f"expected one '{name}' block between markers, found {len(matches)}")
        start, end = matches[0].span(2)
        text = text[:start] + f"{make()}\n" + text[end:]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--file", type=Path, default=CONCEPTS, help="the Markdown file")
    args = parser.parse_args(argv)
    path: Path = args.file
    current = path.read_text(encoding="utf-8")
    fresh = regenerate(current)
    if fresh == current:
        return 0
    if args.check:
        print(f"{path}: the generated diagrams are stale; run python docs/diagrams.py")
        return 1
    path.write_text(fresh, encoding="utf-8")
    print(f"{path}: diagrams updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
