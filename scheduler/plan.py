"""Validation and planning of an input file, streamed.

The file is read line by line and never held whole: each line is parsed and checked, its tokens counted
in chunks with the model's own rules, and only a small record (index, custom_id, model, byte offset,
tokens) is kept. File-level problems fail the batch with line numbers; per-request problems that need no
GPU (bad parameters, prompt + max_tokens over the context or over the budget) become error-file lines.
Model knowledge (tokenizer, parameter rules, packing) is passed in, so this module needs no torch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import orjson

MAX_PROBLEMS = 100  # errors.data is capped; the message says how many more there were
MAX_CUSTOM_ID = 512
COUNT_CHUNK = 1024


@dataclass(frozen=True)
class Problem:
    line: int | None
    code: str
    message: str
    param: str | None = None

    def as_error(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "line": self.line, "param": self.param}


@dataclass
class Request:
    index: int  # position among accepted lines = output order
    line: int  # 1-based line number in the file
    custom_id: str
    model: str
    offset: int
    length: int
    prompt_tokens: int = 0
    max_tokens: int = 0


@dataclass(frozen=True)
class MicroBatch:
    model: str
    indexes: tuple[int, ...]
    tokens: int  # prompt + max_tokens summed: what the budget reserves


@dataclass(frozen=True)
class RequestError:
    index: int
    custom_id: str
    code: str
    message: str


class Rejected(Exception):
    """A request refused before any GPU work (bad parameters or messages, too long): a line in the error
    file. Model code raises its own errors; the control worker wraps them in this."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ModelRules(Protocol):
    """What planning needs to know of a served model (built from inference/ by the control worker)."""

    context_length: int
    max_batch_requests: int
    max_batch_tokens: int

    def count_prompts(self, bodies: list[dict[str, Any]]) -> list[int | Rejected]:
        """Prompt tokens per body, exactly as the engine will feed them, or why the body is refused."""
        ...

    def max_new_tokens(self, body: dict[str, Any], prompt_tokens: int) -> int:
        """The completion tokens the engine may produce; raises Rejected for what it refuses."""
        ...


PackFn = Callable[[list[tuple[int, int, int]], int, int], list[list[int]]]


@dataclass
class Plan:
    requests: list[Request] = field(default_factory=list)
    errors: list[RequestError] = field(default_factory=list)
    microbatches: list[MicroBatch] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return not self.problem_count

    def problem(self, p: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(p)

    def failure_errors(self) -> list[dict[str, Any]]:
        out = [p.as_error() for p in self.problems]
        if self.problem_count > len(self.problems):
            more = self.problem_count - len(self.problems)
            out.append({"code": "too_many_errors", "message": f"{more} more errors not listed", "line": None,
                        "param": None})
        return out


def _check_line(raw: bytes, line: int, endpoint: str, served: Sequence[str]) -> tuple[dict[str, Any], Problem | None]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return {}, Problem(line, "invalid_json", f"Line {line} is not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return {}, Problem(line, "invalid_json_line", f"Line {line} must be a JSON object")
    cid = obj.get("custom_id")
    if not isinstance(cid, str) or not cid:
        return obj, Problem(line, "missing_custom_id", f"Line {line} has no 'custom_id' (a non-empty string)",
                            "custom_id")
    if len(cid) > MAX_CUSTOM_ID:
        return obj, Problem(line, "invalid_custom_id", f"Line {line}: custom_id longer than {MAX_CUSTOM_ID}",
                            "custom_id")
    if "method" in obj and obj["method"] != "POST":
        return obj, Problem(line, "invalid_method", f"Line {line}: method must be 'POST'", "method")
    if "url" in obj and obj["url"] != endpoint:
        return obj, Problem(line, "invalid_url", f"Line {line}: url {obj['url']!r} does not match the batch's "
                            f"endpoint {endpoint!r}", "url")
    body = obj.get("body")
    if not isinstance(body, dict):
        return obj, Problem(line, "missing_body", f"Line {line} has no 'body' object", "body")
    model = body.get("model")
    if not isinstance(model, str) or model not in served:
        names = ", ".join(served) or "none"
        return obj, Problem(line, "model_not_found", f"Line {line}: model {model!r} is not served here "
                            f"(served: {names})", "body.model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return obj, Problem(line, "missing_messages", f"Line {line}: body.messages must be a non-empty list of "
                            "message objects", "body.messages")
    return obj, None


def scan_lines(fh: IO[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, bytes) of each non-blank line."""
    offset = 0
    for number, raw in enumerate(fh, start=1):
        if raw.strip():
            yield number, offset, raw
        offset += len(raw)


def plan_file(
    fh: IO[bytes], *, endpoint: str, rules: dict[str, ModelRules], pack: PackFn, max_requests: int,
    budget_cap: int, heartbeat: Callable[[], None] = lambda: None,
) -> Plan:
    """Check every line, count tokens, and cut micro-batches (or collect the file's problems)."""
    plan = Plan()
    seen: dict[str, int] = {}
    pending: dict[str, list[tuple[Request, dict[str, Any]]]] = defaultdict(list)
    served = sorted(rules)
    count = 0
    for number, offset, raw in scan_lines(fh):
        count += 1
        if count > max_requests:
            plan.problem(Problem(number, "too_many_requests", f"The file has more than {max_requests} requests"))
            break
        obj, problem = _check_line(raw, number, endpoint, served)
        if problem is None and obj["custom_id"] in seen:
            problem = Problem(number, "duplicate_custom_id", f"Line {number}: custom_id {obj['custom_id']!r} "
                              f"already used on line {seen[obj['custom_id']]}", "custom_id")
        if problem is not None:
            plan.problem(problem)
            continue
        seen[obj["custom_id"]] = number
        if plan.problem_count:
            continue  # the batch fails anyway: keep finding problems, skip the counting
        body = obj["body"]
        req = Request(len(plan.requests), number, obj["custom_id"], body["model"], offset, len(raw))
        plan.requests.append(req)
        pending[req.model].append((req, body))
        if len(pending[req.model]) >= COUNT_CHUNK:
            _count(plan, rules[req.model], pending.pop(req.model), budget_cap)
            heartbeat()
    if count == 0:
        plan.problem(Problem(None, "empty_file", "The input file has no requests"))
    if not plan.ok:
        return plan
    for model, chunk in pending.items():
        _count(plan, rules[model], chunk, budget_cap)
    plan.errors.sort(key=lambda e: e.index)
    failed = {e.index for e in plan.errors}
    by_model: dict[str, list[Request]] = defaultdict(list)
    for req in plan.requests:
        if req.index not in failed:
            by_model[req.model].append(req)
    for model in sorted(by_model):
        spec = rules[model]
        items = [(r.index, r.prompt_tokens, r.max_tokens) for r in by_model[model]]
        for group in pack(items, spec.max_batch_requests, min(spec.max_batch_tokens, budget_cap)):
            idx = tuple(sorted(group))
            tokens = sum(plan.requests[i].prompt_tokens + plan.requests[i].max_tokens for i in idx)
            plan.microbatches.append(MicroBatch(model, idx, tokens))
    return plan


def _count(plan: Plan, rules: ModelRules, chunk: list[tuple[Request, dict[str, Any]]], budget_cap: int) -> None:
    counts = rules.count_prompts([body for _, body in chunk])
    for (req, body), prompt in zip(chunk, counts, strict=True):
        try:
            if isinstance(prompt, Rejected):
                raise prompt
            req.prompt_tokens = prompt
            req.max_tokens = rules.max_new_tokens(body, prompt)
        except Rejected as exc:
            plan.errors.append(RequestError(req.index, req.custom_id, exc.code, exc.message))
            continue
        need = prompt + req.max_tokens
        if need > rules.context_length:
            plan.errors.append(RequestError(
                req.index, req.custom_id, "context_length_exceeded",
                f"The prompt has {prompt} tokens and max_tokens is {req.max_tokens}: {need} is over the model's "
                f"context length of {rules.context_length}",
            ))
        elif need > budget_cap:
            plan.errors.append(RequestError(
                req.index, req.custom_id, "request_too_large",
                f"The request needs {need} tokens, more than the model's whole enqueued-token budget ({budget_cap})",
            ))
