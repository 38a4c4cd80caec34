"""Options of each curation stage, as pydantic models: the CLI flags and the YAML config sections are built from these.

Unknown keys are refused (`extra="forbid"`) so that a typo in a config file stops the run with the field's name.
"""

from __future__ import annotations

import re

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    caption_col: Optional[str] = Field("caption", description="column of captions; null (or 'none') for a list of "
                                                               "URLs only")
    save_additional_columns: Optional[list[str]] = Field(
        None, description="other columns of the list to carry into pairs/, as img2dataset's option of that name")

    @field_validator("caption_col", mode="before")
    @classmethod
    def _no_caption_column(cls, value):
        return None if isinstance(value, str) and value.strip().lower() in ("", "none", "null") else value

    @field_validator("save_additional_columns", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value or None
    max_caption_chars: int = Field(1000, ge=16)
    rows_per_part: int = Field(10_000, ge=1)


class DownloadOptions(_Options):
    """Options of `fairsift download`. SPEED_SETTINGS only change how fast (and how politely) rows are fetched;
    every other option shapes the shards, so changing it redownloads the parts (curate.parts lineage)."""

    image_size: int = Field(256, ge=8)
    resize_mode: Literal["no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"] = "border"
    processes: int = Field(1, ge=1, description="kept for old configs: parallelism across parts is the engine's")
    threads: int = Field(32, ge=1, description="fetch threads per part")
    timeout: int = Field(10, ge=1, description="seconds for a connect and for each read")
    total_timeout: float = Field(60.0, gt=0, description="seconds one request may take in all (slow trickles end)")
    retries: int = Field(0, ge=0, description="retries of transient failures (timeouts, resets, 500/502/504); "
                                             "DNS failures and refused connections are never retried")
    allow_private_network: bool = False
    disallowed_header_directives: list[str] = Field(default_factory=lambda: ["noai", "noimageai"])
    encode_quality: int = Field(95, ge=1, le=100)
    user_agent: Optional[str] = Field(None, description="default: fairsift/<version> (+<contact>)")
    contact: str = Field("https://github.com/fairsift/fairsift",
                         description="URL or e-mail where site owners reach you; goes in the default User-Agent")
    respect_robots_txt: bool = True
    per_host_concurrency: int = Field(8, ge=1, description="requests in flight per host, at most")
    per_host_rps: Optional[float] = Field(None, gt=0, description="request starts per second per host, at most")
    host_failure_limit: int = Field(3, ge=1, description="consecutive connection failures that close a host")
    throttle_retries: int = Field(2, ge=0, description="retries of a 429/503 that sends Retry-After")
    retry_after_max: float = Field(30.0, ge=0, description="longest Retry-After waited; longer ones fail the host")
    allowed_domains: list[str] = Field(default_factory=list, description="only these domains (and subdomains)")
    blocked_domains: list[str] = Field(default_factory=list, description="never these domains (and subdomains)")
    max_bytes: int = Field(32 << 20, ge=1024, description="largest body read (after decompression)")
    max_redirects: int = Field(10, ge=0)
    max_image_pixels: int = Field(89_478_485, ge=1, description="larger images are refused (decompression bombs)")

    @field_validator("user_agent")
    @classmethod
    def _user_agent_has_contact(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.search(r"https?://|@", value):
            raise ValueError("user_agent must include a contact URL or e-mail address, so site owners can reach "
                             f"whoever runs the download (got {value!r})")
        return value

    @field_validator("contact")
    @classmethod
    def _contact_is_reachable(cls, value: str) -> str:
        if not re.search(r"https?://\S+|\S+@\S+", value):
            raise ValueError(f"contact must be a URL or an e-mail address (got {value!r})")
        return value


DOWNLOAD_SPEED_SETTINGS = ("processes", "threads", "per_host_concurrency", "per_host_rps")


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
    cpu_threads: int = Field(1, ge=1, description="on CPU, the model's threads per worker. Fixed, not the machine's "
                             "core count, so scores are bit-identical on every engine and worker count (the thread "
                             "count changes float sums in the last bits); engines add parallel workers")


class ExportOptions(_Options):
    webdataset: bool = Field(False, description="also write webdataset tars (with format img2dataset: img2dataset's "
                                                "webdataset layout instead of its parquet layout)")
    format: Literal["fairsift", "img2dataset"] = Field(
        "fairsift", description="img2dataset: also write RUN/img2dataset/ in img2dataset's output layout")
    rows_per_part: int = Field(10_000, ge=1, description="rows per Parquet row group of the corpus parts")


def resolve_path(value: Optional[str], base: Optional[Path]) -> Optional[str]:
    """Relative paths in a config file are relative to that file, not to the working directory."""
    if value is None or base is None or "://" in value:
        return value
    p = Path(value)
    return str(p if p.is_absolute() else (base / p))
