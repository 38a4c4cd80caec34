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
smaller of the two co-occurrence counts, its n_g null).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from audit.frame import audit_rows, concat_rows, empty_frame
from audit.stats import npmi

DATA_DIR = Path(__file__).with_name("data")
PROFESSIONS_PATH = DATA_DIR / "debiaswe_professions.json"
GENDER_WORDS_PATH = DATA_DIR / "lexicons" / "debiaswe_gender_specific_full.json"  # shared with audit.signals
GENDER_EVENTS = {"female": ("female", "both"), "male": ("male", "both")}
WORD_TOKEN = r"(?u)\b[^\W\d_]{2,}\b"  # words of two or more letters: no numbers, no underscores
NOUN_TAGS = frozenset({"NN", "NNS"})  # common nouns; NNP would be brand, place and person names
NOUN_SHARE = 0.5
POS_SAMPLE = 20_000
EXTRA = {"population": "object", "word": "object", "word_kind": "object", "n_gw": "int64", "n_g": "int64",
         "n_w": "int64", "n_docs": "int64", "flag_low_n": "bool"}


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


def profession_matrix(captions: list[str], professions: dict[str, str]):
    """Binary documents × professions matrix (whole words, singular or plural) and the profession names."""
    forms = sorted(professions)
    longest = max(len(f.split()) for f in forms)
    vectorizer = CountVectorizer(vocabulary=forms, ngram_range=(1, longest), token_pattern=r"(?u)\b\w+\b",
                                 lowercase=True, binary=True)
    by_form = vectorizer.transform(captions)
    names = sorted(set(professions.values()))
    index = {name: i for i, name in enumerate(names)}
    # several surface forms (singular, plural) fold into one profession column
    fold = sp.csr_matrix((np.ones(len(forms)), ([*range(len(forms))], [index[professions[f]] for f in forms])),
                         shape=(len(forms), len(names)))
    matrix = (by_form @ fold).tocsr()
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


def pos_sample(texts: list[str], reference: np.ndarray, size: int = POS_SAMPLE) -> list[str]:
    """Up to `size` reference captions, evenly spaced, so the result is deterministic and spans the corpus."""
    rows = np.flatnonzero(reference)
    if len(rows) > size:
        rows = rows[np.linspace(0, len(rows) - 1, size).round().astype(int)]
    return [texts[i] for i in rows]


def top_noun_matrix(captions: list[str], reference: np.ndarray, top_words: int):
    """Binary documents × words matrix for the `top_words` nouns in most captions of the reference rows,
    leaving out English stop words and gender-specific words (their nPMI with gender is true by construction).
    """
    if top_words <= 0:
        return None, []
    vectorizer = CountVectorizer(token_pattern=WORD_TOKEN, lowercase=True, binary=True, dtype=np.int32)
    try:
        matrix = vectorizer.fit_transform(captions)
    except ValueError:  # no words at all
        return None, []
    vocab = vectorizer.get_feature_names_out()
    doc_freq = np.asarray(matrix[reference].sum(axis=0)).ravel()
    excluded = ENGLISH_STOP_WORDS | gendered_words()
    allowed = np.array([w not in excluded for w in vocab]) & (doc_freq > 0)
    candidates = np.flatnonzero(allowed)
    by_freq = candidates[np.lexsort((vocab[candidates], -doc_freq[candidates]))]  # most captions, then alphabetical
    shares = noun_shares(pos_sample(captions, reference))
    chosen = []
    for j in by_freq:
        noun, total = shares.get(str(vocab[j]), (0, 0))
        if total and noun / total >= NOUN_SHARE:
            chosen.append(j)
            if len(chosen) == top_words:
                break
    chosen = np.sort(np.array(chosen, dtype=int))
    return matrix[:, chosen].tocsr(), [str(w) for w in vocab[chosen]]


def cooccurrence(captions: pd.Series, gender_terms: pd.Series, populations: dict[str, pd.Series], *,
                 reference_population: str = "downloaded", top_words: int = 50, min_count: int = 30,
                 professions: dict[str, str] | None = None) -> pd.DataFrame:
    """Rows of audit/cooccurrence.parquet. `captions`, `gender_terms` and each population mask share one index;
    rows without a caption are not documents. The top nouns are chosen once, on the reference population.
    """
    has_caption = captions.notna().to_numpy()
    texts = captions.fillna("").astype(str).tolist()
    prof_matrix, prof_names = profession_matrix(texts, professions or load_professions())
    reference = populations[reference_population].to_numpy(dtype=bool) & has_caption
    word_matrix, word_names = top_noun_matrix(texts, reference, top_words)
    gender = gender_terms.astype("object").to_numpy()
    rows = []
    for population, mask in populations.items():
        docs = mask.to_numpy(dtype=bool) & has_caption
        n_docs = int(docs.sum())
        if n_docs == 0:
            continue
        for kind, matrix, names in (("profession", prof_matrix, prof_names), ("noun", word_matrix, word_names)):
            if matrix is None or not names:
                continue
            sub = matrix[docs]
            n_w = np.asarray(sub.sum(axis=0)).ravel().astype(np.int64)
            present = n_w > 0
            by_gender = {}
            for g, values in GENDER_EVENTS.items():
                event = np.isin(gender[docs], values)
                n_gw = np.asarray(sub.T @ event.astype(np.int64)).ravel().astype(np.int64)
                n_g = int(event.sum())
                value = npmi(n_gw, n_g, n_w, n_docs)
                by_gender[g] = (value, n_gw)
                rows.append(audit_rows(
                    "cooccurrence", attribute="gender_terms", group=g, n=n_gw[present], metric="npmi",
                    value=value[present], population=population, word=np.array(names, dtype=object)[present],
                    word_kind=kind, n_gw=n_gw[present], n_g=n_g, n_w=n_w[present], n_docs=n_docs,
                    flag_low_n=n_gw[present] < min_count,
                ))
            (f_value, f_n), (m_value, m_n) = by_gender["female"], by_gender["male"]
            rows.append(audit_rows(
                "cooccurrence", attribute="gender_terms", group="female-male", n=n_w[present],
                metric="npmi_difference", value=(f_value - m_value)[present], population=population,
                word=np.array(names, dtype=object)[present], word_kind=kind,
                n_gw=np.minimum(f_n, m_n)[present], n_w=n_w[present], n_docs=n_docs,
                flag_low_n=np.minimum(f_n, m_n)[present] < min_count,
            ))
    if not rows:
        return empty_frame(EXTRA)
    table = concat_rows(rows)
    table["n_g"] = table["n_g"].astype("Int64")  # null on difference rows, which have two gender events
    return table
