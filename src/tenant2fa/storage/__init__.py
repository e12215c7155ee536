"""Storage: the :class:`Storage` protocol of atomic domain operations, and its backends.

- :class:`tenant2fa.storage.memory.MemoryStorage`: in-process, thread-safe; for tests, demos and
  single-process apps (state is lost on restart, which resets replay and throttle state).
"""

from __future__ import annotations

from tenant2fa.storage.base import Charge, FactorRecord, Storage

__all__ = ["Charge", "FactorRecord", "Storage"]
