"""The embedding tier in a reader's browser: the book's models as files a web page scores with.

A reward model of the embedding tier is a frozen sentence encoder and a small head. The book's
page "Turn the dial yourself" runs both in the reader's browser, with no server and no kernel:

- the encoder as ONNX (``Encoder.to_onnx``: token ids in, the pooled, normalised embedding
  out), in full precision ("fp32") and with its weights stored at half precision ("fp16":
  half the download; the graph turns them back into fp32 once, when it loads, and computes
  in fp32);
- the encoder's tokenizer as its own ``tokenizer.json``;
- each model's head as float32 arrays (``heads.json`` describes them, ``heads.bin`` holds
  them): the global RM, each country's model and, when given, the conditioned model;
- the pinned JavaScript runtime (``scpo.companion.jsruntime``).

``write_bundle`` writes all of it. ``embed_onnx`` and ``head_rewards`` compute in Python what
the page computes, so ``agreement`` measures how far the page's rewards can be from scpo's own
(``RewardModel.score``) on every test text; ``reference`` records scpo's rewards and token ids
of a few test texts, which the book's browser test (``book/interactive.py``) types into the
page and compares with what the page shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scpo.companion import jsruntime
from scpo.companion.fetch import sha256_file
from scpo.models import ConditionedRM, RewardModel
from scpo.models.base import text_rows
from scpo.outdir import replace_dir

FORMAT = 1
ENCODERS = {  # file precision -> what the page says of it
    "fp16": "weights stored at half precision, computed in fp32",
    "fp32": "full precision, as scpo computes",
}
DEFAULT_ENCODER = "fp16"
BUNDLE = "dial page's files"  # the kind of output (scpo.outdir's marker) of write_bundle
# what a bundle written before the marker listed its files holds: the only files it may replace
BUNDLE_FILES = ("manifest.json", "reference.json", "examples.json", "heads.json", "heads.bin",
                "encoder-*.onnx", "tokenizer*.json", "*.mjs", "*.wasm", "*.package.json",
                "*.LICENSE")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# What the tokenizer must get right besides the test texts, as rounds of a prompt and two
# answers: accents, scripts without spaces, emoji, control characters, and pairs longer than the
# encoder's max_length, cut on one side or both (the longer side first)
LONG = " ".join(f"word{i} and more" for i in range(160))
PROBES = [
    ("Café, naïve résumé: São Paulo's Ångström façade?", ["Ça va — très bien, merci!", "Oui."]),
    ("日本の首都はどこですか？", ["東京です。北京は中国の首都です。", "Tokyo."]),
    ("Is this ok?? 👍🏽 yes!!", ["tabs\tand\nnewlines\u00a0and\u200bzero width", "plain"]),
    (LONG, ["A short answer.", LONG]),
    ("A short prompt?", [LONG, "short"]),
    (LONG + " and a little more", [LONG, "ok"]),
]


# ---------------------------------------------------------------------------- the encoder
def exported_encoder(encoder: Any, dest: str | Path) -> Path:
    """``encoder.to_onnx`` into ``dest``, through the cache (``<cache>/onnx/``): the export
    takes a while and changes only with the encoder's files (its fingerprint), the code that
    defines it, torch and the exporter, which is what the cached file is keyed on."""
    import inspect
    from importlib.metadata import version

    import torch

    from scpo.config import cache_dir

    key = hashlib.sha256(json.dumps([
        encoder.fingerprint(), torch.__version__, version("onnx"), version("onnxscript"),
        inspect.getsource(inspect.getmodule(type(encoder)))]).encode()).hexdigest()[:16]
    cached = cache_dir() / "onnx" / f"encoder-{key}.onnx"
    if not cached.is_file():
        part = encoder.to_onnx(cached.with_suffix(".part"))
        os.replace(part, cached)
    shutil.copyfile(cached, dest)
    return Path(dest)


def half_weights(src: str | Path, dest: str | Path, min_size: int = 1024) -> Path:
    """The ONNX graph at ``src`` with each float32 weight of ``min_size`` numbers or more stored
    as float16, followed by a Cast back to float32: half the bytes, the same fp32 arithmetic
    (a runtime folds the Casts once, when it loads the graph)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_size:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16),
                                       f"{init.name}.fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}.to_fp32"))
    for node in reversed(casts):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))
    return Path(dest)


def quantized(src: str | Path, dest: str | Path) -> Path:
    """The ONNX graph with its weights in 8 bits (onnxruntime's dynamic quantisation, per
    channel): a quarter of the bytes. The book measures it (``agreement``) and does not ship
    it: on its test pairs it changes which answer is preferred too often."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider to run pre-processing before quantization"
    try:
        quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    return Path(dest)


def embed_onnx(path: str | Path, encoder: Any, prompts: Sequence[str],
               responses: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """Embeddings [n, d] from an exported encoder, run by onnxruntime, tokenised as
    ``Encoder.embed`` tokenises (``Encoder.tokenize``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # its notes on folded Casts are not for the reader
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = encoder.tokenize(prompts[start:start + batch_size],
                                 responses[start:start + batch_size], padding=True,
                                 return_tensors="np")
        out.append(session.run(None, {k: batch[k].astype(np.int64) for k in INPUTS})[0])
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), dtype=np.float32)


# ---------------------------------------------------------------------------- the heads
def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _head(arrays: Mapping[str, Any], emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r, z) of a head's arrays (``Head.arrays``) on embeddings, in float64."""
    z = (np.asarray(emb, np.float64) - arrays["mean"]) / arrays["std"]
    x = z
    for layer in arrays["layers"]:
        x = x @ np.asarray(layer["weight"], np.float64).T
        if layer["bias"] is not None:
            x = x + layer["bias"]
        if layer["activation"] == "gelu":
            x = _gelu(x)
        elif layer["activation"] is not None:
            raise ValueError(f"unknown activation {layer['activation']!r}")
    return x[:, 0], z


def head_rewards(arrays: Mapping[str, Any], emb: np.ndarray,
                 country: str | None = None) -> np.ndarray:
    """r per embedding, float64, from a model's ``head_arrays``: what the page computes. A
    conditioned model's arrays need ``country``: r = shared(z) + delta_c . z."""
    if "delta" not in arrays:
        return _head(arrays, emb)[0]
    if country not in arrays["countries"]:
        raise ValueError(f"the conditioned model scores for one of {arrays['countries']}, "
                         f"not {country!r}")
    r, z = _head(arrays["shared"], emb)
    return r + z @ np.asarray(arrays["delta"][arrays["countries"].index(country)], np.float64)


def write_heads(dest: Path, heads: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``heads.json`` (each model's arrays as {offset, shape} into heads.bin, in bytes) and
    ``heads.bin`` (every array as little-endian float32, one after another)."""
    blob = bytearray()

    def put(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            a = np.ascontiguousarray(value, dtype="<f4")
            ref = {"offset": len(blob), "shape": list(a.shape)}
            blob.extend(a.tobytes())
            return ref
        if isinstance(value, Mapping):
            return {k: put(v) for k, v in value.items()}
        if isinstance(value, list):
            return [put(v) for v in value]
        return value

    index = {"format": FORMAT, "bin": "heads.bin", "models": put(dict(heads))}
    (dest / "heads.bin").write_bytes(bytes(blob))
    (dest / "heads.json").write_text(json.dumps(index, indent=1))
    return index


def read_heads(src: Path) -> dict[str, Any]:
    """``write_heads``' files back as arrays (what the page reads)."""
    index = json.loads((src / "heads.json").read_text())
    blob = (src / index["bin"]).read_bytes()

    def get(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"offset", "shape"}:
            n = int(np.prod(value["shape"]))
            return np.frombuffer(blob, "<f4", n, value["offset"]).reshape(value["shape"])
        if isinstance(value, dict):
            return {k: get(v) for k, v in value.items()}
        if isinstance(value, list):
            return [get(v) for v in value]
        return value

    return get(index["models"])


# ---------------------------------------------------------------------------- texts
def reference_rounds(texts: pd.DataFrame, n_texts: int = 50, seed: int = 0,
                     extra: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """``n_texts`` of ``texts`` (columns prompt, response) as rounds of a prompt and two of its
    responses, as a reader types them: drawn with ``seed``, each text at most once. When
    ``texts`` has too few, the rest come from ``extra`` (other texts of the data)."""
    rng = np.random.default_rng(seed)
    rounds: list[dict[str, Any]] = []
    for frame in (texts, extra):
        if frame is None or len(rounds) >= n_texts // 2:
            continue
        used = {(r["prompt"], a) for r in rounds for a in r["answers"]}
        pairs = []
        for prompt, g in frame.groupby("prompt", sort=True):
            responses = [r for r in dict.fromkeys(g["response"]) if (prompt, r) not in used]
            order = rng.permutation(len(responses))
            pairs += [(prompt, [responses[order[i]], responses[order[i + 1]]])
                      for i in range(0, len(order) - 1, 2)]
        pick = rng.permutation(len(pairs))[:n_texts // 2 - len(rounds)]
        rounds += [{"prompt": pairs[i][0], "answers": pairs[i][1]} for i in sorted(pick)]
    return rounds


def reference(rounds: Sequence[Mapping[str, Any]], models: Mapping[str, RewardModel],
              encoder: Any) -> list[dict[str, Any]]:
    """Each round with scpo's token ids (``ids``, ``type_ids``) and rewards of each answer
    under each model (``RewardModel.score``, key -> rewards): what the page must show."""
    out = []
    for r in rounds:
        prompts = [r["prompt"]] * len(r["answers"])
        enc = encoder.tokenize(prompts, r["answers"])
        out.append({**r, "ids": enc["input_ids"], "type_ids": enc["token_type_ids"],
                    "rewards": {k: [float(v) for v in m.score(prompts, list(r["answers"]))]
                                for k, m in models.items()}})
    return out


def preferred(rewards: Sequence[float]) -> int:
    """The answer a model prefers: the first of the highest rewards, as the page marks it."""
    return int(np.argmax(rewards))


def disagreements(rounds: Sequence[Mapping[str, Any]], country: str) -> list[int]:
    """The rounds of ``reference`` (scpo's rewards) where ``country``'s model prefers another
    answer than the global RM: what the exercise on the page asks a reader to find."""
    key = f"country:{country}"
    missing = [i for i, r in enumerate(rounds) if key not in r["rewards"]]
    if missing:
        raise KeyError(f"no rewards of {key!r} in round(s) {missing}; the rounds have "
                       f"{sorted(rounds[missing[0]]['rewards'])}")
    return [i for i, r in enumerate(rounds)
            if preferred(r["rewards"][key]) != preferred(r["rewards"]["global"])]


def pool_examples(pool: pd.DataFrame, countries: Sequence[str], n: int = 4,
                  answers: int = 3) -> list[dict[str, Any]]:
    """Starting examples from a simulation's held-out pool (``scpo.companion.bon.pool_items``): the
    prompts whose countries' truth picks another best answer than the consensus for the most
    countries; each with the consensus' best answer and the countries' most common other
    best ones, and every answer's truth (utility) for the consensus and each country."""
    found = []
    for prompt, g in pool.groupby("prompt", sort=True):
        g = g[g["country"].isin(countries)]
        texts = g.drop_duplicates("candidate").set_index("candidate")
        consensus = texts["global_truth"].idxmax()
        best = g.loc[g.groupby("country")["country_truth"].idxmax()]
        others = best.loc[best["candidate"] != consensus, "candidate"].value_counts()
        chosen = [consensus, *others.index[:answers - 1]]
        chosen += [c for c in texts.sort_values("global_truth").index
                   if c not in chosen][:answers - len(chosen)]
        truth = {"consensus": [float(texts.loc[c, "global_truth"]) for c in chosen]}
        for country, rows in g.groupby("country", sort=False):
            t = rows.set_index("candidate")["country_truth"]
            truth[country] = [float(t[c]) for c in chosen]
        found.append((-len(others), prompt, {
            "prompt": prompt, "answers": [str(texts.loc[c, "response"]) for c in chosen],
            "truth": truth, "truth_kind": "utility"}))
    return [e for *_, e in sorted(found, key=lambda f: f[:2])[:n]]


def pair_examples(tests: Mapping[str, pd.DataFrame], n: int = 4) -> list[dict[str, Any]]:
    """Starting examples from real data: for each of the first ``n`` countries, its first test
    pair that the global RM orders against the raters (pure minority), with the raters'
    choice as the truth."""
    out = []
    for country, test in list(tests.items())[:n]:
        wrong = test[test["rg_chosen"] < test["rg_rejected"]]
        if len(wrong):
            row = wrong.iloc[0]
            out.append({"prompt": row["prompt"], "answers": [row["chosen"], row["rejected"]],
                        "truth": {country: [1.0, 0.0]}, "truth_kind": "raters"})
    return out


# ---------------------------------------------------------------------------- the bundle
def _older_bundle(path: Path) -> bool:
    """A bundle an scpo before the marker wrote: its manifest is ours (format, encoders)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT \
        and isinstance(manifest.get("encoders"), dict)


def write_bundle(dest: str | Path, global_rm: RewardModel,
                 country_models: Mapping[str, RewardModel],
                 conditioned: ConditionedRM | None = None, *,
                 examples: Sequence[Mapping[str, Any]] = (),
                 rounds: Sequence[Mapping[str, Any]] = (), variant: str = "scpo_fw",
                 variant_label: str = "SCPO (F+W)", seed: int = 0,
                 npm_cache: Path | None = None) -> dict[str, Any]:
    """Every file the page loads, into ``dest`` (written beside it, then swapped in); returns
    the manifest (``manifest.json``): the files, their sizes and sha256, and the download of
    the page with each encoder. ``rounds``: texts to record scpo's rewards of
    (``reference.json``, read by the browser test, not by the page), with those of the
    starting ``examples``."""
    dest = Path(dest)
    encoder = global_rm.frozen_encoder
    if encoder is None:
        global_rm.head_arrays()  # says which tiers run in a browser
    models: dict[str, RewardModel | ConditionedRM] = {"global": global_rm, **{
        f"country:{c}": m for c, m in country_models.items()}}
    if conditioned is not None:
        models["conditioned"] = conditioned
    for key, m in models.items():
        other = m.frozen_encoder
        if other is None or other.fingerprint() != encoder.fingerprint():
            raise ValueError(f"model {key!r} is not a head on the global RM's encoder "
                             f"({encoder.name_or_path!r}); the page runs one encoder for "
                             "every model")
    manifest: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        fp32 = exported_encoder(encoder, tmp / "encoder-fp32.onnx")
        half_weights(fp32, tmp / "encoder-fp16.onnx")
        for f in encoder.tokenizer_files():
            shutil.copyfile(f, tmp / f.name)
        write_heads(tmp, {k: m.head_arrays() for k, m in models.items()})
        (tmp / "examples.json").write_text(json.dumps(list(examples), indent=1,
                                                      ensure_ascii=False))
        if rounds:
            refs = {k: m for k, m in models.items() if k != "conditioned"}
            if conditioned is not None:  # asked for each country it was trained for
                refs |= {f"conditioned:{c}": conditioned.for_country(c)
                         for c in country_models if c in conditioned.countries}
            (tmp / "reference.json").write_text(json.dumps(
                {"max_length": encoder.max_length, "rounds": reference(rounds, refs, encoder),
                 "examples": reference(examples, refs, encoder),
                 "probes": reference([{"prompt": p, "answers": a} for p, a in PROBES], refs,
                                     encoder)}, ensure_ascii=False))
        runtime = jsruntime.vendor(tmp, npm_cache)
        files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                 for p in sorted(tmp.iterdir())}
        page = [n for n in files if n not in ("reference.json", *(f"encoder-{e}.onnx"
                                                                   for e in ENCODERS))
                and not n.endswith((".package.json", ".LICENSE"))]
        manifest.update({
            "format": FORMAT, "countries": list(country_models), "variant": variant,
            "variant_label": variant_label, "seed": seed,
            "conditioned": None if conditioned is None else list(conditioned.countries),
            "max_length": encoder.max_length, "encoder_fingerprint": encoder.fingerprint(),
            "encoders": {e: {"file": f"encoder-{e}.onnx", "label": label,
                             "bytes": files[f"encoder-{e}.onnx"]["bytes"]}
                         for e, label in ENCODERS.items()},
            "default_encoder": DEFAULT_ENCODER,
            "tokenizer": {"json": "tokenizer.json", "config": "tokenizer_config.json"},
            "heads": "heads.json", "examples": "examples.json",
            "runtime": {"ort": "ort.wasm.bundle.min.mjs", "wasm": "ort-wasm-simd-threaded.wasm",
                        "tokenizers": "tokenizers.min.mjs", "packages": runtime},
            "files": files,
            # what a reader's browser fetches: the page's files and one encoder
            "download_bytes": {e: sum(files[n]["bytes"] for n in page)
                               + files[f"encoder-{e}.onnx"]["bytes"] for e in ENCODERS},
        })
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))

    # a folder of the user's is refused; only the files an earlier bundle wrote are replaced
    replace_dir(dest, write, what=BUNDLE, ours=_older_bundle, legacy=BUNDLE_FILES, told="")
    return manifest


def agreement(bundle: str | Path, models: Mapping[str, RewardModel],
              tests: Mapping[str, pd.DataFrame],
              encoders: Mapping[str, Path] | None = None) -> pd.DataFrame:
    """The page's rewards (``embed_onnx`` + ``head_rewards`` on the bundle's files) against
    scpo's (``RewardModel.score``) on every text of each country's test pairs, for each
    encoder: the largest difference and on how many pairs the preferred answer is the same.
    ``models``: the bundle's keys ("global", "country:<c>", "conditioned:<c>") -> the model
    that scores like it; ``encoders``: name -> ONNX file (default: the bundle's)."""
    bundle = Path(bundle)
    if encoders is None:
        encoders = {e: bundle / f"encoder-{e}.onnx" for e in ENCODERS}
    heads = read_heads(bundle)
    encoder = next(m.frozen_encoder for m in models.values() if m.frozen_encoder is not None)
    texts = pd.concat([text_rows(t)[0] for t in tests.values()]).drop_duplicates(
        ignore_index=True)
    row = {k: i for i, k in enumerate(zip(texts["prompt"], texts["response"]))}
    embs = {e: embed_onnx(path, encoder, texts["prompt"].tolist(), texts["response"].tolist())
            for e, path in encoders.items()}
    out = []
    for key, model in models.items():
        country = key.split(":", 1)[1] if ":" in key else None
        arrays = heads["conditioned" if key.startswith("conditioned:") else key]
        pairs = {c: t for c, t in tests.items() if country in (None, c)}
        mine, ic, ir = text_rows(pd.concat(pairs.values(), ignore_index=True))
        idx = np.array([row[k] for k in zip(mine["prompt"], mine["response"])])
        ours = model.score(mine["prompt"].tolist(), mine["response"].tolist())
        for e, emb in embs.items():
            page = head_rewards(arrays, emb[idx], country)
            out.append({"encoder": e, "model": key, "texts": len(idx),
                        "max_abs_diff": float(np.abs(page - ours).max()),
                        "pairs": len(ic), "same_preference": int(
                            (np.sign(page[ic] - page[ir]) == np.sign(ours[ic] - ours[ir])).sum())})
    return pd.DataFrame(out)


class Widget:
    """The page's interactive part, as a notebook output: ``book/_static/scpo-dial.js`` finds
    it and builds the form there; without JavaScript it says what it would do."""

    def __init__(self, manifest: Mapping[str, Any]):
        self.manifest = manifest

    def _repr_html_(self) -> str:
        mb = {e: b / 2**20 for e, b in self.manifest["download_bytes"].items()}
        return ('<div id="scpo-dial" class="scpo-dial" data-bundle="dial/">'
                "<p class=\"scpo-dial-fallback\">This part of the page scores your own answers "
                "with the book's reward models in your browser; it needs JavaScript, and "
                f"downloads {mb[DEFAULT_ENCODER]:.0f} MiB once (the encoder and its runtime)."
                "</p></div>")

    def __repr__(self) -> str:
        return "(the interactive scorer: open the page in a browser)"
