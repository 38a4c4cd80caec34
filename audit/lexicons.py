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
old (65+); age_terms takes only those values or "none". An explicit age wins: "N year old" followed by a person
word ("a 25-year-old woman", "25 year old woman") is binned by N. Otherwise the first age word of the caption
decides ("kids and adults" → child), a phrase before a word inside it ("young girl" → child, "young man" → young).
"girl"/"boy" are child words like "little girl"/"little boy"; "girlfriend"/"boyfriend" are other words (whole-word
matching), and age_exceptions.csv removes grown-up uses ("girls' night out", "boy band", "cover girl").

Religion words (religion_terms.csv): the religion-axis descriptors of HolisticBias v1.1 (Smith et al. 2022, MIT),
each mapped to its religion ("Sunni" → muslim, "Lutheran" → christian; atheist/agnostic/irreligious →
"nonreligious"), whole words, case-insensitive, plurals listed. The first religion word of the caption decides;
"none" when there is none. "Christian" directly followed by a frequent surname (geo.surnames) or by a name in
religion_exceptions.csv is a first name ("Christian Dior", "Christian Smith"); "a Christian church" is christian,
"Hindu temple" hindu and "Jewish deli" jewish: the audit counts identity words in captions, not people.
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


@lru_cache(maxsize=1)
def age_lexicon() -> dict[str, str]:
    """Age term (lower case) -> age group."""
    out = {}
    for r in _read_csv(DATA / "age_terms.csv"):
        if r["group"] not in AGE_GROUPS:
            raise ValueError(f"{DATA / 'age_terms.csv'}: group {r['group']!r} of {r['term']!r} is not one of {AGE_GROUPS}")
        out[r["term"]] = r["group"]
    return out


@lru_cache(maxsize=1)
def religion_lexicon() -> dict[str, str]:
    """Religion term (lower case) -> religion, from the HolisticBias religion axis."""
    return {r["term"]: r["religion"] for r in _read_csv(DATA / "religion_terms.csv")}


def _first_term(text: pa.Array, lexicon: dict[str, str]) -> np.ndarray:
    """The value of the leftmost lexicon term per caption (RE2 is leftmost-first: the longest term listed first
    wins at a position), None where no term occurs."""
    terms = pc.struct_field(pc.extract_regex(text, rf"\b(?P<term>{_alternation(lexicon)})\b"), "term")
    keys = sorted(lexicon)
    values = pa.array([lexicon[k] for k in keys] + [None], pa.string())
    index = pc.fill_null(pc.index_in(terms, value_set=pa.array(keys, pa.string())), len(keys))
    return np.asarray(pc.take(values, index).to_pylist(), dtype=object)


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
    """'child' | 'young' | 'adult' | 'old' | 'none' per lower-cased caption: an explicit age, else the first age word."""
    text = pc.replace_substring_regex(lowered, age_patterns()["exceptions"], " ")
    groups = _first_term(text, age_lexicon())
    extracted = pc.extract_regex(text, AGE_NUMBER_RE)
    for i in np.flatnonzero(pc.is_valid(extracted).to_numpy(zero_copy_only=False)):
        group = age_group_of_years(int(extracted[i]["years"].as_py()))
        if group:
            groups[i] = group
    return _none_for_missing(groups)


def _none_for_missing(values: np.ndarray) -> np.ndarray:
    return np.array(["none" if v is None else v for v in values], dtype=object)


CHRISTIAN_NAME_RE = re.compile(r"\bchristian (\w+)")


def _drop_first_name_christian(text: pa.Array) -> pa.Array:
    """'christian smith' -> ' ': "Christian" before a frequent surname is a first name (see the module docstring)."""
    from audit.geo import surnames  # the same surname list tells "Paris Hilton" from Paris

    has = pc.fill_null(pc.match_substring_regex(text, r"\bchristian \w"), False).to_numpy(zero_copy_only=False)
    if not has.any():
        return text
    names = surnames()
    values = text.to_pylist()
    for i in np.flatnonzero(has):
        values[i] = CHRISTIAN_NAME_RE.sub(lambda m: " " if m.group(1) in names else m.group(0), values[i])
    return pa.array(values, pa.string())


@lru_cache(maxsize=1)
def religion_exceptions() -> str:
    return _exception_pattern(DATA / "religion_exceptions.csv")


def religion_terms(lowered: pa.Array) -> np.ndarray:
    """Religion named by the first religion word of each lower-cased caption ('christian', 'muslim', 'jewish',
    'hindu', 'buddhist', 'sikh', ..., 'nonreligious'), or 'none'."""
    text = pc.replace_substring(lowered, "’", "'")  # curly apostrophes: "jehovah’s witness"
    text = _drop_first_name_christian(pc.replace_substring_regex(text, religion_exceptions(), " "))
    found = _first_term(text, religion_lexicon())
    return _none_for_missing(found)


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


def religion_of(caption: str | None) -> str:
    return str(religion_terms(lower([caption]))[0])
