"""The web demo's routes: tenant2fa wired into a Flask application, page by page.

Read it as the reference integration (docs/integration.md explains the same shape without a
framework). Three rules carry it:

1. After the host has checked a password (or a Google/Microsoft sign-in) it calls
   ``tf.start_session`` and keeps the :class:`~tenant2fa.LoginSession` it gets in the
   server-side session. Every call that returns a new one replaces it (:func:`keep`).
2. Every page of a tenant runs ``tf.login_step`` first (:func:`tenant_page`) and is served only
   when the answer is ``DONE``; otherwise the browser goes to the page of that step.
3. The step pages call ``verify_identity``, ``begin_enrollment``/``confirm_enrollment``,
   ``verify_code`` or ``use_recovery_code`` and turn a refusal's ``reason`` into a message.

Sessions live on the server and every form carries a CSRF token (:mod:`.sessions`). Every
answer forbids framing and caching. Behind a TLS-terminating proxy (``behind_proxy=True``) the
proxy's ``X-Forwarded-Proto`` says whether the browser used HTTPS; otherwise that header is
ignored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from tenant2fa import (
    Clock,
    Config,
    InMemoryNotifier,
    InvalidInput,
    InvalidSession,
    InvalidTransition,
    LoginSession,
    NotAMember,
    Notifier,
    PermissionDenied,
    Provisioning,
    Reason,
    Role,
    Step,
    StepKind,
    StepUpRequired,
    TwoFactor,
    UnknownTenant,
)
from tenant2fa.notify import render
from tenant2fa.storage.sqlite import SQLiteStorage
from tenant2fa.webdemo.accounts import TENANTS, Account, Accounts
from tenant2fa.webdemo.seed import load_or_create_keyring, seed_tenants
from tenant2fa.webdemo.sessions import (
    ServerSession,
    ServerSideSessions,
    check_csrf,
    csrf_token,
)

__all__ = ["PRODUCT", "Demo", "create_app", "demo_of"]

PRODUCT = "tenant2fa demo"
"""The application's name: the issuer in authenticator apps and the product in e-mails."""

SIGN_IN_METHODS = {"password": "password", "google": "Google", "microsoft": "Microsoft"}
"""The primary sign-in methods. Google and Microsoft are simulated: see the sign-in page."""

# Refusals, worded for people. A wrong code and a code already used get the same answer.
MESSAGES: Mapping[Reason, str] = {
    Reason.INVALID: "That code didn't work. Check the code in your app and try again.",
    Reason.MALFORMED: "Enter the 6 digits shown in your authenticator app.",
    Reason.LOCKED: "Too many attempts. Try again later.",
    Reason.NOT_PENDING: "The set-up timed out. Scan the new QR code.",
    Reason.UNAVAILABLE: "We can't check codes right now. Try again in a minute.",
}
RECOVERY_MESSAGES: Mapping[Reason, str] = {
    **MESSAGES,
    Reason.INVALID: "That recovery code didn't work. Each one works only once.",
    Reason.MALFORMED: "A recovery code looks like ABCD-EFGH-JKMN-PQRS.",
}

# The page that handles each step of tenant2fa's login flow.
STEP_PAGES: Mapping[StepKind, str] = {
    StepKind.VERIFY_IDENTITY: ".verify_identity",
    StepKind.ENROLL: ".enable",
    StepKind.CHALLENGE: ".code",
    StepKind.LOCKED: ".locked",
    StepKind.DONE: ".tenant_home",
}

bp = Blueprint("demo", __name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Demo:
    """What the routes share: the service, the user table, and where e-mail goes."""

    tf: TwoFactor
    accounts: Accounts
    mailbox: InMemoryNotifier | None
    """The e-mails sent, when they are kept for the mailbox page (no ``--smtp``)."""
    smtp: str | None
    """``host:port`` of the SMTP server that receives the e-mails, with ``--smtp``."""
    sessions: ServerSideSessions


def demo_of(app: Flask) -> Demo:
    """The :class:`Demo` of an application made by :func:`create_app`."""
    found = app.extensions["tenant2fa_demo"]
    assert isinstance(found, Demo)  # noqa: S101 - create_app put it there
    return found


def create_app(
    *,
    db_path: Path,
    passwords: Mapping[str, str],
    smtp: tuple[str, int] | None = None,
    clock: Clock | None = None,
    config: Config | None = None,
    behind_proxy: bool = False,
) -> Flask:
    """The demo application on the SQLite file ``db_path`` (created and seeded if absent).

    ``passwords`` maps each demo e-mail address to its password. E-mail goes to the mailbox
    page, where each signed-in person reads their own, or with ``smtp=(host, port)`` to a plain
    SMTP server (a local catcher). ``clock`` and ``config`` are passed to
    :class:`~tenant2fa.TwoFactor` (tests use a fake clock).

    With ``behind_proxy=True`` the application trusts one ``X-Forwarded-Proto`` header, and no
    other forwarded header, so that the session cookie is ``Secure`` when the browser spoke
    HTTPS to a TLS-terminating proxy. Only for a proxy that sets that header itself: without
    one, any client could send it.
    """
    accounts = Accounts(passwords)
    mailbox: InMemoryNotifier | None = None
    notifier: Notifier
    if smtp is None:
        notifier = mailbox = InMemoryNotifier()
    else:
        from tenant2fa.smtp import SMTPNotifier  # noqa: PLC0415 - only when asked for

        notifier = SMTPNotifier(
            host=smtp[0],
            port=smtp[1],
            sender=f"{PRODUCT} <no-reply@example.com>",
            address_for=accounts.email_of,
            security="none",  # a mail catcher on this machine, not a real server
            product=PRODUCT,
        )
    # Create the service once, at start-up. Keep the key outside the database in production.
    tf = TwoFactor(
        storage=SQLiteStorage(db_path),
        keyring=load_or_create_keyring(db_path),
        notifier=notifier,
        clock=clock,
        config=config or Config(issuer=PRODUCT),
    )
    seed_tenants(tf)

    app = Flask(__name__)
    sessions = ServerSideSessions()
    app.session_interface = sessions
    app.extensions["tenant2fa_demo"] = Demo(
        tf=tf,
        accounts=accounts,
        mailbox=mailbox,
        smtp=None if smtp is None else f"{smtp[0]}:{smtp[1]}",
        sessions=sessions,
    )
    app.before_request(check_csrf)
    app.after_request(_security_headers)
    app.context_processor(_page_context)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.filters["utc"] = _utc
    for status in (400, 401, 403, 404, 405):
        app.register_error_handler(status, _error_page)
    app.register_blueprint(bp)
    if behind_proxy:
        # The scheme only: the client's address, host, port and path prefix stay as received.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=0, x_proto=1, x_host=0, x_port=0, x_prefix=0
        )
    return app


# -- the login session, kept server side -------------------------------------------------------


def demo() -> Demo:
    return demo_of(current_app)


def current_login() -> LoginSession | None:
    login = session.get("login")
    return login if isinstance(login, LoginSession) else None


def keep(login: LoginSession) -> None:
    """Store the value a tenant2fa call returned: it replaces the old one."""
    session["login"] = login


def rotate_session() -> None:
    """A new session id (and cookie) at the end of this request: after any gain in privilege."""
    if isinstance(session, ServerSession):
        session.rotate()


def signed_in() -> tuple[LoginSession, Account]:
    """The login and account of this browser, or a redirect to the sign-in page."""
    login = current_login()
    account = demo().accounts.by_id(login.user_id) if login else None
    if login is None or account is None:
        abort(redirect(url_for(".sign_in")))
    return login, account


def role_in(tenant_id: str, user_id: str) -> Role | None:
    """The user's role in the tenant (your app may keep roles itself; the demo asks tenant2fa)."""
    return next((m.role for m in demo().tf.members(tenant_id) if m.user_id == user_id), None)


# -- the guard that runs before every page of a tenant ---------------------------------------


def login_step(tenant_id: str) -> Step:
    login, _ = signed_in()
    try:
        return demo().tf.login_step(login, tenant_id)
    except (NotAMember, UnknownTenant, InvalidInput):
        abort(404)
    except InvalidSession:  # altered, or the keys changed: sign the user out
        session.clear()
        abort(redirect(url_for(".sign_in")))


# Flask calls a view with the URL's parts as keywords: tenant_id, and any others the route has.
TenantView = Callable[..., ResponseReturnValue]
StepView = Callable[[str, Step], ResponseReturnValue]


def tenant_page(view: TenantView) -> TenantView:
    """Serve the page only when ``login_step`` says DONE; otherwise go to the step's page.

    Put it on every route that shows or changes a tenant's data, forms and APIs included.
    """

    @functools.wraps(view)
    def guarded(tenant_id: str, **parts: str) -> ResponseReturnValue:
        step = login_step(tenant_id)
        if step.kind is not StepKind.DONE:
            return redirect(url_for(STEP_PAGES[step.kind], tenant_id=tenant_id))
        return view(tenant_id, **parts)

    return guarded


def step_page(kind: StepKind) -> Callable[[StepView], TenantView]:
    """For the page of one step: shown only while ``login_step`` gives that step."""

    def decorate(view: StepView) -> TenantView:
        @functools.wraps(view)
        def guarded(tenant_id: str) -> ResponseReturnValue:
            step = login_step(tenant_id)
            if step.kind is not kind:
                return redirect(url_for(STEP_PAGES[step.kind], tenant_id=tenant_id))
            return view(tenant_id, step)

        return guarded

    return decorate


# -- signing in and out (the host's own business; tenant2fa only hears who and how) ----------


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for(".tenants" if current_login() else ".sign_in"))


@bp.get("/sign-in")
def sign_in() -> ResponseReturnValue:
    if current_login() is not None:
        return redirect(url_for(".tenants"))
    return render_template("sign_in.html", methods=SIGN_IN_METHODS)


@bp.post("/sign-in")
def sign_in_post() -> ResponseReturnValue:
    method = request.form.get("method", "password")
    if method not in SIGN_IN_METHODS:
        abort(400)
    email = request.form.get("email", "")
    account = demo().accounts.check_password(email, request.form.get("password", ""))
    if account is None:
        return render_template(
            "sign_in.html",
            methods=SIGN_IN_METHODS,
            email=email,
            error="Wrong email or password.",
        ), 401
    # A sign-in gains privileges: start afresh under a new session id (and a new CSRF token).
    session.clear()
    rotate_session()
    keep(demo().tf.start_session(account.user_id, method=method))
    return redirect(url_for(".tenants"))


@bp.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    session.clear()  # the server forgets the session; the cookie is deleted
    return redirect(url_for(".sign_in"))


@bp.get("/tenants")
def tenants() -> ResponseReturnValue:
    """The tenant switcher: the user's tenants, and which of them require 2FA."""
    _, account = signed_in()
    return render_template("tenants.html", tenants=_tenants_of(account.user_id))


# -- a tenant's pages ----------------------------------------------------------------------


@bp.get("/t/<tenant_id>")
@tenant_page
def tenant_home(tenant_id: str) -> ResponseReturnValue:
    login, account = signed_in()
    tf = demo().tf
    return render_template(
        "tenant.html",
        tenant=tf.tenant(tenant_id),
        status=tf.user_status(account.user_id),
        login=login,
        method_name=SIGN_IN_METHODS.get(login.method, login.method),
    )


@bp.get("/t/<tenant_id>/settings/authentication")
@tenant_page
def authentication_settings(tenant_id: str) -> ResponseReturnValue:
    """The owner's Authentication settings, with the Two-factor authentication toggle."""
    _, account = signed_in()
    if role_in(tenant_id, account.user_id) is not Role.OWNER:
        abort(403, "Only owners see the Authentication settings.")
    tf = demo().tf
    members = []
    for membership in tf.members(tenant_id):
        person = demo().accounts.by_id(membership.user_id)
        status = tf.user_status(membership.user_id)
        members.append((membership, person, status))
    return render_template(
        "authentication.html",
        tenant=tf.tenant(tenant_id),
        members=members,
        audit=list(reversed(tf.audit_log(tenant_id=tenant_id)))[:12],
    )


@bp.post("/t/<tenant_id>/settings/authentication")
@tenant_page
def authentication_settings_post(tenant_id: str) -> ResponseReturnValue:
    login, _ = signed_in()
    choice = request.form.get("two_factor")
    if choice not in ("on", "off"):
        abort(400)
    try:  # tenant2fa checks the role itself: a forged request from a member changes nothing
        tf = demo().tf
        policy = tf.set_two_factor(tenant_id, actor_id=login.user_id, enabled=choice == "on")
    except PermissionDenied:
        abort(403, "Only an owner can change the Two-factor authentication setting.")
    if policy.two_factor_required:
        flash(
            f"Two-factor authentication is on for {policy.name}. Everyone in it, you included, "
            "will be asked to enable it at their next step.",
            "ok",
        )
    else:
        flash(
            f"Two-factor authentication is off for {policy.name}. From their next sign-in, "
            "members need only their email and password here.",
            "ok",
        )
    return redirect(url_for(".authentication_settings", tenant_id=tenant_id))


@bp.post("/t/<tenant_id>/settings/members/<user_id>/unlock")
@tenant_page
def unlock_member(tenant_id: str, user_id: str) -> ResponseReturnValue:
    """An owner lifts a member's wrong-code lock; their authenticator keeps working."""
    login, _ = signed_in()
    try:  # tenant2fa checks the authority itself: an owner of every tenant relying on it
        unlocked = demo().tf.unlock(tenant_id, user_id, actor_id=login.user_id)
    except PermissionDenied as exc:
        abort(403, str(exc))
    except NotAMember:
        abort(404)
    if unlocked:
        flash(f"{user_id} can try codes again; their authenticator app still works.", "ok")
    else:
        flash(f"Nothing to unlock: {user_id} has no wrong codes counted.", "error")
    return redirect(url_for(".authentication_settings", tenant_id=tenant_id))


@bp.post("/t/<tenant_id>/settings/members/<user_id>/reset")
@tenant_page
def reset_member(tenant_id: str, user_id: str) -> ResponseReturnValue:
    """An owner resets a member's 2FA (a lost phone)."""
    login, _ = signed_in()
    try:
        demo().tf.reset_two_factor(tenant_id, user_id, actor_id=login.user_id)
    except PermissionDenied as exc:
        abort(403, str(exc))
    except NotAMember:
        abort(404)
    except InvalidTransition:
        flash("Nothing to reset: that member has not enabled two-factor authentication.", "error")
    else:
        flash(f"Two-factor authentication of {user_id} was reset.", "ok")
    return redirect(url_for(".authentication_settings", tenant_id=tenant_id))


# -- the step pages --------------------------------------------------------------------------


@bp.get("/t/<tenant_id>/verify-identity")
@step_page(StepKind.VERIFY_IDENTITY)
def verify_identity(tenant_id: str, step: Step) -> ResponseReturnValue:
    return render_template("verify_identity.html", step=step, methods=SIGN_IN_METHODS)


@bp.post("/t/<tenant_id>/verify-identity")
@step_page(StepKind.VERIFY_IDENTITY)
def verify_identity_post(tenant_id: str, step: Step) -> ResponseReturnValue:
    login, account = signed_in()
    method = request.form.get("method", "password")
    if method not in SIGN_IN_METHODS:
        abort(400)
    # Your real check: the password, or a new Google/Microsoft sign-in with prompt=login.
    if demo().accounts.check_password(account.email, request.form.get("password", "")) is None:
        return render_template(
            "verify_identity.html",
            step=step,
            methods=SIGN_IN_METHODS,
            error="Wrong password.",
        ), 401
    keep(demo().tf.verify_identity(login, method=method))
    return redirect(url_for(".tenant_home", tenant_id=tenant_id))


def _enrollment_setup(login: LoginSession, account: Account) -> Provisioning:
    """The QR code and key being set up, kept server side so that a page reload or a wrong
    code shows the same ones (the phone has scanned them); a new one when that has expired."""
    setup = session.get("setup")
    if isinstance(setup, Provisioning) and setup.expires_at > demo().tf.clock.now():
        return setup
    setup = demo().tf.begin_enrollment(login, account_name=account.email)
    session["setup"] = setup
    return setup


@bp.get("/t/<tenant_id>/2fa/enable")
@step_page(StepKind.ENROLL)
def enable(tenant_id: str, step: Step) -> ResponseReturnValue:
    login, account = signed_in()
    try:
        setup = _enrollment_setup(login, account)
    except StepUpRequired:  # the identity check got too old meanwhile
        return redirect(url_for(".tenant_home", tenant_id=tenant_id))
    return _enable_page(step, setup)


def _enable_page(step: Step, setup: Provisioning, error: str | None = None) -> str:
    # The QR code is inline SVG: the secret never travels in a URL, not even to this server.
    # The SVG is segno's drawing of the code (paths only, no text from a user): safe to inline.
    qr = Markup(setup.qr_svg(scale=5))  # noqa: S704
    return render_template("enable.html", step=step, setup=setup, qr=qr, error=error)


@bp.post("/t/<tenant_id>/2fa/enable")
@step_page(StepKind.ENROLL)
def enable_post(tenant_id: str, step: Step) -> ResponseReturnValue:
    login, account = signed_in()
    result = demo().tf.confirm_enrollment(login, request.form.get("code", ""))
    if result.reason is Reason.NOT_PENDING:
        session.pop("setup", None)
        flash(MESSAGES[Reason.NOT_PENDING], "error")
        return redirect(url_for(".enable", tenant_id=tenant_id))
    if not result.ok:
        setup = session.get("setup")
        if not isinstance(setup, Provisioning):
            return redirect(url_for(".enable", tenant_id=tenant_id))
        return _enable_page(step, setup, _message(MESSAGES, result.reason, result.retry_at)), 400
    session.pop("setup", None)
    keep(result.login)
    rotate_session()  # the second factor is proven: a new session id
    # Shown once, in this response: the codes are not stored anywhere in clear.
    return render_template("recovery_codes.html", codes=result.recovery_codes, email=account.email)


@bp.get("/t/<tenant_id>/2fa/code")
@step_page(StepKind.CHALLENGE)
def code(tenant_id: str, step: Step) -> ResponseReturnValue:
    return render_template("code.html", step=step)


@bp.post("/t/<tenant_id>/2fa/code")
@step_page(StepKind.CHALLENGE)
def code_post(tenant_id: str, step: Step) -> ResponseReturnValue:
    login, _ = signed_in()
    result = demo().tf.verify_code(login, tenant_id, request.form.get("code", ""))
    if result.reason is Reason.LOCKED:
        return redirect(url_for(".locked", tenant_id=tenant_id))
    if not result.ok:
        return render_template(
            "code.html", step=step, error=_message(MESSAGES, result.reason, result.retry_at)
        ), 400
    keep(result.login)
    rotate_session()
    return redirect(url_for(".tenant_home", tenant_id=tenant_id))


@bp.get("/t/<tenant_id>/2fa/recovery")
@step_page(StepKind.CHALLENGE)
def recovery(tenant_id: str, step: Step) -> ResponseReturnValue:
    return render_template("recovery.html", step=step)


@bp.post("/t/<tenant_id>/2fa/recovery")
@step_page(StepKind.CHALLENGE)
def recovery_post(tenant_id: str, step: Step) -> ResponseReturnValue:
    login, _ = signed_in()
    result = demo().tf.use_recovery_code(login, tenant_id, request.form.get("code", ""))
    if result.reason is Reason.LOCKED:
        return redirect(url_for(".locked", tenant_id=tenant_id))
    if not result.ok:
        message = _message(RECOVERY_MESSAGES, result.reason, result.retry_at)
        return render_template("recovery.html", step=step, error=message), 400
    keep(result.login)
    rotate_session()
    flash(
        f"Signed in with a recovery code. You have {result.recovery_codes_left} left; "
        "we e-mailed you about it.",
        "ok",
    )
    return redirect(url_for(".tenant_home", tenant_id=tenant_id))


@bp.get("/t/<tenant_id>/locked")
@step_page(StepKind.LOCKED)
def locked(tenant_id: str, step: Step) -> ResponseReturnValue:
    return render_template("locked.html", step=step)


# -- the mailbox ---------------------------------------------------------------------------


@bp.get("/mailbox")
def mailbox() -> ResponseReturnValue:
    """The e-mails the demo sent to the signed-in person (a stand-in for their inbox), newest
    first. Only after sign-in, and only their own: an e-mail tells who changed what, and when."""
    _, account = signed_in()
    d = demo()
    mail = []
    if d.mailbox is not None:
        for note in reversed(d.mailbox.for_user(account.user_id)):
            mail.append((note, account.email, render(note, product=PRODUCT)))
    return render_template("mailbox.html", mail=mail, smtp=d.smtp)


# -- helpers for the pages -----------------------------------------------------------------


def _message(messages: Mapping[Reason, str], reason: Reason, retry_at: datetime | None) -> str:
    text = messages[reason]
    if reason is Reason.LOCKED and retry_at is not None:
        text = f"Too many attempts. Try again after {_utc(retry_at)}."
    return text


def _utc(when: datetime | None) -> str:
    return "" if when is None else f"{when:%H:%M:%S} UTC"


def _tenants_of(user_id: str) -> list[tuple[str, str, bool]]:
    """(id, name, requires 2FA) of each tenant the user belongs to."""
    tf = demo().tf
    return [
        (tenant_id, name, tf.tenant(tenant_id).two_factor_required)
        for tenant_id, name in TENANTS.items()
        if role_in(tenant_id, user_id) is not None
    ]


def _page_context() -> dict[str, Any]:
    """What every page's header needs: who is signed in, their tenants, the current tenant."""
    login = current_login()
    account = demo().accounts.by_id(login.user_id) if login else None
    tenant_id = (request.view_args or {}).get("tenant_id")
    context: dict[str, Any] = {
        "account": account,
        "tenant_id": tenant_id,
        "tenant_names": TENANTS,
        "is_owner": False,
    }
    if account is not None:
        context["my_tenants"] = _tenants_of(account.user_id)
        if isinstance(tenant_id, str) and tenant_id in TENANTS:
            context["tenant_name"] = TENANTS[tenant_id]
            context["is_owner"] = role_in(tenant_id, account.user_id) is Role.OWNER
    return context


def _security_headers(response: Response) -> Response:
    # Pages may carry a QR code or recovery codes: never cache them; never frame them (the
    # toggle must not be clickjacked; X-Frame-Options for browsers that ignore frame-ancestors);
    # no script at all.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _error_page(error: HTTPException) -> ResponseReturnValue:
    return render_template("error.html", error=error), error.code or 500
