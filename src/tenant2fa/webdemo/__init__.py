"""The web demo: the user guide's story in a browser (``tenant2fa demo``).

A small Flask application on the SQLite backend. Its routes (:mod:`tenant2fa.webdemo.app`) are
the reference integration for adapter authors. Importing this package imports Flask: install
the ``demo`` extra (``pip install 'tenant2fa[demo]'``).
"""

from __future__ import annotations

from tenant2fa.webdemo.app import create_app

__all__ = ["create_app"]
