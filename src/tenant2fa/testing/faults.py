"""A storage fault injector: make any backend fail at a chosen operation.

:class:`FaultyStorage` wraps a real backend and forwards every call, except that an armed fault
makes the N-th call of a chosen method raise, either *before* the operation runs (it never
happened: a refused connection, a timeout) or *after* it ran (it committed, but the caller never
heard: a crash or a lost reply). Tests use it to show that every service operation either fully
happens or leaves the previous state, and that verification fails closed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from tenant2fa.errors import StorageError

__all__ = ["FaultyStorage", "StorageFault"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageFault:
    """Fail the ``nth`` (1-based) call of ``method``; ``after=True`` lets that call run first."""

    method: str
    nth: int = 1
    after: bool = False
    message: str = "injected storage fault"


class FaultyStorage:
    """Wraps a backend; see the module docstring. Thread-safe. ``calls`` logs method names."""

    def __init__(self, inner: Any) -> None:  # noqa: ANN401 - any Storage implementation
        self._inner = inner
        self._lock = threading.Lock()
        self._fault: StorageFault | None = None
        self._counts: dict[str, int] = {}
        self.calls: list[str] = []
        self.tripped = False

    def arm(self, fault: StorageFault | None) -> None:
        """Arm ``fault`` (replacing any armed one) and reset the call counts."""
        with self._lock:
            self._fault = fault
            self._counts = {}
            self.tripped = False

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - forwards the wrapped backend's API
        target = getattr(self._inner, name)
        if name.startswith("_") or not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            with self._lock:
                self.calls.append(name)
                self._counts[name] = self._counts.get(name, 0) + 1
                fault = self._fault
                hit = (
                    fault is not None
                    and not self.tripped
                    and fault.method == name
                    and self._counts[name] == fault.nth
                )
                if hit:
                    self.tripped = True
            if hit and fault is not None and not fault.after:
                raise StorageError(fault.message)
            result = target(*args, **kwargs)
            if hit and fault is not None:
                raise StorageError(fault.message)
            return result

        return call

    def __repr__(self) -> str:
        return f"FaultyStorage({self._inner!r})"
