"""Best-of-N: the pick, its worth against the best and a random candidate, and the intervals
over users, on hand-built items whose every number is worked out in the comments."""

import json

import numpy as np
import pandas as pd
import pytest

from scpo import cli
from scpo.companion import bon
from scpo.evaluate import bootstrap_means, percentile_interval
from scpo.pairs import paper_test_rows


def hand_items() -> pd.DataFrame:
    """Two items of one country. A (user u1): rewards 1, 3, 3, a tie at the top between a2 and
    a3; B (user u2): rewards 0.5, -1. Rows are listed out of candidate order on purpose."""
    return pd.DataFrame({
        "country": "Chile", "item": ["A", "A", "B", "A", "B"],
        "user_id": ["u1", "u1", "u2", "u1", "u2"],
        "candidate": ["a3", "a1", "b2", "a2", "b1"], "prompt": ["pa"] * 2 + ["pb"] + ["pa"]
        + ["pb"], "response": ["y3", "y1", "z2", "y2", "z1"],
        "reward": [3.0, 1.0, -1.0, 3.0, 0.5],
        "country_truth": [5.0, 0.0, 4.0, 2.0, 1.0],
        "score": [80.0, 50.0, 60.0, 80.0, 30.0],
    })


def test_candidate_order_then_the_first_of_a_tie_is_picked_and_counted():
    items = bon.candidate_order(hand_items())
    assert items["candidate"].tolist() == ["a1", "a2", "a3", "b1", "b2"]
    picks = bon.pick(items["item"], items["reward"])
    assert picks["item"].tolist() == ["A", "B"]
    assert picks["row"].tolist() == [1, 3]  # a2 (first of the tie a2, a3), b1
    assert picks["n"].tolist() == [3, 2] and picks["n_tied"].tolist() == [2, 1]
    # the rule is the order: the same tie listed the other way round picks the other one
    assert bon.pick(["A", "A"], [3.0, 3.0])["row"].tolist() == [0]


def test_worth_of_the_pick_by_hand_with_ties():
    items = bon.candidate_order(hand_items())
    out = bon.evaluate_picks(items, items["reward"]).set_index("item")
    # A, country truth 0, 2, 5 (a1, a2, a3), pick a2: value 2, best 5, random 7/3,
    # regret 3, gain -1/3, not the best (chance 1/3), win = (1 below + 1/2 itself) / 3 = 1/2
    # B, truth 1, 4 (b1, b2), pick b1: value 1, best 4, random 2.5, regret 3, gain -1.5,
    # top 0 (chance 1/2), win = (0 + 1/2) / 2 = 1/4
    expect = {"value": [2, 1], "best": [5, 4], "random": [7 / 3, 2.5], "regret": [3, 3],
              "gain": [-1 / 3, -1.5], "top": [0, 0], "top_chance": [1 / 3, 1 / 2],
              "win": [0.5, 0.25], "n_best": [1, 1]}
    for m, v in expect.items():
        np.testing.assert_allclose(out[f"country_truth_{m}"], v, err_msg=m)
    # the user's scores: A 50, 80, 80, the pick a2 is one of the two top-scored responses, so
    # it agrees (top 1) and a random pick agrees with chance 2/3; win = (1 + 1/2 * 2) / 3
    # B 30, 60: the pick b1 is the user's bottom one
    expect = {"value": [80, 30], "best": [80, 60], "random": [70, 45], "regret": [0, 30],
              "gain": [10, -15], "top": [1, 0], "top_chance": [2 / 3, 1 / 2],
              "win": [2 / 3, 1 / 4], "n_best": [2, 1]}
    for m, v in expect.items():
        np.testing.assert_allclose(out[f"score_{m}"], v, err_msg=m)
    assert out["n_tied"].tolist() == [2, 1] and out["user_id"].tolist() == ["u1", "u2"]
    assert "global_truth_value" not in out.columns  # a value the items do not have is left out


def test_bad_items_are_named():
    items = bon.candidate_order(hand_items())
    with pytest.raises(ValueError, match="one candidate"):
        bon.evaluate_picks(items.iloc[:4], items["reward"].iloc[:4])
    with pytest.raises(ValueError, match="item 'A' has 2 values of 'user_id'"):
        bon.evaluate_picks(items.assign(user_id=["u1", "u9", "u1", "u2", "u2"]), items["reward"])
    with pytest.raises(ValueError, match="missing column"):
        bon.evaluate_picks(items.drop(columns="candidate"), items["reward"])
    with pytest.raises(ValueError, match="reward: 1 NaN"):
        bon.pick(items["item"], [1.0, np.nan, 0, 0, 0])


def test_summary_means_and_the_bootstrap_over_users():
    items = bon.candidate_order(hand_items())
    per = bon.evaluate_picks(items, items["reward"]).assign(model="m")
    row = bon.summarize(per, by=("model",), n_boot=4000, seed=0).iloc[0]
    assert row["n_items"] == 2 and row["n_users"] == 2 and row["n_tied_picks"] == 1
    assert row["score_top"] == 0.5 and row["country_truth_regret"] == 3.0
    # two users: a resample is (u1, u1) -> 1, (u2, u2) -> 0 or mixed -> 1/2, the extremes
    # with probability 1/4 each, so the 95 % interval is [0, 1]; the regret is 3 in every one
    assert (row["score_top_low"], row["score_top_high"]) == (0.0, 1.0)
    assert (row["country_truth_regret_low"], row["country_truth_regret_high"]) == (3.0, 3.0)


def test_the_summary_resamples_users_not_items():
    # u1 has three items worth 1: resampling users moves them together, resampling items not
    values, users = [1.0, 1.0, 1.0, 0.0, 0.5], ["u1", "u1", "u1", "u2", "u3"]
    per = pd.DataFrame({"country": "C", "item": list("abcde"), "user_id": users, "n_tied": 1,
                        "score_top": values})
    row = bon.summarize(per, by=("country",), n_boot=2000, seed=0, level=0.5).iloc[0]
    got = (row["score_top_low"], row["score_top_high"])
    assert got == percentile_interval(bootstrap_means(values, users, 2000, 0), 0.5)
    assert got != percentile_interval(bootstrap_means(values, list("abcde"), 2000, 0), 0.5)
    # several seeds of one item count once: their metrics are averaged first
    seeds = pd.concat([per.assign(seed=0), per.assign(seed=1, score_top=[0, 1, 1, 0, 0.5],
                                                      n_tied=[2, 1, 1, 1, 1])])
    row = bon.summarize(seeds, by=("country",), n_boot=200).iloc[0]
    # item a: (1 + 0) / 2; the others as before: (0.5 + 1 + 1 + 0 + 0.5) / 5
    assert row["n_items"] == 5 and row["score_top"] == pytest.approx(0.6)
    assert row["n_tied_picks"] == 1


def test_the_macro_average_counts_each_country_once_and_resamples_within_countries():
    per = pd.DataFrame({"country": ["C1"] * 3 + ["C2"], "item": list("abcd"),
                        "user_id": ["u1", "u2", "u3", "u4"], "n_tied": 1,
                        "score_top": [1.0, 1.0, 1.0, 0.0], "model": "m"})
    row = bon.macro_summary(per, by=("model",), n_boot=500).iloc[0]
    # pooled over items it would be 3/4; each country once: (1 + 0) / 2, in every resample
    assert row["score_top"] == 0.5 and row["n_countries"] == 2
    assert (row["score_top_low"], row["score_top_high"]) == (0.5, 0.5)


def test_the_pools_shared_prompts_are_drawn_once_for_every_country():
    """Every country reranks the same prompts' pools: a resample draws the prompts once for
    all countries (issue 36). C1's gain is +v on a prompt, C2's -v: their macro mean is 0 in
    every resample; drawn apart per country (as before) it was not."""
    v = [3.0, -1.0, 0.5, 2.0]
    per = pd.DataFrame({"country": ["C1"] * 4 + ["C2"] * 4, "item": [f"i{k}" for k in range(8)],
                        "user_id": ["p1", "p2", "p3", "p4"] * 2, "n_tied": 1, "model": "m",
                        "country_truth_gain": v + [-x for x in v]})
    row = bon.macro_summary(per, n_boot=500).iloc[0]
    assert row["country_truth_gain"] == 0.0
    assert (row["country_truth_gain_low"], row["country_truth_gain_high"]) == \
        pytest.approx((0.0, 0.0), abs=1e-12)
    # the turns' users are each country's own: drawn per country, a width
    turns = per.assign(user_id=per["country"] + per["user_id"])
    row = bon.macro_summary(turns, n_boot=500).iloc[0]
    assert row["country_truth_gain_high"] - row["country_truth_gain_low"] > 1.0


def test_the_dial_moves_the_pick_from_the_global_to_the_country_model():
    items = bon.candidate_order(hand_items())
    r_glo = np.array([2.0, 1.0, 0.0, 1.0, 0.0])  # picks a1 and b1
    r_cty = np.array([0.0, 1.0, 2.0, 0.0, 1.0])  # picks a3 and b2
    d = bon.dial_picks(items, r_glo, r_cty, [0.0, 1.0]).set_index(["alpha", "item"])
    assert d.loc[(0.0, "A"), "country_truth_value"] == 0.0  # a1
    assert d.loc[(1.0, "A"), "country_truth_value"] == 5.0  # a3
    assert d.loc[(0.0, "B"), "score_value"] == 30.0 and d.loc[(1.0, "B"), "score_value"] == 60.0
    with pytest.raises(ValueError, match="alphas is empty"):
        bon.dial_picks(items, r_glo, r_cty, [])


def write_prism(d, turns):
    """utterances.jsonl and survey.jsonl from (user, interaction, [(utterance, score), ...])."""
    users = sorted({u for u, _, _ in turns})
    d.mkdir(parents=True, exist_ok=True)
    (d / "survey.jsonl").write_text("".join(json.dumps(
        {"user_id": u, "location": {"reside_country": "Chile"}}) + "\n" for u in users))
    rows = [{"utterance_id": ut, "user_id": u, "interaction_id": i, "conversation_id": f"c{i}",
             "turn": 0, "user_prompt": f"prompt of {i}", "model_response": f"response {ut}",
             "model_name": "m", "score": s} for u, i, resp in turns for ut, s in resp]
    (d / "utterances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return users


def test_turn_items_keep_tied_scores_and_count_what_they_leave_out(tmp_path):
    # even users give two responses the top score 70, odd users one
    turns = [(f"u{k}", f"i{k}", [(f"x{k}a", 70), (f"x{k}b", 70 - 10 * (k % 2)), (f"x{k}c", 20)])
             for k in range(6)] + [("u0", "lone", [("solo", 50)])]
    users = write_prism(tmp_path, turns)
    test = {users[i] for i in paper_test_rows(len(users), 0.5, 0)}
    even = {u for u in test if int(u[1:]) % 2 == 0}
    assert even and even != test  # the split keeps both kinds
    items, report = bon.turn_items(tmp_path, test_frac=0.5)
    assert set(items["user_id"]) == test  # only the test users' turns
    assert len(items) == 3 * len(test)  # every response of a tied score stays
    assert report["turns_with_tied_top_score"] == len(even)
    assert report["single_response_turns"] == int("u0" in test)
    per = bon.evaluate_picks(items, np.zeros(len(items))).set_index("user_id")
    assert (per["n_tied"] == 3).all()  # a constant model: a tie everywhere, a picks the first
    assert (per["score_top"] == 1).all()  # x?a, at the top score of its turn
    assert per.loc[sorted(even), "score_top_chance"].tolist() == pytest.approx([2 / 3] * len(even))
    assert per.loc[sorted(test - even), "score_top_chance"].tolist() == pytest.approx(
        [1 / 3] * len(test - even))


def test_scpo_bon_scores_a_users_model_on_the_test_turns(tmp_path, tiny_bert, capsys):
    """The command's table is the package's: top-choice agreement of the model's pick and its
    chance, per country."""
    from scpo.models.hf import HFRewardModel

    # even users give their third response their top score too
    turns = [(f"u{k}", f"i{k}", [(f"x{k}a", 10 * k), (f"x{k}b", 90 - 10 * k),
                                 (f"x{k}c", max(10 * k, 90 - 10 * k) if k % 2 == 0 else 40)])
             for k in range(8)]
    users = write_prism(tmp_path / "data", turns)
    shared = sum(int(users[i][1:]) % 2 == 0 for i in paper_test_rows(len(users), 0.5, 0))
    out = tmp_path / "bon.csv"
    cli.main(["bon", "--model", str(tiny_bert), "--data-dir", str(tmp_path / "data"),
              "--test-frac", "0.5", "--max-length", "64", "--n-boot", "50", "--out", str(out)])
    said = capsys.readouterr().out
    assert "top-choice agreement" in said
    assert f"turns whose top user score is shared: {shared}," in said and 0 < shared < 4
    got = pd.read_csv(out).set_index("country")
    items, _ = bon.turn_items(tmp_path / "data", test_frac=0.5)
    rm = HFRewardModel.from_pretrained(str(tiny_bert), max_length=64)
    per = bon.evaluate_picks(items, rm.score(items["prompt"].tolist(),
                                             items["response"].tolist()))
    assert got.loc["Chile", "score_top"] == pytest.approx(per["score_top"].mean())
    assert got.loc["Chile", "score_top_chance"] == pytest.approx(
        ((4 - shared) / 3 + shared * 2 / 3) / 4)  # 1/3 a turn, 2/3 with a shared top
    assert got.loc["Chile", "n_items"] == 4


def test_scpo_bon_on_data_without_turns_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bon", "--model", "x", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "utterances.jsonl" in err
