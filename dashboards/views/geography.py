"""Geography: the share of each country on an offline world map, over the same denominator as the composition.

A share is n(country) / every row of the population (downloaded or kept), rows without a country signal included,
exactly as audit/composition counts them (there they are the group '(missing)'); the chart says so, with how many
rows have no country.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboards import cache
from dashboards.queries import MissingData, RunData

WORLD = Path(__file__).parent / "world_110m.geojson"


@lru_cache(maxsize=1)
def _world_features() -> list:
    return json.loads(WORLD.read_text())["features"]


def denominator_note(population: str, total: int, missing: int) -> str:
    share = f" ({missing / total:.1%})" if total else ""
    return (f"Share of all {total:,} {population} rows — the same denominator as the composition on the Groups page; "
            f"{missing:,} of them{share} have no country signal and count as '(missing)'.")


def world_map_spec(shares: pd.DataFrame, title: str = "") -> dict:
    """A Vega-Lite choropleth over the bundled Natural Earth outlines: no tiles, no network."""
    lookup = {"lookup": "properties.iso_a2", "from": {"data": {"values": shares.to_dict(orient="records")},
                                                       "key": "country", "fields": ["share", "n"]}}
    return {
        "height": 420,
        "title": {"text": title, "fontSize": 12, "fontWeight": "normal", "anchor": "start", "limit": 0},
        "projection": {"type": "equirectangular"},
        "datasets": {"world": _world_features()},  # sent once, drawn by both layers
        "layer": [
            {"data": {"name": "world"}, "mark": {"type": "geoshape", "fill": "#e6e6e6", "stroke": "white"}},
            {"data": {"name": "world"}, "transform": [lookup],
             "mark": {"type": "geoshape", "stroke": "white", "strokeWidth": 0.3},
             "encoding": {"color": {"field": "share", "type": "quantitative", "scale": {"scheme": "viridis"},
                                    "legend": {"format": ".1%", "title": "share"}},
                          "tooltip": [{"field": "properties.name", "type": "nominal", "title": "country"},
                                      {"field": "n", "type": "quantitative"},
                                      {"field": "share", "type": "quantitative", "format": ".2%"}]}},
        ],
    }


def render(data: RunData) -> None:
    key = str(data.run_dir)
    populations = cache.query(key, "populations")
    population = st.radio("population", populations, horizontal=True, key="geo_pop",
                          help="downloaded: every pair whose image downloaded; kept: the filtered corpus")
    table, total, missing = cache.query(key, "country_table", population)
    note = denominator_note(population, total, missing)
    if table.empty:
        st.info(f"no row has a country signal. {note}")
    else:
        st.vega_lite_chart(world_map_spec(table[["country", "share", "n"]], note), width="stretch")
        st.caption(note)
        st.dataframe(table, hide_index=True, width="stretch")
    st.subheader("Caption vs ccTLD agreement")
    try:
        st.dataframe(cache.audit_table(key, "geo_agreement"), hide_index=True)
    except MissingData as exc:
        st.info(str(exc))
