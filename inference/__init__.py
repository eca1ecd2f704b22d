"""Engines, model registry, chat templating, token counting and packing. Knows no Celery or Redis.

The light modules (``registry``, ``params``, ``chat``, ``tokens``, ``packing``, ``errors``, ``engine``,
``dry_run``) never import torch, so the API process and the control worker can use them; chat templates
render through transformers' torch-free jinja helper. ``load_engine`` imports torch only when a
transformers engine is asked for (``hf_engine``, ``decode``, ``sampling``, ``convert``, ``tiny``).
"""
