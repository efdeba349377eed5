"""Real headless Chromium (Debian's package, installed here when missing) driven by
Playwright; never a browser Playwright would download. Without one the tests skip, saying
why (the summary lists skip reasons)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artefacts" / "browser"


def _install() -> str | None:
    """Install Debian's chromium; why it failed, or None."""
    if shutil.which("apt-get") is None:
        return "no apt-get to install Debian's chromium with"
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for command in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"],
                    ["apt-get", "install", "-y", "chromium"]):
        try:
            subprocess.run(command, env=env, capture_output=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(command)} failed: {exc}"
        if CHROMIUM.exists():
            return None
    return "apt-get install -y chromium did not provide /usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium() -> Path:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("browser tests: the playwright package is not installed")
    if not CHROMIUM.exists():
        problem = _install()
        if problem is not None:
            pytest.skip(f"browser tests: Chromium unavailable ({problem})")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=str(chromium), args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
def artefacts() -> Path:
    """Where screenshots are kept (printed at the end of the run)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS
