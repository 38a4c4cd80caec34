"""`fairsift probe` end to end on real FairFace images and a tiny country fixture, with the tiny test model.

Every number in the probe tables is recomputed here from the predictions tables (pandas) or the stored embeddings
(numpy), so a wrong grouping, a wrong n or a metric computed on the wrong rows fails a test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pandas as pd
import pytest

from audit.probes import ProbeOptions, run_probes
from audit.probes.association import effect_size, permutation_p_value, association_scores
from audit.probes.fairface import read_labels
from audit.probes.geography import CountryNames, read_country_csv
from audit.probes.options import parse_dataset
from audit.prompts import PROMPTS_DIR, load_prompt_file
from curate.schemas import AUDIT

REPO = Path(__file__).resolve().parents[1]
FAIRFACE = REPO / "tests" / "data" / "fairface"  # 10 per race x gender cell of ../shared's sample
COUNTRY_CSV = REPO / "tests" / "data" / "probes" / "countries.csv"
PER_CELL = 10
N_BOOT = 200


def fairface_subset(folder: Path, per_cell: int) -> Path:
    """A labels.csv of `per_cell` images per race x gender cell, pointing at the real images."""
    labels = pd.read_csv(FAIRFACE / "labels.csv", dtype=str)
    subset = labels.groupby(["race", "gender"], sort=False).head(per_cell).copy()
    subset["file"] = [str(FAIRFACE / f) for f in subset["file"]]
    folder.mkdir(parents=True, exist_ok=True)
    subset.to_csv(folder / "labels.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    ff = fairface_subset(root / "fairface", PER_CELL)
    # a second country list with an image that cannot be read: it must become a row with a status, not a crash
    broken = root / "broken" / "countries.csv"
    broken.parent.mkdir()
    (broken.parent / "not_an_image.jpg").write_bytes(b"this is not a jpeg")
    pd.DataFrame({"file": [str(REPO / "pipelines/sample/images/ccby_00b6269cf7ccd74a.jpg"), "not_an_image.jpg",
                           "missing.jpg"],
                  "country": ["NZ", "France", "JP"]}).to_csv(broken, index=False)
    out = root / "out"
    opts = ProbeOptions(model="tiny-test", datasets=[f"fairface:{ff}", f"country:{COUNTRY_CSV}", f"country:{broken}"],
                        device="cpu", n_boot=N_BOOT, seed=0, n_permutations=2000)
    counts = run_probes(opts, out)
    return {"out": out, "labels": pd.read_csv(ff / "labels.csv", dtype=str), "counts": counts, "ff": ff,
            "broken": broken}


def table(probe, name: str) -> pd.DataFrame:
    return pd.read_parquet(probe["out"] / f"{name}.parquet")


def test_every_table_is_written_with_its_columns(probe):
    extras = {
        "probe_fairface": ["task", "dataset"],
        "probe_harmful_labels": ["with_child_labels", "dataset"],
        "probe_country": ["dataset"],
        "probe_association": ["test", "x_group", "y_group", "a_set", "b_set", "n_x", "n_y", "n_permutations"],
    }
    for name, extra in extras.items():
        frame = table(probe, name)
        assert list(frame.columns[: len(AUDIT.names)]) == AUDIT.names, name
        assert set(extra) <= set(frame.columns), name
        assert frame["step"].isna().all() and len(frame) > 0
    assert set(table(probe, "probe_fairface")["metric"]) == {"accuracy", "demographic_parity_difference",
                                                             "equalized_odds_difference"}
    assert set(table(probe, "probe_harmful_labels")["metric"]) == {"non_human_rate", "crime_rate"}
    assert set(table(probe, "probe_association")["metric"]) == {"weat_effect_size", "weat_p_value"}
    preds = table(probe, "predictions_fairface")
    for column in ["file", "race", "gender", "age", "status", "pred_race", "pred_gender", "pred_age",
                   "race_top_labels", "race_top_scores", "image_embedding"]:
        assert column in preds.columns
    assert preds["race_top_labels"].map(len).eq(5).all() and preds["gender_top_labels"].map(len).eq(2).all()
    for name in ("predictions_harmful_labels", "predictions_country", "association_words"):
        assert len(table(probe, name)) > 0
    used = json.loads((probe["out"] / "prompts_used.json").read_text())
    assert used == {name: load_prompt_file(name) for name in ("fairface", "weat", "country211")}
    manifest = json.loads((probe["out"] / "manifest.json").read_text())
    assert manifest["model"]["is_test_model"] is True and manifest["model"]["weights_sha256"]
    assert [d["kind"] for d in manifest["datasets"]] == ["fairface", "country", "country"]
    assert manifest["prompt_files"] == {"fairface": "1.0", "weat": "1.0", "country211": "1.0"}
    assert manifest["versions"]["fairlearn"]


def test_n_per_group_equals_the_label_counts(probe):
    labels = probe["labels"]
    fairface, harmful = table(probe, "probe_fairface"), table(probe, "probe_harmful_labels")
    for attribute in ("race", "gender", "age"):
        expected = labels[attribute].value_counts().to_dict()
        for frame, metric in ((fairface, "accuracy"), (harmful, "crime_rate")):
            rows = frame[(frame["attribute"] == attribute) & (frame["metric"] == metric) & (frame["group"] != "all")]
            for _, group_rows in rows.groupby([c for c in ("task", "with_child_labels") if c in rows.columns]):
                assert dict(zip(group_rows["group"], group_rows["n"])) == expected
    assert len(labels) == PER_CELL * 14
    all_rows = fairface[(fairface["group"] == "all") & (fairface["metric"] == "accuracy")]
    assert (all_rows["n"] == len(labels)).all()


def test_accuracy_is_recomputed_from_the_predictions(probe):
    preds, rows = table(probe, "predictions_fairface"), table(probe, "probe_fairface")
    rows = rows[rows["metric"] == "accuracy"]
    checked = 0
    for task in ("race", "gender", "age"):
        correct = preds[f"pred_{task}"] == preds[task]
        for attribute in ("race", "gender", "age", "age_band"):
            expected = correct.groupby(preds[attribute]).mean().to_dict()
            expected["all"] = correct.mean()
            got = rows[(rows["task"] == task) & (rows["attribute"] == attribute)]
            assert dict(zip(got["group"], got["value"])) == pytest.approx(expected)
            checked += len(got)
    assert checked == len(rows)


def test_harmful_label_rates_are_recomputed_from_the_predictions(probe):
    preds, rows = table(probe, "predictions_harmful_labels"), table(probe, "probe_harmful_labels")
    prompts = load_prompt_file("fairface")["harmful_labels"]
    base = {entry["label"] for entry in prompts["labels"]}
    assert len(base) == 21  # 14 race x gender + 4 non-human + 3 crime-related, as in CLIP's Table 6
    for with_child, variant in preds.groupby("with_child_labels"):
        assert len(variant) == PER_CELL * 14
        allowed = base | ({e["label"] for e in prompts["child_labels"]} if with_child else set())
        assert set(variant["pred_label"]) <= allowed
        assert variant["top_labels"].map(set).map(lambda s: s <= allowed).all()
        for metric, category in (("non_human_rate", "non_human"), ("crime_rate", "crime")):
            hit = variant["pred_category"] == category
            for attribute in ("race", "gender", "age", "age_band"):
                expected = hit.groupby(variant[attribute]).mean().to_dict()
                expected["all"] = hit.mean()
                got = rows[(rows["with_child_labels"] == with_child) & (rows["metric"] == metric)
                           & (rows["attribute"] == attribute)]
                assert dict(zip(got["group"], got["value"])) == pytest.approx(expected)


def test_confidence_intervals_lie_in_0_1_and_bracket_the_value(probe):
    for name in ("probe_fairface", "probe_harmful_labels", "probe_country"):
        rows = table(probe, name)
        rates = rows[rows["metric"].isin(["accuracy", "region_accuracy", "non_human_rate", "crime_rate"])]
        assert rates[["value", "ci_low", "ci_high"]].notna().all().all(), name
        assert ((rates["ci_low"] >= 0) & (rates["ci_high"] <= 1)).all(), name
        assert ((rates["ci_low"] <= rates["value"] + 1e-12) & (rates["value"] <= rates["ci_high"] + 1e-12)).all(), name
    # a group's interval narrows with its size: 'all' (140 images) is narrower than any race (20 images)
    acc = table(probe, "probe_fairface")
    acc = acc[(acc["metric"] == "accuracy") & (acc["task"] == "gender") & (acc["attribute"] == "race")]
    width = (acc["ci_high"] - acc["ci_low"]).set_axis(acc["group"])
    assert width["all"] < width.drop("all").max()


def test_fairness_differences_of_gender_prediction_across_races(probe):
    preds, rows = table(probe, "predictions_fairface"), table(probe, "probe_fairface")
    female_pred = preds["pred_gender"] == "Female"
    female_true = preds["gender"] == "Female"
    selection = female_pred.groupby(preds["race"]).mean()
    tpr = female_pred[female_true].groupby(preds["race"][female_true]).mean()
    fpr = female_pred[~female_true].groupby(preds["race"][~female_true]).mean()
    expected = {
        "demographic_parity_difference": selection.max() - selection.min(),
        "equalized_odds_difference": max(tpr.max() - tpr.min(), fpr.max() - fpr.min()),
    }
    for metric, value in expected.items():
        row = rows[rows["metric"] == metric].iloc[0]
        assert (row["attribute"], row["task"], row["n"], row["positive_label"]) == ("race", "gender", 140, "Female")
        assert row["value"] == pytest.approx(value)
        assert 0 <= row["ci_low"] <= row["ci_high"] <= 1


def test_rate_cis_are_exact_intervals_and_small_groups_are_flagged(probe):
    """Rates carry Clopper-Pearson intervals (statsmodels as oracle), never [0, 0] at 0/n; every row has
    flag_low_n against the probe's min_count."""
    from statsmodels.stats.proportion import proportion_confint

    preds, rows = table(probe, "predictions_fairface"), table(probe, "probe_fairface")
    ours = rows[(rows["task"] == "race") & (rows["attribute"] == "gender") & (rows["metric"] == "accuracy")]
    ours = ours.set_index("group")
    for group in ("Female", "Male"):
        sub = preds[preds["gender"] == group]
        k, n = int((sub["race"] == sub["pred_race"]).sum()), len(sub)
        assert (ours.loc[group, "ci_low"], ours.loc[group, "ci_high"]) == pytest.approx(
            tuple(np.nan_to_num(proportion_confint(k, n, method="beta"), nan=1.0)), abs=1e-9)
    for name in ("probe_fairface", "probe_harmful_labels", "probe_association"):
        t = table(probe, name)
        assert "flag_low_n" in t and (t["min_count"] == 30).all(), name
        assert (t["flag_low_n"] == (t[["n_x", "n_y"]].min(axis=1) if "n_x" in t else t["n"]).lt(30)).all(), name
    harmful = table(probe, "probe_harmful_labels")
    zero = harmful[(harmful["value"] == 0) & (harmful["n"] > 0)]
    assert ((zero["ci_high"] > 0) & (zero["ci_low"] == 0)).all()  # 0 of n is not [0, 0]


def test_group_rows_interval_at_0_of_100():
    from audit.probes.group_metrics import group_rows, rate_of

    y = np.array(["a"] * 100, dtype=object)
    pred = np.array(["not crime"] * 100, dtype=object)
    rows = group_rows(y, pred, pd.Series(["g"] * 100, name="attr"), [rate_of("crime_rate", "crime")], n_boot=100,
                      seed=0)
    g = next(r for r in rows if r["group"] == "g")
    assert g["value"] == 0 and g["ci_low"] == 0 and g["ci_high"] == pytest.approx(0.0362, abs=1e-4)  # Wilson: 0.037


def test_weat_p_values_are_holm_corrected_across_tests_and_streams_keyed_by_name():
    from audit.probes.association import association_rows

    rng = np.random.default_rng(4)
    dim = 16
    images = unit(rng.normal(size=(60, dim)))
    groups = pd.DataFrame({"g": ["x"] * 30 + ["y"] * 30, "h": (["u"] * 15 + ["v"] * 15) * 2})
    words = {"A": unit(rng.normal(size=(5, dim))), "B": unit(rng.normal(size=(5, dim)))}
    tests = [{"name": f"t{i}", "attribute": a, "x": x, "y": y, "a": "A", "b": "B"}
             for i, (a, x, y) in enumerate([("g", "x", "y"), ("h", "u", "v"), ("g", "y", "x")])]
    rows = pd.DataFrame(association_rows(images, groups, words, {"tests": tests}, 50, 500, seed=0))
    p = rows[rows["metric"] == "weat_p_value"].set_index("test")["value"]
    adjusted = rows[rows["metric"] == "weat_p_value"].set_index("test")["p_adjusted"]
    order = p.sort_values().index
    m = len(p)
    expected = np.minimum(np.maximum.accumulate([(m - i) * p[t] for i, t in enumerate(order)]), 1)
    assert adjusted[order].to_numpy() == pytest.approx(expected)
    # the first test's numbers do not move when another test is listed before it
    again = pd.DataFrame(association_rows(images, groups, words, {"tests": [tests[1], tests[0]]}, 50, 500, seed=0))
    first = lambda r: r[(r["test"] == "t0") & (r["metric"] == "weat_effect_size")].iloc[0]  # noqa: E731
    assert (first(rows)["ci_low"], first(rows)["p_value"]) == (first(again)["ci_low"], first(again)["p_value"])


def test_country_probe_per_country_and_region(probe):
    rows, preds = table(probe, "probe_country"), table(probe, "predictions_country")
    fixture = preds[preds["dataset"] == str(COUNTRY_CSV)]
    assert fixture["country"].tolist() == ["US", "US", "US", "US", "GB", "TW", "NZ"]
    assert fixture["region"].tolist() == ["Americas"] * 4 + ["Europe", "Asia", "Oceania"]
    assert (fixture["status"] == "success").all()
    classes = {c["code"] for c in load_prompt_file("country211")["classes"]}
    assert set(fixture["pred_country"]) <= classes and len(classes) == 211
    mine = rows[rows["dataset"] == str(COUNTRY_CSV)]
    n = mine[(mine["metric"] == "accuracy") & (mine["attribute"] == "country")].set_index("group")["n"].to_dict()
    assert n == {"US": 4, "GB": 1, "TW": 1, "NZ": 1, "all": 7}
    for metric, truth, pred in (("accuracy", "country", "pred_country"), ("region_accuracy", "region", "pred_region")):
        correct = fixture[pred] == fixture[truth]
        for attribute in ("country", "region"):
            expected = correct.groupby(fixture[attribute]).mean().to_dict()
            expected["all"] = correct.mean()
            got = mine[(mine["metric"] == metric) & (mine["attribute"] == attribute)]
            assert dict(zip(got["group"], got["value"])) == pytest.approx(expected)


def test_unreadable_images_are_rows_with_a_status_and_left_out_of_the_metrics(probe):
    preds = table(probe, "predictions_country")
    broken = preds[preds["dataset"] == str(probe["broken"])].set_index("file")
    assert broken.loc["not_an_image.jpg", "status"] == "failed_to_read_image"
    assert "missing.jpg" in broken.loc["missing.jpg", "error_message"]
    assert broken.loc["missing.jpg", "pred_country"] is None
    rows = table(probe, "probe_country")
    rows = rows[(rows["dataset"] == str(probe["broken"])) & (rows["metric"] == "accuracy")
                & (rows["attribute"] == "country")]
    assert rows.set_index("group")["n"].to_dict() == {"NZ": 1, "all": 1}
    assert probe["counts"]["images_failed"] == 2


def weat_by_hand(x, y, a, b):
    """WEAT's effect size written out independently: Caliskan et al. 2017, eq. for d."""
    def s(w):
        return np.mean([w @ ai for ai in a]) - np.mean([w @ bi for bi in b])

    sx, sy = [s(w) for w in x], [s(w) for w in y]
    return (np.mean(sx) - np.mean(sy)) / np.std(sx + sy, ddof=1)


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_weat_finds_a_planted_association_and_not_a_missing_one():
    rng = np.random.default_rng(3)
    dim = 32
    direction_a, direction_b = np.eye(dim)[0], np.eye(dim)[1]
    a = unit(direction_a + 0.3 * rng.normal(size=(8, dim)))
    b = unit(direction_b + 0.3 * rng.normal(size=(8, dim)))
    x = unit(direction_a + rng.normal(size=(40, dim)) * 0.3)
    y = unit(direction_b + rng.normal(size=(40, dim)) * 0.3)
    planted = effect_size(x, y, a, b)
    assert planted == pytest.approx(weat_by_hand(x, y, a, b))
    assert planted > 1.5
    s = association_scores(np.vstack([x, y]), a, b)
    assert permutation_p_value(s[:40], s[40:], 5000, np.random.default_rng(0)) < 0.001

    same = unit(rng.normal(size=(80, dim)))
    none = effect_size(same[:40], same[40:], a, b)
    assert none == pytest.approx(weat_by_hand(same[:40], same[40:], a, b))
    assert abs(none) < 0.6
    s = association_scores(same, a, b)
    assert permutation_p_value(s[:40], s[40:], 5000, np.random.default_rng(0)) > 0.05


def test_weat_rows_are_recomputed_from_the_stored_embeddings(probe):
    preds, words, rows = table(probe, "predictions_fairface"), table(probe, "association_words"), \
        table(probe, "probe_association")
    images = np.stack(preds["image_embedding"].to_numpy()).astype(np.float64)
    sets = {name: np.stack(g["text_embedding"].to_numpy()).astype(np.float64) for name, g in words.groupby("set")}
    tests = load_prompt_file("weat")["tests"]
    assert set(rows["test"]) == {t["name"] for t in tests}
    for t in tests:
        x = images[(preds[t["attribute"]] == t["x"]).to_numpy()]
        y = images[(preds[t["attribute"]] == t["y"]).to_numpy()]
        got = rows[rows["test"] == t["name"]].set_index("metric")
        assert got.loc["weat_effect_size", "value"] == pytest.approx(weat_by_hand(x, y, sets[t["a"]], sets[t["b"]]),
                                                                  abs=1e-5)
        assert (got.loc["weat_effect_size", "n_x"], got.loc["weat_effect_size", "n_y"]) == (len(x), len(y))
        assert got.loc["weat_effect_size", "ci_low"] <= got.loc["weat_effect_size", "ci_high"]
        assert 1 / 2001 <= got.loc["weat_p_value", "value"] <= 1


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="KIND:PATH"):
        parse_dataset("imagenet:/data")
    with pytest.raises(FileNotFoundError, match="FairFace folder not found"):
        parse_dataset(f"fairface:{tmp_path / 'nope'}")
    (tmp_path / "labels.csv").write_text("file,age,gender,race\na.jpg,20-29,Female,Martian\n")
    with pytest.raises(ValueError, match=r"row 2, field 'race': 'Martian'"):
        read_labels(tmp_path, load_prompt_file("fairface"))
    bad = tmp_path / "countries.csv"
    bad.write_text("file,country\na.jpg,FR\nb.jpg,Atlantis\n")
    with pytest.raises(ValueError, match=r"countries.csv row 3, field 'country': 'Atlantis'"):
        read_country_csv(bad, CountryNames(load_prompt_file("country211")))
    bad.write_text("path,country\na.jpg,FR\n")
    with pytest.raises(ValueError, match="lacks columns \\['file'\\]"):
        read_country_csv(bad, CountryNames(load_prompt_file("country211")))


def test_country_names_normalise_to_country211_codes():
    names = CountryNames(load_prompt_file("country211"))
    assert [names.code(v) for v in ("United States", "us", "USA", "Czech Republic", "Czechia", "DR Congo",
                                    "Kosovo", "XK", "Côte d'Ivoire")] == \
        ["US", "US", "US", "CZ", "CZ", "CD", "XK", "XK", "CI"]
    assert names.code("Atlantis") is None


def test_prompt_files_are_versioned_and_cite_sources():
    files = sorted(PROMPTS_DIR.glob("*.json"))
    assert {f.stem for f in files} >= {"fairface", "weat", "country211", "perceived"}
    for path in files:
        data = load_prompt_file(path.stem)
        assert data["version"] and data["sources"], path


def test_cli_probe_runs_and_is_deterministic(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    ff = fairface_subset(tmp_path / "ff", 2)
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = CliRunner().invoke(app, ["probe", "--model", "tiny-test", "--dataset", f"fairface:{ff}",
                                          "--dataset", f"country:{COUNTRY_CSV}", "--out", str(out), "--n-boot", "50",
                                          "--device", "cpu"])
        assert result.exit_code == 0, result.output
        outputs.append(out)
    for stem in ("probe_fairface", "probe_harmful_labels", "probe_association", "probe_country",
                 "predictions_fairface"):
        pd.testing.assert_frame_equal(pd.read_parquet(outputs[0] / f"{stem}.parquet"),
                                      pd.read_parquet(outputs[1] / f"{stem}.parquet"))
    bad = CliRunner().invoke(app, ["probe", "--model", "tiny-test", "--dataset", "nope:x", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "KIND:PATH" in bad.output
