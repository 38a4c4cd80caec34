"""Composition, caption/ccTLD agreement and gender co-occurrence against pandas and plain-Python recomputations."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from textblob.en.taggers import PatternTagger

from audit.composition import composition, geo_agreement
from audit.cooccurrence import GENDER_WORDS_PATH, PROFESSIONS_PATH, cooccurrence, load_professions, plural
from tests.synthetic_audit_run import make_frames


@pytest.fixture(scope="module")
def frames():
    return make_frames()


@pytest.fixture(scope="module")
def frame(frames) -> pd.DataFrame:
    return (frames["decisions"].merge(frames["groups"], on="uid", how="left")
            .merge(frames["pairs"][["uid", "caption"]], on="uid", how="left"))


@pytest.fixture(scope="module")
def populations(frame):
    return {"downloaded": frame["pass_download"], "kept": frame["kept"]}


def test_composition_shares_match_value_counts(frame, populations):
    table = composition(frame, ["gender_terms", "country"], populations, min_count=100)
    for (population, attribute), got in table.groupby(["population", "attribute"]):
        rows = frame.loc[populations[population]]
        counts = rows[attribute].fillna("(missing)").value_counts()
        got = got.set_index("group")
        # every group of the attribute is in every population, n = 0 where the filters left none
        everyone = frame[attribute].fillna("(missing)").unique()
        assert set(got.index) == set(everyone)
        assert (got.drop(index=counts.index)["n"] == 0).all()
        got = got.loc[counts.index]
        assert got["n"].tolist() == counts.tolist()
        assert (got["total"] == len(rows)).all()
        assert got["value"].to_numpy() == pytest.approx((counts / len(rows)).to_numpy())
        assert got["value"].sum() == pytest.approx(1.0)
        assert got["flag_low_n"].tolist() == (counts < 100).tolist()
        assert (got["min_count"] == 100).all()
        for group in counts.index:
            ci = proportion_confint(int(counts[group]), len(rows), method="beta")
            assert (got.loc[group, "ci_low"], got.loc[group, "ci_high"]) == pytest.approx(ci)
    assert set(table["population"]) == {"downloaded", "kept"}
    assert table["step"].isna().all() and (table["metric"] == "share").all()
    assert "(missing)" in set(table.loc[table["attribute"] == "country", "group"])  # null countries shown, not hidden


def test_geo_agreement_matches_pandas(frame, populations):
    table = geo_agreement(frame, populations["downloaded"], min_count=150)
    rows = frame.loc[populations["downloaded"]]
    # the domain's country: the page's ccTLD when known, else the image URL's
    both = pd.DataFrame({"cctld": rows["page_cctld_country"].fillna(rows["url_cctld_country"]),
                         "caption": rows["caption_country"]}).dropna()
    agree = both["cctld"] == both["caption"]
    assert 0 < (rows["page_cctld_country"].notna() & rows["caption_country"].notna()).sum() < len(both)
    overall = table.set_index("group").loc["(all)"]
    assert overall["n"] == len(both) and overall["n_agree"] == agree.sum()
    assert overall["value"] == pytest.approx(agree.mean())
    per = agree.groupby(both["cctld"]).agg(["sum", "size"])
    got = table.set_index("group").loc[per.index]
    assert got["n"].tolist() == per["size"].tolist() and got["n_agree"].tolist() == per["sum"].tolist()
    assert got["flag_low_n"].tolist() == (per["size"] < 150).tolist()
    ci = proportion_confint(int(per["sum"].iloc[0]), int(per["size"].iloc[0]), method="beta")
    assert (got["ci_low"].iloc[0], got["ci_high"].iloc[0]) == pytest.approx(ci)


def test_geo_agreement_without_the_signal_columns_is_empty(frame, populations):
    assert len(geo_agreement(frame.drop(columns=["caption_country"]), populations["downloaded"])) == 0
    url_only = geo_agreement(frame.drop(columns=["page_cctld_country"]), populations["downloaded"])
    rows = frame.loc[populations["downloaded"], ["url_cctld_country", "caption_country"]].dropna()
    assert url_only["n"].iloc[0] == len(rows)


def test_groups_a_filter_removes_entirely_stay_with_n_0():
    frame = pd.DataFrame({"lang": ["en"] * 6 + ["xx"] * 3, "kept": [True] * 4 + [False] * 5})
    table = composition(frame, ["lang"], {"downloaded": pd.Series(True, index=frame.index), "kept": frame["kept"]},
                        min_count=2)
    kept = table[table["population"] == "kept"].set_index("group")
    assert kept.loc["xx", "n"] == 0 and kept.loc["xx", "value"] == 0 and kept.loc["xx", "total"] == 4
    assert kept.loc["xx", "ci_high"] > 0  # an interval for a share of 0 of 4


def test_cooccurrence_intervals_are_seeded_by_name_and_contain_the_value(frame, populations):
    a = cooccurrence(frame["caption"], frame["gender_terms"], populations, top_words=0, n_boot=300, seed=1)
    b = cooccurrence(frame["caption"], frame["gender_terms"], {"kept": populations["kept"],
                     "downloaded": populations["downloaded"]}, top_words=0, n_boot=300, seed=1)
    key = ["population", "group", "word", "metric"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    assert np.allclose(a["ci_low"], b["ci_low"], equal_nan=True)  # the order of populations changes nothing
    inside = a.dropna(subset=["value"])
    assert ((inside["ci_low"] <= inside["value"] + 1e-12) & (inside["value"] <= inside["ci_high"] + 1e-12)).mean() > 0.9
    assert (a["ci_high"] > a["ci_low"]).sum() == a["ci_low"].notna().sum()


def test_plural_forms():
    assert [plural(w) for w in ["nurse", "policeman", "nanny", "boss", "coach", "attorney"]] == [
        "nurses", "policemen", "nannies", "bosses", "coaches", "attorneys"]
    forms = load_professions()
    assert forms["taxi drivers"] == "taxi driver" and forms["businessmen"] == "businessman"


def _npmi(n_gw, n_g, n_w, n):
    if n_gw == 0:
        return -1.0
    return math.log((n_gw / n) / ((n_g / n) * (n_w / n))) / -math.log(n_gw / n)


def _recompute(frame: pd.DataFrame, mask: pd.Series, words: dict[str, list[str]]):
    """Plain-Python co-occurrence counts: a caption mentions a word if any of its forms occurs as whole words."""
    rows = frame.loc[mask & frame["caption"].notna()]
    n = len(rows)
    events = {"female": rows["gender_terms"].isin(["female", "both"]).to_numpy(),
              "male": rows["gender_terms"].isin(["male", "both"]).to_numpy()}
    result = {}
    for word, forms in words.items():
        pattern = re.compile(r"\b(" + "|".join(re.escape(f) for f in forms) + r")\b", re.IGNORECASE)
        has = rows["caption"].map(lambda c: bool(pattern.search(c))).to_numpy()
        for g, event in events.items():
            result[(g, word)] = (int((has & event).sum()), int(event.sum()), int(has.sum()), n)
    return result


def test_cooccurrence_professions_match_regex_counts(frame, populations):
    table = cooccurrence(frame["caption"], frame["gender_terms"], populations, top_words=0, min_count=30)
    professions = [p for p, _, _ in json.loads(PROFESSIONS_PATH.read_text())]
    forms = {p.replace("_", " "): [p.replace("_", " "), " ".join(p.split("_")[:-1] + [plural(p.split("_")[-1])])]
             for p in professions}
    for population in ("downloaded", "kept"):
        expected = _recompute(frame, populations[population], forms)
        got = table[(table["population"] == population) & (table["metric"] == "npmi")]
        present = {k for k, v in expected.items() if v[2] > 0}
        assert set(zip(got["group"], got["word"])) == present
        for row in got.itertuples():
            n_gw, n_g, n_w, n = expected[(row.group, row.word)]
            assert (row.n_gw, row.n_g, row.n_w, row.n_docs, row.n) == (n_gw, n_g, n_w, n, n_gw)
            assert row.value == pytest.approx(_npmi(n_gw, n_g, n_w, n))
            assert row.flag_low_n == (n_gw < 30)
        diff = table[(table["population"] == population) & (table["metric"] == "npmi_difference")].set_index("word")
        for word in diff.index:
            f, m = expected[("female", word)], expected[("male", word)]
            assert diff.loc[word, "value"] == pytest.approx(_npmi(*f) - _npmi(*m))
            assert diff.loc[word, "group"] == "female-male"
    # the synthetic captions pair nurses with women more often than chance
    nurse = table[(table["population"] == "downloaded") & (table["word"] == "nurse")
                  & (table["metric"] == "npmi_difference")]
    assert nurse["value"].iloc[0] > 0.1
    assert set(table["word_kind"]) == {"profession"}


def test_cooccurrence_top_nouns_match_python_counting(frame, populations):
    table = cooccurrence(frame["caption"], frame["gender_terms"], populations, top_words=8, min_count=30)
    top = table[table["word_kind"] == "noun"]
    downloaded = frame.loc[populations["downloaded"] & frame["caption"].notna(), "caption"]
    excluded = set(ENGLISH_STOP_WORDS) | {w.lower() for w in json.loads(GENDER_WORDS_PATH.read_text())}
    doc_freq = Counter(w for c in downloaded for w in set(re.findall(r"[a-z]{2,}", c.lower())) if w not in excluded)
    # nouns: tagged NN/NNS by textblob's Pattern tagger in at least half of their occurrences (all captions here)
    tags = Counter((w, t in ("NN", "NNS")) for c in downloaded for w, t in PatternTagger().tag(c.lower()))
    nouns = {w for w in doc_freq if tags[(w, True)] and tags[(w, True)] >= tags[(w, False)]}
    expected_words = sorted(nouns, key=lambda w: (-doc_freq[w], w))[:8]
    assert set(top["word"]) == set(expected_words)
    assert not {"man", "woman", "mother", "the", "at"} & set(top["word"])
    expected = _recompute(frame, populations["kept"], {w: [w] for w in expected_words})
    kept = top[(top["population"] == "kept") & (top["metric"] == "npmi")]
    for row in kept.itertuples():
        assert (row.n_gw, row.n_g, row.n_w, row.n_docs) == expected[(row.group, row.word)]
        assert row.value == pytest.approx(_npmi(*expected[(row.group, row.word)]))
    assert set(table["word_kind"]) == {"profession", "noun"}


def test_top_words_are_nouns_not_adjectives_or_verbs():
    captions = pd.Series(["black dress with long sleeves", "a woman holds a black bag", "blue dress on a man",
                          "a man holds a long stick", "red bag and blue dress", "black and white photo of a woman"])
    gender = pd.Series(["none", "female", "male", "male", "none", "female"])
    table = cooccurrence(captions, gender, {"downloaded": pd.Series(True, index=captions.index)},
                         top_words=3, min_count=1)
    words = set(table.loc[table["word_kind"] == "noun", "word"])
    assert words == {"dress", "bag", "photo"}  # not black/long/holds, though as frequent or more


def test_cooccurrence_both_counts_for_each_gender():
    captions = pd.Series(["a man and a woman nurse", "a woman nurse", "a man", "a nurse", None])
    gender = pd.Series(["both", "female", "male", "none", "none"])
    everyone = pd.Series([True] * 5)
    table = cooccurrence(captions, gender, {"downloaded": everyone}, top_words=0, min_count=1)
    nurse = table[(table["word"] == "nurse") & (table["metric"] == "npmi")].set_index("group")
    assert nurse.loc["female", "n_gw"] == 2 and nurse.loc["male", "n_gw"] == 1
    assert nurse.loc["female", "n_docs"] == 4  # the row without caption is no document
    assert nurse.loc["male", "value"] == pytest.approx(_npmi(1, 2, 3, 4))
    assert np.isnan(table.loc[table["metric"] == "npmi_difference", "n_g"].astype(float)).all()
