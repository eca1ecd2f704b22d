"""The models file and locating weights: clear errors, nothing downloaded, nothing heavy imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inference.errors import ModelConfigError, ModelNotAvailable
from inference.registry import ModelSpec, converted_dir, load_models, locate


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_models_file_gives_specs_with_defaults(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    path = write(
        tmp_path,
        """
[[models]]
id = "a"
path = "weights"
context_length = 2048
input_price_per_mtok = 0.5
output_price_per_mtok = 1

[[models]]
id = "b"
path = "org/name"
engine = "dry-run"
context_length = 4096
max_batch_requests = 32
""",
    )
    specs = load_models(path)
    assert list(specs) == ["a", "b"]
    a = specs["a"]
    assert a.path == str((tmp_path / "weights").resolve()), "relative paths are taken from the file's folder"
    assert (a.engine, a.max_batch_requests, a.max_batch_tokens, a.default_max_tokens) == (
        "transformers",
        16,
        8192,
        256,
    )
    assert (a.dtype, a.device, a.input_price_per_mtok, a.output_price_per_mtok) == ("auto", "auto", 0.5, 1)
    assert specs["b"].engine == "dry-run" and specs["b"].path == "org/name"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('[[models]]\nid = "a"\npath = "x"\ncontext_length = 1\ncontex_length = 2\n', "unknown keys"),
        ('[[models]]\nid = "a"\npath = "x"\n', "missing keys"),
        ('[[models]]\nid = "a"\npath = "x"\ncontext_length = 0\n', "positive integer"),
        ('[[models]]\nid = "a"\npath = "x"\ncontext_length = 8\nengine = "vllm"\n', "engine must be"),
        ('[[models]]\nid = "a"\npath = "x"\ncontext_length = 8\ndtype = "int4"\n', "dtype must be"),
        (
            '[[models]]\nid = "a"\npath = "x"\ncontext_length = 8\n'
            '[[models]]\nid = "a"\npath = "y"\ncontext_length = 8\n',
            "twice",
        ),
        ("models = 3\n", "no \\[\\[models\\]\\]"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_a_malformed_models_file_is_a_clear_error(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(ModelConfigError, match=match):
        load_models(write(tmp_path, body))


def test_locate_finds_a_folder_a_gguf_file_and_a_folder_with_one_gguf(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert locate(ModelSpec(id="m", path=str(folder), context_length=8)).kind == "folder"
    ggufs = tmp_path / "g"
    ggufs.mkdir()
    (ggufs / "w.gguf").write_bytes(b"GGUF")
    assert locate(ModelSpec(id="m", path=str(ggufs), context_length=8)).path == ggufs / "w.gguf"
    assert locate(ModelSpec(id="m", path=str(ggufs / "w.gguf"), context_length=8)).kind == "gguf"
    assert locate(ModelSpec(id="m", path=str(ggufs), gguf_file="w.gguf", context_length=8)).kind == "gguf"


def test_a_hub_id_not_in_the_local_cache_says_what_to_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = ModelSpec(id="m", path="no-such-org/no-such-model-xyz", context_length=8)
    with pytest.raises(ModelNotAvailable, match="hf download no-such-org/no-such-model-xyz"):
        locate(spec)


def test_missing_paths_and_packages_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="neither a local folder"):
        locate(ModelSpec(id="m", path=str(tmp_path / "absent"), context_length=8))
    with pytest.raises(ModelNotAvailable, match="pip install --no-deps no-such-pkg"):
        locate(ModelSpec(id="m", path="package:no_such_pkg", context_length=8))
    with pytest.raises(ModelNotAvailable, match=r"no config\.json"):
        locate(ModelSpec(id="m", path=str(tmp_path), context_length=8))


def test_converted_folders_are_named_per_gguf_file(tmp_path: Path) -> None:
    one, two = tmp_path / "a" / "w.gguf", tmp_path / "b" / "w.gguf"
    for path in (one, two):
        path.parent.mkdir()
        path.write_bytes(b"GGUF")
    cache = tmp_path / "cache"
    assert converted_dir(one, cache).parent == cache
    assert converted_dir(one, cache) == converted_dir(one, cache) != converted_dir(two, cache)


def test_the_light_modules_import_no_torch() -> None:
    code = (
        "import sys\n"
        "import inference.registry, inference.params, inference.packing, inference.tokens, inference.chat\n"
        "import inference.engine, inference.dry_run, inference.smollm2, inference.errors\n"
        "from inference.engine import load_engine\n"
        "from inference.registry import ModelSpec\n"
        "engine = load_engine(ModelSpec(id='d', path='x', engine='dry-run', context_length=64))\n"
        "assert engine.generate([{'messages': [{'role': 'user', 'content': 'hi'}]}])[0].ok\n"
        "heavy = sorted(m for m in ('torch', 'transformers.modeling_utils') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
