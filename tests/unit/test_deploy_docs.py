"""The operator guide stays true to the code: its settings table names every setting with its default,
and it documents the Celery door's tasks, Flower, and each deploy file it points to."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from scheduler.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "operations.md").read_text()


def table_rows() -> dict[str, str]:
    """``TOKENBATCH_X`` -> its default cell, from the guide's settings table."""
    rows = {}
    for line in GUIDE.splitlines():
        m = re.match(r"\| `(TOKENBATCH_[A-Z_]+)` \| ([^|]+) \|", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    return rows


def test_the_settings_table_has_every_setting_and_its_default() -> None:
    rows = table_rows()
    fields = {f"TOKENBATCH_{f.name.upper()}": f for f in dataclasses.fields(Settings)}
    assert set(rows) == set(fields)
    for name, f in fields.items():
        if f.default is not dataclasses.MISSING and f.default not in (None, ""):
            assert str(f.default) in rows[name].replace(",", ""), f"{name}: {rows[name]} vs {f.default}"


def test_the_guide_documents_the_door_flower_and_the_deploy_files() -> None:
    for needle in ("tokenbatch.submit", "tokenbatch.get_batch", "tokenbatch.cancel_batch",
                   "celery -A scheduler.celery_app flower", "RabbitMQ", "TOKENBATCH_STORAGE_URL", "fsspec"):
        assert needle in GUIDE, needle
    for path in re.findall(r"`(deploy/[\w./-]+)`", GUIDE):
        assert (ROOT / path).exists(), path


def test_every_alert_is_explained() -> None:
    alerts = re.findall(r"- alert: (\w+)", (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    for alert in alerts:
        assert alert in GUIDE, alert
