"""Server-side sessions and CSRF tokens for the demo, in a few lines of Flask.

The browser's cookie holds only a random session id (HttpOnly, SameSite=Lax, and Secure when the
request came over HTTPS: behind a TLS-terminating proxy, only if the application trusts the
proxy's ``X-Forwarded-Proto``, see ``create_app(behind_proxy=True)``). Everything else,
the tenant2fa :class:`~tenant2fa.LoginSession` included, stays in the server's memory. In your
application, use your framework's server-side sessions (Flask-Session with Redis or a database,
Django's database sessions...) and its CSRF protection (Flask-WTF, Django's middleware): this
module only shows what they must do.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Request, Response, abort, request, session
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

__all__ = ["CSRF_FIELD", "ServerSession", "ServerSideSessions", "check_csrf", "csrf_token"]

COOKIE_NAME = "tenant2fa_demo_session"
CSRF_FIELD = "csrf_token"
_CSRF_KEY = "csrf"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """The session of one browser: a dictionary kept on the server under ``sid``."""

    def __init__(self, sid: str | None, initial: Mapping[str, Any] | None = None) -> None:
        def on_update(_: CallbackDict[str, Any]) -> None:
            self.modified = True

        super().__init__(initial, on_update)
        self.sid = sid
        self.new = sid is None
        self.modified = False
        self.rotate_requested = False

    def rotate(self) -> None:
        """Move the data to a new session id at the end of this request.

        Call it whenever the session gains privileges (signing in, proving the second factor),
        so that an id planted or seen before is worth nothing afterwards.
        """
        self.rotate_requested = True
        self.modified = True


class ServerSideSessions(SessionInterface):
    """Keeps sessions in a dictionary in this process, forgotten after ``idle_seconds``."""

    def __init__(self, *, idle_seconds: float = 8 * 3600) -> None:
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._store: dict[str, tuple[dict[str, Any], float]] = {}

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        sid = request.cookies.get(COOKIE_NAME)
        now = time.monotonic()
        with self._lock:
            found = self._store.get(sid) if sid else None
            if found is None or found[1] < now:
                return ServerSession(None)
            return ServerSession(sid, dict(found[0]))

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, ServerSession):  # pragma: no cover - only ours are opened
            return
        if session.accessed:
            response.vary.add("Cookie")
        secure = request.is_secure
        path = self.get_cookie_path(app)
        with self._lock:
            if not session:  # emptied (signed out) or never used: forget it
                if session.sid is not None:
                    self._store.pop(session.sid, None)
                    response.delete_cookie(COOKIE_NAME, path=path, httponly=True, samesite="Lax")
                return
            sid = session.sid
            if sid is None or session.rotate_requested:
                if sid is not None:
                    self._store.pop(sid, None)
                sid = secrets.token_urlsafe(32)
            self._store[sid] = (dict(session), time.monotonic() + self.idle_seconds)
        if sid != session.sid:
            response.set_cookie(
                COOKIE_NAME, sid, path=path, httponly=True, samesite="Lax", secure=secure
            )

    def session_count(self) -> int:
        with self._lock:
            return len(self._store)

    def stored(self) -> dict[str, dict[str, Any]]:
        """A copy of every stored session by id (for tests)."""
        with self._lock:
            return {sid: dict(data) for sid, (data, _) in self._store.items()}


def csrf_token() -> str:
    """This session's CSRF token (made on first use). Every form carries it in a hidden field."""
    token = session.get(_CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_CSRF_KEY] = token
    return token


def new_csrf_token() -> None:
    """Forget the token, so that the next form gets a new one (after signing in)."""
    session.pop(_CSRF_KEY, None)


def check_csrf() -> None:
    """Refuse (403) an unsafe request whose form does not carry this session's token."""
    if request.method not in _UNSAFE_METHODS:
        return
    expected = session.get(_CSRF_KEY)
    sent = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(
        expected.encode("utf-8"), sent.encode("utf-8")
    ):
        abort(403, "The form has expired or did not come from this site. Reload and try again.")
