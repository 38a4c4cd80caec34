"""Options of `fairsift probe`, and the parsing of its KIND:PATH dataset arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

DATASET_KINDS = {
    "fairface": "a folder with labels.csv (file, age, gender, race) and the images it names",
    "country": "a CSV with columns file (relative to the CSV's folder) and country (Country211 name or alpha-2 code)",
}


class ProbeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = "ViT-B-32"
    pretrained: Optional[str] = None
    checkpoint: Optional[str] = None
    datasets: list[str] = Field(default_factory=list, description="KIND:PATH, e.g. fairface:DIR or country:CSV")
    device: str = "auto"
    n_boot: int = Field(1000, ge=0, description="bootstrap resamples of the CIs of WEAT effect sizes and fairness "
                                                "differences (rates use exact Clopper-Pearson intervals); 0: none")
    min_count: int = Field(30, ge=1, description="groups with fewer images are flagged (flag_low_n)")
    seed: int = 0
    n_permutations: int = Field(10_000, ge=1, description="random relabellings of the association test's p-value")
    batch_size: int = Field(64, ge=1)
    top_k: int = Field(5, ge=1, description="labels kept per image in the predictions tables")


@dataclass(frozen=True)
class DatasetSpec:
    kind: str
    path: Path

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}"


def parse_dataset(text: str) -> DatasetSpec:
    """'fairface:/data/fairface' -> DatasetSpec; a clear error for an unknown kind or a missing path."""
    kind, sep, path = text.partition(":")
    kind = kind.strip().lower()
    if not sep or not path or kind not in DATASET_KINDS:
        kinds = "; ".join(f"{k}:PATH ({what})" for k, what in DATASET_KINDS.items())
        raise ValueError(f"--dataset {text!r} must be KIND:PATH with KIND one of: {kinds}")
    spec = DatasetSpec(kind, Path(path).expanduser())
    if kind == "fairface" and not spec.path.is_dir():
        raise FileNotFoundError(f"--dataset {text}: FairFace folder not found: {spec.path}")
    if kind == "country" and not spec.path.is_file():
        raise FileNotFoundError(f"--dataset {text}: country CSV not found: {spec.path}")
    return spec
