"""The live page's files: shipped as package data, and nothing loaded from elsewhere (no Ray;
tests/e2e/test_ui.py runs the page in a browser)."""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib

from graphs.ui import ASSETS, PAGE_HEADERS, UI_DIR
from tests.support import ROOT


def test_every_file_of_the_page_is_package_data_and_served() -> None:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        globs = tomllib.load(f)["tool"]["setuptools"]["package-data"]["graphs"]
    files = sorted(os.listdir(UI_DIR))
    assert files == sorted(["index.html", *ASSETS])
    for name in files:
        path = os.path.relpath(os.path.join(UI_DIR, name), os.path.join(ROOT, "graphs"))
        assert any(fnmatch.fnmatch(path, g) for g in globs), path


def test_the_page_loads_nothing_from_another_origin() -> None:
    for name in os.listdir(UI_DIR):
        with open(os.path.join(UI_DIR, name), encoding="utf-8") as f:
            text = f.read()
        # The only absolute URL is the SVG namespace (an identifier, never fetched).
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
    with open(os.path.join(UI_DIR, "index.html"), encoding="utf-8") as f:
        page = f.read()
    assert re.findall(r'(?:src|href)="([^"]+)"', page) == ["data:,", "ui/app.css", "ui/app.js"]
    policy = PAGE_HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
