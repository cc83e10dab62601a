"""CARB best-of-N evaluation on fixtures written here in the published format."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from scpo import cli
from scpo.companion import carb


class LengthRM:
    """r(x, y) = len(y): the length preference CARB's authors warn about, as a model."""

    def fingerprint(self):
        return "length-rm"

    def score(self, prompts, responses):
        return np.array([float(len(r)) for r in responses])


def item(i, chosen, rejected, language="Spanish", country=None, subset="cultural_value"):
    return {"id": str(i), "language": language, "country": country, "prompt": f"q{i}",
            "chosen": chosen, "chosen_model": ["m"] * len(chosen), "rejected": rejected,
            "rejected_model": ["m"] * len(rejected), "num_correct": len(chosen),
            "num_rejected": len(rejected), "total_completions": len(chosen) + len(rejected),
            "source": "fixture", "subset": subset, "category": "c",
            "additional_metadata": json.dumps({"note": "x"})}


SPANISH = [
    item(1, ["long answer"], ["a", "bb", "ccc"]),  # longest chosen: right
    item(2, ["ab"], ["abcd", "a", "b"]),  # a longer rejected: wrong
    item(3, ["xy"], ["ab", "c", "d"]),  # a tie (2 = 2): wrong
    item(4, ["aaaa", "bbbbb"], ["cc", "ddd"], subset="cultural_commonsense"),  # 2 chosen: right
]
ENGLISH = [item(5, ["hello there"], ["hi", "yo", "hey"], language="English", country="American"),
           item(6, ["short"], ["much longer", "a", "b"], language="English")]


@pytest.fixture
def carb_dir(tmp_path):
    (tmp_path / "carb" / "es").mkdir(parents=True)
    (tmp_path / "carb" / "es" / "spanish.json").write_text(json.dumps(SPANISH))
    (tmp_path / "carb" / "english.jsonl").write_text("\n".join(json.dumps(i) for i in ENGLISH))
    return tmp_path / "carb"


def test_best_of_n_by_hand_with_ties_wrong_and_two_chosen(carb_dir, tmp_path):
    items = carb.load_carb(carb_dir).sort_values("id").reset_index(drop=True)
    correct = carb.best_of_n(LengthRM(), items, root=tmp_path / "cache")
    assert correct.tolist() == [True, False, False, True, True, False]
    table = carb.carb_accuracy(items, correct, by=("language",), n_boot=200)
    assert table.set_index("language")["accuracy"].to_dict() == {"English": 0.5, "Spanish": 0.5}
    # chance: 1/4 for one chosen of 4, 1/C(4, 2) = 1/6 for two chosen of 4
    chance = table.set_index("language")["chance"].to_dict()
    assert chance["English"] == 0.25 and chance["Spanish"] == pytest.approx((3 / 4 + 1 / 6) / 4)
    assert table["n_items"].tolist() == [2, 4]


def test_the_bootstrap_is_over_items_and_seeded(carb_dir, tmp_path):
    items = carb.load_carb(carb_dir)
    correct = carb.best_of_n(LengthRM(), items, root=tmp_path / "cache")
    a = carb.carb_accuracy(items, correct, by=(), n_boot=300, seed=1)
    assert a.equals(carb.carb_accuracy(items, correct, by=(), n_boot=300, seed=1))
    assert a.loc[0, "ci_low"] < a.loc[0, "accuracy"] < a.loc[0, "ci_high"]
    assert a.loc[0, "n_items"] == 6 and a.loc[0, "accuracy"] == 0.5


def test_length_preference_is_measured():
    items = pd.DataFrame({"chosen": [["aaa"], ["b"]], "rejected": [["a", "bb"], ["cc", "ddd"]]})
    chosen = [np.array([3.0]), np.array([1.0])]
    rejected = [np.array([1.0, 2.0]), np.array([2.0, 3.0])]
    assert carb.length_correlation(items, chosen, rejected) == pytest.approx(1.0)
    assert carb.length_correlation(items, [-c for c in chosen],
                                   [-r for r in rejected]) == pytest.approx(-1.0)


def test_length_cue_within_items_by_hand():
    # item A: lengths 3, 1, 2 with rewards 3, 1, 2: 3 pairs, the longer higher in all; rho 1
    # item B: lengths 1, 2, 2, 3 with rewards 5, 2, 2, 5: (1 vs 2) x 2 the longer lower,
    #   (1 vs 3) a reward tie, (2 vs 2) a length tie, (2 vs 3) x 2 the longer higher; rho: ranks
    #   [1, 2.5, 2.5, 4] and [3.5, 1.5, 1.5, 3.5], centred [-1.5, 0, 0, 1.5] . [1, -1, -1, 1] = 0
    # item C: one length: a length tie and no rho
    items = pd.DataFrame({"chosen": [["aaa"], ["b"], ["x"]],
                          "rejected": [["a", "bb"], ["cc", "dd", "eee"], ["y"]]})
    chosen = [np.array([3.0]), np.array([5.0]), np.array([1.0])]
    rejected = [np.array([1.0, 2.0]), np.array([2.0, 2.0, 5.0]), np.array([0.0])]
    cue = carb.length_cue(items, chosen, rejected)
    assert cue["longer_higher"] == pytest.approx(5 / 7)
    assert (cue["pairs"], cue["length_ties"], cue["reward_ties"]) == (7, 2, 1)
    assert cue["rho_within"] == pytest.approx(0.5)
    assert (cue["items_rho"], cue["items_no_rho"]) == (2, 1)
    assert cue["rho_pooled"] == carb.length_correlation(items, chosen, rejected)


def test_a_length_cue_between_items_is_not_one_within_them():
    # 200 items of 4 completions: item i's texts are 50 (i + 1) + 0, 10, 20, 30 characters long
    # and its rewards i + 0, 0.1, 0.2, 0.3, rising with length in the even items and falling in
    # the odd ones. Across items, longer texts score higher; within an item, half the time.
    items, chosen, rejected = [], [], []
    for i in range(200):
        texts = ["x" * (50 * (i + 1) + k) for k in (0, 10, 20, 30)]
        rewards = i + np.array([0.0, 0.1, 0.2, 0.3])[:: 1 if i % 2 == 0 else -1]
        items.append({"chosen": texts[:1], "rejected": texts[1:]})
        chosen.append(rewards[:1])
        rejected.append(rewards[1:])
    items = pd.DataFrame(items)
    cue = carb.length_cue(items, chosen, rejected)
    assert cue["rho_pooled"] > 0.99  # the pooled rho sees a strong cue
    assert cue["longer_higher"] == pytest.approx(0.5)  # 600 higher, 600 lower: none within
    assert cue["pairs"] == 1200 and cue["length_ties"] == cue["reward_ties"] == 0
    assert cue["rho_within"] == pytest.approx(0.0, abs=1e-12)  # +1 and -1, 100 items each
    # rewards that follow length inside every item: the within measures see it
    follows = carb.length_cue(items, [np.array([len(t[0])], dtype=float) for t in items["chosen"]],
                              [np.array([len(x) for x in t], dtype=float)
                               for t in items["rejected"]])
    assert follows["longer_higher"] == 1.0 and follows["rho_within"] == pytest.approx(1.0)


def test_countries_map_to_prisms():
    assert carb.prism_countries("American", "English") == ("United States",)
    assert carb.prism_countries("Chile", "Spanish") == ("Chile",)
    assert carb.prism_countries(None, "Spanish") == ("Mexico", "Chile")
    assert carb.prism_countries(None, "English") == ()  # generic English: no minority country
    assert carb.prism_countries("Japanese", "Japanese") == ()
    assert carb.prism_countries("chilean ", None) == ("Chile",)  # labels in any case


def test_rewardbench2_layout_reads_too(tmp_path):
    rb2 = [{"id": "7", "prompt": "p", "chosen": ["good"], "rejected": ["bad", "worse", "no"],
            "num_correct": 1, "num_rejected": 3, "total_completions": 4, "models": [],
            "subset": "Focus"}]
    (tmp_path / "rb2.json").write_text(json.dumps(rb2))
    items = carb.load_carb(tmp_path)
    assert items.loc[0, "language"] is None and items.loc[0, "domain"] == "Focus"


@pytest.mark.parametrize("bad, says", [
    ({"id": "9", "prompt": "p", "chosen": ["a"]}, "item id '9': missing field(s) ['rejected']"),
    ({"id": "9", "prompt": "p", "chosen": [], "rejected": ["b"]},
     "item id '9': field 'chosen' must be a non-empty list of strings"),
    ({"id": "9", "prompt": "p", "chosen": ["a"], "rejected": ["b", 3]},
     "field 'rejected' must be a non-empty list of strings"),
    ({"id": "9", "prompt": "p", "chosen": ["a"], "rejected": ["b"], "total_completions": 4},
     "'total_completions' is 4 but the item has 1 chosen + 1 rejected"),
    ("not an object", "bad.json, item 0: an item must be a JSON object"),
    ({"id": "9", "prompt": "p", "chosen": ["a"], "rejected": ["b"], "total_completions": "2"},
     "item id '9': field 'total_completions' must be an integer, got '2'"),
    ({"id": "9", "prompt": "p", "chosen": ["a"], "rejected": ["a", "b"]},
     "item id '9': fields 'chosen' and 'rejected' share the completion 'a'"),
])
def test_a_bad_item_names_file_id_and_field(bad, says, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps([bad]))
    with pytest.raises(ValueError, match=re.escape(says)) as e:
        carb.load_carb(tmp_path)
    assert "bad.json" in str(e.value)


def test_jsonl_errors_name_their_line_and_subfolders_keep_items_apart(tmp_path):
    lines = [json.dumps(SPANISH[0]), "{broken", json.dumps(SPANISH[1])]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"bad.jsonl: not valid JSON \(line 2"):
        carb.load_carb(tmp_path)
    (tmp_path / "bad.jsonl").unlink()
    for sub in ("x", "y"):  # the same file name and ids in two folders: two sets of items
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "items.json").write_text(json.dumps(SPANISH))
    items = carb.load_carb(tmp_path)
    assert sorted(set(items["file"])) == ["x/items.json", "y/items.json"] and len(items) == 8
    (tmp_path / "y" / "items.json").write_text("[]")
    (tmp_path / "x" / "items.json").write_text("[]")
    with pytest.raises(ValueError, match="no items in"):
        carb.load_carb(tmp_path)


def test_an_unknown_country_is_named(carb_dir, tmp_path):
    items = carb.load_carb(carb_dir)
    with pytest.raises(ValueError, match="country 'Chili' is not one CARB's labels map to"):
        carb.carb_report(LengthRM(), items, country="Chili", root=tmp_path)


def test_broken_json_and_duplicate_ids_and_no_files(tmp_path):
    (tmp_path / "a.json").write_text('[{"id": 1,')
    with pytest.raises(ValueError, match=r"a.json: not valid JSON \(line 1"):
        carb.load_carb(tmp_path)
    (tmp_path / "a.json").write_text(json.dumps([SPANISH[0], SPANISH[0]]))
    with pytest.raises(ValueError, match="item id '1' appears more than once"):
        carb.load_carb(tmp_path)
    with pytest.raises(FileNotFoundError, match="no .json or .jsonl files"):
        carb.load_carb(tmp_path / "empty")


def test_scpo_carb_on_a_tiny_hf_model_matches_the_package(carb_dir, tiny_bert, tmp_path, capsys):
    """The command scores as the package does: the same items right, per language, for the
    model's own culture and the rest."""
    from scpo.models.hf import HFRewardModel

    out = tmp_path / "carb.csv"
    cli.main(["carb", "--model", str(tiny_bert), "--data-dir", str(carb_dir), "--max-length",
              "64", "--country", "Chile", "--by", "language", "--n-boot", "50", "--out",
              str(out)])
    assert "Length cue within items: the longer of two completions" in capsys.readouterr().out
    got = pd.read_csv(out)
    items = carb.load_carb(carb_dir)
    correct = carb.best_of_n(HFRewardModel.from_pretrained(str(tiny_bert), max_length=64), items)
    spanish = items["language"] == "Spanish"  # Chile's items: Spanish without another country
    row = got.set_index(["items_of", "language"]).loc[("Chile's", "Spanish"), "accuracy"]
    assert row == pytest.approx(correct[spanish.to_numpy()].mean())
    assert set(got["items_of"]) == {"Chile's", "the rest"} and got["n_items"].sum() == 6
    rm = HFRewardModel.from_pretrained(str(tiny_bert), max_length=64)
    cue = carb.length_cue(items, *carb.item_scores(rm, items))
    assert got["length_longer_higher"].iloc[0] == pytest.approx(cue["longer_higher"])
    assert got["length_rho_pooled"].iloc[0] == pytest.approx(cue["rho_pooled"])


def test_scpo_carb_without_data_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["carb", "--model", "x"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "CARB needs data" in err
