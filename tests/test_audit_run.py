"""`run_audit` / `write_audit_tables` on a synthetic run folder written with the real table writers."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from audit.frame import audit_path, read_audit_table
from audit.run import ANALYSES, AuditOptions, write_audit_tables
from curate.schemas import AUDIT
from curate.tables import MissingTableError, read_table
from tests.synthetic_audit_run import STEPS, make_frames, write_run


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    run = write_run(tmp_path_factory.mktemp("audit_run") / "run", make_frames())
    counts = write_audit_tables(run, AuditOptions(n_boot=200, min_count=40))
    return run, counts


def test_every_table_is_written_in_the_long_format(audited):
    run, counts = audited
    for analysis in ANALYSES:
        schema = pq.read_schema(audit_path(run, analysis))
        assert schema.names[: len(AUDIT)] == AUDIT.names
        assert [schema.field(f.name).type for f in AUDIT] == list(AUDIT.types)
        table = read_audit_table(run, analysis)
        assert len(table) == counts["rows"][analysis] > 0
        assert (table["analysis"] == analysis).all()
        assert table["n"].ge(0).all()


def test_counts_agree_with_the_tables(audited):
    run, counts = audited
    impact = read_audit_table(run, "filter_impact")
    # each population once: sequential rows that repeat the marginal population are not counted again
    once = impact[~impact["same_population"]]
    assert counts["significant_below_four_fifths"] == int(once["significant_below_four_fifths"].sum()) > 0
    assert counts["below_four_fifths"] == int(once["below_four_fifths"].sum()) >= counts["significant_below_four_fifths"]
    assert counts["min_count"] == 40
    low_n = sum(int(t["flag_low_n"].sum()) for t in (read_audit_table(run, a) for a in ANALYSES) if "flag_low_n" in t)
    assert counts["low_n_cells"] == low_n
    assert counts["steps"] == ", ".join(STEPS)
    # default attributes: categorical columns of signals/groups, without uid and helper columns
    assert counts["attributes"] == "gender_terms, country, language"


def test_tables_join_back_to_the_run(audited):
    """Composition of the kept corpus equals what the decisions and group signals in the folder say."""
    run, _ = audited
    decisions = read_table(run, "decisions").to_pandas()
    groups = read_table(run, "groups").to_pandas()
    kept = decisions.loc[decisions["kept"], ["uid"]].merge(groups, on="uid")
    table = read_audit_table(run, "composition")
    got = table[(table["population"] == "kept") & (table["attribute"] == "language")].set_index("group")["n"]
    assert got.sort_index().to_dict() == kept["language"].value_counts().sort_index().to_dict()
    impact = read_audit_table(run, "filter_impact")
    n_download = impact[(impact["step"] == "download") & (impact["attribute"] == "language")]["n"]
    assert n_download.sum() == 2 * len(decisions)  # marginal and sequential both judge every row
    sweep = read_audit_table(run, "threshold_sweep")
    assert sorted(sweep["fraction"].unique()) == pytest.approx([0.05 * i for i in range(1, 21)])


def test_rerun_gives_identical_tables(audited, tmp_path):
    run, counts = audited
    copy = shutil.copytree(run, tmp_path / "copy")
    for analysis in ANALYSES:
        audit_path(copy, analysis).unlink()
    again = write_audit_tables(copy, AuditOptions(n_boot=200, min_count=40))
    assert again == counts  # DuckDB scans parts in parallel: every count must still be order-independent
    for analysis in ANALYSES:
        assert pq.read_table(audit_path(copy, analysis)).equals(pq.read_table(audit_path(run, analysis)))


def test_options_choose_attributes_and_correction(audited, tmp_path):
    run, _ = audited
    copy = shutil.copytree(run, tmp_path / "copy")
    counts = write_audit_tables(copy, AuditOptions(n_boot=50, attributes=["country"], correction="bh",
                                                   sweep_fractions=[0.5, 1.0]))
    impact = read_audit_table(copy, "filter_impact")
    assert set(impact["attribute"]) == {"country"} and set(impact["correction"]) == {"bh"}
    assert counts["rows"]["threshold_sweep"] == 2 * impact["group"].nunique()


def test_bad_options_and_inputs_give_clear_errors(audited, tmp_path):
    run, _ = audited
    with pytest.raises(ValueError, match="religion"):
        write_audit_tables(run, AuditOptions(attributes=["religion"]))
    with pytest.raises(ValidationError, match="n_bootstrap"):
        AuditOptions(n_bootstrap=10)
    with pytest.raises(ValidationError, match="sweep fractions"):
        AuditOptions(sweep_fractions=[0.0, 0.5])
    copy = shutil.copytree(run, tmp_path / "nodecisions")
    (copy / "decisions.parquet").unlink()
    with pytest.raises(MissingTableError, match="fairsift filter"):
        write_audit_tables(copy, AuditOptions(n_boot=10))


def test_run_audit_builds_signals_and_tables_from_the_cli(tmp_path):
    """End to end through `fairsift audit RUN`: the real group signals from the captions, then every table."""
    pytest.importorskip("audit.signals", reason="audit.signals (group signals) is not in this checkout yet")
    from typer.testing import CliRunner

    from pipelines.cli import app

    frames = make_frames(n=600)
    run = tmp_path / "run"
    write_run(run, frames)
    shutil.rmtree(run / "signals" / "groups")  # the audit must build the signals itself, from the captions
    result = CliRunner().invoke(app, ["audit", str(run), "--n-boot", "100", "--min-count", "20"])
    assert result.exit_code == 0, result.output
    groups = read_table(run, "groups").to_pandas()
    assert set(groups["gender_terms"].dropna()) <= {"male", "female", "both", "none"}
    table = read_audit_table(run, "composition")
    downloaded = frames["decisions"].loc[frames["decisions"]["pass_download"], ["uid"]].merge(groups, on="uid")
    got = table[(table["population"] == "downloaded") & (table["attribute"] == "gender_terms")]
    assert got.set_index("group")["n"].sort_index().to_dict() == (
        downloaded["gender_terms"].fillna("(missing)").value_counts().sort_index().to_dict())
    for analysis in ANALYSES:
        assert audit_path(run, analysis).exists()
    # the "(all)" agreement row equals the signals module's own summary over the same rows
    from audit.signals import cctld_caption_agreement

    groups_table = read_table(run, "groups")
    downloaded_uids = pa.array(frames["decisions"].loc[frames["decisions"]["pass_download"], "uid"])
    summary = cctld_caption_agreement(groups_table.filter(pc.is_in(groups_table["uid"], downloaded_uids)))
    geo = read_audit_table(run, "geo_agreement").set_index("group")
    assert summary["n"] > 50
    assert (geo.loc["(all)", "n"], geo.loc["(all)", "n_agree"]) == (summary["n"], summary["agree"])
    # the captions of make_frames name women and men: the co-occurrence table has both genders
    cooc = read_audit_table(run, "cooccurrence")
    assert {"female", "male", "female-male"} <= set(cooc["group"])
    manifest = json.loads((run / "manifest.json").read_text())
    audit_stage = manifest["stages"]["audit"]
    assert audit_stage["status"] == "done"
    assert audit_stage["counts"]["rows"]["composition"] == len(table)


def test_findings_are_written_and_ranked_by_evidence(audited):
    run, _ = audited
    findings = read_audit_table(run, "findings")
    impact = read_audit_table(run, "filter_impact")
    assert findings["rank"].tolist() == list(range(1, len(findings) + 1))
    tiers = findings["tier"].tolist()
    order = ["significant_four_fifths", "disparity", "not_judged", "no_disparity"]
    assert tiers == sorted(tiers, key=order.index)
    headline = findings[findings["tier"].isin(order[:2])]
    assert not headline.empty
    # nothing whose ratio interval contains 1 is a headline; each sentence carries n, rate, reference and CI
    assert ((headline["ci_high"] < 1) | (headline["ci_low"] > 1)).all()
    for row in headline.itertuples():
        source = impact[(impact["step"] == row.step) & (impact["mode"] == row.mode) & (impact["attribute"] == row.attribute)
                        & (impact["group"] == row.group)].iloc[0]
        assert row.value == pytest.approx(source["ratio_to_max"]) and row.reference_group == source["reference_group"]
        assert f"n={int(source['n']):,}" in row.sentence and f"{source['ratio_to_max']:.2f}" in row.sentence
        assert f"{source['ratio_to_max_ci_low']:.2f}" in row.sentence and str(row.reference_group) in row.sentence
    first = findings[findings["tier"] == "significant_four_fifths"]
    assert set(first["group"]) >= {"KE", "de", "sw"}
