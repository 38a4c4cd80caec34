"""`fairsift sql` and the dashboard read the run's tables and nothing else: every way out is tried and refused."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dashboards.queries import MissingData, RunData
from pipelines.cli import app
from pipelines.sql import SqlError, run_query
from tests.run_builder import planted_rows, write_run


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A run folder and, beside it, a secret file and a Parquet file that must stay out of reach."""
    base = tmp_path_factory.mktemp("ro")
    run_dir = write_run(base / "run", list(planted_rows().values()))
    secret = base / "secret.txt"
    secret.write_text("top secret\n")
    pq.write_table(pa.table({"x": [42]}), base / "outside.parquet")
    return run_dir, base


def _files(base):
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())


@pytest.mark.parametrize("query", [
    # writes and statements that change the database
    "copy shards to '{run}/stolen.csv'",
    "copy (select 1) to '{base}/written.csv'",
    "copy shards to '{run}/shards/part-00000.parquet' (format parquet)",
    "create table t as select 1",
    "insert into shards select * from shards",
    "drop view shards",
    "create view extra as select 1",
    "attach '{base}/other.duckdb' as other",
    "attach ':memory:' as m",
    "install httpfs",
    "load httpfs",
    "set enable_external_access = true",
    "set allowed_paths = ['/']",
    "pragma enable_profiling",
    "call pragma_version()",
    "export database '{base}/export'",
    "explain analyze copy shards to '{run}/x.csv'",
    "select 1; copy shards to '{run}/x.csv'",
    # reads outside the run folder
    "select * from read_text('{base}/secret.txt')",
    "select * from read_csv('/etc/passwd')",
    "select * from read_parquet('{base}/outside.parquet')",
    "select * from read_parquet('{run}/../outside.parquet')",
    "select * from read_blob('{base}/secret.txt')",
    "select * from glob('{base}/*')",
    "select * from read_parquet('http://127.0.0.1:9/x.parquet')",
    "select * from read_json('https://example.org/x.json')",
])
def test_every_way_out_is_refused(world, query):
    run_dir, base = world
    before = _files(base)
    with pytest.raises(SqlError):
        run_query(run_dir, query.format(run=run_dir, base=base))
    assert _files(base) == before  # nothing written anywhere


def test_reads_of_the_run_still_work_including_explain_and_describe(world):
    run_dir, _ = world
    assert run_query(run_dir, "select count(*) n from shards").to_pylist()[0]["n"] > 0
    assert run_query(run_dir, "describe shards").num_rows > 0
    assert run_query(run_dir, "explain select uid from shards").num_rows > 0
    assert run_query(run_dir, "summarize select clip_score from clip").num_rows == 1


def test_table_names_cannot_traverse_or_inject(world, tmp_path):
    run_dir, base = world
    audit = run_dir / "audit"
    audit.mkdir(exist_ok=True)
    # a hostile file name becomes a plain view name; its quote cannot break out of the view's SQL
    hostile = audit / "x'; copy shards to 'pwn.csv'; --.parquet"
    pq.write_table(pa.table({"v": [1]}), hostile)
    try:
        names = {r["view_name"] for r in run_query(run_dir, "select view_name from duckdb_views() where not internal")
                 .to_pylist()}
        assert any(n.startswith("audit_x_") for n in names)
        assert not (run_dir / "pwn.csv").exists() and not any(base.rglob("pwn.csv"))
    finally:
        hostile.unlink()
    # a part file that is a symlink out of the run folder is refused, not read
    link = run_dir / "shards" / "part-99999.parquet"
    os.symlink(base / "outside.parquet", link)
    try:
        with pytest.raises(SqlError, match="outside the run folder"):
            run_query(run_dir, "select count(*) from shards")
    finally:
        link.unlink()


def test_cli_refuses_writes_with_a_clear_message(world):
    run_dir, _ = world
    result = CliRunner().invoke(app, ["sql", str(run_dir), f"copy shards to '{run_dir}/x.csv'"])
    assert result.exit_code == 2
    assert "read-only" in result.output and "Traceback" not in result.output
    assert not (run_dir / "x.csv").exists()


def test_dashboard_connection_is_locked_to_the_run(world):
    run_dir, base = world
    data = RunData(run_dir)
    assert int(data.df("select count(*) n from shards")["n"][0]) > 0
    for query in (f"select * from read_text('{base}/secret.txt')", f"copy shards to '{run_dir}/x.csv'",
                  "set enable_external_access = true", "install httpfs"):
        with pytest.raises(Exception):
            data.df(query)
    assert not (run_dir / "x.csv").exists()
    with pytest.raises(MissingData):
        data.audit_table("../secret")
