"""Numbering plans the simulator draws virtual numbers from: valid E.164 numbers per country.

Each plan is a list of national-number patterns per number type. A pattern is a string of
literal digits, `X` (any digit), `N` (2-9) and `[..]` digit classes; every pattern ends in at
least three `X`, so one pattern instance without its last three digits is a block of 1,000
consecutive numbers: the simulator's number ranges (one `referenceId` each) are such blocks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NUMBER_TYPES = ("Local", "Mobile", "TollFree")


@dataclass(frozen=True)
class CountryPlan:
    country: str
    calling_code: str
    weight: int
    local_currency: str
    currency_per_usd: float
    patterns: dict[str, tuple[str, ...]]


# National significant numbers only (no trunk prefix); lengths follow each regulator's plan.
PLANS: tuple[CountryPlan, ...] = (
    CountryPlan(
        "SG",
        "65",
        20,
        "SGD",
        1.35,
        {
            "Local": ("6XXXXXXX",),
            "Mobile": ("8XXXXXXX", "9XXXXXXX"),
            "TollFree": ("1800XXXXXXX",),
        },
    ),
    CountryPlan(
        "US",
        "1",
        15,
        "USD",
        1.0,
        {
            "Local": tuple(f"{area}NXXXXXX" for area in ("212", "415", "646", "312", "206", "512")),
            "TollFree": tuple(f"{code}NXXXXXX" for code in ("800", "888", "877", "866", "855")),
        },
    ),
    CountryPlan(
        "GB",
        "44",
        10,
        "GBP",
        0.79,
        {
            "Local": ("20[378]XXXXXXX", "161XXXXXXX", "121XXXXXXX"),
            "Mobile": ("7[4-9]XXXXXXXX",),
            "TollFree": ("800XXXXXXX",),
        },
    ),
    CountryPlan(
        "DE",
        "49",
        8,
        "EUR",
        0.92,
        {
            "Local": ("30XXXXXXXX", "89XXXXXXXX", "40XXXXXXXX", "69XXXXXXXX"),
            "Mobile": ("15[12]XXXXXXXX", "17[0-9]XXXXXXXX"),
            "TollFree": ("800XXXXXXX",),
        },
    ),
    CountryPlan(
        "AU",
        "61",
        10,
        "AUD",
        1.52,
        {
            "Local": ("2[89]XXXXXXX", "3[89]XXXXXXX", "73XXXXXXX", "8[689]XXXXXXX"),
            "Mobile": ("4[0-9]XXXXXXX",),
            "TollFree": ("1800XXXXXX",),
        },
    ),
    CountryPlan(
        "PH",
        "63",
        10,
        "PHP",
        56.0,
        {
            "Local": ("2[78]XXXXXXX",),
            "Mobile": ("9[1-9]XXXXXXXX",),
        },
    ),
    CountryPlan(
        "ID",
        "62",
        8,
        "USD",
        1.0,
        {
            "Local": ("21[2-8]XXXXXXX",),
            "Mobile": ("81[1-3]XXXXXXXX", "85[23]XXXXXXXX"),
        },
    ),
    CountryPlan(
        "JP",
        "81",
        7,
        "JPY",
        150.0,
        {
            "Local": ("3[456]XXXXXXX", "66XXXXXXX"),
            "Mobile": ("90XXXXXXXX", "80XXXXXXXX", "70XXXXXXXX"),
            "TollFree": ("120XXXXXX",),
        },
    ),
    CountryPlan(
        "HK",
        "852",
        7,
        "HKD",
        7.8,
        {
            "Local": ("[23]XXXXXXX",),
            "Mobile": ("[569]XXXXXXX",),
            "TollFree": ("800XXXXXX",),
        },
    ),
    CountryPlan(
        "FR",
        "33",
        5,
        "EUR",
        0.92,
        {
            "Local": ("1XXXXXXXX", "4XXXXXXXX"),
            "Mobile": ("6XXXXXXXX", "7[3-9]XXXXXXX"),
            "TollFree": ("800XXXXXX",),
        },
    ),
)

TYPE_WEIGHTS = {"Local": 5, "Mobile": 3, "TollFree": 1}


def _pattern_tokens(pattern: str) -> list[str]:
    """Split a pattern into one token per digit: a literal, 'X', 'N' or a '[..]' class."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            end = pattern.index("]", i)
            tokens.append(pattern[i : end + 1])
            i = end + 1
        else:
            tokens.append(pattern[i])
            i += 1
    return tokens


def _class_digits(token: str) -> str:
    body = token[1:-1]
    digits = ""
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            digits += "".join(str(d) for d in range(int(body[i]), int(body[i + 2]) + 1))
            i += 3
        else:
            digits += body[i]
            i += 1
    return digits


def _draw_digit(symbol: str, rng: random.Random) -> str:
    if symbol == "X":
        return str(rng.randrange(10))
    if symbol == "N":
        return str(rng.randrange(2, 10))
    if symbol.startswith("["):
        return rng.choice(_class_digits(symbol))
    return symbol


def _acceptable(plan: CountryPlan, national: str) -> bool:
    """Reject blocks a regulator reserves (NANP N11 and 555 exchanges)."""
    if plan.calling_code == "1":
        exchange = national[3:6]
        return exchange[1:] != "11" and exchange != "555"
    return True


def draw_block(plan: CountryPlan, number_type: str, rng: random.Random) -> str:
    """A national number prefix; appending any three digits gives a valid number."""
    while True:
        pattern = rng.choice(plan.patterns[number_type])
        tokens = _pattern_tokens(pattern)
        national = "".join(_draw_digit(symbol, rng) for symbol in tokens)
        if _acceptable(plan, national):
            return national[:-3]


def national_lengths() -> dict[str, set[int]]:
    """Country -> the national-number lengths its patterns produce (for documentation/tests)."""
    lengths: dict[str, set[int]] = {}
    for plan in PLANS:
        for patterns in plan.patterns.values():
            for pattern in patterns:
                lengths.setdefault(plan.country, set()).add(len(_pattern_tokens(pattern)))
    return lengths
