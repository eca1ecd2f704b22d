"""The compose file is well-formed and complete (docker is not here to run `docker compose config`): the
expected services, Redis durable as a broker, every tokenbatch part a real CLI command, the GPU worker
pinned, and every file it mounts or Prometheus scrapes present."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from scheduler import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PARTS = {"api", "worker", "beat", "infer-gpu0", "prepare"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_the_stack_has_every_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == PARTS | {"redis", "prometheus", "grafana"}
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        for dep in service.get("depends_on", {}):
            assert dep in compose["services"], f"{name} depends on unknown {dep}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def test_redis_keeps_its_data_as_a_broker_needs(compose: dict[str, Any]) -> None:
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert any(v.endswith(":/data") for v in compose["services"]["redis"]["volumes"])


def test_every_tokenbatch_part_runs_a_cli_command_on_one_image(compose: dict[str, Any]) -> None:
    commands = set(typer.main.get_command(cli.app).commands)  # type: ignore[attr-defined]
    for name in PARTS:
        service = compose["services"][name]
        assert service["image"] == "tokenbatch:latest" and service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["command"][0] in commands, f"{name}: {service['command']}"
        env = service["environment"]
        assert env["TOKENBATCH_REDIS_URL"] == "redis://redis:6379/0" and env["TOKENBATCH_HOST"] == "0.0.0.0"
        assert "data:/data" in service["volumes"], f"{name} must share the data volume"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_the_gpu_worker_is_pinned_to_its_device_and_waits_for_the_model(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["infer-gpu0"]
    assert gpu["command"][:2] == ["infer-worker", "--model"]
    assert gpu["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["device_ids"] == ["0"] and "gpu" in device["capabilities"]
    assert gpu["depends_on"]["prepare"]["condition"] == "service_completed_successfully"
    assert f'id = "{gpu["command"][2]}"' in (DEPLOY / "models.toml").read_text()


def test_prometheus_scrapes_each_part_where_it_serves_metrics(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: [t for s in job["static_configs"] for t in s["targets"]]
               for job in config["scrape_configs"]}
    ports = {name: compose["services"][name]["environment"].get("TOKENBATCH_METRICS_PORT") for name in PARTS}
    assert targets["tokenbatch-api"] == ["api:8000"]
    assert targets["tokenbatch-worker"] == [f"worker:{ports['worker']}"]
    assert targets["tokenbatch-infer"] == [f"infer-gpu0:{ports['infer-gpu0']}"]
    mounted = {v.split(":")[0] for v in compose["services"]["prometheus"]["volumes"]}
    assert {"./prometheus/prometheus.yml", "./prometheus/alerts.yml"} <= mounted


def test_grafana_is_provisioned_with_the_dashboard(compose: dict[str, Any]) -> None:
    volumes = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert volumes["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/tokenbatch.yml").read_text())
    assert volumes["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
