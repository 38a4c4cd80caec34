"""A synthetic run folder of N rows with every contract table, for dashboard and audit benchmarks.

Groups and scores are random but plausibly skewed (one group scores lower), images are one small real JPEG
repeated (Parquet compresses the repeats), and the audit tables hold as many rows as a real audit would.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[1] / "pipelines" / "sample" / "images"
COUNTRIES = ["US", "GB", "IN", "DE", "FR", "BR", "CN", "JP", "NG", "KE", "MX", "AU", "CA", "ZA", "EG"]
REGIONS = {"US": "Americas", "GB": "Europe", "IN": "Asia", "DE": "Europe", "FR": "Europe", "BR": "Americas",
           "CN": "Asia", "JP": "Asia", "NG": "Africa", "KE": "Africa", "MX": "Americas", "AU": "Oceania",
           "CA": "Americas", "ZA": "Africa", "EG": "Africa"}
STEPS = ["download", "dedup", "language", "caption_words", "image_size", "aspect_ratio", "clip_top_fraction"]


def _jpeg() -> bytes:
    src = next(iter(sorted(SAMPLE.glob("*.jpg"))))
    with Image.open(src) as im:
        buf = io.BytesIO()
        im.convert("RGB").resize((48, 48)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def _write(path: Path, table: pa.Table, row_group_size: int = 100_000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=row_group_size)


def make_run(run_dir: Path, n: int = 1_000_000, seed: int = 0, parts: int = 10) -> Path:
    rng = np.random.default_rng(seed)
    run_dir = Path(run_dir)
    uid = np.array([f"{x:032x}" for x in rng.integers(0, 2**63, n, dtype=np.int64)], dtype=object)
    gender = rng.choice(["male", "female", "both", "none"], n, p=[0.22, 0.12, 0.03, 0.63])
    age = rng.choice(["child", "young", "adult", "old", "none"], n, p=[0.05, 0.1, 0.1, 0.03, 0.72])
    country = rng.choice(COUNTRIES + [None], n, p=[0.2, 0.08, 0.05, 0.05, 0.05, 0.03, 0.03, 0.03, 0.01, 0.01, 0.01,
                                                   0.02, 0.03, 0.01, 0.01, 0.38])
    status = rng.choice(["success", "failed_to_download", "opted_out"], n, p=[0.9, 0.09, 0.01])
    ok = status == "success"
    score = (rng.normal(0.3, 0.05, n) - 0.03 * (gender == "female")).astype(np.float32)
    jpeg = _jpeg()
    captions = np.array([f"synthetic caption {i} of a {g} subject" for i, g in enumerate(gender)], dtype=object)
    urls = np.array([f"https://example.org/img/{u[:12]}.jpg" for u in uid], dtype=object)
    bounds = np.linspace(0, n, parts + 1, dtype=int)
    for p, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        m = ok[a:b]
        images = pa.array([jpeg if x else None for x in m], type=pa.binary())
        _write(run_dir / "pairs" / f"part-{p:05d}.parquet", pa.table({
            "uid": uid[a:b], "url": urls[a:b], "caption": captions[a:b], "page_url": [None] * (b - a),
            "source": ["synthetic"] * (b - a)}))
        _write(run_dir / "shards" / f"part-{p:05d}.parquet", pa.table({
            "uid": uid[a:b], "url": urls[a:b], "caption": captions[a:b], "status": status[a:b],
            "error_message": [None if x else "synthetic failure" for x in m], "image": images,
            "width": np.where(m, 48, 0).astype(np.int32), "height": np.where(m, 48, 0).astype(np.int32),
            "original_width": np.where(m, 640, 0).astype(np.int32), "original_height": np.where(m, 480, 0).astype(np.int32),
            "sha256": [None] * (b - a)}), row_group_size=20_000)
        idx = np.flatnonzero(m) + a
        _write(run_dir / "signals" / "clip" / f"part-{p:05d}.parquet", pa.table({
            "uid": uid[idx], "clip_score": score[idx], "model": ["synthetic"] * len(idx)}))
    dup = ok & (rng.random(n) < 0.05)
    ok_idx = np.flatnonzero(ok)
    dup_of = np.where(dup, uid[rng.choice(ok_idx, n)], None)
    _write(run_dir / "signals" / "dedup" / "part-00000.parquet", pa.table({
        "uid": uid[ok], "dup_of": dup_of[ok], "dup_kind": np.where(dup, "phash", None)[ok]}))
    _write(run_dir / "signals" / "groups" / "part-00000.parquet", pa.table({
        "uid": uid, "gender_terms": gender, "age_terms": age, "country": country,
        "country_source": np.where(country != None, "caption", None),  # noqa: E711
        "region": [REGIONS.get(c) for c in country], "language": ["en"] * n}))
    passes = {"download": ok, "dedup": ok & ~dup}
    for step in STEPS[2:-1]:
        passes[step] = ok & (rng.random(n) < 0.93)
    thr = np.quantile(score[ok], 0.7)
    passes["clip_top_fraction"] = ok & (score >= thr)
    kept = np.logical_and.reduce(list(passes.values()))
    first_fail = np.full(n, None, dtype=object)
    for step in reversed(STEPS):
        first_fail[~passes[step]] = step
    _write(run_dir / "decisions.parquet", pa.table({
        "uid": uid, **{f"pass_{s}": passes[s] for s in STEPS}, "kept": kept, "dropped_by": first_fail,
        "reason": np.where(kept, None, "synthetic")}))
    _write_audit(run_dir, rng, {"gender_terms": gender, "age_terms": age, "country": country}, passes, score, ok)
    (run_dir / "manifest.json").write_text(json.dumps({
        "model": {"id": "synthetic", "is_test_model": False}, "synthetic": True,
        "stages": {s: {"status": "done", "seconds": 0} for s in ("download", "dedup", "score", "filter", "audit")}}))
    return run_dir


def _write_audit(run_dir: Path, rng, attrs: dict, passes: dict, score, ok) -> None:
    """Audit tables computed simply (no bootstrap): the dashboard only needs their shape and size."""
    comp, impact, sweep = [], [], []
    for attr, values in attrs.items():
        values = np.where(values == None, "unknown", values).astype(str)  # noqa: E711
        groups, counts = np.unique(values, return_counts=True)
        for g, c in zip(groups, counts):
            share = c / len(values)
            half = 1.96 * np.sqrt(share * (1 - share) / len(values))
            comp.append(dict(analysis="composition", step=None, attribute=attr, group=g, n=int(c), metric="share",
                             value=share, ci_low=share - half, ci_high=share + half, population="downloaded",
                             flag_low_n=bool(c < 30)))
        prev = np.ones(len(values), bool)
        for step, passed in passes.items():
            overall = passed[prev].mean() if prev.any() else np.nan
            for g in groups:
                m = prev & (values == g)
                rate = passed[m].mean() if m.any() else np.nan
                ratio = rate / overall if overall else np.nan
                impact.append(dict(analysis="filter_impact", step=step, mode="sequential", attribute=attr, group=g,
                                   n=int(m.sum()), metric="inclusion_rate", value=rate, ci_low=rate - 0.01,
                                   ci_high=rate + 0.01, overall_rate=overall, ratio=ratio, ratio_ci_low=ratio - 0.02,
                                   ratio_ci_high=ratio + 0.02, flag_four_fifths=bool(ratio < 0.78),
                                   flag_low_n=bool(m.sum() < 30)))
            prev = prev & passed
        order = np.argsort(-score[ok])
        v = values[ok][order]
        for f in np.arange(0.05, 1.0001, 0.05):
            k = int(round(f * len(v)))
            for g in groups:
                in_g = v == g
                rate = in_g[:k].sum() / max(in_g.sum(), 1)
                sweep.append(dict(analysis="threshold_sweep", step="clip_top_fraction", attribute=attr, group=g,
                                  fraction=round(float(f), 2), n=int(in_g.sum()), metric="inclusion_rate", value=rate,
                                  ci_low=rate - 0.01, ci_high=rate + 0.01))
    (run_dir / "audit").mkdir(parents=True, exist_ok=True)
    for name, rows in (("composition", comp), ("filter_impact", impact), ("threshold_sweep", sweep)):
        pq.write_table(pa.Table.from_pylist(rows), run_dir / "audit" / f"{name}.parquet")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    print(make_run(args.run_dir, args.n))
