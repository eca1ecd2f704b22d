"""Chat messages in, prompt text out, through the model's own chat template.

Rendering goes through transformers' ``render_jinja_template``, the function ``apply_chat_template`` itself
calls, so the text is the same as the library's; that module imports jinja2, not torch. The rendered text is
then encoded with ``add_special_tokens=False`` (as ``apply_chat_template`` does), so a template that writes
its own BOS does not get a second one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inference.errors import ModelConfigError, ParamError

_ROLES = ("system", "developer", "user", "assistant")


def parse_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """The body's messages as ``{"role", "content"}`` with string content; ``ParamError`` when unusable.

    Text content parts are joined with newlines; images, audio and tool calls are not served here.
    ``developer`` (OpenAI's newer name for ``system``) is passed as ``system``, which templates know.
    """
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ParamError("messages must be a non-empty list", param="messages")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ParamError(f"{where} must be an object", param=where)
        role = message.get("role")
        if role not in _ROLES:
            raise ParamError(f"{where}.role must be one of {', '.join(_ROLES)}, not {role!r}", param=where)
        if message.get("tool_calls"):
            raise ParamError(
                f"{where}: tool calls are not supported", param=where, code="unsupported_parameter"
            )
        out.append({"role": "system" if role == "developer" else role, "content": _content(message, where)})
    return out


def _content(message: dict[str, Any], where: str) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ParamError(
                    f"{where}.content: only text parts are supported, not {kind!r}",
                    param=where,
                    code="unsupported_parameter",
                )
            texts.append(part["text"])
        return "\n".join(texts)
    raise ParamError(f"{where}.content must be a string or a list of text parts", param=where)


class ChatTemplate:
    """A model's chat template with the special tokens it may refer to (``bos_token``, ``eos_token``...)."""

    def __init__(self, source: str, special_tokens: dict[str, str]) -> None:
        from transformers.utils.chat_template_utils import render_jinja_template

        self.source = source
        self.special_tokens = dict(special_tokens)
        self._render = render_jinja_template

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for one conversation, ending with the assistant's generation prompt."""
        try:
            rendered, _ = self._render(
                conversations=[messages],
                chat_template=self.source,
                add_generation_prompt=True,
                **self.special_tokens,
            )
        except Exception as exc:  # the template's own raise_exception(), or a template bug
            raise ParamError(
                f"messages rejected by the model's chat template: {exc}", param="messages"
            ) from exc
        return rendered[0]

    @classmethod
    def from_folder(cls, folder: Path) -> ChatTemplate:
        """Read the template the way ``save_pretrained`` writes it: ``chat_template.jinja`` or the config."""
        config = _read_json(folder / "tokenizer_config.json")
        source = None
        if (folder / "chat_template.jinja").is_file():
            source = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        elif isinstance(config.get("chat_template"), str):
            source = config["chat_template"]
        elif isinstance(config.get("chat_template"), list):  # named templates: take "default"
            named = {t.get("name"): t.get("template") for t in config["chat_template"]}
            source = named.get("default")
        if not source:
            raise ModelConfigError(
                f"the tokenizer in {folder} has no chat template; chat completions need one"
            )
        return cls(source, special_tokens(config))


def special_tokens(config: dict[str, Any]) -> dict[str, str]:
    """``bos_token``, ``eos_token``... from a tokenizer config, as the strings a template sees."""
    out = {}
    for key, value in config.items():
        if not key.endswith("_token"):
            continue
        if isinstance(value, dict) and isinstance(value.get("content"), str):
            value = value["content"]
        if isinstance(value, str):
            out[key] = value
    return out


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}
