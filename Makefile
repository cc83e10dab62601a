# Two entry points for a fresh machine (README): `make test` and `make book`.
# Both create .venv from the lock, requirements/lock.txt: every distribution at its exact version,
# each file checked against its sha256. The install is redone only when the lock or pyproject.toml
# changes; `make lock` writes the lock again after a change to pyproject.toml (a test in
# `make test` fails, naming the package, while the two disagree).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
LOCK := requirements/lock.txt
# keyed on the contents: a fresh checkout or a restored CI cache gives every file a new time
STAMP := $(VENV)/.installed-$(shell cat $(LOCK) pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)
export SCPO_CACHE_DIR ?= $(CURDIR)/.cache/scpo
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# uv reads its own bundle of root certificates, pip (since 24.2) the system's store. On a network
# that trusts an authority of its own (a company proxy that inspects TLS, its root put in the
# system store, /etc/ssl/certs) uv then fails at the lock ("invalid peer certificate:
# UnknownIssuer"): it reads the system's store too, as pip does, wherever there is one
# (UV_SYSTEM_CERTS=0 turns that off; SSL_CERT_FILE names a bundle of your own).
SYSTEM_CERT_FILES ?= /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt \
  /etc/ssl/cert.pem
ifneq ($(wildcard $(SYSTEM_CERT_FILES)),)
export UV_SYSTEM_CERTS ?= 1
endif

.PHONY: test book book-check lint run clean-book lock data

# The lock is for CPython 3.11 on Linux x86_64, the book's and CI's platform.
PLATFORM_CHECK := import platform, sys; \
  here = (platform.python_implementation(), platform.system(), platform.machine(), sys.version_info[:2]); \
  sys.exit(None if here == ("CPython", "Linux", "x86_64", (3, 11)) else \
  f"$(LOCK) is for CPython 3.11 on Linux x86_64; {sys.executable} is {here}. Use `make PY=python3.11 ...`, " \
  "or install the library'\''s own ranges: pip install -e \".[cpu,test,book,gpu]\"")
# One locked requirement with its hashes (awk: its line and the --hash lines after it).
locked = awk '/^$(1)==/{p=1; print; next} p && /^ +--hash/{print; next} {p=0}' $(LOCK)

# torch's CPU build is not on PyPI (PyPI's Linux wheel is the multi-GB CUDA build). It comes from
# PyTorch's CPU index, asked for torch alone, or from a local wheel directory that pip is pointed
# at (PIP_FIND_LINKS or pip's config: uv reads no pip setting) when that holds the locked file.
# Either way its sha256 is the lock's. Override: make TORCH_FROM="--index-url URL".
TORCH_INDEX := https://download.pytorch.org/whl/cpu
TORCH_VERSION = $(shell sed -n 's/^torch==\([^ ]*\).*/\1/p' requirements/companion.in)
FIND_LINKS = $(or $(PIP_FIND_LINKS),$(shell $(PY) -m pip config get global.find-links 2>/dev/null))
TORCH_DIRS = $(sort $(dir $(wildcard $(addsuffix /torch-$(TORCH_VERSION)-*.whl,$(FIND_LINKS)))))
TORCH_FROM = $(if $(TORCH_DIRS),--no-index $(addprefix --find-links ,$(TORCH_DIRS)),--index-url $(TORCH_INDEX))
# make lock: where the resolver reads torch's files from (PyTorch's page of torch builds)
TORCH_LINKS = $(or $(TORCH_DIRS),$(TORCH_INDEX)/torch/)
# the extras the README's commands need; lock.txt's header repeats them (tests/test_lock.py reads it)
EXTRAS := cpu test book gpu

# uv, at the lock's version and hashes, bootstrapped with the venv's own pip
$(UV):
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/python -c '$(PLATFORM_CHECK)'
	$(call locked,uv) > $(VENV)/uv.txt
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r $(VENV)/uv.txt

# torch first, from its own source; then the lock, exactly (whatever else is there is removed),
# byte-compiled on every core (pip's serial compiling took about 100 s here); then scpo itself.
$(STAMP): $(UV)
	rm -f $(VENV)/.installed-*
	$(call locked,torch) > $(VENV)/torch.txt
	$(UV) pip install -q --python $(BIN)/python --no-deps --require-hashes -r $(VENV)/torch.txt $(TORCH_FROM)
	$(UV) pip sync -q --python $(BIN)/python --compile-bytecode $(LOCK)
	$(UV) pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# After a change to pyproject.toml's dependencies: resolve again, keeping every version the old
# lock has that still fits (make lock LOCK_ARGS=--upgrade moves everything to the newest).
lock: $(UV)
	$(UV) pip compile -q pyproject.toml requirements/companion.in \
	  --excludes requirements/exclude.txt $(addprefix --extra ,$(EXTRAS)) --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --find-links $(TORCH_LINKS) $(LOCK_ARGS) -o $(LOCK)

test: $(STAMP)
	$(BIN)/ruff check scpo tests benchmarks book/*.py book/_ext
	$(BIN)/python -m pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check scpo tests benchmarks book/*.py book/_ext

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
