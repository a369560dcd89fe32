"""Response bodies: the CRC-32 combination and gzip stitched from pieces deflated once."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.metrics.encoding import (
    Piece,
    SampleText,
    crc_combine,
    crc_shift,
    gzip_body,
    plain_body,
)

chunks = st.lists(st.binary(max_size=300), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_crc_combine_is_the_crc_of_the_concatenation(a, b):
    assert crc_combine(zlib.crc32(a), zlib.crc32(b), crc_shift(len(b))) == zlib.crc32(a + b)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=1 << 20))
def test_crc_combine_holds_for_pieces_of_any_size(a, length):
    b = bytes(range(256)) * (length // 256) + bytes(length % 256)
    assert crc_combine(zlib.crc32(a), zlib.crc32(b), crc_shift(len(b))) == zlib.crc32(a + b)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), chunks), max_size=6))
def test_a_gzip_body_inflates_to_the_plain_body(parts_spec):
    def parts():
        return [SampleText(list(c)) if kept else b"".join(c) for kept, c in parts_spec]

    expected = b"".join(b"".join(c) for _, c in parts_spec)
    made = parts()
    assert b"".join(plain_body(made)) == expected
    first = b"".join(gzip_body(made))
    assert gzip.decompress(first) == expected  # checks the combined CRC-32 and the length too
    assert b"".join(gzip_body(made)) == first  # the pieces are deflated once and reused
    assert b"".join(plain_body(made)) == expected  # and still give the text back


def test_large_text_is_kept_only_deflated_after_the_first_gzip_body():
    text = SampleText([b"eightbyeight_number_info{} 1.0\n" * 5000])
    gzip.decompress(b"".join(gzip_body([text])))
    assert text._chunks is None
    assert text.piece().text is None  # over the size kept alongside: inflated when asked
    assert b"".join(plain_body([text])) == b"eightbyeight_number_info{} 1.0\n" * 5000


@pytest.mark.parametrize("length", [0, 1, 4095, 1 << 16, (1 << 16) + 1, 300_000])
def test_a_piece_extends_a_crc_as_the_concatenation_would(length):
    before = b"# HELP x y\n" * 7
    text = bytes(range(256)) * (length // 256) + b"z" * (length % 256)
    piece = Piece.of([text])
    assert piece.crc_after(zlib.crc32(before)) == zlib.crc32(before + text)
    assert (piece.shift is None) == (length <= 1 << 16)
