"""The pair-table helpers: errors that explain themselves, splits that never leak."""

import pandas as pd
import pytest

from scpo import pairs as P


def table(rows):
    """rows of (country, split, user_id); texts derived from the user."""
    df = pd.DataFrame(rows, columns=["country", "split", "user_id"])
    df["tune_val"] = False
    df["group_id"] = df["user_id"]
    df["prompt"] = "x-" + df["user_id"]
    df["chosen"], df["rejected"] = "good", "bad"
    df["chosen_id"], df["rejected_id"] = "c", "r"
    return df[P.PAIR_COLUMNS]


PAIRS = table([("Chile", "train", "u1"), ("Chile", "train", "u1"), ("Chile", "test", "u2"),
               ("Mexico", "train", "u3"), ("Israel", "train", "u4")])
PAIRS.loc[4, "tune_val"] = True


def test_select_country_and_unknown_country_lists_counts():
    assert len(P.select_country(PAIRS, "Chile")) == 3
    with pytest.raises(KeyError, match=r"unknown country 'Peru'.*Chile \(3\), Israel \(1\), "
                                       r"Mexico \(1\)"):
        P.select_country(PAIRS, "Peru")


def test_country_counts_by_split():
    c = P.country_counts(PAIRS)
    assert c.loc["Chile"].tolist() == [2, 0, 1, 3]  # train, of which tune_val, test, total
    assert c.loc["Israel"].tolist() == [1, 1, 0, 1]
    assert c.index[0] == "Chile" and list(c.columns) == ["train", "tune_val", "test", "total"]


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


@pytest.mark.parametrize("n_rows", [1, 2, 7, 20, 60, 100, 101, 1000, 1500])
@pytest.mark.parametrize("test_frac,seed", [(0.15, 0), (0.15, 1), (0.3, 42), (0.5, 0)])
def test_paper_test_rows_is_datasets_train_test_split(n_rows, test_frac, seed):
    """The exact rows of datasets' Dataset.train_test_split(test_size, seed), n_test rounding
    included (datasets rounds up: 7 rows at 0.15 give 2 test rows, not round(1.05) = 1)."""
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"row": list(range(n_rows))})
    try:
        want = ds.train_test_split(test_size=test_frac, seed=seed)["test"]["row"]
    except ValueError:  # datasets refuses a split that leaves no training row
        with pytest.raises(ValueError, match="leaves no training row"):
            P.paper_test_rows(n_rows, test_frac, seed)
        return
    assert P.paper_test_rows(n_rows, test_frac, seed).tolist() == want


def test_paper_test_rows_counts_and_edges():
    assert len(P.paper_test_rows(7, 0.15, 0)) == 2  # ceil(1.05)
    assert len(P.paper_test_rows(101, 0.15, 0)) == 16  # ceil(15.15)
    assert len(P.paper_test_rows(60, 0.15, 0)) == 9
    assert P.paper_test_rows(50, 0.0, 0).tolist() == []
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"data.test_frac must be in \[0, 1\)"):
            P.paper_test_rows(10, bad, 0)


def test_unit_fraction_pinned_and_per_unit():
    # sha256(b"scpo-val:0:u1") read as a big-endian 64-bit fraction, computed by hand with
    # hashlib in a shell: int.from_bytes(digest[:8], "big") / 2**64
    import hashlib

    d = hashlib.sha256(b"scpo-val:0:u1").digest()
    assert P.unit_fraction(["u1"], 0)[0] == int.from_bytes(d[:8], "big") / 2.0**64
    a = P.unit_fraction(["u1", "u2", "u3"], 0)
    assert P.unit_fraction(["u3", "u1"], 0).tolist() == [a[2], a[0]]  # each alone
    assert P.unit_fraction(["u1"], 1)[0] != a[0]  # the seed matters


def test_validation_mask_whole_train_users_never_test_and_stable_under_removal():
    rows = [(c, "test" if i % 4 == 0 else "train", f"{c}{i}") for c in ("Chile", "Mexico")
            for i in range(40) for _ in range(2)]  # two pairs per user
    df = table(rows)
    df.index = [0] * len(df)  # a repeated index (as after a concat) must not leak into test
    val = P.validation_mask(df, 0.5, seed=0)
    assert not val[(df["split"] == "test").to_numpy()].any()
    users = df["user_id"].to_numpy()
    held = set(users[val])
    assert all(val[users == u].all() for u in held)  # whole users
    frac = P.unit_fraction(sorted(set(users)), 0)
    want = {u for u, f in zip(sorted(set(users)), frac) if f < 0.5} - set(
        df.loc[(df["split"] == "test").to_numpy(), "user_id"])
    assert held == want and 0 < len(held) < 60
    # removing one user (say one whose survey row had no country) moves nobody else
    gone = sorted(held)[0]
    keep = (df["user_id"] != gone).to_numpy()
    again = P.validation_mask(df[keep], 0.5, seed=0)
    assert set(df[keep]["user_id"].to_numpy()[again]) == held - {gone}
    with pytest.raises(ValueError, match=r"data.val_frac must be in \[0, 1\)"):
        P.validation_mask(df, 1.0, seed=0)


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
