"""The Lua scripts as package data: each loads, and its header names every KEYS, ARGV and the return."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from limits.scripts import NAMES, source


def _split(text: str) -> tuple[str, str]:
    """(the opening comment block, the code with comments stripped)."""
    lines = text.splitlines()
    header = []
    for line in lines:
        if not line.startswith("--"):
            break
        header.append(line)
    code = "\n".join(line.split("--", 1)[0] for line in lines[len(header) :])
    return "\n".join(header), code


def test_every_lua_file_is_a_known_script() -> None:
    files = {p.name for p in resources.files("limits").joinpath("lua").iterdir() if p.name.endswith(".lua")}
    assert files == {f"{name}.lua" for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_the_header_names_every_key_and_argument_the_script_uses(name: str) -> None:
    header, code = _split(source(name))
    assert header.startswith(f"-- {name}.lua:"), "the header opens by naming the file and its job"
    assert re.search(r"^-- Returns ", header, re.M), "the header states the return value"
    for kind in ("KEYS", "ARGV"):
        used = set(re.findall(rf"{kind}\[(\d+)\]", code))
        named = set(re.findall(rf"^-- {kind}\[(\d+)\] \S", header, re.M))
        assert used <= named, f"{name}.lua uses {kind}{sorted(used - named)} without naming them"
        if kind == "KEYS":
            assert used == named, f"{name}.lua names KEYS it never touches: {sorted(named - used)}"


@pytest.mark.parametrize("name", NAMES)
def test_scripts_build_no_key_of_their_own(name: str) -> None:
    """Every key goes through KEYS (Redis Cluster routes by them): no key names inside the Lua."""
    _, code = _split(source(name))
    assert "tb:" not in code
    assert not re.search(r"redis\.call\('\w+', *'", code), "a literal string as a command's first argument"


def test_an_unknown_script_name_is_refused() -> None:
    with pytest.raises(KeyError):
        source("nope")
