"""Gender/age word signals and caption countries on hand-picked tricky captions (exact expected values)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pytest

from audit import geo, lexicons

# caption, gender_terms, caption_country; each row is a decision documented in audit/lexicons.py or audit/geo.py
TRICKY = [
    ("Jordan shoes", "none", None),
    ("Air Jordan 1 retro", "none", None),
    ("a china cup", "none", None),
    ("China's capital", "none", "CN"),
    ("the queen of hearts", "none", None),
    ("King of Spades playing card", "none", None),
    ("king size bed with queen-size pillows", "none", None),
    ("a man's bike", "male", None),
    ("women's team", "female", None),
    ("boyfriend jeans", "none", None),
    ("her boyfriend jeans", "female", None),
    ("a mother and her son", "both", None),
    ("Turkey dinner", "none", None),
    ("Istanbul, Turkey", "none", "TR"),
    ("a guinea pig", "none", None),
    ("Guinea pig on grass", "none", None),
    ("Guinea-Bissau", "none", "GW"),
    ("Conakry, Guinea", "none", "GN"),
    ("Papua New Guinea", "none", "PG"),
    ("Chad and Jordan went skiing", "none", None),
    ("Republic of Chad", "none", "TD"),
    ("Georgia peach", "none", None),
    ("Atlanta, Georgia", "none", "US"),
    ("Tbilisi, Georgia", "none", "GE"),
    ("Niger river", "none", None),
    ("Niamey, Niger", "none", "NE"),
    ("a French bulldog", "none", None),
    ("French fries and a burger", "none", None),
    ("a French woman in Paris", "female", "FR"),
    ("New Mexico desert", "none", "US"),
    ("Paris, Texas", "none", "US"),
    ("jersey dress for girls", "female", None),
    ("New Jersey shore", "none", "US"),
    ("Kenyan runner", "none", "KE"),
    ("AMMAN, JORDAN", "none", "JO"),
    ("Le Mans race", "none", None),
    ("man-made lake in Japan", "none", "JP"),
    ("lacquered japan box", "none", None),
    ("Mr. Smith and Mrs. Smith", "both", None),
    ("ladybug on a leaf", "none", None),
    ("Georgian townhouse in London", "none", "GB"),
    ("Icelandic island view", "none", None),
    ("Hyderabad skyline", "none", None),  # two cities of 1M+ (India, Pakistan): dropped
    ("Spider-Man toy", "male", None),  # a male character: kept, fictional people are people in captions
    # reviewer examples (issue 3 review): common-word capitals, food senses, person names, several places
    ("A relaxed fit T-Shirt that flares slightly at the bottom", "none", None),  # "The Bottom" (BQ) is dropped
    ("bottom ends of a PAL SNES", "none", None),
    ("Flares Slightly At The Bottom", "none", None),
    ("Thanksgiving Turkey Sign - Benchart's Shop", "none", None),  # food/holiday sense word next to Turkey
    ("The 2012 All Stars are coach Eric Procter, Dillon Brown, Jordan Hendrix", "none", None),  # name + surname
    ("Paris Hilton at the premiere", "none", None),
    ("Sydney Sweeney", "none", None),
    ("Holland Taylor and Holland Roden", "none", None),
    ("Royal China Star Glow dinner plate", "none", None),  # tableware sense within three words
    ("made in China porcelain", "none", "CN"),  # a place cue outweighs the tableware sense
    ("Photo 15: DOWNTOWN Condo for sale : 2 bedrooms : 1240 India #505 in San Diego", "none", "US"),  # city wins
    ("Sydney Opera House", "none", "AU"),  # "opera" is an English word, not a surname
    ("Paris France", "none", "FR"),  # the word after is a place
    ("Jordan River", "none", None),  # a river between two countries (geo_exceptions.csv)
    ("Maine Coon kitten", "none", None),  # "Coon" is a surname: a cat breed, not the state
    ("Kenya Airways plane", "none", "KE"),
]


@pytest.mark.parametrize("caption,gender,country", TRICKY, ids=[t[0] for t in TRICKY])
def test_tricky_captions(caption, gender, country):
    assert lexicons.gender_of(caption) == gender
    assert geo.caption_country(caption) == country


def test_tricky_table_is_large_enough():
    assert len(TRICKY) >= 25


@pytest.mark.parametrize(
    "caption,expected",
    [
        ("MAN", "male"),
        ("Men", "male"),
        ("mens' shoes", "male"),
        ("MENS SHOES", "male"),
        ("men’s jacket", "male"),  # curly apostrophe
        ("womens dress", "female"),
        ("WOMEN'S DRESS", "female"),
        ("two ladies", "female"),
        ("the lady's hat", "female"),
        ("policewomen on duty", "female"),
        ("three businessmen", "male"),
        ("actresses on stage", "female"),
        ("his and hers towels", "both"),
        ("human rights", "none"),  # 'man' only as a whole word
        ("a german shepherd", "none"),
        ("salmon", "none"),
        ("mason jar", "none"),
        ("", "none"),
        (None, "none"),
    ],
)
def test_plurals_possessives_and_case(caption, expected):
    assert lexicons.gender_of(caption) == expected


@pytest.mark.parametrize(
    "caption,expected",
    [
        ("a 5 year old boy", "child"),
        ("a 15-year-old girl", "young"),
        ("an 80 year old woman", "old"),
        ("100 year old house", "none"),  # a number of years without a person word says nothing
        ("baby blue dress", "none"),
        ("newborn baby", "child"),
        ("teenagers at the beach", "young"),
        ("elderly couple", "old"),
        ("grandma with her grandchildren", "old"),
        ("kids and adults", "child"),  # several age words: the first one decides
        ("adults and kids", "adult"),
        ("young man", "young"),
        ("a sofa", "none"),
        (None, "none"),
        ("a girl", "child"),  # girl/boy are child words, like "little girl"/"little boy"
        ("a little boy", "child"),
        ("young girl on a swing", "child"),  # the phrase wins over the word inside it
        ("a 25-year-old woman", "adult"),
        ("25 year old woman", "adult"),
        ("an elderly man and his 30 year old son", "adult"),  # an explicit age wins over the first word
        ("my boyfriend", "none"),  # whole words: boyfriend/girlfriend are no age words
        ("girlfriend gift", "none"),
        ("girls' night out", "none"),  # age_exceptions.csv: a grown-ups' outing
        ("Spice Girls poster", "none"),
    ],
)
def test_age_terms(caption, expected):
    assert lexicons.age_of(caption) == expected


def test_age_terms_take_only_the_issue_values():
    captions = [c for c, _, _ in TRICKY] + ["kids and adults", "a baby and her grandma", "teen and elderly", None]
    assert set(lexicons.age_terms(lexicons.lower(captions))) <= {"child", "young", "adult", "old", "none"}


@pytest.mark.parametrize(
    "caption,expected",
    [
        ("Hindu temple in Bali", "hindu"),
        ("Jewish deli sandwich", "jewish"),
        ("a Christian church at sunset", "christian"),  # the identity word, whatever it describes
        ("christian music festival", "christian"),
        ("Christian Dior dress", "none"),  # a first name (religion_exceptions.csv)
        ("CHRISTIAN LOUBOUTIN heels", "none"),
        ("portrait of Christian Smith", "none"),  # "Christian" before a frequent surname is a first name
        ("Muslim women praying", "muslim"),
        ("Sunni and Shia leaders", "muslim"),  # branches map to their religion
        ("Shia LaBeouf", "none"),
        ("Buddhist monks", "buddhist"),
        ("Sikhs celebrate Vaisakhi", "sikh"),
        ("Roman Catholic cathedral", "christian"),
        ("Jehovah’s Witnesses", "christian"),  # curly apostrophe
        ("Orthodox Jewish men", "jewish"),
        ("an orthodox approach", "none"),  # "orthodox" alone is left out as ambiguous
        ("atheist t-shirt", "nonreligious"),
        ("a Hindu and a Muslim", "hindu"),  # several: the first mentioned
        ("Hindu Kush mountains", "none"),
        ("a sofa", "none"),
        (None, "none"),
    ],
)
def test_religion_terms(caption, expected):
    assert lexicons.religion_of(caption) == expected


def test_religion_list_comes_from_holisticbias_with_a_religion_each():
    rows = lexicons._read_csv(lexicons.DATA / "religion_terms.csv")
    assert len(rows) > 50
    religions = {r["religion"] for r in rows}
    assert {"christian", "muslim", "jewish", "hindu", "buddhist", "sikh"} <= religions
    assert "multiple" not in religions and "none" not in religions and "mixed" not in religions
    for r in rows:
        assert r["term"] == r["term"].lower() and r["descriptor"], r
        # every term is its descriptor or that descriptor's plural: nothing is matched that the source lacks
        descriptor = r["descriptor"].lower().replace("á", "a").replace("í", "i")
        assert r["term"] in (descriptor, descriptor + "s", descriptor + "es", descriptor.replace("'", "")), r


def test_word_lists_come_from_the_sources_with_sides():
    words = lexicons.gender_words()
    male, female = words["male"], words["female"]
    assert not male & female
    # definitional pairs, GN-GloVe, equalize pairs (side through its partner), gender_specific by root
    for w in ("man", "he", "father", "spokesman", "grandpa", "stepdad", "menfolk"):
        assert w in male, w
    for w in ("woman", "she", "mother", "spokeswoman", "grandma", "stepsister", "womenfolk", "ladies", "womens"):
        assert w in female, w
    # excluded: names, animals, neutral-in-use or other-sense words
    for w in ("mary", "john", "colt", "host", "actor", "master", "lord", "gay", "lesbian", "mans"):
        assert w not in male and w not in female, w


def test_every_excluded_word_is_on_a_source_list():
    """The exclusion list stays tied to the sources: a typo there would silently exclude nothing."""
    lex = Path(lexicons.LEX)
    source = set()
    for pair in json.loads((lex / "debiaswe_definitional_pairs.json").read_text()):
        source |= {w.lower() for w in pair}
    for pair in json.loads((lex / "debiaswe_equalize_pairs.json").read_text()):
        source |= {w.lower().replace("_", " ") for w in pair}
    source |= {w.lower().replace("_", " ") for w in json.loads((lex / "debiaswe_gender_specific_full.json").read_text())}
    for name in ("gn_glove_male_word_file.txt", "gn_glove_female_word_file.txt"):
        source |= {w.lower().replace("_", " ") for w in (lex / name).read_text().split()}
    excluded = {r["word"] for r in lexicons._read_csv(lexicons.DATA / "gender_excluded_words.csv")}
    plurals_of_sources = {p for w in source for p in lexicons._plurals(w)}
    assert excluded - source - plurals_of_sources == set()


def test_re2_and_python_re_agree_on_the_patterns():
    """The patterns run in Arrow's RE2; Python's re must read them the same way (they are documented as regexes)."""
    captions = [c for c, _, _ in TRICKY] + ["Le Mans", "the king's men", "a Queen-size duvet and a woman"]
    pats = lexicons.gender_patterns()
    arrow = lexicons.gender_terms(lexicons.lower(captions))
    for caption, got in zip(captions, arrow):
        text = re.sub(pats["exceptions"], " ", caption.lower())
        m, f = bool(re.search(pats["male"], text)), bool(re.search(pats["female"], text))
        assert got == {(True, True): "both", (True, False): "male", (False, True): "female"}.get((m, f), "none")


def test_batch_matches_one_by_one_and_keeps_nulls():
    captions = pa.array(["a man", None, "a woman", "", "a boy and a girl"])
    assert list(lexicons.gender_terms(lexicons.lower(captions))) == ["male", "none", "female", "none", "both"]
