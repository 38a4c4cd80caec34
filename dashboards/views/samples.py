"""Samples: a paged, filterable browser of images with caption, URL, score, dedup cluster and decision."""

from __future__ import annotations

import math

import streamlit as st

from dashboards import cache
from dashboards.queries import MissingData, RunData

PAGE_SIZE = 12
COLUMNS = 4


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
        attribute = c4.selectbox("group attribute", ["(any)"] + attrs, key="s_attr")
        if attribute != "(any)":
            f["attribute"] = attribute
            f["group"] = c5.selectbox("group", cache.query(key, "groups_of", attribute), key="s_group")
    if data.has("clip"):
        lo, hi = cache.query(key, "score_bounds")
        if hi > lo:
            f["score_range"] = c6.slider("clip_score", float(lo), float(hi), (float(lo), float(hi)), key="s_score")
    return f


def render(data: RunData) -> None:
    data.require("shards")
    key = str(data.run_dir)
    f = _filters(data)
    _, total = cache.query(key, "samples", page=0, page_size=1, **f)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = st.number_input(f"page (of {pages}; {total:,} samples match)", min_value=1, max_value=pages, value=1,
                           key="s_page") - 1
    rows, _ = cache.query(key, "samples", page=int(page), page_size=PAGE_SIZE, **f)
    images = cache.query(key, "images", list(rows["uid"]))
    grid = st.columns(COLUMNS)
    for i, row in enumerate(rows.itertuples(index=False)):
        with grid[i % COLUMNS]:
            img = images.get(row.uid)
            if img is not None:
                st.image(img, width="stretch")
            else:
                st.text(f"[no image: {row.status}]")
            st.text(str(row.caption)[:300])  # untrusted: plain text only
            meta = [f"uid {row.uid[:12]}", f"url {str(row.url)[:80]}"]
            if hasattr(row, "clip_score") and row.clip_score == row.clip_score:
                meta.append(f"clip_score {row.clip_score:.3f}")
            if getattr(row, "dup_kind", None):
                meta.append(f"duplicate ({row.dup_kind}) of {str(row.dup_of)[:12]}")
            if hasattr(row, "kept"):
                meta.append("kept" if row.kept else f"dropped by {row.dropped_by}: {row.reason}")
            st.text("\n".join(meta))
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
