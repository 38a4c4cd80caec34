"""Samples: a paged, filterable browser of images with caption, URL, score, dedup cluster and decision; several
groups at once; a download of the current selection's uids; and the same nearest-pair search as `fairsift search`.

The search runs `fairsift search ... --format json` in a subprocess: the dashboard imports nothing of curate (the
model and the faiss index live there), and the CLI is the one implementation of search."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import tempfile

import pandas as pd
import streamlit as st

from dashboards import cache
from dashboards.queries import MissingData, RunData

PAGE_SIZE = 12
COLUMNS = 4
SEARCH_TIMEOUT_S = 300


def _filters(data: RunData) -> dict:
    key = str(data.run_dir)
    f: dict = {}
    c1, c2, c3 = st.columns(3)
    if data.has("decisions"):
        steps = ["(any)"] + list(cache.query(key, "dropped_by")["dropped_by"])
        choice = c1.selectbox("dropped by", steps, key="s_dropped")
        f["dropped_by"] = None if choice == "(any)" else choice
        f["reason"] = c2.text_input("reason contains", key="s_reason")
    f["text"] = c3.text_input("caption or URL contains", key="s_text")
    c4, c5, c6 = st.columns(3)
    attrs = cache.query(key, "group_attributes") if data.has("groups") else []
    if attrs:
        chosen = c4.multiselect("group attributes", attrs, key="s_attrs")
        groups = {}
        for attribute in chosen:
            picked = c5.multiselect(f"{attribute} groups (any of)", cache.query(key, "groups_of", attribute),
                                    key=f"s_groups_{attribute}")
            if picked:
                groups[attribute] = picked
        if groups:
            f["groups"] = groups
    if data.has("clip"):
        lo, hi = cache.query(key, "score_bounds")
        if hi > lo:
            chosen_range = c6.slider("clip_score", float(lo), float(hi), (float(lo), float(hi)), key="s_score")
            if tuple(chosen_range) != (float(lo), float(hi)):  # the full range also keeps rows without a score
                f["score_range"] = chosen_range
    return f


def _download_selection(key: str, f: dict, total: int) -> None:
    """The uids of every sample the filters select (not only this page), as CSV and Parquet."""
    uids = cache.query(key, "sample_uids", **f)
    c1, c2 = st.columns(2)
    c1.download_button(f"download the {total:,} selected uids (CSV)", uids.to_csv(index=False).encode("utf-8"),
                       file_name="selection_uids.csv", mime="text/csv", key="s_dl_csv")
    buffer = io.BytesIO()
    uids.to_parquet(buffer, index=False)
    c2.download_button("download them as Parquet", buffer.getvalue(), file_name="selection_uids.parquet",
                       mime="application/vnd.apache.parquet", key="s_dl_parquet")


@st.cache_data(show_spinner=False, max_entries=64)
def run_search(run: str, mode: str, query: str, k: int, kept_only: bool, image: bytes | None = None) -> dict:
    """`fairsift search` as the terminal runs it; returns its JSON, or {"error": message}."""
    args = [sys.executable, "-m", "pipelines.cli", "search", run, "-k", str(int(k)), "--format", "json"]
    if kept_only:
        args.append("--kept-only")
    with tempfile.TemporaryDirectory(prefix="fairsift-search-") as tmp:
        if mode == "image":
            path = os.path.join(tmp, "query-image")
            with open(path, "wb") as f:
                f.write(image or b"")
            args += ["--image", path]
        else:
            args += [f"--{mode}", query]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=SEARCH_TIMEOUT_S, env=dict(os.environ))
        except subprocess.TimeoutExpired:
            return {"error": f"search took more than {SEARCH_TIMEOUT_S} s"}
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"search failed (exit {proc.returncode})"}
    return json.loads(proc.stdout)


def _search(data: RunData) -> None:
    key = str(data.run_dir)
    with st.expander("Search: pairs like a text, an image or a uid (cosine over the CLIP embeddings)",
                     expanded=bool(st.session_state.get("s_q"))):
        if not data.has("embeddings"):
            st.info("no `embeddings` table yet — create it with `fairsift score`")
            return
        c1, c2, c3, c4 = st.columns([1, 3, 1, 1])
        mode = c1.radio("query", ["text", "uid", "image"], key="s_qmode")
        image = None
        if mode == "image":
            upload = c2.file_uploader("image file", type=["jpg", "jpeg", "png", "webp"], key="s_qimage")
            image = upload.getvalue() if upload is not None else None
            query = upload.name if upload is not None else ""
        else:
            query = c2.text_input("text" if mode == "text" else "uid", key="s_q")
        k = int(c3.number_input("k", min_value=1, max_value=200, value=12, key="s_qk"))
        kept_only = c4.checkbox("kept only", key="s_qkept", disabled=not data.has("decisions"))
        if not query:
            return
        with st.spinner("searching"):
            found = run_search(key, mode, query, k, kept_only, image)
        if "error" in found:
            st.error(found["error"])
            return
        if found.get("note"):
            st.warning(found["note"])
        results = pd.DataFrame(found["results"])
        st.caption(f"{len(results)} nearest pairs to {found.get('query')} among {found['index']['rows']:,} "
                   f"{found['index']['modality']} embeddings ({found.get('embeddings_model')})")
        if results.empty:
            return
        _grid(results, cache.query(key, "images", list(results["uid"])), lambda r: f"cosine {r.score:.3f}")


def _grid(rows: pd.DataFrame, images: dict, first_line=None) -> None:
    grid = st.columns(COLUMNS)
    for i, row in enumerate(rows.itertuples(index=False)):
        with grid[i % COLUMNS]:
            img = images.get(row.uid)
            if img is not None:
                st.image(img, width="stretch")
            else:
                st.text(f"[no image: {getattr(row, 'status', 'not downloaded')}]")
            st.text(str(row.caption)[:300])  # untrusted: plain text only
            meta = [first_line(row)] if first_line else []
            meta += [f"uid {row.uid[:12]}", f"url {str(row.url)[:80]}"]
            if hasattr(row, "clip_score") and row.clip_score == row.clip_score and row.clip_score is not None:
                meta.append(f"clip_score {row.clip_score:.3f}")
            if getattr(row, "dup_kind", None):
                meta.append(f"duplicate ({row.dup_kind}) of {str(row.dup_of)[:12]}")
            if hasattr(row, "kept") and row.kept is not None:
                meta.append("kept" if row.kept else f"dropped by {row.dropped_by}" +
                            (f": {row.reason}" if getattr(row, "reason", None) else ""))
            st.text("\n".join(meta))


def render(data: RunData) -> None:
    data.require("shards")
    key = str(data.run_dir)
    _search(data)
    f = _filters(data)
    _, total = cache.query(key, "samples", page=0, page_size=1, **f)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = st.number_input(f"page (of {pages}; {total:,} samples match)", min_value=1, max_value=pages, value=1,
                           key="s_page") - 1
    _download_selection(key, f, total)
    rows, _ = cache.query(key, "samples", page=int(page), page_size=PAGE_SIZE, **f)
    _grid(rows, cache.query(key, "images", list(rows["uid"])))
    st.subheader("Duplicate clusters")
    try:
        clusters = cache.query(key, "clusters")
    except MissingData as exc:
        st.info(str(exc))
        return
    if clusters.empty:
        st.text("no duplicate clusters")
        return
    st.dataframe(clusters, hide_index=True)
    rep = st.selectbox("show cluster", list(clusters["representative"]), key="s_cluster")
    members = cache.query(key, "dup_cluster", rep)
    imgs = cache.query(key, "images", list(members["uid"]))
    cols = st.columns(max(1, min(len(members), 6)))
    for col, m in zip(cols, members.itertuples(index=False)):
        with col:
            if m.uid in imgs:
                st.image(imgs[m.uid], width="stretch")
            st.text(("representative" if m.dup_of is None else f"{m.dup_kind} duplicate") + f"\n{str(m.caption)[:120]}")
