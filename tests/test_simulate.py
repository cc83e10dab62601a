import hashlib
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scpo.pairs import MAJORITY_COUNTRIES, PAPER_COUNTRIES, paper_test_rows
from scpo.prism import SURVEY_FIELDS, UTTERANCE_FIELDS, load_prism
from scpo.simulate import (
    ATTRIBUTES,
    TRUTH_FILES,
    attach_response_truth,
    attach_truth,
    config_hash,
    ensure_simulation,
    load_banks,
    make_texts,
    n_test_texts,
    sim_config,
    simulate,
    slider,
)

FILES = ("utterances.jsonl", "survey.jsonl", *TRUTH_FILES)
# small enough to simulate many times in a test
SMALL = dict(n_prompts=4, responses_per_prompt=12, majority_users=20, users_per_country=10)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return simulate(sim_config("tiny"), tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_pairs(tiny):
    data = load_prism(tiny)
    return data, attach_truth(data.pairs, tiny)


def test_files_have_the_prism_schema(tiny):
    utts = read_jsonl(tiny / "utterances.jsonl")
    survey = read_jsonl(tiny / "survey.jsonl")
    for row in utts:
        assert set(UTTERANCE_FIELDS) <= set(row)
        assert isinstance(row["score"], int) and 1 <= row["score"] <= 100
        assert isinstance(row["turn"], int) and isinstance(row["within_turn_id"], int)
        for f in ("utterance_id", "user_id", "interaction_id", "conversation_id", "user_prompt",
                  "model_response", "model_name", "conversation_type"):
            assert isinstance(row[f], str) and row[f]
    for row in survey:
        assert set(SURVEY_FIELDS) <= set(row)
        assert isinstance(row["location"], dict)
        assert row["location"]["reside_country"] == row["location"]["birth_country"]
    assert {r["location"]["reside_country"] for r in survey} == {
        *MAJORITY_COUNTRIES, *PAPER_COUNTRIES}
    u = pd.DataFrame(utts)
    sizes = u.groupby("interaction_id").agg(turn=("turn", "first"), n=("score", "size"))
    assert set(sizes.loc[sizes["turn"] == 0, "n"]) == {4}
    assert set(sizes.loc[sizes["turn"] > 0, "n"]) == {2}
    assert (sizes["turn"] > 0).any()
    # a later turn asks a different question than its conversation's opener
    opener = u[u["turn"] == 0].groupby("conversation_id")["user_prompt"].first()
    later = u[u["turn"] > 0]
    assert (later["user_prompt"].to_numpy() != opener.loc[later["conversation_id"]].to_numpy()
            ).all()
    # every user's conversations: one opener each
    per_user = u[u["turn"] == 0].groupby("user_id")["conversation_id"].nunique()
    assert set(per_user) == {sim_config("tiny").conversations_per_user}


def test_loads_through_the_prism_builder_which_counts_the_ties(tiny, tiny_pairs):
    data, _ = tiny_pairs
    u = pd.DataFrame(read_jsonl(tiny / "utterances.jsonl"))
    # count every within-interaction comparison and tie independently of the builder
    n_comp = n_ties = 0
    for _, g in u.groupby(["user_id", "interaction_id"]):
        for a, b in combinations(g["score"].tolist(), 2):
            n_comp += 1
            n_ties += a == b
    assert n_ties > 0
    assert data.report["n_comparisons"] == n_comp
    assert data.report["ties_dropped"] == n_ties
    assert len(data.pairs) == n_comp - n_ties
    assert set(data.pairs["country"]) == {*MAJORITY_COUNTRIES, *PAPER_COUNTRIES}
    test = data.pairs[data.pairs["split"] == "test"]
    assert set(test["country"]) == {*MAJORITY_COUNTRIES, *PAPER_COUNTRIES}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = simulate(sim_config("tiny", **SMALL), tmp_path / "a")
    b = simulate(sim_config("tiny", **SMALL), tmp_path / "b")
    c = simulate(sim_config("tiny", **SMALL, seed=1), tmp_path / "c")
    for f in FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    for f in ("utterances.jsonl", "truth_texts.jsonl", "truth_users.jsonl"):
        assert (a / f).read_bytes() != (c / f).read_bytes(), f


def test_noise_knobs_keep_texts_and_conversations(tmp_path):
    """Independent random streams: a knob changes what it names, nothing else."""
    a = simulate(sim_config("tiny", **SMALL), tmp_path / "a")
    b = simulate(sim_config("tiny", **SMALL, outlier_rate=0.3, rating_noise=2.0), tmp_path / "b")
    assert (a / "truth_texts.jsonl").read_bytes() == (b / "truth_texts.jsonl").read_bytes()
    ua, ub = (pd.DataFrame(read_jsonl(d / "utterances.jsonl")) for d in (a, b))
    assert ua["model_response"].equals(ub["model_response"])
    assert not ua["score"].equals(ub["score"])


def test_outlier_rate(tmp_path):
    none = simulate(sim_config("tiny", **SMALL, outlier_rate=0.0), tmp_path / "none")
    assert not any(r["outlier"] for r in read_jsonl(none / "truth_users.jsonl"))
    pairs = attach_truth(load_prism(none).pairs, none)
    assert not pairs["outlier_rater"].any()

    cfg = sim_config("tiny", **SMALL, outlier_rate=0.3, user_noise=0.0, outlier_strength=3.0)
    some = simulate(cfg, tmp_path / "some")
    users = pd.DataFrame(read_jsonl(some / "truth_users.jsonl"))
    world = json.loads((some / "world.json").read_text())
    for country, g in users.groupby("country"):
        assert g["outlier"].sum() == round(0.3 * len(g))  # 0.3 * 10 -> 3 per minority country
        u_c = np.array([world["countries"][country]["utility"][a] for a in ATTRIBUTES])
        for r in g.itertuples():
            u = np.array([r.utility[a] for a in ATTRIBUTES])
            np.testing.assert_allclose(u, -3.0 * u_c if r.outlier else u_c, atol=1e-6)
    pairs = attach_truth(load_prism(some).pairs, some)
    assert pairs["outlier_rater"].any() and not pairs["outlier_rater"].all()


def test_zero_deviation_means_country_truth_is_global_truth(tmp_path):
    flat = simulate(sim_config("tiny", **SMALL, deviation_size=0.0), tmp_path / "flat")
    p = attach_truth(load_prism(flat).pairs, flat)
    np.testing.assert_array_equal(p["country_truth_margin"], p["global_truth_margin"])

    cfg = sim_config("tiny", **SMALL, deviation_size=1.5, deviation_k=3)
    dev = simulate(cfg, tmp_path / "dev")
    world = json.loads((dev / "world.json").read_text())
    for c in PAPER_COUNTRIES:
        d = np.array(list(world["countries"][c]["deviation"].values()))
        assert sorted(np.abs(d)) == [0.0] * 5 + [1.5] * 3
    for c in MAJORITY_COUNTRIES:
        assert not any(world["countries"][c]["deviation"].values())
    p = attach_truth(load_prism(dev).pairs, dev)
    majority = p["country"].isin(MAJORITY_COUNTRIES)
    same = np.isclose(p["country_truth_margin"], p["global_truth_margin"])
    assert same[majority].all() and not same[~majority].all()


def test_without_noise_every_label_follows_the_raters_utility(tmp_path):
    cfg = sim_config("tiny", **SMALL, user_noise=0.0, rating_noise=0.0, outlier_rate=0.0,
                     user_offset_sd=0.0, coarse_rater_rate=0.0)
    d = simulate(cfg, tmp_path / "clean")
    p = attach_truth(load_prism(d).pairs, d)
    assert (p["user_truth_margin"] > 0).all()
    np.testing.assert_allclose(p["user_truth_margin"], p["country_truth_margin"], atol=1e-9)
    # score gap = score_scale * margin, up to rounding each score (and clipping at 1 and 100)
    gap = p["chosen_score"] - p["rejected_score"]
    inside = (p[["chosen_score", "rejected_score"]].gt(1) & p[["chosen_score",
              "rejected_score"]].lt(100)).all(axis=1)
    assert (np.abs(gap - cfg.score_scale * p["user_truth_margin"])[inside] <= 1.0).all()


def _write_world(d: Path) -> None:
    """Two texts, a Chilean outlier and a British rater, utilities chosen by hand."""
    def vec(**kw):
        return {a: kw.get(a, 0) for a in ATTRIBUTES}

    texts = [{"text_id": "t1", "prompt_id": 0, "prompt": "q", "response": "r1",
              "attributes": vec(family=1, humour=-1)},
             {"text_id": "t2", "prompt_id": 0, "prompt": "q", "response": "r2",
              "attributes": vec(family=-1, religion=1)}]
    responses = [{"utterance_id": "ut1", "text_id": "t1", "user_utility": 0.0},
                 {"utterance_id": "ut2", "text_id": "t2", "user_utility": 0.0},
                 {"utterance_id": "ut3", "text_id": "t1", "user_utility": 0.0},
                 {"utterance_id": "ut4", "text_id": "t2", "user_utility": 0.0}]
    users = [{"user_id": "u1", "country": "Chile", "outlier": True,
              "utility": vec(family=1.0, humour=-2.0)},
             {"user_id": "u2", "country": "United Kingdom", "outlier": False,
              "utility": vec(religion=3.0)}]
    u_global = vec(family=0.5, religion=1.0, humour=0.25)
    world = {"global_utility": u_global, "countries": {
        "Chile": {"utility": vec(family=0.5, religion=-1.0, humour=0.25)},
        "United Kingdom": {"utility": u_global}}}
    for name, rows in (("truth_texts", texts), ("truth_responses", responses),
                       ("truth_users", users)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "world.json").write_text(json.dumps(world))


def test_attach_truth_on_a_hand_made_world(tmp_path):
    _write_world(tmp_path)
    pairs = pd.DataFrame({"country": ["Chile", "Chile", "United Kingdom"],
                          "user_id": ["u1", "u1", "u2"], "chosen_id": ["ut1", "ut2", "ut3"],
                          "rejected_id": ["ut2", "ut1", "ut4"]})
    out = attach_truth(pairs, tmp_path)
    # d = a(t1) - a(t2) = (family 2, religion -1, humour -1)
    # Chile: 0.5*2 + (-1.0)*(-1) + 0.25*(-1) = 1.75;  global: 0.5*2 + 1.0*(-1) + 0.25*(-1) = -0.25
    # u1: 1*2 + (-2)*(-1) = 4;  u2: 3*(-1) = -3;  the UK's country margin is the global one
    np.testing.assert_allclose(out["country_truth_margin"], [1.75, -1.75, -0.25])
    np.testing.assert_allclose(out["global_truth_margin"], [-0.25, 0.25, -0.25])
    np.testing.assert_allclose(out["user_truth_margin"], [4.0, -4.0, -3.0])
    assert out["outlier_rater"].tolist() == [True, True, False]
    assert list(out.columns[:4]) == list(pairs.columns)  # the input columns are kept as they were

    with pytest.raises(ValueError, match="ut9"):
        attach_truth(pairs.assign(chosen_id=["ut9", "ut2", "ut3"]), tmp_path)
    with pytest.raises(ValueError, match="user u1: pair says 'Mexico'"):
        attach_truth(pairs.assign(country=["Mexico", "Chile", "United Kingdom"]), tmp_path)
    with pytest.raises(FileNotFoundError, match="simulation directory"):
        attach_truth(pairs, tmp_path / "elsewhere")


def test_response_truth_on_a_hand_made_world(tmp_path):
    _write_world(tmp_path)
    rows = pd.DataFrame({"country": ["Chile", "Chile", "United Kingdom"],
                         "utterance_id": ["ut1", "ut2", "ut3"]})
    out = attach_response_truth(rows, tmp_path)
    # t1 = (family 1, humour -1), t2 = (family -1, religion 1); Chile u = (0.5, -1, 0.25):
    # 0.5 - 0.25 = 0.25 and -0.5 - 1 = -1.5; global u = (0.5, 1, 0.25): 0.25 and 0.5
    np.testing.assert_allclose(out["country_truth"], [0.25, -1.5, 0.25])
    np.testing.assert_allclose(out["global_truth"], [0.25, 0.5, 0.25])
    # a pair's margins are the differences (attach_truth's, from the same world)
    pairs = attach_truth(pd.DataFrame({"country": ["Chile"], "user_id": ["u1"],
                                       "chosen_id": ["ut1"], "rejected_id": ["ut2"]}), tmp_path)
    assert pairs["country_truth_margin"].item() == pytest.approx(0.25 - -1.5)
    by_text = attach_response_truth(pd.DataFrame({"country": ["Chile"], "text_id": ["t2"]}),
                                    tmp_path)
    assert by_text["country_truth"].item() == -1.5
    with pytest.raises(ValueError, match="ut9"):
        attach_response_truth(rows.assign(utterance_id=["ut9", "ut2", "ut3"]), tmp_path)
    with pytest.raises(ValueError, match=r"countries \['Peru'\] are not in this simulation"):
        attach_response_truth(rows.assign(country="Peru"), tmp_path)
    with pytest.raises(ValueError, match="'text_id' or 'utterance_id'"):
        attach_response_truth(rows.drop(columns="utterance_id"), tmp_path)


def test_every_text_says_what_its_attributes_say(tiny):
    phrases, prompts = load_banks()
    topic = {p["text"]: p["topic"] for p in prompts}
    fillers = phrases["fillers"]["open"] + phrases["fillers"]["close"]
    cfg = sim_config("tiny")
    texts = read_jsonl(tiny / "truth_texts.jsonl")
    assert len(texts) == cfg.n_prompts * cfg.responses_per_prompt
    assert len({(t["prompt"], t["response"]) for t in texts}) == len(texts)
    for t in texts:
        def found(sentences, text=t):
            return [s for s in sentences if s.replace("{topic}", topic[text["prompt"]])
                    in text["response"]]
        used = found(fillers)
        for attr, level in t["attributes"].items():
            bank = phrases["attributes"][attr]
            high, low = found(bank["high"]), found(bank["low"])
            assert (len(high), len(low)) == {1: (1, 0), -1: (0, 1), 0: (0, 0)}[level], (attr, t)
            used += high + low
        # the response is exactly its sentences: nothing else, 2-4 of them
        assert cfg.min_sentences <= len(used) <= cfg.max_sentences
        length = sum(len(s.replace("{topic}", topic[t["prompt"]])) for s in used) + len(used) - 1
        assert length == len(t["response"])


def test_knobs_are_checked():
    with pytest.raises(KeyError, match="outlier_rat"):
        sim_config("tiny", outlier_rat=0.1)
    with pytest.raises(FileNotFoundError, match="no preset 'huge'; available"):
        sim_config("huge")
    with pytest.raises(ValueError, match="outlier_rate=1.5"):
        sim_config("tiny", outlier_rate=1.5)
    with pytest.raises(ValueError, match="responses_per_prompt=3"):
        sim_config("tiny", responses_per_prompt=3)
    with pytest.raises(ValueError, match="majority"):
        sim_config("tiny", countries=["Chile", "United States"])
    with pytest.raises(ValueError, match="distinct responses"):
        # one attribute sentence per response: at most 8 attributes x 2 levels x 5 phrasings
        make_texts(sim_config("tiny", min_sentences=1, max_sentences=1, filler_prob=0.0,
                              responses_per_prompt=100))


def test_presets_sizes():
    default, tiny = sim_config("default"), sim_config("tiny")
    # distinct texts (the embedding cost) and the per-prompt test / train pools
    assert default.n_prompts * default.responses_per_prompt == 30 * 160
    assert (n_test_texts(default), default.responses_per_prompt) == (24, 160)
    assert tiny.n_prompts * tiny.responses_per_prompt == 6 * 40
    assert (n_test_texts(tiny), tiny.responses_per_prompt) == (6, 40)
    assert (default.held_out_texts, default.test_frac, default.split_seed) == (True, 0.15, 0)
    assert config_hash(default) == config_hash(sim_config("default"))
    assert config_hash(default) != config_hash(sim_config("default", seed=1))


def test_slider_by_hand():
    np.testing.assert_array_equal(slider([0.4, 50.5, 51.5, 104.0, -3.0]), [1, 50, 52, 100, 1])
    np.testing.assert_array_equal(slider([44.0, 45.0, 46.0, 2.0], 10), [40, 40, 50, 1])


def test_ensure_simulation_writes_once(tmp_path):
    cfg = sim_config("tiny", **SMALL)
    first = ensure_simulation(cfg, tmp_path)
    assert first == tmp_path / config_hash(cfg)
    stamp = (first / "utterances.jsonl").stat().st_mtime_ns
    assert ensure_simulation(cfg, tmp_path) == first
    assert (first / "utterances.jsonl").stat().st_mtime_ns == stamp
    other = ensure_simulation(sim_config("tiny", **SMALL, seed=3), tmp_path)
    assert other != first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])
    # a directory without world.json is not taken for a finished simulation
    half = tmp_path / "half"
    (half / config_hash(cfg)).mkdir(parents=True)
    with pytest.raises(FileExistsError, match="delete it"):
        ensure_simulation(cfg, half)


# --- held-out texts: test users rate responses no training user saw


def text_keys(utts: list[dict]) -> list[tuple[str, str]]:
    return [(r["user_prompt"], r["model_response"]) for r in utts]


def split_of_texts(sim: Path) -> dict[str, set[tuple[str, str]]]:
    """(prompt, response) texts rated by the test users and by everyone else."""
    test_users = {r["user_id"] for r in read_jsonl(sim / "truth_users.jsonl") if r["test_user"]}
    out: dict[str, set[tuple[str, str]]] = {"test": set(), "train": set()}
    for r in read_jsonl(sim / "utterances.jsonl"):
        out["test" if r["user_id"] in test_users else "train"].add(
            (r["user_prompt"], r["model_response"]))
    return out


@pytest.mark.parametrize("knobs", [{}, dict(test_frac=0.3, split_seed=5)])
def test_test_users_rate_only_test_pool_texts(tiny, tmp_path, knobs):
    sim = simulate(sim_config("tiny", **knobs), tmp_path / "s") if knobs else tiny
    cfg = sim_config("tiny", **knobs)
    pool = {(t["prompt"], t["response"]): t["pool"] for t in read_jsonl(sim / "truth_texts.jsonl")}
    assert set(pool.values()) == {"train", "test"}
    seen = split_of_texts(sim)
    assert seen["test"] and seen["train"]
    assert {pool[k] for k in seen["test"]} == {"test"}
    assert {pool[k] for k in seen["train"]} == {"train"}
    assert not seen["test"] & seen["train"]
    # each prompt's pool is split max(4, round(test_frac * pool)) / the rest
    texts = pd.DataFrame(read_jsonl(sim / "truth_texts.jsonl"))
    n_test = texts[texts["pool"] == "test"].groupby("prompt_id").size()
    assert set(n_test) == {n_test_texts(cfg)}
    assert len(n_test) == cfg.n_prompts
    world = json.loads((sim / "world.json").read_text())
    assert world["counts"]["texts_by_pool"] == {
        "test": cfg.n_prompts * n_test_texts(cfg),
        "train": cfg.n_prompts * (cfg.responses_per_prompt - n_test_texts(cfg))}


@pytest.mark.parametrize("knobs", [{}, dict(test_frac=0.3, split_seed=5)])
def test_test_users_are_the_loaders_test_rows(tiny, tmp_path, knobs):
    """The survey rows ``paper_test_rows`` picks (the PRISM loader's split) are the test users."""
    sim = simulate(sim_config("tiny", **knobs), tmp_path / "s") if knobs else tiny
    cfg = sim_config("tiny", **knobs)
    survey = read_jsonl(sim / "survey.jsonl")
    picked = {survey[i]["user_id"] for i in paper_test_rows(len(survey), cfg.test_frac,
                                                            cfg.split_seed)}
    flagged = {r["user_id"] for r in read_jsonl(sim / "truth_users.jsonl") if r["test_user"]}
    assert flagged == picked
    assert json.loads((sim / "world.json").read_text())["counts"]["test_users"] == len(picked)
    # and through the loader itself: its test users, and no test text among the training pairs
    data = load_prism(sim, test_frac=cfg.test_frac, split_seed=cfg.split_seed)
    pairs = data.pairs
    assert set(pairs.loc[pairs["split"] == "test", "user_id"]) == picked
    train = pairs[pairs["split"] == "train"]
    test = pairs[pairs["split"] == "test"]
    seen = set(zip(train["prompt"], train["chosen"])) | set(zip(train["prompt"], train["rejected"]))
    assert not seen & (set(zip(test["prompt"], test["chosen"]))
                       | set(zip(test["prompt"], test["rejected"])))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def texts_digest(texts: pd.DataFrame) -> str:
    return sha("\n".join(texts["prompt"] + "\x1f" + texts["response"] + "\x1f" + texts["text_id"])
               .encode())


# The texts and (shared pool) files of simulator version 1, before held-out texts existed.
# Same texts -> the MiniLM embeddings cached by text are reused; they change only if numpy's
# random streams change (then re-pin, knowingly).
V1_TEXTS = {"tiny": "61d0b42a628b14f3270ab7183afbe712bbf8edd3d9f5792ba6d2ed18d80c864c",
            "default": "b3837694c21d1f1b784616347fef908859d9394aa22ffdc072ec1d9106d6f087"}
V1_SMALL_FILES = {
    "utterances.jsonl": "7d6c05fd1020279b5c07bc856ecef60e291b642f34bd37675c96c0484ecb9b36",
    "survey.jsonl": "6dde6f82d6df0d8dadca2b1f8beef973820ad12f2b8eacd2538f3a3bdc2be4e4",
    "truth_responses.jsonl": "0eecc28c91bc3d08cc67389f41c89408c302ecc28cb0ffc5b45b18b3776520d6",
}


@pytest.mark.parametrize("preset", ["tiny", "default"])
def test_the_split_knobs_leave_the_texts_as_they_were(preset):
    base = make_texts(sim_config(preset))
    assert texts_digest(base) == V1_TEXTS[preset]
    for knobs in (dict(held_out_texts=False), dict(test_frac=0.3), dict(split_seed=7)):
        other = make_texts(sim_config(preset, **knobs))
        assert texts_digest(other) == V1_TEXTS[preset], knobs
    # a larger test fraction only adds texts to each test pool
    small = set(base.loc[base["pool"] == "test", "text_id"])
    large = make_texts(sim_config(preset, test_frac=0.3))
    assert small < set(large.loc[large["pool"] == "test", "text_id"])


def test_shared_pool_is_the_old_simulator(tmp_path):
    shared = simulate(sim_config("tiny", **SMALL, held_out_texts=False), tmp_path / "shared")
    for f, digest in V1_SMALL_FILES.items():
        assert sha((shared / f).read_bytes()) == digest, f
    assert {t["pool"] for t in read_jsonl(shared / "truth_texts.jsonl")} == {"shared"}
    seen = split_of_texts(shared)
    assert seen["test"] & seen["train"]  # test users rate texts training users rated
    # which users are test users does not change what anyone rates
    other = simulate(sim_config("tiny", **SMALL, held_out_texts=False, split_seed=3),
                     tmp_path / "other")
    assert (other / "utterances.jsonl").read_bytes() == (shared / "utterances.jsonl").read_bytes()
    flags = [[r["test_user"] for r in read_jsonl(d / "truth_users.jsonl")] for d in (shared, other)]
    assert flags[0] != flags[1]


def test_split_knobs_are_deterministic_and_named(tmp_path):
    a = simulate(sim_config("tiny", **SMALL, split_seed=4), tmp_path / "a")
    b = simulate(sim_config("tiny", **SMALL, split_seed=4), tmp_path / "b")
    c = simulate(sim_config("tiny", **SMALL), tmp_path / "c")
    for f in FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "utterances.jsonl").read_bytes() != (c / "utterances.jsonl").read_bytes()
    assert (a / "truth_texts.jsonl").read_bytes() == (c / "truth_texts.jsonl").read_bytes()
    hashes = {config_hash(sim_config("tiny", **SMALL, **k)) for k in (
        {}, dict(held_out_texts=False), dict(test_frac=0.2), dict(split_seed=1))}
    assert len(hashes) == 4


def test_split_knobs_are_checked():
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=f"test_frac={bad} must be in"):
            sim_config("tiny", test_frac=bad)
    # 7 texts a prompt: a test pool of 4 leaves 3 for training, too few for an opening turn
    with pytest.raises(ValueError, match="test pool of 4 and a train pool of 3"):
        sim_config("tiny", responses_per_prompt=7)
    with pytest.raises(ValueError, match="train pool of 2"):
        sim_config("tiny", responses_per_prompt=12, test_frac=0.8)
    sim_config("tiny", responses_per_prompt=7, held_out_texts=False)  # one shared pool is fine
    sim_config("tiny", responses_per_prompt=12, test_frac=0.7)  # 8 test, 4 train
    with pytest.raises(ValueError, match="leaves no training user"):
        sim_config("tiny", held_out_texts=False, countries=["Chile"], majority_users=1,
                   users_per_country=1, test_frac=0.9)
