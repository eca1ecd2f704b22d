"""The systemd units: each runs a real CLI command with restart and graceful-stop policies, the inference
template pins its GPU and model, and ``systemd-analyze verify`` (where present) finds nothing to say."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from scheduler import cli
from scheduler.settings import Settings

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
NAMES = ["tokenbatch-api.service", "tokenbatch-worker.service", "tokenbatch-beat.service",
         "tokenbatch-infer@.service"]
BIN = "/opt/tokenbatch/.venv/bin/tokenbatch"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def environment(name: str) -> dict[str, str]:
    """Every ``Environment=`` line (configparser keeps only the last of repeated keys)."""
    lines = [line.split("=", 1)[1] for line in (UNITS / name).read_text().splitlines()
             if line.startswith("Environment=")]
    return dict(line.split("=", 1) for line in lines)


@pytest.mark.parametrize("name", NAMES)
def test_each_unit_runs_a_cli_command_restarts_and_stops_gracefully(name: str) -> None:
    u = unit(name)
    assert {"Unit", "Service", "Install"} <= set(u.sections())
    service = u["Service"]
    command = service["ExecStart"].split()
    assert command[0] == BIN and command[1] in typer.main.get_command(cli.app).commands  # type: ignore[attr-defined]
    assert service["Restart"] == "always" and service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) >= 15
    assert service["User"] == "tokenbatch" and service["ReadWritePaths"] == "/var/lib/tokenbatch"
    assert "EnvironmentFile=/etc/tokenbatch/tokenbatch.env" in (UNITS / name).read_text()
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_the_inference_template_pins_its_gpu_model_and_metrics_port() -> None:
    text = (UNITS / "tokenbatch-infer@.service").read_text()
    env = environment("tokenbatch-infer@.service")
    assert env["CUDA_VISIBLE_DEVICES"] == "%i" and env["TOKENBATCH_METRICS_PORT"] == "920%i"
    assert "infer-worker --model ${TOKENBATCH_WORKER_MODEL}" in text
    assert "EnvironmentFile=-/etc/tokenbatch/infer-%i.env" in text  # optional per-GPU overrides, read last
    # A micro-batch outlives a control task: the stop timeout leaves it time to finish and record.
    assert int(unit("tokenbatch-infer@.service")["Service"]["TimeoutStopSec"]) >= 120
    assert unit("tokenbatch-infer@.service")["Service"]["KillMode"] == "mixed"


def test_the_example_environment_names_only_real_settings() -> None:
    fields = {f"TOKENBATCH_{f.upper()}" for f in Settings.__dataclass_fields__}
    for line in (UNITS / "tokenbatch.env").read_text().splitlines():
        name = line.lstrip("#").split("=", 1)[0]
        if "=" in line and name.startswith("TOKENBATCH_"):
            assert name in fields, name
            assert name != "TOKENBATCH_METRICS_PORT" or line.startswith("#"), "it would override every unit's port"


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    real = shutil.which("tokenbatch") or str(Path(cli.__file__).resolve().parents[1] / ".venv/bin/tokenbatch")
    paths = []
    for name in NAMES:
        target = tmp_path / name.replace("@.", "@0.")
        target.write_text((UNITS / name).read_text().replace(BIN, real))
        paths.append(str(target))
    proc = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), proc.stdout + proc.stderr
