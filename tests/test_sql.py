"""`fairsift sql`: DuckDB views over a run folder's Parquet tables, joins on uid, output formats, errors."""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from curate import schemas, tables
from curate.export.stage import export
from curate.filter.stage import default_filter_config, filter_run
from curate.options import ExportOptions
from pipelines.cli import app
from pipelines.sql import SqlError, format_result, open_run, run_query
from tests.run_builder import GERMAN, planted_rows, write_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = write_run(tmp_path_factory.mktemp("sql") / "run", list(planted_rows().values()))
    filter_run(run_dir, default_filter_config())
    export(run_dir, ExportOptions())
    audit = pa.Table.from_pylist(
        [{"analysis": "composition", "step": None, "attribute": "gender_terms", "group": "female", "n": 12,
          "metric": "share", "value": 0.25, "ci_low": 0.1, "ci_high": 0.4}], schema=schemas.AUDIT)
    tables.atomic_write_parquet(audit, run_dir / "audit" / "composition.parquet")
    probe = audit.set_column(0, "analysis", pa.array(["probe_fairface"], pa.string()))
    tables.atomic_write_parquet(probe, run_dir / "probes" / "probe_fairface.parquet")
    return run_dir


def test_views_for_every_table_that_exists_and_for_audit_files(run_dir):
    con = open_run(run_dir)
    views = {r[0] for r in con.sql("select view_name from duckdb_views() where not internal").fetchall()}
    assert views == {"shards", "clip", "dedup", "lang", "decisions", "corpus", "audit_composition", "probe_fairface"}
    n_shards = con.sql("select count(*) from shards").fetchall()[0][0]
    assert n_shards == tables.read_table(run_dir, "shards", columns=["uid"]).num_rows
    assert con.sql("select value from audit_composition").fetchall() == [(0.25,)]
    assert con.sql("select analysis from probe_fairface").fetchall() == [("probe_fairface",)]


def test_views_are_lazy_so_image_bytes_are_read_only_when_selected(run_dir):
    con = open_run(run_dir)
    plan = "\n".join(r[1] for r in con.sql("explain select uid, caption from shards").fetchall())
    assert "Projections" in plan and "image" not in plan


def test_join_on_uid_across_tables(run_dir):
    result = run_query(run_dir, """
        select s.caption, l.language, d.kept, d.dropped_by, c.clip_score
        from shards s join decisions d using (uid) join lang l using (uid) left join clip c using (uid)
        where l.language = 'de'""")
    rows = result.to_pylist()
    assert any(r["caption"] == GERMAN and r["dropped_by"] == "basic" and not r["kept"] for r in rows)
    corpus_vs_kept = run_query(run_dir, """
        select (select count(*) from corpus) as exported, (select count(*) from decisions where kept) as kept""")
    exported, kept = corpus_vs_kept.to_pylist()[0].values()
    assert exported == kept > 0


def test_formats_csv_json_array_json_lines_and_aligned_text(run_dir):
    table = run_query(run_dir, "select dropped_by, count(*) as n from decisions group by 1 order by n desc, 1")
    expected = [(r["dropped_by"], r["n"]) for r in table.to_pylist()]

    out = io.StringIO()
    format_result(table, "csv", out)
    parsed = list(csv.reader(io.StringIO(out.getvalue())))
    assert parsed[0] == ["dropped_by", "n"]
    assert [(a or None, int(b)) for a, b in parsed[1:]] == expected

    out = io.StringIO()
    format_result(table, "json", out)
    array = json.loads(out.getvalue())  # one JSON document: an array of row objects
    assert isinstance(array, list) and [(r["dropped_by"], r["n"]) for r in array] == expected

    out = io.StringIO()
    format_result(table, "jsonl", out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["dropped_by"], r["n"]) for r in lines] == expected

    out = io.StringIO()
    format_result(table.slice(0, 0), "json", out)
    assert json.loads(out.getvalue()) == []

    out = io.StringIO()
    format_result(table, "table", out)
    text = out.getvalue().splitlines()
    assert text[0].split() == ["dropped_by", "n"] and text[-1] == f"({len(expected)} rows)"
    assert [line.split() for line in text[2:-1]] == [[step or "NULL", str(n)] for step, n in expected]


def test_binary_columns_are_summarised_in_text_and_base64_in_json(run_dir):
    table = run_query(run_dir, "select uid, image from corpus order by uid limit 1")
    image = table.column("image")[0].as_py()["bytes"]  # the corpus stores images as HF's {bytes, path}
    out = io.StringIO()
    format_result(table, "table", out)
    assert f"<{len(image)} bytes>" in out.getvalue()
    out = io.StringIO()
    format_result(table, "json", out)
    import base64

    assert base64.b64decode(json.loads(out.getvalue())[0]["image"]["bytes"]) == image


def test_bad_sql_and_missing_run_give_sql_errors(run_dir, tmp_path):
    with pytest.raises(SqlError, match="nope") as err:
        run_query(run_dir, "select * from nope")
    assert "decisions" in str(err.value)  # the error lists the views there are
    with pytest.raises(SqlError, match="(?i)parser error"):
        run_query(run_dir, "selec 1")
    with pytest.raises(SqlError, match="run folder not found"):
        run_query(tmp_path / "missing", "select 1")


def test_cli_sql_csv_and_error(run_dir):
    runner = CliRunner()
    result = runner.invoke(app, ["sql", str(run_dir), "select count(*) from decisions", "--format", "csv"])
    assert result.exit_code == 0, result.output
    n = tables.read_table(run_dir, "decisions", columns=["uid"]).num_rows
    assert result.stdout.splitlines() == ["count_star()", str(n)]

    result = runner.invoke(app, ["sql", str(run_dir), "select * from decisionz"])
    assert result.exit_code == 2
    assert "decisionz" in result.output and "Traceback" not in result.output


def test_reason_code_groups_reasons_by_step_and_rule(run_dir):
    rows = run_query(run_dir, "select dropped_by, reason, reason_code from decisions where not kept").to_pylist()
    assert rows
    for r in rows:
        assert r["reason_code"].split(".")[0] == r["dropped_by"], r
    by_code = {r["reason"]: r["reason_code"] for r in rows}
    german = [code for reason, code in by_code.items() if reason.startswith("language de")]
    assert german and set(german) == {"basic.language"}
    # fewer codes than readable reasons: the numbers stay in `reason`
    codes = run_query(run_dir, "select count(distinct reason_code) c, count(distinct reason) r from decisions")
    c, r = codes.to_pylist()[0].values()
    assert 0 < c <= r


def test_cli_sql_json_is_one_array_and_jsonl_is_lines(run_dir):
    runner = CliRunner()
    query = "select uid, kept from decisions order by uid limit 3"
    as_json = runner.invoke(app, ["sql", str(run_dir), query, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    array = json.loads(as_json.stdout)
    as_jsonl = runner.invoke(app, ["sql", str(run_dir), query, "--format", "jsonl"])
    assert [json.loads(line) for line in as_jsonl.stdout.splitlines()] == array and len(array) == 3
