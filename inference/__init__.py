"""Engines, model registry, chat templating, token counting and packing. Knows no Celery or Redis."""
