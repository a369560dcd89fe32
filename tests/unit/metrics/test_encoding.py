"""Response bodies: gzip stitched from pieces deflated once, and their CRC-32 combined."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.metrics import encoding
from exporter.metrics.encoding import (
    DEFLATE_ALONE_FROM,
    Piece,
    SampleText,
    deflate_all,
    gzip_body,
    plain_body,
)

chunks = st.lists(st.binary(max_size=300), max_size=4)


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


# Texts below and above the size deflated on its own, side by side and between bytes, so that
# pieces follow pieces (spliced with no flush between them) and text follows pieces.
_SIZES = st.sampled_from([0, 1, 700, DEFLATE_ALONE_FROM - 1, DEFLATE_ALONE_FROM, 40_000])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["bytes", "text"]), _SIZES, st.integers(0, 255)), max_size=8)
)
def test_gzip_splices_pieces_and_text_in_any_order(spec):
    def content(size: int, seed: int) -> bytes:
        line = f'eightbyeight_number_info{{msisdn="+65{seed:08d}"}} 1.0\n'.encode()
        return (line * (size // len(line) + 1))[:size]

    def parts() -> list:
        return [
            content(size, seed) if kind == "bytes" else SampleText([content(size, seed)])
            for kind, size, seed in spec
        ]

    expected = b"".join(content(size, seed) for _, size, seed in spec)
    made = parts()
    deflate_all(part for part in made if isinstance(part, SampleText))
    assert gzip.decompress(b"".join(gzip_body(made))) == expected
    assert b"".join(plain_body(made)) == expected
    fresh = parts()  # and without deflating first: the first gzip body deflates the large texts
    assert gzip.decompress(b"".join(gzip_body(fresh))) == expected
    assert gzip.decompress(b"".join(gzip_body(fresh))) == expected


def test_only_texts_large_enough_are_deflated_on_their_own():
    small, large = (
        SampleText([b"x" * (DEFLATE_ALONE_FROM - 1)]),
        SampleText([b"y" * DEFLATE_ALONE_FROM]),
    )
    deflate_all([small, large])
    assert not small.deflated_alone()
    assert small._chunks is not None
    assert large.deflated_alone()
    assert large._piece is not None


def test_spare_compressors_are_reused_and_their_pieces_splice_like_new_ones(monkeypatch):
    monkeypatch.setattr(encoding, "_SPARE", [])
    made = []
    real = encoding.new_compressor
    monkeypatch.setattr(encoding, "new_compressor", lambda: made.append(1) or real())
    texts = [b"".join(b"line %d of text %d\n" % (i, n) for i in range(400)) for n in range(6)]
    bodies = []
    for _ in range(3):  # three responses, as three subaccounts' fetches would deflate
        parts = [SampleText([text]) for text in texts]
        deflate_all(parts)
        bodies.append(gzip.decompress(b"".join(gzip_body([b"# head\n", *parts, b"# tail\n"]))))
    expected = b"# head\n" + b"".join(texts) + b"# tail\n"
    assert bodies == [expected] * 3
    # One for the pieces, kept and reused by the next responses; one per gzip body (its last
    # flush ends the stream, so it is never kept).
    assert len(made) == 1 + 3
    assert len(encoding._SPARE) == 1


def test_a_compressor_interrupted_mid_piece_is_not_kept(monkeypatch):
    monkeypatch.setattr(encoding, "_SPARE", [])

    def broken() -> Iterator[bytes]:
        yield b"x" * 10_000
        raise MemoryError

    with pytest.raises(MemoryError):
        Piece.of(broken())
    assert encoding._SPARE == []
    piece = Piece.of([b"y" * 10_000])  # a new compressor, kept afterwards
    assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(piece.deflated) == b"y" * 10_000
    assert len(encoding._SPARE) == 1
