"""The pair-table helpers: errors that explain themselves, splits that never leak."""

import pandas as pd
import pytest

from scpo import pairs as P


def table(rows):
    """rows of (country, split, user_id); texts derived from the user."""
    df = pd.DataFrame(rows, columns=["country", "split", "user_id"])
    df["group_id"] = df["user_id"]
    df["prompt"] = "x-" + df["user_id"]
    df["chosen"], df["rejected"] = "good", "bad"
    df["chosen_id"], df["rejected_id"] = "c", "r"
    return df[P.PAIR_COLUMNS]


PAIRS = table([("Chile", "train", "u1"), ("Chile", "train", "u1"), ("Chile", "test", "u2"),
               ("Mexico", "train", "u3"), ("Israel", "val", "u4")])


def test_select_country_and_unknown_country_lists_counts():
    assert len(P.select_country(PAIRS, "Chile")) == 3
    with pytest.raises(KeyError, match=r"unknown country 'Peru'.*Chile \(3\), Israel \(1\), "
                                       r"Mexico \(1\)"):
        P.select_country(PAIRS, "Peru")


def test_country_counts_by_split():
    c = P.country_counts(PAIRS)
    assert c.loc["Chile"].tolist() == [2, 0, 1, 3]  # train, val, test, total
    assert c.index[0] == "Chile" and list(c.columns) == ["train", "val", "test", "total"]


def test_require_test_pairs():
    assert P.require_test_pairs(PAIRS, "Chile")["user_id"].tolist() == ["u2"]
    with pytest.raises(ValueError, match=r"'Mexico' has no test pairs \(1 pairs in other"):
        P.require_test_pairs(PAIRS, "Mexico")


def test_validate_pairs_names_what_is_wrong():
    with pytest.raises(ValueError, match=r"my.csv: missing column\(s\) \['prompt'\]"):
        P.validate_pairs(PAIRS.drop(columns="prompt"), "my.csv")
    with pytest.raises(ValueError, match=r"unknown split value\(s\) \['dev'\]"):
        P.validate_pairs(PAIRS.assign(split="dev"))


def test_split_units_deterministic_and_order_free():
    units = list("abcdefghij")
    got = P.split_units(units, 0.3, 0)
    assert got == {"c", "e", "g"}  # pinned: same seed, same users, on every machine
    assert P.split_units(units[::-1] + units, 0.3, 0) == got  # order and repeats do not matter
    assert len(P.split_units(units, 0.3, 1)) == 3 and P.split_units(units, 0.3, 1) != got
    assert P.split_units(units, 0.0, 0) == set() and P.split_units(units, 1.0, 0) == set(units)
    assert P.split_units([1, 2, 3, 4], 0.5, 0) <= {"1", "2", "3", "4"}  # ids compared as text
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="split fraction must be in"):
            P.split_units(units, bad, 0)


def test_carve_validation_moves_whole_train_users_never_test():
    rows = [(c, "test" if i % 4 == 0 else "train", f"{c}{i}") for c in ("Chile", "Mexico")
            for i in range(20) for _ in range(2)]  # two pairs per user
    df = table(rows)
    df.index = [0] * len(df)  # a repeated index (as after a concat) must not leak into test
    out = P.carve_validation(df, 0.5, seed=0)
    assert (out["split"][df["split"].to_numpy() == "test"] == "test").all()
    # per country: 15 train users, round(0.5 * 15) = 8 move (2 pairs each)
    assert out["split"].value_counts().to_dict() == {"train": 28, "val": 32, "test": 20}
    for country, sub in out.groupby("country"):
        val = set(sub.loc[sub.split == "val", "user_id"])
        train = set(sub.loc[sub.split == "train", "user_id"])
        assert not val & train  # whole users move
        before = set(df.loc[(df.country == country).to_numpy() & (df.split == "train"), "user_id"])
        assert val == P.split_units(sorted(before), 0.5, 0)
    assert (df["split"] != "val").all()  # the input is not modified


def test_text_key_stable_and_separated():
    # sha256 of b"Hello\x1fWorld", computed independently with `printf 'Hello\x1fWorld' | sha256sum`
    assert P.text_key("Hello", "World") == (
        "9fe288e1c205736468a7adbca6ee2ebbb91191953e62101573aafc9a0ed8f449")
    assert P.text_key("ab", "c") != P.text_key("a", "bc")


def test_file_fingerprint(tmp_path):
    (tmp_path / "a").write_bytes(b"ab")
    (tmp_path / "b").write_bytes(b"c")
    # sha256(b"abc")[:16], the textbook test vector
    assert P.file_fingerprint(tmp_path / "a", tmp_path / "b") == "ba7816bf8f01cfea"


def test_distinct_texts():
    df = table([("Chile", "train", "u1"), ("Chile", "train", "u1"), ("Chile", "train", "u2")])
    df.loc[1, "rejected"] = "worse"
    got = P.distinct_texts(df)
    assert sorted(map(tuple, got[["prompt", "response"]].to_numpy())) == [
        ("x-u1", "bad"), ("x-u1", "good"), ("x-u1", "worse"), ("x-u2", "bad"), ("x-u2", "good")]
