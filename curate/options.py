"""Options of each curation stage, as pydantic models: the CLI flags and the YAML config sections are built from these.

Unknown keys are refused (`extra="forbid"`) so that a typo in a config file stops the run with the field's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class CrawlOptions(_Options):
    sources: list[str] = Field(default_factory=list, description="HTML files/folders, WARC/WAT files, http(s) start URLs")
    max_depth: int = Field(1, ge=0, description="links followed from an http start URL (same host only)")
    max_pages: int = Field(100, ge=1, description="pages fetched per http start URL")
    allow_private_network: bool = False
    max_caption_chars: int = Field(1000, ge=16, description="longer captions are truncated and flagged")
    rows_per_part: int = Field(10_000, ge=1)
    timeout: float = Field(10.0, gt=0)


class IngestOptions(_Options):
    path: Optional[str] = None
    url_col: str = "url"
    caption_col: Optional[str] = "caption"
    max_caption_chars: int = Field(1000, ge=16)
    rows_per_part: int = Field(10_000, ge=1)


class DownloadOptions(_Options):
    image_size: int = Field(256, ge=8)
    resize_mode: Literal["no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"] = "border"
    processes: int = Field(1, ge=1)
    threads: int = Field(32, ge=1)
    timeout: int = Field(10, ge=1)
    retries: int = Field(0, ge=0)
    allow_private_network: bool = False
    disallowed_header_directives: list[str] = Field(default_factory=lambda: ["noai", "noimageai"])
    encode_quality: int = Field(95, ge=1, le=100)


class DedupOptions(_Options):
    phash_distance: int = Field(4, ge=0, le=64)
    semantic_threshold: float = Field(0.95, gt=0, le=1.0)
    semantic: bool = True  # only used when signals/embeddings exists
    semantic_clusters: Optional[int] = Field(None, ge=1, description="k-means clusters; default ~sqrt(n)")
    eval_set: Optional[str] = None
    eval_phash_distance: Optional[int] = Field(None, ge=0, le=64, description="defaults to phash_distance")


class ScoreOptions(_Options):
    model: str = "ViT-B-32"
    pretrained: Optional[str] = None  # None: the model's default tag (laion2b_s34b_b79k for ViT-B-32), see score.py
    checkpoint: Optional[str] = None
    device: Literal["cpu", "cuda", "auto"] = "auto"
    batch_size: int = Field(256, ge=1)
    workers: int = Field(2, ge=0, description="threads decoding JPEGs while the model runs (decode: pil: "
                                              "DataLoader worker processes)")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    decode: Literal["tensor", "pil"] = Field("tensor", description="tensor: batched JPEG decode (nvJPEG on CUDA) and "
                                             "preprocessing on the model's device; pil: PIL + open_clip's transform")
    tokenize_workers: Optional[int] = Field(None, ge=0, description="caption tokenizer processes; default 1-3 on "
                                            "CUDA, none on CPU")
    nvjpeg_share: float = Field(0.3, ge=0.0, le=1.0, description="on CUDA, the share of each batch's JPEGs decoded "
                                "by nvJPEG; the rest by the CPU decode threads")


class ExportOptions(_Options):
    webdataset: bool = False
    rows_per_part: int = Field(10_000, ge=1)


def resolve_path(value: Optional[str], base: Optional[Path]) -> Optional[str]:
    """Relative paths in a config file are relative to that file, not to the working directory."""
    if value is None or base is None or "://" in value:
        return value
    p = Path(value)
    return str(p if p.is_absolute() else (base / p))
