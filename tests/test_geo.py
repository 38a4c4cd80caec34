"""Country signals: gazetteer rules, several mentions, ccTLDs, region/income facts and the shipped tables."""

from __future__ import annotations

import csv
import json

import pycountry
import pytest

from audit import geo

VALID_ALPHA2 = {c.alpha_2 for c in pycountry.countries} | {"XK"}  # Kosovo: user-assigned, in mledoze and the WB list


@pytest.mark.parametrize(
    "caption,expected",
    [
        ("I love Paris and Rome", ["FR", "IT"]),
        ("Kenyan runner in Nairobi", ["KE"]),
        ("trip to france", ["FR"]),  # country names in any case
        ("made in China", ["CN"]),
        ("a man in new york city", ["US"]),  # multi-word cities in any case
        ("a walk in london", []),  # one-word cities must be capitalised
        ("Panama City, Florida", ["US"]),  # City, Region: the region decides
        ("Paris, France and Berlin", ["FR", "DE"]),
        ("São Paulo skyline", ["BR"]),
        ("Sao Paulo skyline", ["BR"]),
        ("Côte d'Ivoire", ["CI"]),
        ("Cote d'Ivoire", ["CI"]),
        ("Türkiye", ["TR"]),
        ("USA flag", ["US"]),
        ("us and them", []),  # ISO codes from alternative spellings are not names
        ("IT department", []),
        ("Holland tulips", ["NL"]),
        ("Scottish highlands", ["GB"]),
        ("English breakfast", []),
        ("Congo basin", []),  # two countries
        ("Democratic Republic of the Congo", ["CD"]),
        ("a visit to Jordan", ["JO"]),
        ("Jordan", []),
        ("the Niger delta", []),
        ("born in Chad", ["TD"]),
        ("Guinea", []),
        ("Equatorial Guinea", ["GQ"]),
        ("Washington, D.C. monuments", ["US"]),
        ("Indiana Jones hat", []),
        ("in Indiana", ["US"]),
        ("", []),
        (None, []),
    ],
)
def test_caption_countries(caption, expected):
    assert geo.caption_countries(caption) == expected


def test_first_mention_is_the_caption_country():
    assert geo.caption_country("From Tokyo to Kyoto and then Seoul") == "JP"
    assert geo.caption_countries("From Tokyo to Kyoto and then Seoul") == ["JP", "KR"]


@pytest.mark.parametrize(
    "caption,expected",
    [
        # a city, capital or state outranks a country name, which outranks a demonym; then the first mention
        ("1240 India #505 in San Diego", ["US", "IN"]),
        ("An Iraqi playboy in central London", ["GB", "IQ"]),
        ("Two Chinese arrested at Bangkok temple", ["TH", "CN"]),
        ("Japan and Korea", ["JP", "KR"]),
        ("Canada USA", ["CA", "US"]),  # "USA" is a country name, not a state
        ("Italian restaurant, Italy", ["IT"]),
    ],
)
def test_most_specific_place_wins(caption, expected):
    assert geo.caption_countries(caption) == expected
    assert geo.caption_country(caption) == expected[0]


@pytest.mark.parametrize(
    "caption,expected",
    [
        ("Paris Hilton", []),
        ("PARIS HILTON", []),  # capitalised in all-caps captions too
        ("Sydney Sweeney", []),
        ("Holland Taylor", []),
        ("Samoa Joe on RAW", []),
        ("Paris France", ["FR"]),  # France is a surname too, but a place first
        ("Paris, Hilton Head", ["FR"]),  # punctuation between: not one name
        ("Sydney Harbour Bridge", ["AU"]),  # English words, not surnames
        ("London Heathrow", ["GB"]),  # not a frequent surname
        ("Hue, Vietnam", ["VN"]),  # a context name followed by ", <country>"
        ("Philips Hue bulb", []),
        ("in Hue", ["VN"]),
        ("Cape Town", ["ZA"]),
        ("cape town", []),  # multi-word names made only of English words must be capitalised
        ("new york city at night", ["US"]),  # "york" is no English word: any case
        ("Thanksgiving Turkey", []),
        ("roasted turkey", []),
        ("Turkey travel guide", ["TR"]),
        ("Istanbul, Turkey dinner cruise", ["TR"]),  # the city still names the country
        ("Hatch Chile Roasted", []),
        ("Santiago, Chile", ["CL"]),
        ("a Nice day", []), ("Reading a book", []), ("Mobile phone", []), ("Split screen", []),
    ],
)
def test_person_names_senses_and_common_words(caption, expected):
    assert geo.caption_countries(caption) == expected


def test_multi_word_city_names_of_english_words_are_not_any_case():
    """Every capital/city name made only of common English words (Brill lexicon in textblob) needs capitals."""
    import textblob.en
    from pathlib import Path

    lexicon = Path(textblob.en.__file__).with_name("en-lexicon.txt").read_text(encoding="utf-8")
    common = {p[0] for p in (line.split() for line in lexicon.splitlines() if not line.startswith(";"))
              if len(p) >= 2 and p[0].islower() and not p[1].startswith(("NNP", "FW"))}  # FW: foreign words
    loose = [" ".join(k) for k, e in geo.gazetteer().items()
             if e.kind in ("capital", "city") and len(k) > 1 and all(t in common for t in k) and e.rule == "any_case"]
    assert loose == []


def test_sense_and_surname_tables():
    senses = geo.sense_words()
    assert {("china",), ("turkey",), ("chile",)} <= set(senses)
    assert "plate" in senses[("china",)][1] and "thanksgiving" in senses[("turkey",)][1]
    names = geo.surnames()
    assert len(names) > 10_000 and {"hilton", "sweeney", "taylor", "hendrix"} <= names
    assert not {"street", "bridge", "young", "opera"} & names  # English words are left out


def test_mentions_carry_offsets_and_kinds():
    text = "Street food in Bangkok, Thailand"
    mentions = geo.find_mentions(text)
    assert [(text[m.start : m.end], m.country, m.entry.kind) for m in mentions] == [
        ("Bangkok", "TH", "capital"),
        ("Thailand", "TH", "country"),
    ]


@pytest.mark.parametrize(
    "url,expected",
    [
        ("http://example.co.uk/img.jpg", "GB"),
        ("https://shop.example.uk/x", "GB"),
        ("https://b.co/x", "CO"),  # .co is Colombia's code, the last label decides
        ("https://cdn.example.com/a.jpg", None),
        ("https://example.org", None),
        ("https://example.net/x", None),
        ("https://startup.io/x", None),  # vanity ccTLD
        ("https://video.tv/x", None),
        ("https://europa.eu/x", None),
        ("http://www.beispiel.de/bild.png", "DE"),
        ("HTTP://WWW.EXEMPLE.FR/X", "FR"),
        ("http://user:pw@x.jp:8080/p?q=1#f", "JP"),
        ("http://example.nl/x", "NL"),  # not the Caribbean Netherlands, which also lists .nl
        ("http://1.2.3.4/x.jpg", None),
        ("http://[::1]:8000/x", None),
        ("http://127.0.0.1:8000/x", None),
        ("http://localhost:8000/a", None),
        ("http://xn--e1afmkfd.xn--p1ai/", "RU"),  # punycode .рф
        ("example.de/x", "DE"),  # no scheme
        ("https://www.example.fr./x", "FR"),  # fully qualified name with trailing dot
        ("http://[broken/x", None),
        ("", None),
        (None, None),
    ],
)
def test_cctld_country(url, expected):
    assert geo.cctld_country(url) == expected


def test_country_facts():
    assert geo.country_facts("KE") == {"region": "Africa", "subregion": "Eastern Africa", "income_group": "Lower middle income"}
    assert geo.country_facts("US")["income_group"] == "High income"
    assert geo.country_facts("AF")["income_group"] == "Low income"
    assert geo.country_facts(None) == {"region": None, "subregion": None, "income_group": None}


def test_shipped_tables_hold_valid_codes():
    with open(geo.DATA / "wb_income_groups.csv", newline="") as f:
        income = list(csv.DictReader(f))
    assert len(income) > 200
    assert {r["income_group"] for r in income} == {"High income", "Upper middle income", "Lower middle income", "Low income"}
    assert {r["cca2"] for r in income} <= VALID_ALPHA2
    records = json.loads((geo.DATA / "countries.json").read_text(encoding="utf-8"))
    assert len(records) == 250 and {r["cca2"] for r in records} <= VALID_ALPHA2
    for entry in geo.gazetteer().values():
        assert set(entry.countries) <= VALID_ALPHA2
        assert entry.rule in ("any_case", "capitalised", "context", "drop")
    assert set(geo.cctld_table().values()) <= VALID_ALPHA2


def test_extra_table_rules_are_known_and_codes_valid():
    rows = geo._read_csv("geo_names_extra.csv")
    assert rows
    for r in rows:
        assert r["rule"] in ("any_case", "capitalised", "context", "drop"), r
        assert set(r["countries"].split()) <= VALID_ALPHA2, r
        assert bool(r["countries"]) == (r["rule"] != "drop"), r
