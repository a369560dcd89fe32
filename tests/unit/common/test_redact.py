"""Keys kept out of text: whole keys, and a trimmed text's tail that begins a key."""

from __future__ import annotations

from exporter.common.redact import REDACTED, redact, redact_and_cut

KEY = "sk-live-0123456789"


def test_a_whole_key_is_replaced_wherever_it_occurs():
    text = f"bad key {KEY}; again {KEY}"
    assert redact(text, [KEY]) == f"bad key {REDACTED}; again {REDACTED}"


def test_a_tail_that_begins_the_key_is_replaced():
    assert redact("bad key sk-live-01", [KEY]) == f"bad key {REDACTED}"


def test_the_keys_start_elsewhere_than_the_tail_is_left_alone():
    # The key's start near the end, but what follows it is not the key: looked at once, kept.
    for text in ("tried sk-live-Z ok", "sk-live-X, sk-live-Y and sk-live-Z were tried"):
        assert redact(text, [KEY]) == text


def test_a_cut_comes_after_the_key_is_replaced_so_no_half_of_it_survives():
    text = "x" * 195 + KEY + "y" * 50
    cut = redact_and_cut(text, [KEY], 200)
    assert cut == "x" * 195 + REDACTED[:5]
    assert "sk-li" not in cut


def test_keys_of_four_characters_or_fewer_are_replaced_whole_only():
    assert redact("abcd and ab", ["abcd"]) == f"{REDACTED} and ab"
