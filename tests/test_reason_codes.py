"""reason_code: one `step.rule` per dropped row, from the step and its readable reason (hand-worked cases)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.filter.reason_codes import reason_code, with_reason_codes


@pytest.mark.parametrize("step, reason, code", [
    (None, None, None),
    ("download", "failed_to_download", "download.failed_to_download"),
    ("download", "blocked_private_network", "download.blocked_private_network"),
    ("dedup", "dup_of 1a2b3c4d… (phash)", "dedup.phash"),
    ("dedup", "matches eval-set image cat.png (eval_set)", "dedup.eval_set"),
    ("basic", "language fr (0.79) not in [en]", "basic.language"),
    ("basic", "image_size: min side 150 <= 200 (original 150x300); aspect_ratio: aspect ratio 4 >= 3", "basic.image_size"),
    ("basic", "caption_words: 2 words < min_words 3", "basic.caption_words"),
    ("clip_threshold", "clip_score 0.12 < 0.28", "clip_threshold.min_score"),
    ("clip_threshold", "no clip_score", "clip_threshold.no_score"),
    ("clip_top_fraction", "clip_score 0.12 < top 30% cut 0.28", "clip_top_fraction.below_cut"),
    ("clip_top_fraction", "clip_score 0.28 = top 30% cut 0.28, left out by uid order", "clip_top_fraction.tie_by_uid"),
    ("clip_top_fraction", "clip_score 0.2 < group threshold 0.25 (gender_terms=female)",
     "clip_top_fraction.group_threshold"),
    ("clip_top_fraction", "clip_score 0.2: no row of gender_terms=none kept", "clip_top_fraction.group_empty"),
    ("clip_top_fraction", "no clip_score", "clip_top_fraction.no_score"),
    ("language", "no caption text to detect a language", "language.no_caption"),
    ("language", "language de (0.99) not in [en]", "language.not_listed"),
    ("language", "language en (0.40) < min_confidence 0.5", "language.low_confidence"),
    ("caption_words", "2 words < min_words 3", "caption_words.min_words"),
    ("caption_words", "40 words > max_words 30", "caption_words.max_words"),
    ("image_size", "min side 100 <= 200 (original 100x100)", "image_size.min_side"),
    ("image_size", "no original image size", "image_size.no_size"),
    ("aspect_ratio", "aspect ratio 4 >= 3 (original 400x100)", "aspect_ratio.max_ratio"),
    ("nsfw_caption", "caption contains NSFW term 'xxx'", "nsfw_caption.term"),
    ("new_step", "something new", "new_step.other"),
])
def test_reason_code(step, reason, code):
    assert reason_code(step, reason) == code


def test_basic_uses_its_check_columns_and_the_column_follows_reason():
    decisions = pa.table({"uid": ["a", "b", "c"], "kept": [True, False, False], "dropped_by": [None, "basic", "dedup"],
                          "reason": [None, "language fr (0.79) not in [en]; image_size: min side 1 <= 200 (original 1x1)",
                                     "dup_of x (sha256)"],
                          "basic_language": [True, True, True], "basic_image_size": [True, False, True]})
    out = with_reason_codes(decisions)
    assert out.column_names.index("reason_code") == out.column_names.index("reason") + 1
    # the columns say language passed here (e.g. an uncertain guess) and image_size failed: the columns win
    assert out.column("reason_code").to_pylist() == [None, "basic.image_size", "dedup.sha256"]
    assert with_reason_codes(out).column_names == out.column_names  # idempotent
