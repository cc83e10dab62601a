"""The authors' published country reward models: where they are, and what their cards recorded.

The authors released one trained SCPO reward model per country on the Hugging Face hub
(organisation ``MulticulturalAlignment``, ids ``scpo-reward-model-<country>``; DeBERTa-v3-base
size). Scoring them on PRISM's test users checks the paper's table without training. The preset
``published`` evaluates them as the variants ``published`` (eval mode, no dropout) and
``published_dropout`` (dropout on and text-pair inputs without truncation, as the released code
scored, spec §8.1 and §8.3).

Numbers here are *recorded on the authors' model cards*, never our output; the book prints them
under that label only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scpo.config import Config

HUB_ORG = "MulticulturalAlignment"


def hub_id(country: str) -> str:
    """``MulticulturalAlignment/scpo-reward-model-<country>``, lower case, spaces as hyphens."""
    return f"{HUB_ORG}/scpo-reward-model-{country.lower().replace(' ', '-')}"


# The paper's 7 countries -> the authors' model ids (the preset "published" lists them too).
AUTHORS_MODELS = {c: hub_id(c) for c in (
    "Chile", "South Africa", "New Zealand", "Australia", "Mexico", "Israel", "Canada")}

# Recorded on the authors' model cards (in-memory accuracy of the original run, taken with
# dropout still on, as the cards say), in % on the country's test set. Only the cards whose
# numbers this project has seen are listed; the others are left out rather than guessed.
CARD_RECORDED = {
    "Canada": {"global_overall": 60.4046, "published_overall": 66.1850},
}


def models_dest(pins: dict) -> Path:
    """Where the pins put the authors' models under a data directory (``models/``): the one
    folder ``model.minority_dir`` names, each model in its id's last part."""
    dests = {Path(p.dest).parent for n, p in pins.items() if n.startswith("authors-")}
    if len(dests) != 1:
        raise ValueError(f"the pins put the authors' models in {sorted(map(str, dests))}; "
                         "model.minority_dir needs them side by side in one folder")
    return dests.pop()


def rescoring_config(data_dir: str | Path, countries: list[str] | None = None) -> Config:
    """The preset "published" on the local copies ``scpo fetch`` puts in ``data_dir``
    (``scpo/pins.toml``'s layout): PRISM in ``<dir>/prism``, the paper's global RM and the
    authors' country RMs under ``<dir>/models``. Nothing is read from the hub."""
    from scpo.companion.fetch import load_pins
    from scpo.config import load_preset

    pins, root = load_pins(), Path(data_dir)
    models = root / models_dest(pins)
    cfg = load_preset("published")
    cfg.update({"data": {"data_dir": str(root / pins["prism"].dest)},
                "model": {"global_model": str(root / pins["global_rm"].dest), "revision": None,
                          "minority_dir": str(models)},
                "run": {"countries": list(countries) if countries else ["all"]}})
    return cfg


def rescorable(data_dir: str | Path, countries: list[str]) -> list[str]:
    """The ``countries`` whose published RM ``data_dir`` holds, when it also holds PRISM and the
    global RM (what ``rescoring_config`` reads); [] when it cannot rescore any."""
    from scpo.companion.fetch import load_pins

    root, pins = Path(data_dir), load_pins()
    if not ((root / pins["prism"].dest / "utterances.jsonl").is_file()
            and (root / pins["global_rm"].dest / "config.json").is_file()):
        return []
    models = root / models_dest(pins)
    return [c for c in countries if c in AUTHORS_MODELS
            and (models / AUTHORS_MODELS[c].split("/")[-1] / "config.json").is_file()]
