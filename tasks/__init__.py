"""The Celery tasks: thin wrappers that take ids, call scheduler/ and inference/, and persist."""
