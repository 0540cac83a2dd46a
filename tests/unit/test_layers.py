"""The package layout: every module imports first in a fresh interpreter, and none is long.

The import rules themselves (three layers, no cycles) are import-linter contracts in
pyproject.toml, checked by ``lint-imports`` in scripts/test.sh.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from graphs.validate import PACKAGE_ROOT

PACKAGES = ("graphs", "nodes", "routing", "autoscale")
MAX_LINES = 400


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        path = [str(Path(PACKAGE_ROOT) / package)]
        for info in pkgutil.walk_packages(path, prefix=f"{package}."):
            if ".examples" not in info.name:
                names.append(info.name)
    return sorted(names)


def test_the_packages_have_modules() -> None:
    found = modules()
    assert {"graphs.spec", "nodes.spec", "routing.spec", "autoscale.settings"} <= set(found)
    assert len(found) > 60


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    # An import cycle fails only for the import order that enters it from the wrong side, so
    # each module is imported with none of the four packages loaded yet.
    script = (
        "import importlib, sys\n"
        f"roots = {PACKAGES!r}\n"
        f"for name in {modules()!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in roots]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        sys.exit(f'{name}: {type(exc).__name__}: {exc}')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        cwd=PACKAGE_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


@pytest.mark.parametrize("name", modules())
def test_no_module_is_over_400_lines(name: str) -> None:
    base = Path(PACKAGE_ROOT, *name.split("."))
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path}: {lines} lines; split it by concept"
