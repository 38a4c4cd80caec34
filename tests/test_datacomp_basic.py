"""`basic` is DataComp's basic filter exactly, boundaries included.

The oracle is DataComp's own rule (baselines/apply_filter.py, load_uids_with_basic_filter_helper) transcribed
line by line below and run with fastText directly, row by row, as DataComp does; the filter's decisions must agree
with it on every row, on planted boundary cases and on real alt-texts (the bundled 2,002 LAION-style captions, and
the 10,000 of ../shared when present).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from curate import schemas, tables
from curate.filter.language_id import detect_languages, fasttext_model_path
from curate.filter.stage import FilterConfig, filter_run

DATA = Path(__file__).resolve().parent / "data" / "captions" / "laion_style_alt_texts_2002.parquet"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "captions" / "laion_style_alt_texts_10000.parquet"


def datacomp_basic(frame: pd.DataFrame) -> np.ndarray:
    """DataComp's load_uids_with_basic_filter_helper on a frame with text, original_width, original_height."""
    import fasttext

    model = fasttext.load_model(fasttext_model_path())
    fasttext_lang_pred = frame.text.apply(lambda x: model.predict(x.replace("\n", " "))[0][0].split("__label__")[1])
    caption_num_words = frame.text.apply(lambda x: len(x.split()))
    caption_num_chars = frame.text.apply(lambda x: len(x))
    english_mask = fasttext_lang_pred == "en"
    caption_mask = (caption_num_words > 2) & (caption_num_chars > 5)
    min_image_dim = np.minimum(frame.original_width, frame.original_height)
    max_image_dim = np.maximum(frame.original_width, frame.original_height)
    aspect_ratio = max_image_dim / min_image_dim
    image_mask = (min_image_dim >= 200) & (aspect_ratio <= 3.0)
    return (english_mask & caption_mask & image_mask).to_numpy()


def write_shards(run_dir: Path, captions: list[str], sizes: list[tuple[int, int]]) -> list[str]:
    urls = [f"http://127.0.0.1/img/{i}.jpg" for i in range(len(captions))]
    uids = [tables.compute_uid(u, c) for u, c in zip(urls, captions)]
    table = pa.table({
        "uid": uids, "url": urls, "caption": captions, "status": ["success"] * len(uids),
        "error_message": pa.nulls(len(uids), pa.string()), "image": pa.nulls(len(uids), pa.binary()),
        "width": [256] * len(uids), "height": [256] * len(uids),
        "original_width": [w for w, _ in sizes], "original_height": [h for _, h in sizes],
        "sha256": pa.nulls(len(uids), pa.string()),
    })
    tables.write_part(run_dir, "shards", 0, schemas.conform(table, schemas.SHARDS))
    return uids


ENGLISH = "a photo of a dog running on the beach"
BOUNDARIES = [  # (caption, original size, kept by DataComp?) — sizes from the rule's own comparisons
    (ENGLISH, (200, 200), True),     # min side == 200: `>= 200`
    (ENGLISH, (600, 200), True),     # aspect ratio == 3: `<= 3.0`
    (ENGLISH, (201, 603), True),     # 603 / 201 == 3.0 exactly
    (ENGLISH, (603, 201), True),
    (ENGLISH, (199, 400), False),    # min side 199
    (ENGLISH, (200, 601), False),    # aspect 3.005
    (ENGLISH, (0, 300), False),      # a zero side: min 0 < 200
    ("a b c", (640, 480), False),    # 3 words but 5 characters: `len(caption) > 5` fails
    ("two words", (640, 480), False),  # 9 characters, 2 words: `len(caption.split()) > 2` fails
    ("a dog runs", (640, 480), True),  # 3 words, 10 characters
    ("Ein schwarzer Hund spielt im Park mit einem Ball", (640, 480), False),  # fastText: de
    ("Meet us at Mounds Dog Fest on June 10th", (640, 480), True),  # py3langid said pcm; fastText says en
]


def test_boundary_cases_match_datacomp(tmp_path):
    captions = [c for c, _, _ in BOUNDARIES]
    sizes = [s for _, s, _ in BOUNDARIES]
    uids = write_shards(tmp_path, captions, sizes)
    filter_run(tmp_path, FilterConfig.model_validate({"steps": ["basic"]}))
    d = tables.read_table(tmp_path, "decisions").to_pandas().set_index("uid").loc[uids]
    expected = [kept for _, _, kept in BOUNDARIES]
    assert d["pass_basic"].tolist() == expected
    oracle = datacomp_basic(pd.DataFrame({"text": captions, "original_width": [w for w, _ in sizes],
                                          "original_height": [h for _, h in sizes]}))
    assert oracle.tolist() == expected  # the transcription itself agrees with the hand-worked cases
    chars = d.loc[uids[7]]
    assert not chars["basic_caption_chars"] and chars["basic_caption_words"]
    assert "caption_chars: 5 characters < min_chars 6" in chars["reason"]
    assert "min side 199 < 200" in d.loc[uids[4], "reason"]
    assert "aspect ratio 3.005 > 3" in d.loc[uids[5], "reason"]


def _agreement(tmp_path: Path, captions: list[str]) -> None:
    sizes = [(640, 480)] * len(captions)  # image checks pass: this measures the caption part
    uids = write_shards(tmp_path, captions, sizes)
    counts = filter_run(tmp_path, FilterConfig.model_validate({"steps": ["basic"]}))
    d = tables.read_table(tmp_path, "decisions").to_pandas()
    assert d["uid"].tolist() == uids
    oracle = datacomp_basic(pd.DataFrame({"text": captions, "original_width": 640, "original_height": 480}))
    disagree = [captions[i] for i in np.flatnonzero(d["pass_basic"].to_numpy() != oracle)]
    assert disagree == []
    assert counts["steps"]["basic"]["pass"] == int(oracle.sum())
    assert 0.5 * len(captions) < oracle.sum() < len(captions)  # real data: most pass, not all


def test_caption_checks_agree_with_datacomp_on_real_alt_texts(tmp_path):
    captions = pq.read_table(DATA, columns=["TEXT"]).column("TEXT").to_pylist()
    assert len(captions) == 2002
    _agreement(tmp_path / "bundled", captions)
    if SHARED.is_file():  # all 10,000 when ../shared is beside the checkout
        _agreement(tmp_path / "shared", pq.read_table(SHARED, columns=["TEXT"]).column("TEXT").to_pylist())


def test_py3langid_stays_available_and_signals_lang_follows_the_detector(tmp_path):
    captions = [ENGLISH, "Ein schwarzer Hund spielt im Park mit einem Ball", "a man smiling"]
    uids = write_shards(tmp_path, captions, [(640, 480)] * 3)
    filter_run(tmp_path, FilterConfig.model_validate({"steps": [{"language": {"detector": "py3langid"}}]}))
    lang = tables.read_table(tmp_path, "lang").to_pandas().set_index("uid").loc[uids]
    assert set(lang["detector"]) == {"py3langid"}
    expected = detect_languages(captions, "py3langid")
    assert lang["language"].tolist() == [e[0] for e in expected]
    from py3langid.langid import MODEL_FILE, LanguageIdentifier  # independent of the wrapper

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    assert lang["language"].tolist() == [ident.classify(c)[0] for c in captions]

    filter_run(tmp_path, FilterConfig.model_validate({"steps": ["language"]}))  # fastText now: detected again
    lang = tables.read_table(tmp_path, "lang").to_pandas().set_index("uid").loc[uids]
    assert set(lang["detector"]) == {"fasttext"}
    assert lang["language"].tolist()[:2] == ["en", "de"]


def test_fasttext_model_loads_from_the_installed_wheel_without_network():
    path = Path(fasttext_model_path())
    assert path.name == "lid.176.ftz" and path.stat().st_size < 2_000_000
    assert detect_languages(["", "   ", "bonjour tout le monde, comment allez-vous"]) [:2] == [(None, 0.0), (None, 0.0)]
    assert detect_languages(["bonjour tout le monde, comment allez-vous"])[0][0] == "fr"
