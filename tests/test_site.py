"""The documentation site builds with `mkdocs build --strict` and no warning, every page is in its
nav, the demo page shows the browser story's screenshots, and no page loads anything from the
network.

The screenshots are in docs/img. Where any is missing, this module takes them itself, by telling
the browser story of tests/browser_story.py (as tests/test_browser.py does), so it does not
depend on which test ran before it. Where it cannot (no Chromium), the checks that need the
pictures skip with one line; CI has Chromium, and there a missing browser fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="mkdocs is in the docs extra, part of the test extra")

from browser_story import MISSING, NO_BROWSER, SCREENSHOT_DIR, SCREENSHOTS, take_screenshots

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIG = ROOT / "mkdocs.yml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Build:
    returncode: int
    log: str
    site: Path

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.log.splitlines() if re.match(r"WARNING\b", line)]


def _missing_screenshots() -> list[str]:
    return [name for name in SCREENSHOTS if not (SCREENSHOT_DIR / name).is_file()]


@pytest.fixture(scope="module")
def missing_screenshots(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The demo's screenshots still missing from docs/img once this module has taken them: none,
    unless they were missing and this machine has no browser to take them with."""
    if _missing_screenshots():
        if MISSING and os.environ.get("CI"):
            pytest.fail(f"CI must take the demo's screenshots, but {', '.join(MISSING)} is missing")
        if not MISSING:
            take_screenshots(tmp_path_factory.mktemp("screenshots"))
    return _missing_screenshots()


def _skip_without(missing: list[str]) -> None:
    if missing:
        pytest.skip(f"{len(missing)} of the demo's screenshots are not in docs/img: {NO_BROWSER}")


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory, missing_screenshots: list[str]) -> Build:
    """The site, built once for this module with the command CI and a writer would use (after
    the screenshots it shows are taken)."""
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "mkdocs", "build", "--strict"),
            *("--config-file", str(CONFIG), "--site-dir", str(site)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Build(returncode=done.returncode, log=done.stdout + done.stderr, site=site)


def test_the_site_builds_in_strict_mode_without_a_single_warning(
    build: Build, missing_screenshots: list[str]
) -> None:
    # Missing screenshots are the one excuse, and only on a machine that could not take them.
    unexpected = [
        line
        for line in build.warnings
        if not any(f"img/{name}" in line for name in missing_screenshots)
    ]
    assert unexpected == [], build.log
    _skip_without(missing_screenshots)
    assert build.returncode == 0, build.log
    assert build.warnings == []


def test_every_page_in_docs_is_in_the_nav() -> None:
    # mkdocs reports a page left out of the nav only at INFO level unless told otherwise.
    from mkdocs.config import load_config

    config = load_config(str(CONFIG))

    def files_in(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, dict):
            return [path for value in nav.values() for path in files_in(value)]
        if isinstance(nav, list):
            return [path for item in nav for path in files_in(item)]
        raise AssertionError(f"unexpected nav entry: {nav!r}")

    in_nav = files_in(config.nav)
    pages = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))
    assert len(in_nav) == len(set(in_nav)), "a page is in the nav twice"
    assert sorted(in_nav) == pages
    assert in_nav[0] == "index.md"


def test_the_demo_page_embeds_the_twelve_screenshots_in_order_with_alt_text(
    build: Build,
) -> None:
    html = (build.site / "demo.html").read_text(encoding="utf-8")
    images = re.findall(r"<img\b[^>]*>", html)
    sources = [re.search(r'\bsrc="([^"]*)"', tag) for tag in images]
    assert [match.group(1) if match else None for match in sources] == [
        f"img/{name}" for name in SCREENSHOTS
    ]
    for tag in images:
        alt = re.search(r'\balt="([^"]*)"', tag)
        assert alt is not None, tag
        assert len(alt.group(1).split()) >= 4, f"describe the picture: {tag}"


def test_each_screenshot_is_published_with_the_site_as_a_png(
    build: Build, missing_screenshots: list[str]
) -> None:
    _skip_without(missing_screenshots)
    for name in SCREENSHOTS:
        published = build.site / "img" / name
        assert published.is_file(), f"{name} is not in the built site"
        assert published.read_bytes().startswith(PNG_SIGNATURE), f"{name} is not a PNG"
        assert published.read_bytes() == (SCREENSHOT_DIR / name).read_bytes()


def test_no_page_loads_anything_from_the_network(build: Build) -> None:
    # The site must read offline: no CDN scripts, styles, fonts or images (the theme's
    # highlight.js comes from a CDN, hence `highlightjs: false` in mkdocs.yml). Plain links
    # to other sites are fine.
    remote = re.compile(
        r"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]*\"",
        re.IGNORECASE,
    )
    pages = sorted(build.site.rglob("*.html"))
    assert len(pages) >= 8
    for page in pages:
        assert remote.findall(page.read_text(encoding="utf-8")) == [], page.name


def test_the_diagram_script_is_not_published(build: Build) -> None:
    assert (build.site / "concepts.html").is_file()
    assert not list(build.site.rglob("diagrams.py"))
    assert not list(build.site.rglob("__pycache__"))
