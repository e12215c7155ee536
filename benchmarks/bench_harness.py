"""Side-by-side timing: a subject and its baseline, interleaved in batches, compared by medians.

Timings on a shared two-core machine drift by tens of percent within a minute, so no row reports
an absolute time on its own: the subject and its baseline run in the same process, alternating
batch by batch (A B, B A, A B, ...), and the row is the ratio of their median per-operation times.
The first batch of each side is a warm-up and is thrown away.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TIMES", "Row", "Side", "Target", "compare"]

TIMES = "\N{MULTIPLICATION SIGN}"

Body = Callable[[], "int | None"]
"""A timed batch. It returns ``None`` to be timed whole, or the nanoseconds it measured itself
(for batches that must do untimed work between operations)."""


@dataclass(frozen=True)
class Side:
    """One side of a comparison: ``prepare(batch)`` does the untimed set-up of batch number
    ``batch`` (0 is the warm-up) and returns the body, which performs ``ops`` operations."""

    label: str
    prepare: Callable[[int], Body]
    ops: int


@dataclass(frozen=True)
class Target:
    """A goal for a ratio: ``ratio <= value`` (``at_most``) or ``ratio > value``."""

    value: float
    at_most: bool = True
    text: str = ""

    def met(self, ratio: float) -> bool:
        return ratio <= self.value if self.at_most else ratio > self.value

    def describe(self) -> str:
        return self.text or (
            f"≤ {self.value:g}{TIMES}" if self.at_most else f"> {self.value:g}{TIMES}"
        )


@dataclass
class Row:
    """One line of the table: a subject against its named baseline, measured in the same run."""

    id: str
    group: str
    name: str
    baseline: str
    unit: str = "µs/op"
    subject_value: float | None = None
    baseline_value: float | None = None
    target: Target | None = None
    skipped: str | None = None
    failed: str | None = None
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.subject_value is None or not self.baseline_value:
            return None
        return self.subject_value / self.baseline_value

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        if self.target is None or ratio is None or not math.isfinite(ratio):
            return None
        return self.target.met(ratio)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            "subject_median": self.subject_value,
            "baseline": self.baseline,
            "baseline_median": self.baseline_value,
            "ratio": self.ratio,
            "target": None if self.target is None else self.target.describe(),
            "met": self.met,
            "skipped": self.skipped,
            "failed": self.failed,
            "note": self.note,
            "samples": self.samples,
            **self.extra,
        }


def _run_batch(side: Side, batch: int) -> float:
    body = side.prepare(batch)
    gc.collect()
    start = time.perf_counter_ns()
    measured = body()
    elapsed = time.perf_counter_ns() - start if measured is None else measured
    return elapsed / side.ops / 1e3


def compare(subject: Side, baseline: Side, *, batches: int) -> tuple[list[float], list[float]]:
    """Per-operation times in microseconds of ``batches`` batches of each side, interleaved.

    Batch 0 of each side is a warm-up and not returned. Odd rounds run the baseline first, so
    that neither side always follows the other (caches, CPU frequency, a neighbour's burst).
    """
    subject_times: list[float] = []
    baseline_times: list[float] = []
    for batch in range(batches + 1):
        order = [(subject, subject_times), (baseline, baseline_times)]
        if batch % 2:
            order.reverse()
        for side, times in order:
            per_op = _run_batch(side, batch)
            if batch:
                times.append(per_op)
    return subject_times, baseline_times


def fill(row: Row, subject_times: list[float], baseline_times: list[float]) -> Row:
    """Store the medians (and the raw samples, for the JSON) of a comparison in ``row``."""
    row.subject_value = statistics.median(subject_times)
    row.baseline_value = statistics.median(baseline_times)
    row.samples = {"subject": subject_times, "baseline": baseline_times}
    return row
