"""Gender and age words in captions, matched with one compiled regular expression per lexicon side.

How the gender word lists are built (all sources are in audit/data/lexicons/, see audit/data/README.md):
1. debiaswe definitional pairs ([female, male]) and the GN-GloVe aligned male/female word files give words whose
   side is known.
2. debiaswe equalize pairs are in no fixed order: a pair is used when one of its words already has a known side,
   and the other word takes the other side.
3. debiaswe's gender_specific_full list has no sides; one of its words is used only when it is built on a root whose
   side is known (policewoman, stepsister, menfolk): the side comes from that root.
4. gender_excluded_words.csv removes animals, body parts, concepts, first names and words that are neutral or
   mostly mean something else in current use (host, actor, master, lord, witch).
Each word also matches its plural ("women", "ladies", "mens", "womens"); possessives ("man's", "women's", "mens'")
match because the apostrophe is a word boundary. Matching is case-insensitive and whole-word.
gender_exceptions.csv removes phrases whose gender word names no person ("queen of hearts", "king size",
"boyfriend jeans") before matching.

Age words (age_terms.csv, curated for fairsift) fall in four groups: child (0-12), young (13-24), adult (25-64),
old (65+). "N year old" followed by a person word ("a 5 year old boy") is binned by N. A caption with words from
two or more groups is "mixed", the counterpart of gender's "both".
"""

from __future__ import annotations

import csv
import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DATA = Path(__file__).resolve().parent / "data"
LEX = DATA / "lexicons"
AGE_GROUPS = ("child", "young", "adult", "old")
PRONOUNS = frozenset("he she him his her hers himself herself".split())
# side roots for step 3, longest first so "woman" is tried before "man"
FEMALE_ROOTS = ("daughter", "mother", "sister", "woman", "women", "queen", "wife", "wives", "girl", "lady", "ladies")
MALE_ROOTS = ("brother", "father", "husband", "king", "son", "man", "men", "boy", "dad")
PERSON_WORDS = (
    "boy|boys|girl|girls|man|men|woman|women|child|children|kid|kids|baby|son|sons|daughter|daughters|person|"
    "people|lady|ladies|guy|guys|toddler|student|students|brother|sister|twins?|player|athlete"
)
AGE_NUMBER_RE = rf"\b(?P<years>\d{{1,3}})[ -]?(?:year|yr)s?[ -]?old[ -](?:{PERSON_WORDS})\b"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def _plurals(word: str) -> set[str]:
    if word in PRONOUNS or " " in word or not set(word) & set("aeiouy"):
        return set()  # pronouns, phrases and abbreviations ("mr" + "s" would be "mrs") have no plural here
    if word.endswith("man"):
        return {word[:-3] + "men", word[:-3] + "mens"}  # not "mans": "Le Mans"
    if word.endswith("men"):
        return {word + "s"}  # "mens", "womens" as written in product captions
    if word.endswith(("ss", "x", "ch", "sh")):
        return {word + "es"}
    if word.endswith("s"):
        return set()  # already plural (the source lists hold both forms)
    if word.endswith("y") and len(word) > 2 and word[-2] not in "aeiou":
        return {word[:-1] + "ies"}
    return {word + "s"}


def _side_from_root(word: str) -> str | None:
    for side, roots in (("female", FEMALE_ROOTS), ("male", MALE_ROOTS)):
        for root in roots:
            # the root must stand at an end of the word with at least 3 other letters (not "mason", "human")
            if (word.endswith(root) or word.startswith(root)) and len(word) - len(root) >= 3:
                return side
    return None


@lru_cache(maxsize=1)
def gender_words() -> dict[str, frozenset[str]]:
    """{'male': words, 'female': words}: base words and their plurals, lower case."""
    excluded = {r["word"] for r in _read_csv(DATA / "gender_excluded_words.csv")}
    side: dict[str, str] = {}

    def put(word: str, s: str) -> None:
        # "mr." -> "mr": a trailing dot cannot end a whole-word match
        w = word.lower().replace("_", " ").strip().rstrip(".")
        if w and w not in excluded and not any(ch.isdigit() for ch in w):
            side.setdefault(w, s)

    for female, male in json.loads((LEX / "debiaswe_definitional_pairs.json").read_text()):
        put(female, "female")
        put(male, "male")
    males = (LEX / "gn_glove_male_word_file.txt").read_text().split()
    females = (LEX / "gn_glove_female_word_file.txt").read_text().split()
    for m, f in zip(males, females):
        put(m, "male")
        put(f, "female")
    for a, b in json.loads((LEX / "debiaswe_equalize_pairs.json").read_text()):
        a, b = a.lower(), b.lower()
        if a in side and b not in side:
            put(b, "male" if side[a] == "female" else "female")
        elif b in side and a not in side:
            put(a, "male" if side[b] == "female" else "female")
    for word in json.loads((LEX / "debiaswe_gender_specific_full.json").read_text()):
        if word.isalpha() and word.islower() and word not in side:
            s = _side_from_root(word)
            if s:
                put(word, s)

    out: dict[str, set[str]] = {"male": set(), "female": set()}
    for w, s in side.items():
        out[s] |= {w} | (_plurals(w) - excluded)
    both = out["male"] & out["female"]  # a plural that lands on both sides would say nothing
    return {s: frozenset(ws - both) for s, ws in out.items()}


def _alternation(words) -> str:
    # longest first so a phrase is preferred to a word inside it; escaped because words hold "'" and "-"
    return "|".join(re.escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))


def word_pattern(words) -> str:
    return rf"\b(?:{_alternation(words)})\b"


def _exception_pattern(path: Path) -> str:
    return rf"\b(?:{'|'.join(r['pattern'] for r in _read_csv(path))})\b"


@lru_cache(maxsize=1)
def gender_patterns() -> dict[str, str]:
    """RE2/Python-compatible patterns over lower-cased captions: exceptions, male, female."""
    words = gender_words()
    return {
        "exceptions": _exception_pattern(DATA / "gender_exceptions.csv"),
        "male": word_pattern(words["male"]),
        "female": word_pattern(words["female"]),
    }


@lru_cache(maxsize=1)
def age_patterns() -> dict[str, str]:
    groups: dict[str, list[str]] = {g: [] for g in AGE_GROUPS}
    for r in _read_csv(DATA / "age_terms.csv"):
        groups[r["group"]].append(r["term"])
    pats = {g: word_pattern(ws) for g, ws in groups.items()}
    pats["exceptions"] = _exception_pattern(DATA / "age_exceptions.csv")
    return pats


def age_group_of_years(years: int) -> str | None:
    if years > 110:
        return None
    if years <= 12:
        return "child"
    if years <= 24:
        return "young"
    if years <= 64:
        return "adult"
    return "old"


def _matches(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(text, pattern), False).to_numpy(zero_copy_only=False)


def gender_terms(lowered: pa.Array) -> np.ndarray:
    """'male' | 'female' | 'both' | 'none' per lower-cased caption (vectorised with Arrow's RE2)."""
    pats = gender_patterns()
    text = pc.replace_substring_regex(lowered, pats["exceptions"], " ")
    male, female = _matches(text, pats["male"]), _matches(text, pats["female"])
    return np.select([male & female, male, female], ["both", "male", "female"], "none").astype(object)


def age_terms(lowered: pa.Array) -> np.ndarray:
    """'child' | 'young' | 'adult' | 'old' | 'mixed' | 'none' per lower-cased caption."""
    pats = age_patterns()
    text = pc.replace_substring_regex(lowered, pats["exceptions"], " ")
    hits = {g: _matches(text, pats[g]) for g in AGE_GROUPS}
    extracted = pc.extract_regex(text, AGE_NUMBER_RE)
    for i in np.flatnonzero(pc.is_valid(extracted).to_numpy(zero_copy_only=False)):
        group = age_group_of_years(int(extracted[i]["years"].as_py()))
        if group:
            hits[group][i] = True
    stacked = np.stack([hits[g] for g in AGE_GROUPS])
    n_groups = stacked.sum(axis=0)
    first = np.array(AGE_GROUPS, dtype=object)[stacked.argmax(axis=0)]
    return np.where(n_groups > 1, "mixed", np.where(n_groups == 1, first, "none")).astype(object)


def lower(captions) -> pa.Array:
    arr = captions if isinstance(captions, (pa.Array, pa.ChunkedArray)) else pa.array(captions, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.utf8_lower(arr)


def gender_of(caption: str | None) -> str:
    """One caption's gender_terms value (for tests and notebooks; batches use gender_terms)."""
    return str(gender_terms(lower([caption]))[0])


def age_of(caption: str | None) -> str:
    return str(age_terms(lower([caption]))[0])
