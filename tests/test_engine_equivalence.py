"""The whole pipeline on the local engine and on a real 3-node Ray cluster gives the same tables.

A small site (real sample images on a loopback server) is crawled into several pairs parts, then downloaded, deduped,
scored (tiny test model), filtered, exported and audited twice: once in this process (local engine, one worker) and
once with every part function running as Ray tasks/actors spread over a head node and two worker nodes. Every table
(pairs, shards, signals/*, decisions, corpus, audit/*) must be equal after sorting by uid.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from curate.layout import view_files
from pipelines.config import RunConfig
from pipelines.engines import LocalEngine, make_engine
from pipelines.runner import run_pipeline
from tests.ray_cluster import ray_cluster  # noqa: F401  (fixture)


def _config(base_url: str) -> RunConfig:
    return RunConfig.model_validate({
        "name": "engines",
        "allow_private_network": True,
        # small parts, so that several parts go to several nodes
        "crawl": {"sources": [f"{base_url}/pages/index.html"], "max_depth": 1, "rows_per_part": 12},
        "download": {"image_size": 64, "threads": 4, "timeout": 5},
        "score": {"model": "tiny-test", "pretrained": None, "batch_size": 16, "workers": 0},
        "filter": {"steps": ["dedup", {"clip_top_fraction": {"fraction": 0.5}}]},
        "audit": {"enabled": True, "min_count": 5, "n_boot": 50},
    })


def _sorted(table: pa.Table) -> pa.Table:
    table = table.replace_schema_metadata(None)
    keys = ["uid"] if "uid" in table.column_names else []
    keys += [c for c in table.column_names if c not in keys and _sortable(table.schema.field(c).type)]
    return table.take(pc.sort_indices(table, [(k, "ascending") for k in keys])) if keys else table


def _sortable(dtype: pa.DataType) -> bool:
    return not (pa.types.is_list(dtype) or pa.types.is_struct(dtype) or pa.types.is_binary(dtype)
                or pa.types.is_large_binary(dtype) or pa.types.is_map(dtype))


def _tables(run_dir) -> dict[str, pa.Table]:
    out = {}
    for name, files in view_files(run_dir).items():
        parts = [pa.parquet.read_table(f) for f in files]
        out[name] = _sorted(pa.concat_tables([p.replace_schema_metadata(None) for p in parts],
                                             promote_options="default"))
    return out


def test_local_and_ray_engines_give_identical_tables(tmp_path, demo_site_server, ray_cluster):
    import pyarrow.parquet  # noqa: F401  (pa.parquet)

    cfg = _config(demo_site_server.base_url)
    local_run, ray_run = tmp_path / "local", tmp_path / "ray"
    run_pipeline(cfg, local_run, engine=LocalEngine(workers=1))
    with make_engine("ray", address=ray_cluster.address) as engine:
        run_pipeline(cfg, ray_run, engine=engine)

    local, remote = _tables(local_run), _tables(ray_run)
    assert len(view_files(local_run)["pairs"]) > 2, "the sample should span several pairs parts"
    assert set(local) == set(remote)
    for expected in ("pairs", "shards", "phash", "dedup", "clip", "embeddings", "decisions", "corpus",
                     "audit_composition", "audit_filter_impact"):
        assert expected in local, expected
    for name in local:
        assert local[name].schema.equals(remote[name].schema), name
        assert local[name].equals(remote[name]), name
