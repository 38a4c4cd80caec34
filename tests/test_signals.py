"""signals/groups/ built from a real pairs table (1,000 LAION-style alt-texts written as two Parquet parts)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pycountry
import pytest

from audit import geo, lexicons, signals
from curate import tables
from curate.schemas import PAIRS, conform

# the first 2,000 (+2) of ../shared's 10,000 alt-texts, bundled with the tests
ALT_TEXTS = Path(__file__).resolve().parent / "data" / "captions" / "laion_style_alt_texts_2002.parquet"
VALID_ALPHA2 = {c.alpha_2 for c in pycountry.countries} | {"XK"}


def pairs_table(urls, captions, page_urls=None) -> pa.Table:
    n = len(urls)
    return conform(
        pa.table(
            {
                "uid": [tables.compute_uid(u, c) for u, c in zip(urls, captions)],
                "url": urls,
                "caption": captions,
                "page_url": page_urls if page_urls is not None else [None] * n,
                "source": ["ingest"] * n,
                "caption_source": ["alt"] * n,
                "caption_truncated": [False] * n,
            }
        ),
        PAIRS,
    )


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    src = pq.read_table(ALT_TEXTS).slice(0, 1000)
    urls, caps = src.column("URL").to_pylist(), src.column("TEXT").to_pylist()
    run = tmp_path_factory.mktemp("run")
    # the page is the image's own site for half the rows and unknown for the rest, as after an ingest
    pages = [u if i % 2 else None for i, u in enumerate(urls)]
    tables.write_part(run, "pairs", 0, pairs_table(urls[:600], caps[:600], pages[:600]))
    tables.write_part(run, "pairs", 1, pairs_table(urls[600:], caps[600:], pages[600:]))
    counts = signals.build_group_signals(run)
    return run, counts


def test_groups_table_shape_and_order(real_run):
    run, counts = real_run
    groups = tables.read_table(run, "groups")
    pairs = tables.read_table(run, "pairs")
    assert groups.schema == signals.GROUPS_SCHEMA
    assert groups.column("uid").to_pylist() == pairs.column("uid").to_pylist()
    assert counts["rows"] == groups.num_rows == 1000
    assert sum(counts["gender_terms"].values()) == 1000


def test_real_captions_give_sane_signals(real_run):
    run, counts = real_run
    g = tables.read_table(run, "groups").to_pylist()
    religions = {"none", *lexicons.religion_lexicon().values()}
    assert sum(counts["religion_terms"].values()) == 1000 and counts["religion_terms"]["none"] < 1000
    assert counts["gender_terms"]["female"] >= 10 and counts["gender_terms"]["male"] >= 10
    assert counts["countries_found"] >= 10
    assert sum(1 for r in g if r["country_source"] == "caption") >= 50
    assert sum(1 for r in g if r["country_source"] == "cctld") >= 20
    for r in g:
        for col in ("country", "caption_country", "url_cctld_country", "page_cctld_country"):
            assert r[col] is None or r[col] in VALID_ALPHA2, (col, r)
        assert r["gender_terms"] in ("male", "female", "both", "none")
        assert r["age_terms"] in ("child", "young", "adult", "old", "none")
        assert r["religion_terms"] in religions
        if r["country_source"] == "caption":
            assert r["country"] == r["caption_country"] == r["caption_countries"][0]
        elif r["country_source"] == "cctld":
            assert r["caption_country"] is None and r["country"] == (r["page_cctld_country"] or r["url_cctld_country"])
        else:
            assert r["country"] is None and r["country_source"] is None
        assert {k: r[k] for k in ("region", "subregion", "income_group")} == geo.country_facts(r["country"])
        if r["language"] is not None:
            assert 0.0 <= r["language_prob"] <= 1.0
    assert counts["top_languages"]["en"] > 500


def test_rerun_is_identical_and_replaces_the_table(real_run):
    run, _ = real_run
    before = tables.read_table(run, "groups")
    signals.build_group_signals(run)
    assert tables.read_table(run, "groups").equals(before)
    # one groups part per pairs part, under the same name
    assert [p.name for p in tables.list_parts(run, "groups")] == [p.name for p in tables.list_parts(run, "pairs")]


def test_caption_wins_over_domains_and_page_over_image(tmp_path):
    urls = ["http://img.example.fr/a.jpg", "http://img.example.fr/b.jpg", "http://cdn.example.com/c.jpg", "http://x.com/d"]
    caps = ["a beach in Kenya", "a red chair", "a red chair", "a red chair"]
    pages = ["http://shop.example.de/", "http://shop.example.de/", None, None]
    tables.write_part(tmp_path, "pairs", 0, pairs_table(urls, caps, pages))
    counts = signals.build_group_signals(tmp_path)
    g = tables.read_table(tmp_path, "groups").to_pylist()
    assert [(r["country"], r["country_source"]) for r in g] == [("KE", "caption"), ("DE", "cctld"), (None, None), (None, None)]
    assert (g[0]["url_cctld_country"], g[0]["page_cctld_country"]) == ("FR", "DE")
    assert counts["country_source"] == {"caption": 1, "cctld": 1, "null": 2}


def test_missing_pairs_table_names_the_command(tmp_path):
    with pytest.raises(tables.MissingTableError, match="fairsift crawl"):
        signals.build_group_signals(tmp_path)


def test_cctld_caption_agreement_counts():
    groups = pa.table(
        {
            "caption_country": ["FR", "FR", "DE", None, "US", "GB"],
            "page_cctld_country": ["FR", None, "AT", "FR", None, "GB"],
            "url_cctld_country": [None, "FR", "DE", "FR", None, "US"],
        }
    )
    out = signals.cctld_caption_agreement(groups)
    # rows with both: 0 (FR/FR page), 1 (FR/FR image), 2 (DE vs page AT), 5 (GB/GB page wins over image US)
    assert (out["n"], out["agree"]) == (4, 3)
    assert out["rate"] == pytest.approx(0.75)
    assert out["ci_low"] < 0.75 < out["ci_high"]


def test_cctld_caption_agreement_without_rows():
    empty = pa.table({"caption_country": pa.array([], pa.string()), "page_cctld_country": pa.array([], pa.string()),
                      "url_cctld_country": pa.array([], pa.string())})
    assert signals.cctld_caption_agreement(empty) == {"n": 0, "agree": 0, "rate": None, "ci_low": None, "ci_high": None}


def test_vectorised_cctld_matches_the_scalar_rule():
    urls = ["http://a.co.uk/x", "http://a.co.uk/y", "example.de/x", None, "", "http://[::1]/", "https://x.io", "//x.jp/a"]
    assert signals.cctld_countries(pa.array(urls, pa.string())) == [geo.cctld_country(u) for u in urls]


def test_prefilter_never_hides_a_mention():
    caps = ["a trip to France", "Tokyo2020 poster", "a red chair", "Côte d'Ivoire", "São Paulo", "中华人民共和国 flag", None]
    arr = pa.array(caps, pa.string())
    first, every = signals.caption_geo(arr, signals.lexicons.lower(arr))
    assert first == [geo.caption_country(c) for c in caps]
    assert every == [geo.caption_countries(c) for c in caps]


def test_one_row_per_uid_first_page_kept(tmp_path):
    urls = ["http://img.example.com/a.jpg", "http://img.example.com/a.jpg", "http://img.example.com/b.jpg"]
    caps = ["a red chair", "a red chair", "a blue chair"]
    pages = ["http://shop.example.de/", "http://shop.example.it/", None]
    tables.write_part(tmp_path, "pairs", 0, pairs_table(urls, caps, pages))
    counts = signals.build_group_signals(tmp_path)
    g = tables.read_table(tmp_path, "groups").to_pylist()
    assert counts["rows"] == 2
    assert [r["page_cctld_country"] for r in g] == ["DE", None]


def test_caption_languages_reuse_the_filters_verdicts_and_agree_with_fresh_detection(demo_run, tmp_path):
    import shutil

    from audit.signals import build_group_signals
    from curate import tables

    run = tmp_path / "run"
    shutil.copytree(demo_run[0], run, ignore=shutil.ignore_patterns("site", "report", "probes"))
    assert tables.table_exists(run, "lang")  # the filter ran first and stored its verdicts
    build_group_signals(run)
    reused = tables.read_table(run, "groups").select(["uid", "language", "language_prob"]).to_pandas()
    shutil.rmtree(tables.table_path(run, "lang"))
    build_group_signals(run)
    fresh = tables.read_table(run, "groups").select(["uid", "language", "language_prob"]).to_pandas()
    assert reused["language"].tolist() == fresh["language"].tolist()
    assert reused["language_prob"].fillna(-1).round(5).tolist() == fresh["language_prob"].fillna(-1).round(5).tolist()
