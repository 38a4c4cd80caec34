"""Which words travel with gender terms in captions: normalised PMI of (caption mentions male/female terms) with
(caption mentions a profession, word_kind "profession") and with the most frequent caption nouns (word_kind
"noun"), captions taken as documents.

Nouns: a word is a noun when a part-of-speech tagger tags at least NOUN_SHARE of its occurrences in the reference
captions as a common noun (NN/NNS). The tagger is Pattern's Brill tagger as shipped inside the textblob wheel
(lexicon and contextual rules in the package, nothing downloaded at run time); captions are lower-cased first so
Title Case alt-texts are not read as proper nouns ("Black Dress" → black/JJ dress/NN). Tagging runs on up to
POS_SAMPLE reference captions, evenly spaced, which bounds its cost (about 9,000 captions/s); a word the tagger
never saw in that sample is not counted as a noun. The top nouns are then the nouns in most reference captions.

nPMI(g, w) = log(p(g,w) / (p(g) p(w))) / -log p(g,w): 0 when independent, +1 when w appears only and always with
g, -1 when never together. A caption whose gender_terms is "both" counts for male and for female.
Rows carry the counts behind each value (n_gw, n_g, n_w, n_docs) and flag_low_n where n_gw < min_count;
the group "female-male" holds the difference of the two nPMIs, positive where a word leans female (its n_gw is the
smaller of the two co-occurrence counts, its n_g null). Edge conventions, input checks and the 95% intervals (a
Bayesian bootstrap over documents, `n_boot` draws, seeded per population, word kind and gender by name): audit.npmi.

Scale: captions stream through in batches, twice (audit.run feeds them from DuckDB over every part): the first pass
counts each word's reference documents and keeps a part-of-speech sample (the POS_SAMPLE captions with the
smallest CRC-32, the same sample in any order), the second counts documents per (gender class, word). Memory is the
batch, the vocabulary's document counts and the sample, never the run.
"""

from __future__ import annotations

import heapq
import json
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from audit.frame import audit_rows, concat_rows, empty_frame
from audit.npmi import npmi, npmi_difference_interval, npmi_interval
from audit.stats import stream_rng

DATA_DIR = Path(__file__).with_name("data")
PROFESSIONS_PATH = DATA_DIR / "debiaswe_professions.json"
GENDER_WORDS_PATH = DATA_DIR / "lexicons" / "debiaswe_gender_specific_full.json"  # shared with audit.signals
GENDER_EVENTS = {"female": ("female", "both"), "male": ("male", "both")}
WORD_TOKEN = r"(?u)\b[^\W\d_]{2,}\b"  # words of two or more letters: no numbers, no underscores
NOUN_TAGS = frozenset({"NN", "NNS"})  # common nouns; NNP would be brand, place and person names
NOUN_SHARE = 0.5
POS_SAMPLE = 20_000
EXTRA = {"population": "object", "word": "object", "word_kind": "object", "n_gw": "int64", "n_g": "int64",
         "n_w": "int64", "n_docs": "int64", "min_count": "int64", "flag_low_n": "bool"}
# exclusive classes of a document's gender_terms; the female event is (female, both), the male event (male, both)
CLASSES = ("female", "male", "both", "other")
EVENTS = {"female": (0, 2), "male": (1, 2)}
BATCH_ROWS = 100_000


def plural(word: str) -> str:
    """English plural of a profession noun, enough for the debiaswe list (policeman -> policemen, nanny -> nannies)."""
    if word.endswith("man"):
        return word[:-3] + "men"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


@lru_cache(maxsize=4)
def load_professions(path: str | None = None) -> dict[str, str]:
    """Surface form (lower case, singular and plural, words separated by spaces) -> profession name."""
    source = Path(path) if path else PROFESSIONS_PATH
    try:
        entries = json.loads(source.read_text())
        names = [str(entry[0]) for entry in entries]
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"profession list {source} must be a JSON list of [profession, bias1, bias2]: {exc}") from exc
    forms: dict[str, str] = {}
    for name in sorted(names):
        words = name.lower().replace("_", " ").split()
        for form in (" ".join(words), " ".join([*words[:-1], plural(words[-1])])):
            forms.setdefault(form, name.replace("_", " "))
    return forms


@lru_cache(maxsize=1)
def gendered_words() -> frozenset[str]:
    return frozenset(w.lower() for w in json.loads(GENDER_WORDS_PATH.read_text()))


def profession_vectorizer(professions: dict[str, str]):
    """A fixed-vocabulary vectorizer of the profession forms, and the fold matrix forms -> profession names."""
    forms = sorted(professions)
    longest = max(len(f.split()) for f in forms)
    vectorizer = CountVectorizer(vocabulary=forms, ngram_range=(1, longest), token_pattern=r"(?u)\b\w+\b",
                                 lowercase=True, binary=True)
    names = sorted(set(professions.values()))
    index = {name: i for i, name in enumerate(names)}
    # several surface forms (singular, plural) fold into one profession column
    fold = sp.csr_matrix((np.ones(len(forms)), ([*range(len(forms))], [index[professions[f]] for f in forms])),
                         shape=(len(forms), len(names)))
    return vectorizer, fold, names


def profession_matrix(captions: list[str], professions: dict[str, str]):
    """Binary documents x professions matrix (whole words, singular or plural) and the profession names."""
    vectorizer, fold, names = profession_vectorizer(professions)
    matrix = (vectorizer.transform(captions) @ fold).tocsr()
    matrix.data[:] = 1
    return matrix, names


def noun_shares(texts: list[str]) -> dict[str, tuple[int, int]]:
    """word -> (times tagged as a common noun, times seen) over the given captions, lower-cased before tagging."""
    from textblob.en import tag  # Pattern's tagger: its lexicon and rules ship inside the textblob wheel

    seen: dict[str, list[int]] = {}
    for text in texts:
        for word, pos in tag(text.lower()):
            counts = seen.setdefault(word, [0, 0])
            counts[0] += pos in NOUN_TAGS
            counts[1] += 1
    return {w: (c[0], c[1]) for w, c in seen.items()}


@dataclass
class Batch:
    """A slice of the run: captions (None where a pair has none), gender_terms, and a row mask per population."""

    captions: list
    gender: np.ndarray
    masks: dict[str, np.ndarray]


class FrequentWords:
    """Document frequencies of the most frequent words in bounded memory (Misra-Gries with batched decrements).

    Exact while at most 2 x `capacity` distinct words have been seen. Beyond, the counts are shrunk whenever they
    hold more than 2 x `capacity` words: the (capacity + 1)-th largest count is subtracted from every count and the
    words left at zero or below go. Each shrink takes at least (capacity + 1) x cut from the total, so every count
    is low by at most (word occurrences seen) / (capacity + 1) and every word more frequent than that is kept: the
    top nouns of a caption corpus (each in far more than 1 in 50,000 captions) are chosen as with exact counts,
    while a corpus's vocabulary (numbers, names, URLs: it grows without bound with the corpus) no longer does."""

    def __init__(self, capacity: int = 50_000):
        self.capacity = capacity
        self.counts: Counter = Counter()

    def add(self, words: Iterable[str]) -> None:
        self.counts.update(words)
        if len(self.counts) > 2 * self.capacity:
            cut = heapq.nlargest(self.capacity + 1, self.counts.values())[-1]
            self.counts = Counter({w: c - cut for w, c in self.counts.items() if c > cut})


class PosSample:
    """The `size` captions with the smallest CRC-32 among those offered: a uniform sample, the same in any order."""

    def __init__(self, size: int = POS_SAMPLE):
        self.size = size
        self.keys = np.zeros(0, dtype=np.int64)
        self.texts: list[str] = []

    def offer(self, texts: list[str]) -> None:
        keys = np.array([zlib.crc32(t.encode("utf-8")) for t in texts], dtype=np.int64)
        # ties of equal keys go by text, so the sample does not depend on the order texts arrive in
        all_keys = np.concatenate([self.keys, keys])
        all_texts = self.texts + list(texts)
        if len(all_keys) > self.size:
            order = sorted(range(len(all_keys)), key=lambda i: (all_keys[i], all_texts[i]))[: self.size]
            all_keys, all_texts = all_keys[order], [all_texts[i] for i in order]
        self.keys, self.texts = all_keys, all_texts


def _classes(gender: np.ndarray) -> np.ndarray:
    codes = np.full(len(gender), 3, dtype=np.int64)
    for i, name in enumerate(CLASSES[:3]):
        codes[np.asarray(gender == name, dtype=bool)] = i
    return codes


def _word_analyzer():
    return CountVectorizer(token_pattern=WORD_TOKEN, lowercase=True, binary=True).build_analyzer()


def choose_top_nouns(batches: Callable[[], Iterable[Batch]], reference_population: str, top_words: int) -> list[str]:
    """First pass: the `top_words` nouns in most reference captions, leaving out English stop words and
    gender-specific words (their nPMI with gender is true by construction)."""
    if top_words <= 0:
        return []
    analyze = _word_analyzer()
    doc_freq = FrequentWords()
    sample = PosSample()
    for batch in batches():
        mask = batch.masks[reference_population]
        texts = [c for c, m in zip(batch.captions, mask) if m and c is not None]
        for text in texts:
            doc_freq.add(set(analyze(text)))
        sample.offer(texts)
    excluded = ENGLISH_STOP_WORDS | gendered_words()
    counts = doc_freq.counts
    candidates = sorted((w for w in counts if w not in excluded), key=lambda w: (-counts[w], w))
    shares = noun_shares(sample.texts)
    chosen = []
    for word in candidates:
        noun, total = shares.get(word, (0, 0))
        if total and noun / total >= NOUN_SHARE:
            chosen.append(word)
            if len(chosen) == top_words:
                break
    return sorted(chosen)


def cooccurrence_from_batches(batches: Callable[[], Iterable[Batch]], population_names: list[str], *,
                              reference_population: str = "downloaded", top_words: int = 50, min_count: int = 30,
                              n_boot: int = 1000, seed: int = 0,
                              professions: dict[str, str] | None = None) -> pd.DataFrame:
    """Rows of audit/cooccurrence.parquet from a re-iterable source of batches (called once per pass)."""
    nouns = choose_top_nouns(batches, reference_population, top_words)
    prof_vectorizer, fold, prof_names = profession_vectorizer(professions or load_professions())
    noun_vectorizer = CountVectorizer(vocabulary=nouns, token_pattern=WORD_TOKEN, lowercase=True, binary=True) \
        if nouns else None
    kinds = [("profession", prof_names)] + ([("noun", nouns)] if nouns else [])
    word_counts = {(p, k): np.zeros((len(names), len(CLASSES)), dtype=np.int64)
                   for p in population_names for k, names in kinds}
    class_totals = {p: np.zeros(len(CLASSES), dtype=np.int64) for p in population_names}
    for batch in batches():
        has_caption = np.array([c is not None for c in batch.captions], dtype=bool)
        texts = [c if c is not None else "" for c in batch.captions]
        classes = _classes(np.asarray(batch.gender, dtype=object))
        matrices = {"profession": (prof_vectorizer.transform(texts) @ fold).tocsr()}
        if noun_vectorizer is not None:
            matrices["noun"] = noun_vectorizer.transform(texts).tocsr()
        for m in matrices.values():
            m.data[:] = 1
        for population in population_names:
            docs = np.asarray(batch.masks[population], dtype=bool) & has_caption
            one_hot = sp.csr_matrix((np.ones(int(docs.sum())), (np.flatnonzero(docs), classes[docs])),
                                    shape=(len(texts), len(CLASSES)))
            class_totals[population] += np.bincount(classes[docs], minlength=len(CLASSES))
            for kind, _ in kinds:
                word_counts[(population, kind)] += np.asarray((matrices[kind].T @ one_hot).todense(), dtype=np.int64)
    rows = []
    for population in population_names:
        totals = class_totals[population]
        n_docs = int(totals.sum())
        if n_docs == 0:
            continue
        for kind, names in kinds:
            counts = word_counts[(population, kind)]
            n_w = counts.sum(axis=1)
            present = n_w > 0
            words = np.array(names, dtype=object)[present]
            n_gw_of = {}
            for g, idx in EVENTS.items():
                n_gw = counts[:, list(idx)].sum(axis=1)
                n_g = int(totals[list(idx)].sum())
                value = npmi(n_gw, n_g, n_w, n_docs)
                low, high = npmi_interval(n_gw[present], n_g, n_w[present], n_docs, n_boot,
                                          stream_rng(seed, "cooccurrence", population, kind, g))
                n_gw_of[g] = n_gw
                rows.append(audit_rows(
                    "cooccurrence", attribute="gender_terms", group=g, n=n_gw[present], metric="npmi",
                    value=value[present], ci_low=low, ci_high=high, population=population, word=words,
                    word_kind=kind, n_gw=n_gw[present], n_g=n_g, n_w=n_w[present], n_docs=n_docs,
                    min_count=int(min_count), flag_low_n=n_gw[present] < min_count,
                ))
            value, low, high = npmi_difference_interval(
                counts[present], totals, EVENTS["female"], EVENTS["male"], n_boot,
                stream_rng(seed, "cooccurrence", population, kind, "female-male"))
            smaller = np.minimum(n_gw_of["female"], n_gw_of["male"])[present]
            rows.append(audit_rows(
                "cooccurrence", attribute="gender_terms", group="female-male", n=n_w[present],
                metric="npmi_difference", value=value, ci_low=low, ci_high=high, population=population,
                word=words, word_kind=kind, n_gw=smaller, n_w=n_w[present], n_docs=n_docs,
                min_count=int(min_count), flag_low_n=smaller < min_count,
            ))
    if not rows:
        return empty_frame(EXTRA)
    table = concat_rows(rows)
    table["n_g"] = table["n_g"].astype("Int64")  # null on difference rows, which have two gender events
    return table


def frame_batches(captions: pd.Series, gender_terms: pd.Series, populations: dict[str, pd.Series],
                  batch_rows: int = BATCH_ROWS) -> Callable[[], Iterable[Batch]]:
    """Batches of in-memory Series (one index), for tests and small inputs."""
    texts = [c if isinstance(c, str) else None for c in captions.tolist()]
    gender = gender_terms.astype("object").to_numpy()
    masks = {name: mask.to_numpy(dtype=bool) for name, mask in populations.items()}

    def batches() -> Iterator[Batch]:
        for start in range(0, len(texts), batch_rows):
            end = start + batch_rows
            yield Batch(texts[start:end], gender[start:end], {k: m[start:end] for k, m in masks.items()})

    return batches


def cooccurrence(captions: pd.Series, gender_terms: pd.Series, populations: dict[str, pd.Series], *,
                 reference_population: str = "downloaded", top_words: int = 50, min_count: int = 30,
                 n_boot: int = 1000, seed: int = 0, professions: dict[str, str] | None = None) -> pd.DataFrame:
    """Rows of audit/cooccurrence.parquet from in-memory Series sharing one index; rows without a caption are not
    documents. The top nouns are chosen once, on the reference population."""
    return cooccurrence_from_batches(
        frame_batches(captions, gender_terms, populations), list(populations), reference_population=reference_population,
        top_words=top_words, min_count=min_count, n_boot=n_boot, seed=seed, professions=professions)
