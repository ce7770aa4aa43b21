"""Session-scoped lakes the integration modules share: every source streamed once, gold refreshed once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from c360 import cli
from tests.conftest import make_config
from tests.integration.test_pipeline import _args, _env

GOLD_AS_OF = "2025-01-15"


@pytest.fixture(scope="session")
def streamed(tmp_path_factory, kafka, spark):
    """Every source generated (with bots and reactivations), replayed, and streamed with --available-now."""
    root = tmp_path_factory.mktemp("all")
    cfg = make_config(root, kafka.bootstrap).replace("kafka", topic_prefix=f"all{os.getpid()}.")
    mp = pytest.MonkeyPatch()
    _env(mp, cfg)
    data = Path(cfg.lake.data_dir)
    try:
        assert cli.main(["generate", "--scale", "150", "--seed", "3", "--out", str(data)]) == 0
        assert cli.main(["replay", "--input", str(data), "--no-progress", *_args(cfg)]) == 0
        assert cli.main(["stream", "--available-now", *_args(cfg)]) == 0
    finally:
        mp.undo()
    return cfg, data


@pytest.fixture(scope="session")
def gold(streamed, tmp_path_factory):
    """`c360 gold` over the streamed lake: every gold table, its exports and the dashboard (exports/dashboard.html)."""
    cfg, _ = streamed
    exports = tmp_path_factory.mktemp("exports")
    assert cli.main(["gold", "--as-of", GOLD_AS_OF, "--exports", str(exports), "--dashboard",
                     str(exports / "dashboard.html"), *_args(cfg)]) == 0
    return cfg, exports


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1440,900")


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Chromium from Debian's packages (chromium, chromium-driver; `make test` installs them), driven by
    selenium with a fresh profile; its console log is kept for the tests to read."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("headless Chromium is missing: `make test` installs it, or run "
                    "`apt-get install chromium chromium-driver`")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()
