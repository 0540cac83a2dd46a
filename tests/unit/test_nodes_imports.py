"""nodes.imports.resolve: plug-ins named by import path."""

from __future__ import annotations

import collections
import os.path
from pathlib import Path

import pytest

from graphs.examples.passthrough import identity
from nodes.errors import GraphError
from nodes.imports import resolve


def test_colon_form() -> None:
    assert resolve("graphs.examples.passthrough:identity") is identity


def test_dotted_form() -> None:
    assert resolve("graphs.examples.passthrough.identity") is identity
    assert resolve("os.path.join") is os.path.join


def test_nested_attribute() -> None:
    assert resolve("nodes.errors:GraphError.to_json") is GraphError.to_json
    assert resolve("collections:OrderedDict.fromkeys") == collections.OrderedDict.fromkeys


def test_module_attribute_that_is_a_module() -> None:
    assert resolve("os:path") is os.path


@pytest.mark.parametrize("value", [len, None, 42, identity, collections.OrderedDict])
def test_non_string_is_returned_as_is(value: object) -> None:
    assert resolve(value) is value


@pytest.mark.parametrize("target", ["json", "", ":attr", "module:", "trailing.", ".leading"])
def test_not_an_import_path(target: str) -> None:
    with pytest.raises(ValueError) as info:
        resolve(target)
    assert str(info.value) == f"{target!r} is not an import path; write 'package.module:attribute'"


def test_module_that_does_not_import() -> None:
    with pytest.raises(ImportError) as info:
        resolve("no_such_module_xyz.sub:thing")
    assert str(info.value) == (
        "cannot import 'no_such_module_xyz.sub' for 'no_such_module_xyz.sub:thing': "
        "No module named 'no_such_module_xyz'"
    )
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_module_that_fails_while_importing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "servegraph_broken_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError) as info:
        resolve("servegraph_broken_plugin:fn")
    assert str(info.value) == (
        "cannot import 'servegraph_broken_plugin' for 'servegraph_broken_plugin:fn': boom at import"
    )
    assert isinstance(info.value.__cause__, RuntimeError)


def test_missing_attribute() -> None:
    with pytest.raises(AttributeError) as info:
        resolve("graphs.examples.passthrough:nope")
    assert str(info.value) == (
        "'graphs.examples.passthrough' has no attribute 'nope' "
        "(from 'graphs.examples.passthrough:nope')"
    )


def test_missing_nested_attribute() -> None:
    with pytest.raises(AttributeError) as info:
        resolve("nodes.errors:GraphError.nope")
    assert str(info.value) == (
        "'nodes.errors' has no attribute 'GraphError.nope' (from 'nodes.errors:GraphError.nope')"
    )


def test_missing_attribute_dotted_form() -> None:
    with pytest.raises(AttributeError) as info:
        resolve("graphs.examples.passthrough.nope")
    assert str(info.value) == (
        "'graphs.examples.passthrough' has no attribute 'nope' "
        "(from 'graphs.examples.passthrough.nope')"
    )
