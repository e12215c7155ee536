"""The user guide, clicked through in a real browser: headless Chromium drives the web demo.

Shared by tests/test_browser.py, which tells the story as a test, and tests/test_site.py, which
tells it to take the screenshots docs/demo.md shows when docs/img lacks them (so that it does not
depend on test_browser.py having run first).

Two browsers, two people: Olga owns Tenant B, Bob is a member of Tenant A and Tenant B. Bob's
phone is played by this module: it reads the QR code off the page with a real QR decoder
(zxing-cpp, from a screenshot of the rendered code) and computes codes from the decoded
``otpauth://`` link with RFC 6238 written out below, never from anything the library stored. The
demo runs in the test's process on a :class:`~tenant2fa.testing.FakeClock`, so "later" is a clock
step, not a sleep.

Each step saves a screenshot into docs/img/ (:data:`SCREENSHOTS`, in the order docs/demo.md shows
them).

Needs Debian's ``chromium`` and ``chromium-driver`` (.ci/run installs them): :data:`MISSING` lists
what is not there, and :data:`NO_BROWSER` is the one-line reason a test skips for it (except under
CI, where the test modules fail instead).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import zxingcpp
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tenant2fa import Config, RecoveryCodeHasher, TwoFactor
from tenant2fa.testing import FakeClock
from tenant2fa.webdemo.app import PRODUCT, create_app, demo_of
from tenant2fa.webdemo.server import DemoServer

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT_DIR = ROOT / "docs" / "img"
SCREENSHOTS = (
    "01-sign-in.png",
    "02-tenant-a.png",
    "03-owner-toggle.png",
    "04-verify-identity.png",
    "05-enable-2fa.png",
    "06-recovery-codes.png",
    "07-mailbox.png",
    "08-code-prompt.png",
    "09-wrong-code.png",
    "10-signed-in.png",
    "11-toggle-off.png",
    "12-password-only.png",
)
"""The pictures the story takes, in the order it takes them (and docs/demo.md shows them)."""

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MISSING = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
"""The browser and driver paths that are not executables here (empty where the story can run)."""
NO_BROWSER = "needs Debian's chromium and chromium-driver (see .ci/run)"

PASSWORDS = {
    "olga@example.com": "olga-demo-pass",
    "bob@example.com": "bob-demo-pass",
    "carol@example.com": "carol-demo-pass",
}
START = datetime(2026, 5, 4, 9, 30, 0, tzinfo=timezone.utc)
WINDOW = (1000, 800)


# -- the phone -------------------------------------------------------------------------------


def read_qr_code(png: bytes) -> str:
    """What a phone's camera reads from the QR code in this picture."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
    codes = [b for b in found if b.format == zxingcpp.BarcodeFormat.QRCode]
    assert len(codes) == 1, f"expected one QR code, decoded {len(codes)}"
    return codes[0].text


def authenticator_app(uri: str, at: datetime) -> str:
    """The code an authenticator app shows at ``at`` for the account in ``uri`` (RFC 6238)."""
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    secret = query["secret"]
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digits = int(query.get("digits", "6"))
    period = int(query.get("period", "30"))
    algorithm = query.get("algorithm", "SHA1").lower()
    counter = int(at.timestamp()) // period
    mac = hmac.new(key, counter.to_bytes(8, "big"), getattr(hashlib, algorithm)).digest()
    offset = mac[-1] & 0x0F
    number = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFF_FFFF
    return str(number % 10**digits).zfill(digits)


def a_wrong_code(uri: str, at: datetime) -> str:
    """A well-formed code that no time step near ``at`` produces."""
    near = {authenticator_app(uri, at + timedelta(seconds=s)) for s in range(-90, 91, 30)}
    return next(c for c in (f"{n:06d}" for n in range(0, 10**6, 111_111)) if c not in near)


# -- the demo and the browsers ---------------------------------------------------------------


class Demo:
    def __init__(self, url: str, clock: FakeClock, tf: TwoFactor) -> None:
        self.url = url
        self.clock = clock
        self.tf = tf


@contextmanager
def running_demo(db_path: Path) -> Iterator[Demo]:
    """The web demo on a SQLite file at ``db_path``, served on 127.0.0.1 from a thread."""
    clock = FakeClock(START)
    app = create_app(
        db_path=db_path,
        passwords=PASSWORDS,
        clock=clock,
        config=Config(issuer=PRODUCT, recovery_hasher=RecoveryCodeHasher(n=2**4)),
    )
    server = DemoServer("127.0.0.1", 0, app, quiet=True)
    thread = threading.Thread(target=server.serve_forever, name="demo-server", daemon=True)
    thread.start()
    try:
        yield Demo(server.url, clock, demo_of(app).tf)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def browsers() -> Iterator[Callable[[], WebDriver]]:
    """A function that opens one more headless Chromium (each with its own profile); all of them
    are closed on leaving."""
    drivers: list[WebDriver] = []
    profiles: list[tempfile.TemporaryDirectory[str]] = []

    def start() -> WebDriver:
        profile = tempfile.TemporaryDirectory(prefix="tenant2fa-chromium-")
        profiles.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless",
            "--no-sandbox",  # runs as root in CI
            "--disable-gpu",
            "--disable-dev-shm-usage",
            # No traffic but to the demo: this machine has no network.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--user-data-dir={profile.name}",
        ):
            options.add_argument(flag)
        # Given the driver's path, Selenium needs (and downloads) nothing else.
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        drivers.append(driver)
        # The window includes the browser's frame: grow it until the page gets WINDOW.
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        driver.set_window_size(2 * WINDOW[0] - inner[0], 2 * WINDOW[1] - inner[1])
        return driver

    try:
        yield start
    finally:
        for driver in drivers:
            driver.quit()
        for profile in profiles:
            profile.cleanup()


# -- what a person does ----------------------------------------------------------------------


@dataclass
class Camera:
    """Saves what a browser window shows into ``directory``, and remembers the names it saved."""

    directory: Path
    taken: list[str] = field(default_factory=list)

    def shot(self, browser: WebDriver, name: str) -> None:
        """Save the window as ``<directory>/<name>.png``, in few colours to keep it small."""
        png = browser.get_screenshot_as_png()
        image = Image.open(io.BytesIO(png)).convert("RGB")
        assert image.size == WINDOW
        self.directory.mkdir(parents=True, exist_ok=True)
        image.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(
            self.directory / f"{name}.png", optimize=True
        )
        self.taken.append(f"{name}.png")


def _gone(page: WebElement) -> Callable[[WebDriver], bool]:
    """Whether ``page`` (the old document's root) has left: selenium's ``staleness_of``, plus the
    other answer ChromeDriver sometimes gives for a node of a document that was replaced."""

    def check(_browser: WebDriver) -> bool:
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return check


def click(browser: WebDriver, css: str) -> None:
    """Click and wait for the next page to load."""
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, css).click()
    WebDriverWait(browser, 10).until(_gone(page))


def type_in(browser: WebDriver, css: str, text: str) -> None:
    field = browser.find_element(By.CSS_SELECTOR, css)
    field.clear()
    field.send_keys(text)


def heading(browser: WebDriver) -> str:
    return browser.find_element(By.TAG_NAME, "h1").text


def path_of(browser: WebDriver) -> str:
    return urlsplit(browser.current_url).path


def sign_in(
    browser: WebDriver,
    demo: Demo,
    email: str,
    *,
    camera: Camera | None = None,
    screenshot: str | None = None,
) -> None:
    browser.get(demo.url + "sign-in")
    assert heading(browser) == "Sign in"
    type_in(browser, "input[name=email]", email)
    type_in(browser, "input[name=password]", PASSWORDS[email])
    if camera and screenshot:
        camera.shot(browser, screenshot)
    click(browser, "#sign-in")
    assert heading(browser) == "Choose a tenant"


def enable_two_factor(browser: WebDriver, demo: Demo, visited: list[str]) -> str:
    """On the enable page: scan the QR code, type the app's code, click Enable. Returns the URI."""
    assert heading(browser) == "Enable two-factor authentication"
    qr = browser.find_element(By.CSS_SELECTOR, "#qr svg")
    uri = read_qr_code(qr.screenshot_as_png)
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    manual_key = browser.find_element(By.ID, "manual-key").text
    assert manual_key.replace(" ", "") == secret  # the key for typing by hand is the same one
    assert unquote(urlsplit(uri).path).startswith(f"/{PRODUCT}:")
    visited.append(browser.current_url)
    type_in(browser, "#code", authenticator_app(uri, demo.clock.now()))
    return uri


def forge_toggle(browser: WebDriver, demo: Demo, value: str) -> None:
    """Post the toggle form by hand, with this browser's valid CSRF token (from its sign-out
    form): what a member who knows the URL could send."""
    page = browser.find_element(By.TAG_NAME, "html")
    browser.execute_script(
        """
        const token = document.querySelector("input[name=csrf_token]").value;
        const form = document.createElement("form");
        form.method = "post";
        form.action = arguments[0];
        for (const [name, value] of [["csrf_token", token], ["two_factor", arguments[1]]]) {
            const input = document.createElement("input");
            input.type = "hidden"; input.name = name; input.value = value;
            form.appendChild(input);
        }
        document.body.appendChild(form);
        form.submit();
        """,
        demo.url + "t/tenant-b/settings/authentication",
        value,
    )
    WebDriverWait(browser, 10).until(_gone(page))


# -- the story -------------------------------------------------------------------------------


def tell_the_user_guide(  # noqa: PLR0915 - the guide is one story, told in order
    demo: Demo, open_browser: Callable[[], WebDriver], *, screenshots: Path = SCREENSHOT_DIR
) -> None:
    """Click through the user guide in two browsers, checking each page, and save
    :data:`SCREENSHOTS` into ``screenshots`` on the way."""
    camera = Camera(screenshots)
    visited: list[str] = []
    secrets_seen: list[str] = []
    bob = open_browser()
    olga = open_browser()

    # Bob works in Tenant A with email + password. He is not an owner: no Authentication settings.
    sign_in(bob, demo, "bob@example.com", camera=camera, screenshot="01-sign-in")
    click(bob, "#open-tenant-a")
    assert path_of(bob) == "/t/tenant-a"
    assert "You're signed in to Tenant A" in bob.page_source
    assert bob.find_elements(By.CSS_SELECTOR, "a.settings") == []
    camera.shot(bob, "02-tenant-a")

    # "Activate two-factor authentication in your tenant": Olga, an owner, flips the toggle of B.
    demo.clock.advance(seconds=20)
    sign_in(olga, demo, "olga@example.com")
    click(olga, "#open-tenant-b")
    click(olga, "a.settings")
    assert heading(olga) == "Authentication"
    toggle = olga.find_element(By.ID, "two-factor-toggle")
    assert toggle.get_attribute("aria-checked") == "false"
    assert toggle.get_attribute("aria-label") == "Two-factor authentication"
    camera.shot(olga, "03-owner-toggle")
    click(olga, "#two-factor-toggle")
    assert demo.tf.tenant("tenant-b").two_factor_required
    # She, too, signed in before the switch: her next step is to verify her identity.
    assert heading(olga) == "Verify your identity"

    # "imagine your admin activates two-factor authentication in Tenant B while you are working
    # in Tenant A. If you log in to Tenant A after that, you'll need to verify your identity."
    demo.clock.advance(seconds=60)
    click(bob, "nav.switcher a.current")
    assert path_of(bob) == "/t/tenant-a/verify-identity"
    assert heading(bob) == "Verify your identity"
    assert "Tenant B" in bob.find_element(By.CSS_SELECTOR, "p.lead").text
    type_in(bob, "input[name=password]", PASSWORDS["bob@example.com"])
    camera.shot(bob, "04-verify-identity")
    click(bob, "#verify")

    # The enable page: QR code, the key to type by hand, the 6-digit field and Enable.
    assert path_of(bob) == "/t/tenant-a/2fa/enable"
    code_field = bob.find_element(By.ID, "code")
    assert code_field.get_attribute("autocomplete") == "one-time-code"
    assert code_field.get_attribute("inputmode") == "numeric"
    assert bob.find_element(By.ID, "enable").text == "Enable"
    demo.clock.advance(seconds=5)
    bob_uri = enable_two_factor(bob, demo, visited)
    secrets_seen.append(parse_qs(urlsplit(bob_uri).query)["secret"][0])
    camera.shot(bob, "05-enable-2fa")
    click(bob, "#enable")

    # Recovery codes, shown once; the confirmation e-mail.
    assert heading(bob) == "Two-factor authentication is on"
    codes = [e.text for e in bob.find_elements(By.CSS_SELECTOR, "#recovery-codes code")]
    assert len(set(codes)) == 10
    assert all(re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){3}", c) for c in codes)
    camera.shot(bob, "06-recovery-codes")
    click(bob, "#continue")
    bob.get(demo.url + "mailbox")
    first_mail = bob.find_element(By.CSS_SELECTOR, "article.mail")
    assert f"Two-factor authentication enabled for {PRODUCT}" in first_mail.text
    assert "To bob@example.com" in first_mail.text
    camera.shot(bob, "07-mailbox")

    # "Every time you log in, you'll be asked to enter a 6-digit code": Bob signs in to Tenant B.
    click(bob, "#sign-out")
    assert heading(bob) == "Sign in"
    demo.clock.advance(seconds=30)  # later: his app shows a new code
    sign_in(bob, demo, "bob@example.com")
    click(bob, "#open-tenant-b")
    assert path_of(bob) == "/t/tenant-b/2fa/code"
    assert heading(bob) == "Enter your code"
    assert bob.find_element(By.ID, "code").get_attribute("autocomplete") == "one-time-code"
    camera.shot(bob, "08-code-prompt")
    type_in(bob, "#code", a_wrong_code(bob_uri, demo.clock.now()))
    click(bob, "#verify-code")
    assert path_of(bob) == "/t/tenant-b/2fa/code"
    assert bob.find_element(By.ID, "error").text == (
        "That code didn't work. Check the code in your app and try again."
    )
    camera.shot(bob, "09-wrong-code")
    type_in(bob, "#code", authenticator_app(bob_uri, demo.clock.now()))
    click(bob, "#verify-code")
    assert path_of(bob) == "/t/tenant-b"
    assert "You're signed in to Tenant B" in bob.page_source
    assert "and a code from your authenticator app" in bob.page_source
    camera.shot(bob, "10-signed-in")

    # A member never sees the toggle, and a forged toggle request changes nothing.
    assert bob.find_elements(By.CSS_SELECTOR, "a.settings") == []
    bob.get(demo.url + "t/tenant-b/settings/authentication")
    assert heading(bob) == "Forbidden"
    assert bob.find_elements(By.ID, "two-factor-toggle") == []
    forge_toggle(bob, demo, "off")
    assert heading(bob) == "Forbidden"
    assert demo.tf.tenant("tenant-b").two_factor_required

    # "Deactivate Two-Factor Authentication": Olga verifies her identity, enables 2FA for her
    # own user (Tenant B requires it of her too), then switches the toggle off.
    type_in(olga, "input[name=password]", PASSWORDS["olga@example.com"])
    click(olga, "#verify")
    olga_uri = enable_two_factor(olga, demo, visited)
    secrets_seen.append(parse_qs(urlsplit(olga_uri).query)["secret"][0])
    click(olga, "#enable")
    assert heading(olga) == "Two-factor authentication is on"
    click(olga, "#continue")
    click(olga, "#open-tenant-b")
    click(olga, "a.settings")
    assert olga.find_element(By.ID, "two-factor-toggle").get_attribute("aria-checked") == "true"
    click(olga, "#two-factor-toggle")
    assert not demo.tf.tenant("tenant-b").two_factor_required
    assert heading(olga) == "Authentication"
    assert olga.find_element(By.ID, "two-factor-toggle").get_attribute("aria-checked") == "false"
    assert "Two-factor authentication is off for Tenant B" in olga.page_source
    camera.shot(olga, "11-toggle-off")

    # "The Tenant authentication method will go back to email + password once users log in again."
    click(bob, "#sign-out")
    demo.clock.advance(seconds=30)
    sign_in(bob, demo, "bob@example.com")
    click(bob, "#open-tenant-b")
    assert path_of(bob) == "/t/tenant-b"
    assert "You're signed in to Tenant B" in bob.page_source
    assert "and a code from your authenticator app" not in bob.page_source
    camera.shot(bob, "12-password-only")

    # Nothing secret ever left the server in a cookie or a URL.
    for browser in (bob, olga):
        cookies = browser.get_cookies()
        assert [c["name"] for c in cookies] == ["tenant2fa_demo_session"]
        assert cookies[0]["httpOnly"] is True
        assert cookies[0]["sameSite"] == "Lax"
        visited.append(browser.current_url)
        for secret in secrets_seen:
            assert secret not in cookies[0]["value"]
    for url in visited:
        assert all(secret not in url for secret in secrets_seen)
        assert "otpauth" not in url
    assert tuple(camera.taken) == SCREENSHOTS


def take_screenshots(work_dir: Path, *, screenshots: Path = SCREENSHOT_DIR) -> None:
    """Run the demo (its database in ``work_dir``) and tell the story in fresh browsers, saving
    :data:`SCREENSHOTS` into ``screenshots``. Needs a browser (:data:`MISSING` empty)."""
    with running_demo(work_dir / "demo.sqlite3") as demo, browsers() as open_browser:
        tell_the_user_guide(demo, open_browser, screenshots=screenshots)
