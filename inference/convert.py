"""GGUF to a Hugging Face folder, once: dequantize through transformers' GGUF path, then save_pretrained.

Loading a GGUF dequantizes every tensor (about 15 s for SmolLM2-135M on 2 cores); the saved folder reloads
in under a second and needs no ``gguf`` package. The conversion writes into a temporary folder beside the
target and renames it into place, so two workers converting at once never see half a folder.
Run as ``python -m inference.convert tokenizer GGUF OUT`` to convert only the tokenizer (the token counter
does that in a child process, so the control worker never imports torch).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

from inference.errors import ModelNotAvailable
from inference.registry import converted_dir


def ensure_converted(gguf: Path, cache_dir: Path) -> Path:
    """The converted folder for ``gguf`` under ``cache_dir``, converting it first if it is not there."""
    target = converted_dir(gguf, cache_dir)
    if (target / "config.json").is_file():
        return target
    return _atomically(target, lambda out: convert_gguf(gguf, out))


def ensure_tokenizer(gguf: Path, out: Path) -> Path:
    """Only the tokenizer and chat template of ``gguf``, saved into ``out``."""
    if (out / "tokenizer.json").is_file():
        return out
    return _atomically(out, lambda tmp: _load_tokenizer(gguf).save_pretrained(tmp))


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` to float32 and save model and tokenizer into ``out``."""
    if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("accelerate") is None:
        raise ModelNotAvailable(
            f"loading {gguf.name} needs the `gguf` and `accelerate` packages: pip install gguf accelerate"
        )
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _load_tokenizer(gguf)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    # The loaded model remembers it came quantized; saved as such it would not reload without gguf.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _load_tokenizer(gguf: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)


def _atomically(target: Path, write: Callable[[Path], object]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        write(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep theirs
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "tokenizer":
        print("usage: python -m inference.convert tokenizer GGUF OUT", file=sys.stderr)
        return 2
    out = ensure_tokenizer(Path(argv[1]), Path(argv[2]))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
