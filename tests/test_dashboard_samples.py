"""The dashboard's Samples page on the demo run: several groups at once, the selection's uids as a download, and
the nearest-pair search box (the same `fairsift search` as the terminal). Counts are checked against pandas."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboards.queries import RunData

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboards" / "app.py")


@pytest.fixture(scope="module")
def run_dir(demo_run):
    return demo_run[0]


def _samples_page(run_dir: Path) -> AppTest:
    os.environ["FAIRSIFT_RUN"] = str(run_dir)
    os.environ.pop("FAIRSIFT_RUN2", None)
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.sidebar.radio(key="page").set_value("Samples").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _groups(run_dir: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((run_dir / "signals" / "groups").glob("part-*.parquet"))])


def test_several_groups_at_once_and_the_selection_download(run_dir):
    groups = _groups(run_dir)
    counts = groups["gender_terms"].value_counts()
    two = sorted(counts.index[:2])
    shards = pd.concat([pd.read_parquet(p, columns=["uid"]) for p in sorted((run_dir / "shards").glob("*.parquet"))])
    expected = sorted(set(shards["uid"]) & set(groups.loc[groups["gender_terms"].isin(two), "uid"]))

    at = _samples_page(run_dir)
    at.multiselect(key="s_attrs").set_value(["gender_terms"]).run()
    at.multiselect(key="s_groups_gender_terms").set_value(two).run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"{len(expected):,} samples match" in at.number_input(key="s_page").label
    labels = [b.proto.label for b in at.get("download_button")]
    assert any(f"{len(expected):,} selected uids (CSV)" in label for label in labels)

    data = RunData(run_dir)
    selected = data.sample_uids(groups={"gender_terms": two})
    assert selected["uid"].tolist() == expected
    # two attributes: both must hold
    one_age = groups["age_terms"].value_counts().index[0]
    both = data.sample_uids(groups={"gender_terms": two, "age_terms": [one_age]})
    oracle = groups[groups["gender_terms"].isin(two) & (groups["age_terms"] == one_age)]["uid"]
    assert both["uid"].tolist() == sorted(set(oracle) & set(shards["uid"]))
    buffer = io.BytesIO()
    selected.to_parquet(buffer, index=False)
    assert pd.read_parquet(io.BytesIO(buffer.getvalue()))["uid"].tolist() == expected


def test_search_box_gives_the_same_neighbours_as_the_cli(run_dir):
    uid = pd.read_parquet(sorted((run_dir / "signals" / "embeddings").glob("part-*.parquet"))[0], columns=["uid"])[
        "uid"].iloc[0]
    cli = subprocess.run([sys.executable, "-m", "pipelines.cli", "search", str(run_dir), "--uid", uid, "-k", "4",
                          "--format", "json"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    expected = [r["uid"] for r in json.loads(cli.stdout)["results"]]

    at = _samples_page(run_dir)
    at.radio(key="s_qmode").set_value("uid").run()
    at.number_input(key="s_qk").set_value(4).run()
    at.text_input(key="s_q").set_value(uid).run()
    assert not at.exception, [e.value for e in at.exception]
    texts = "\n".join(t.value for t in at.text)
    assert texts.count("cosine ") == 4
    for other in expected:
        assert f"uid {other[:12]}" in texts
    at.text_input(key="s_q").set_value("not-a-uid").run()
    assert any("has no stored embedding" in e.value for e in at.error)
