"""The user guide, clicked through in a real browser: headless Chromium drives the web demo.

The story, the phone and the browsers are in tests/browser_story.py, shared with
tests/test_site.py (which tells the same story when it needs the screenshots and they are missing).
Each step saves a screenshot into docs/img/ (docs/demo.md shows them).

Needs Debian's ``chromium`` and ``chromium-driver`` (.ci/run installs them). Without them the test
skips with one line, except under CI, where it fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from browser_story import MISSING, NO_BROWSER, Demo, browsers, running_demo, tell_the_user_guide

if MISSING and os.environ.get("CI"):
    pytest.fail(f"CI must run the browser test, but {', '.join(MISSING)} is missing")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=NO_BROWSER)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    with running_demo(tmp_path / "demo.sqlite3") as running:
        yield running


@pytest.fixture
def open_browser() -> Iterator[Callable[[], WebDriver]]:
    with browsers() as start:
        yield start


def test_the_user_guide_in_a_browser(demo: Demo, open_browser: Callable[[], WebDriver]) -> None:
    tell_the_user_guide(demo, open_browser)
