"""Test-wide settings: offline, and a cache of the session's own (never the user's).

The cache directory is shared by every test of the session, so the tiny simulation and its
embeddings are computed once. Set SCPO_TEST_CACHE to reuse one across sessions.
"""

import os
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["SCPO_CACHE_DIR"] = os.environ.get("SCPO_TEST_CACHE") or tempfile.mkdtemp(
    prefix="scpo-test-cache-")

SHARED = Path(__file__).resolve().parents[2] / "shared"
GOQA_CSV = SHARED / "data" / "globalopinionqa" / "global_opinions.csv"


@pytest.fixture(scope="session")
def goqa_csv() -> Path:
    """The shared partial real copy of GlobalOpinionQA (skips when ../shared is absent)."""
    if not GOQA_CSV.exists():
        pytest.skip(f"{GOQA_CSV} not found: the shared GlobalOpinionQA copy sits beside the repo "
                    "as ../shared on the project's machines and CI")
    return GOQA_CSV
