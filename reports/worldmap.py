"""A choropleth of country shares drawn from a bundled Natural Earth GeoJSON: no tiles, no network."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402

WORLD_GEOJSON = Path(__file__).parent / "data" / "world_110m.geojson"


@lru_cache(maxsize=1)
def _features() -> list[dict]:
    return json.loads(WORLD_GEOJSON.read_text())["features"]


def _rings(geometry: dict):
    if geometry["type"] == "Polygon":
        yield geometry["coordinates"][0]
    elif geometry["type"] == "MultiPolygon":
        for poly in geometry["coordinates"]:
            yield poly[0]


def world_map(shares: dict[str, float], title: str = "Country share of rows", label: str = "share"):
    """shares: ISO alpha-2 -> value. Countries without a value are drawn light grey."""
    if not shares:
        return None
    fig, ax = plt.subplots(figsize=(10, 5))
    vmax = max(shares.values()) or 1.0
    norm = Normalize(vmin=0, vmax=vmax)
    cmap = plt.get_cmap("viridis")
    patches, colors = [], []
    for feature in _features():
        code = feature["properties"].get("iso_a2")
        value = shares.get(code) if code else None
        for ring in _rings(feature["geometry"]):
            patches.append(Polygon(ring, closed=True))
            colors.append(cmap(norm(value)) if value is not None else (0.9, 0.9, 0.9, 1.0))
    ax.add_collection(PatchCollection(patches, facecolors=colors, edgecolors="white", linewidths=0.3))
    ax.set_xlim(-180, 180)
    ax.set_ylim(-60, 85)
    ax.set_aspect("equal")
    ax.axis("off")
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, shrink=0.6, label=label)
    ax.set_title(title)
    fig.tight_layout()
    return fig
