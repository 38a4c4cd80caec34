"""The filter steps. Each is a small pydantic model: its fields are the step's options (a typo is refused by name),
`name` is the key it is written under in a config and the `pass_<name>` column of decisions, and `evaluate`
says for every row whether it passes this step ON ITS OWN and, where it fails, why.

Steps never see each other's results: the filter combines them (kept = AND, dropped_by = first failure), so each
`pass_<step>` column answers "what would this step alone have removed", which is what marginal-impact audits need.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import ClassVar, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curate.filter.context import FilterContext
from curate.filter.language_id import Detector
from curate.filter.step_base import FilterStep, StepResult, step_result, fmt, nullable
from curate.filter.top_fraction import prepare_top_fraction, top_fraction_step
from curate.schemas import DUP_KINDS

SizeSource = Literal["original", "resized"]


class DedupStep(FilterStep):
    """Drop rows that duplicate a kept representative. Eval-set matches are always dropped (decontamination)."""

    name: Literal["dedup"] = "dedup"
    kinds: list[Literal[DUP_KINDS]] = Field(default_factory=lambda: list(DUP_KINDS),  # type: ignore[valid-type]
                                            description="duplicate kinds to drop; eval_set is dropped regardless")
    needs: ClassVar[tuple[str, ...]] = ("dedup",)

    def evaluate(self, ctx: FilterContext) -> StepResult:
        dedup = ctx.dedup
        kinds = set(self.kinds)
        kind = dedup["dup_kind"]
        is_dup = (kind == "eval_set") | (dedup["dup_of"].notna() & (kind.isna() | kind.isin(kinds)))
        # a uid may have several duplicate rows (e.g. phash and semantic): the eval-set one explains it best
        flagged = dedup[is_dup.to_numpy()].assign(_eval_first=lambda d: d["dup_kind"] != "eval_set")
        flagged = flagged.sort_values("_eval_first", kind="stable")
        if "eval_match" not in flagged:
            flagged = flagged.assign(eval_match=None)
        aligned = ctx.align(flagged[["uid", "dup_of", "dup_kind", "eval_match"]])
        dup_of = aligned["dup_of"].tolist()
        dup_kind = aligned["dup_kind"].tolist()
        eval_match = aligned["eval_match"].tolist()
        is_flagged = aligned["dup_kind"].notna().to_numpy() | aligned["dup_of"].notna().to_numpy()

        def reason(i: int) -> str:
            if dup_kind[i] == "eval_set" and isinstance(eval_match[i], str):
                return f"matches eval-set image {eval_match[i]} (eval_set)"
            other = dup_of[i] if isinstance(dup_of[i], str) else "?"
            # a uid is shortened like a git hash; an eval-set item's name is shown whole
            shown = other[:8] + "…" if re.fullmatch(r"[0-9a-f]{32}", other) else other
            return f"dup_of {shown} ({dup_kind[i] if isinstance(dup_kind[i], str) else 'unknown kind'})"

        result = step_result(~is_flagged, reason)
        result.helpers = {"dup_of": [d if isinstance(d, str) else None for d in dup_of],
                          "dup_kind": [k if isinstance(k, str) else None for k in dup_kind]}
        return result


class ClipThresholdStep(FilterStep):
    name: Literal["clip_threshold"] = "clip_threshold"
    min_score: float = Field(0.28, description="keep rows with clip_score >= min_score (LAION used 0.28 for ViT-B-32)")
    needs: ClassVar[tuple[str, ...]] = ("clip",)

    def evaluate(self, ctx: FilterContext) -> StepResult:
        scores = ctx.clip_scores
        passed = np.nan_to_num(scores, nan=-np.inf) >= self.min_score

        def reason(i: int) -> str:
            s = scores[i]
            return "no clip_score" if math.isnan(s) else f"clip_score {fmt(s)} < {fmt(self.min_score)}"

        result = step_result(passed, reason)
        result.helpers = {"clip_score": nullable(scores)}
        result.thresholds = {self.name: self.min_score}
        return result


class GroupParityOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    attribute: str = Field("gender_terms", description="column of signals/groups (written by `fairsift audit`)")
    min_ratio: float = Field(0.8, gt=0, le=1, description="every constrained group's inclusion rate / the reference "
                                                           "rate must reach this (0.8: the four-fifths rule)")
    reference: Literal["max", "overall"] = Field(
        "max", description="max: the highest-rate constrained group (the four-fifths rule's reference); overall: the "
                           "rate of all scored rows")
    min_count: int = Field(30, ge=1, description="groups with fewer scored rows are left out of the constraint "
                                                 "(listed in the report as excluded_groups)")


class ClipTopFractionStep(FilterStep):
    """Keep the top `fraction` of scored rows by clip_score (DataComp's "CLIP score top 30%"); ties broken by uid."""

    name: Literal["clip_top_fraction"] = "clip_top_fraction"
    fraction: float = Field(0.3, gt=0, le=1)
    group_parity: Optional[GroupParityOptions] = None
    needs: ClassVar[tuple[str, ...]] = ("clip",)

    def evaluate(self, ctx: FilterContext) -> StepResult:
        return top_fraction_step(self, ctx)

    def prepare(self, run_dir: Path) -> dict:
        return prepare_top_fraction(self, run_dir)


class LanguageStep(FilterStep):
    """Keep captions whose detected language is in `languages`. The default is DataComp's rule: fastText lid.176's
    top-1 label is kept when it is in the list, whatever its probability (`detector: py3langid` for the older
    detector; `uncertain: pass` to let a non-listed guess under `uncertain_below` through)."""

    name: Literal["language"] = "language"
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1, description="ISO 639-1 codes kept")
    detector: Detector = Field("fasttext", description="fasttext (lid.176, as DataComp) or py3langid")
    min_confidence: float = Field(0.0, ge=0, le=1, description="the detector's probability of its top guess")
    uncertain_below: float = Field(0.5, ge=0, le=1, description="a top guess under this probability is uncertain")
    uncertain: Literal["pass", "drop"] = Field(
        "drop", description="pass: a caption whose uncertain guess is not in `languages` passes (a short caption "
                            "with a foreign name is often misread); drop: the top-1 guess decides, as DataComp")

    def evaluate(self, ctx: FilterContext) -> StepResult:
        language, prob = ctx.languages_by(self.detector)
        wanted = set(self.languages)
        in_list = np.array([lang in wanted for lang in language], dtype=bool)
        known = np.array([lang is not None for lang in language], dtype=bool)
        uncertain = known & (prob < self.uncertain_below)
        passed = in_list & (prob >= self.min_confidence)
        if self.uncertain == "pass":
            passed |= uncertain & ~in_list
        shown = "[" + ", ".join(self.languages) + "]"

        def reason(i: int) -> str:
            if language[i] is None:
                return "no caption text to detect a language"
            if not in_list[i]:
                return f"language {language[i]} ({prob[i]:.2f}) not in {shown}"
            return f"language {language[i]} ({prob[i]:.2f}) < min_confidence {fmt(self.min_confidence)}"

        result = step_result(passed, reason)
        result.helpers = {"language": list(language), "language_prob": [float(p) for p in prob]}
        return result


class CaptionWordsStep(FilterStep):
    """Words are what `str.split()` returns, as in DataComp's `len(caption.split()) > 2`."""

    name: Literal["caption_words"] = "caption_words"
    min_words: int = Field(3, ge=0, description="keep captions of at least this many words (DataComp: > 2 words)")
    max_words: Optional[int] = Field(None, ge=1)

    def evaluate(self, ctx: FilterContext) -> StepResult:
        words = np.array([len(c.split()) for c in ctx.captions], dtype=np.int64)
        passed = words >= self.min_words
        if self.max_words is not None:
            passed &= words <= self.max_words

        def reason(i: int) -> str:
            if words[i] < self.min_words:
                return f"{words[i]} words < min_words {self.min_words}"
            return f"{words[i]} words > max_words {self.max_words}"

        result = step_result(passed, reason)
        result.helpers = {"caption_words": words.tolist()}
        return result


class CaptionCharsStep(FilterStep):
    """Characters are Python's `len(caption)`, as in DataComp's `len(caption) > 5`."""

    name: Literal["caption_chars"] = "caption_chars"
    min_chars: int = Field(6, ge=0, description="keep captions of at least this many characters (DataComp: > 5)")

    def evaluate(self, ctx: FilterContext) -> StepResult:
        chars = np.array([len(c) for c in ctx.captions], dtype=np.int64)
        passed = chars >= self.min_chars
        result = step_result(passed, lambda i: f"{chars[i]} characters < min_chars {self.min_chars}")
        result.helpers = {"caption_chars": chars.tolist()}
        return result


class ImageSizeStep(FilterStep):
    """Keep images whose smaller side is at least `min_side`, as DataComp's `min(original_width, original_height)
    >= 200`. DataComp measures the ORIGINAL image, before it is resized for the shards."""

    name: Literal["image_size"] = "image_size"
    min_side: int = Field(200, ge=0, description="smallest side kept, in pixels (inclusive)")
    use: SizeSource = "original"

    def evaluate(self, ctx: FilterContext) -> StepResult:
        width, height = ctx.image_sizes(self.use)
        side = np.fmin(width, height)
        passed = np.nan_to_num(side, nan=-np.inf) >= self.min_side

        def reason(i: int) -> str:
            if math.isnan(side[i]):
                return f"no {self.use} image size"
            return f"min side {int(side[i])} < {self.min_side} ({self.use} {int(width[i])}x{int(height[i])})"

        result = step_result(passed, reason)
        result.helpers = {"min_side": nullable(side)}
        return result


class AspectRatioStep(FilterStep):
    """Keep images whose long side / short side is at most `max_ratio`, as DataComp's `aspect_ratio <= 3.0`."""

    name: Literal["aspect_ratio"] = "aspect_ratio"
    max_ratio: float = Field(3.0, ge=1, description="largest long/short side ratio kept (inclusive)")
    use: SizeSource = "original"

    def evaluate(self, ctx: FilterContext) -> StepResult:
        width, height = ctx.image_sizes(self.use)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.fmax(width, height) / np.fmin(width, height)
        ratio[np.fmin(width, height) == 0] = np.inf
        passed = np.nan_to_num(ratio, nan=np.inf) <= self.max_ratio

        def reason(i: int) -> str:
            if math.isnan(ratio[i]):
                return f"no {self.use} image size"
            return (f"aspect ratio {fmt(ratio[i])} > {fmt(self.max_ratio)} "
                    f"({self.use} {int(width[i])}x{int(height[i])})")

        result = step_result(passed, reason)
        result.helpers = {"aspect_ratio": nullable(np.where(np.isinf(ratio), np.nan, ratio))}
        return result


@lru_cache(maxsize=8)
def nsfw_pattern(words_file: Optional[str]) -> re.Pattern:
    if words_file is None:
        text = resources.files("curate.filter.data").joinpath("nsfw_words.txt").read_text(encoding="utf-8")
    else:
        path = Path(words_file)
        if not path.is_file():
            raise FileNotFoundError(f"nsfw_caption words_file not found: {path}")
        text = path.read_text(encoding="utf-8")
    words = [w.strip() for w in text.splitlines() if w.strip() and not w.lstrip().startswith("#")]
    if not words:
        raise ValueError(f"nsfw_caption word list is empty: {words_file or 'curate/data/nsfw_words.txt'}")
    # longest first so a phrase wins over a word it starts with; \b makes matches whole words
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


class NsfwCaptionStep(FilterStep):
    name: Literal["nsfw_caption"] = "nsfw_caption"
    words_file: Optional[str] = Field(None, description="one term a line; default: the list shipped in curate/data")

    def evaluate(self, ctx: FilterContext) -> StepResult:
        pattern = nsfw_pattern(self.words_file)
        matches = [pattern.search(c) for c in ctx.captions]
        passed = np.array([m is None for m in matches], dtype=bool)
        return step_result(passed, lambda i: f"caption contains NSFW term '{matches[i].group(0).lower()}'")


class BasicStep(FilterStep):
    """DataComp's basic filter, boundaries included (baselines/apply_filter.py,
    load_uids_with_basic_filter_helper): fastText lid.176's top-1 language is `en`, `len(caption.split()) > 2`,
    `len(caption) > 5`, `min(original_width, original_height) >= 200` and `max / min side <= 3`.

    One `pass_basic` column keeps the funnel comparable with DataComp; each sub-check is also a `basic_<check>`
    boolean column and named in the reason. List the five steps separately to audit each on its own."""

    name: Literal["basic"] = "basic"
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    detector: Detector = "fasttext"
    min_words: int = Field(3, ge=0)
    min_chars: int = Field(6, ge=0)
    min_side: int = Field(200, ge=0)
    max_ratio: float = Field(3.0, ge=1)
    use: SizeSource = "original"

    def sub_steps(self) -> list[FilterStep]:
        return [
            LanguageStep(languages=self.languages, detector=self.detector, uncertain="drop"),
            CaptionWordsStep(min_words=self.min_words),
            CaptionCharsStep(min_chars=self.min_chars),
            ImageSizeStep(min_side=self.min_side, use=self.use),
            AspectRatioStep(max_ratio=self.max_ratio, use=self.use),
        ]

    def evaluate(self, ctx: FilterContext) -> StepResult:
        results = [(step.name, step.evaluate(ctx)) for step in self.sub_steps()]
        passed = np.logical_and.reduce([r.passed for _, r in results])

        def labelled(name: str, text: str) -> str:
            return text if text.startswith(name) else f"{name}: {text}"

        def reason(i: int) -> str:
            return "; ".join(labelled(name, r.reasons[i]) for name, r in results if not r.passed[i])

        combined = step_result(passed, reason)
        for name, r in results:
            combined.helpers.update(r.helpers)
            combined.helpers[f"basic_{name}"] = r.passed.tolist()
        return combined


STEP_TYPES: tuple[type[FilterStep], ...] = (
    DedupStep, ClipThresholdStep, ClipTopFractionStep, LanguageStep, CaptionWordsStep, CaptionCharsStep,
    ImageSizeStep, AspectRatioStep, NsfwCaptionStep, BasicStep,
)
STEP_NAMES: tuple[str, ...] = tuple(t.model_fields["name"].default for t in STEP_TYPES)
