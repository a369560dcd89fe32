"""Response bodies from exposition text: plain, or gzip without recompressing the unchanged parts.

The renderer hands over text parts: `bytes` rendered for this scrape and `SampleText` rendered
once per API response. A gzip body is one gzip member assembled from pieces deflated once per
API response; only the few clock-dependent lines are compressed per scrape. Pieces deflated on
their own concatenate into one DEFLATE stream when each ends on a byte boundary (a full flush)
and the later ones never refer back past their own start; the CRC-32 of the whole is combined
from the pieces' CRCs (zlib-ng's crc32_combine), so the uncompressed text is not needed at
scrape time.

A plain body is streamed: text kept only deflated is inflated a slice at a time while it is
sent, so plain clients, however many at once, never hold a whole inflated copy each.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# zlib-ng: the same DEFLATE streams and CRC-32, about 3.4 times faster at level 1 on per-number
# text (0.26 against 0.88 ms for a 100-number subaccount's 106 kB); its output is ~25 % larger.
from zlib_ng import zlib_ng as zlib

# gzip member header: deflate, no name, no mtime, "fastest" flag (XFL 4), unknown OS.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"

# --- text deflated once -----------------------------------------------------------------------

# Texts smaller than this are not deflated on their own: a piece costs a full flush (which resets
# the compressor's hash table) to make and another to splice into a body, more than deflating a
# few kB costs. They are compressed with the bytes around them in each gzip body instead, and
# kept as text meanwhile (~12 kB for a 100-number subaccount's per-group families): the bound
# keeps that small next to the per-number text, which is kept deflated.
DEFLATE_ALONE_FROM = 1 << 12
# Deflated pieces up to this size also keep their text, so plain responses need no inflating.
_KEEP_TEXT_UP_TO = 1 << 16
# A plain response inflates this much deflated text at a time (~20 times as much text), into
# slices of at most _INFLATE_OUT bytes: what one plain client holds while it is sent.
_INFLATE_IN = 1 << 13
_INFLATE_OUT = 1 << 18


@dataclass(frozen=True, slots=True)
class Piece:
    """Text deflated at level 1 into raw DEFLATE blocks that end on a byte boundary."""

    deflated: bytes
    crc: int
    size: int
    text: bytes | None = None

    @classmethod
    def of(cls, chunks: Iterable[bytes], compressor: Any = None) -> Piece:
        """The chunks deflated; with `compressor` (shared by the pieces of one response), after a
        full flush, so the piece never refers back to what that compressor had before."""
        if compressor is None:
            with spare_compressor() as own:
                return cls.of(chunks, own)
        out = []
        crc = size = 0
        kept = []
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            out.append(compressor.compress(chunk))
            if size <= _KEEP_TEXT_UP_TO:
                kept.append(chunk)
        out.append(compressor.flush(zlib.Z_FULL_FLUSH))
        text = b"".join(kept) if size <= _KEEP_TEXT_UP_TO else None
        return cls(b"".join(out), crc, size, text)

    def crc_after(self, crc: int) -> int:
        """The CRC-32 of some text (whose CRC is `crc`) followed by this piece's text."""
        return zlib.crc32_combine(crc, self.crc, self.size)

    def inflated(self) -> Iterator[bytes]:
        """The text, a slice at a time (never all of it at once unless it was kept)."""
        if self.text is not None:
            yield self.text
            return
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        deflated = memoryview(self.deflated)
        for start in range(0, len(deflated), _INFLATE_IN):
            pending: bytes | memoryview = deflated[start : start + _INFLATE_IN]
            while pending:
                text = inflater.decompress(pending, _INFLATE_OUT)
                if text:
                    yield text
                pending = inflater.unconsumed_tail
        rest = inflater.flush()
        if rest:
            yield rest


class SampleText:
    """Sample lines rendered once per API response (one family of one subaccount, or a header).

    Deflated once (`deflated`: while it is rendered, as per-number text is; or `piece`: by the
    scraper right after rendering, or by the first gzip response) and then kept only deflated,
    as per-number text shrinks ~20 times. A client without gzip gets it inflated as it is sent
    (`stream`).
    """

    __slots__ = ("_chunks", "_lock", "_piece", "size")

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks: list[bytes] | None = chunks
        self._piece: Piece | None = None
        self._lock = threading.Lock()
        self.size = sum(map(len, chunks))

    @classmethod
    def deflated(cls, chunks: Iterable[bytes]) -> SampleText:
        """Text deflated as its chunks come (each may be made only when asked for), so that it
        never exists whole as text; kept as SampleText keeps text once deflated."""
        piece = Piece.of(chunks)
        text = cls([])
        text._chunks, text._piece, text.size = None, piece, piece.size
        return text

    def stream(self) -> Iterator[bytes]:
        """The text: as rendered, or inflated a slice at a time once it is kept deflated."""
        chunks = self._chunks
        if chunks is not None:
            # The list stays alive for this response even if a gzip response drops it now.
            yield from chunks
            return
        assert self._piece is not None  # set before the text is dropped
        yield from self._piece.inflated()

    def kept_text(self) -> list[bytes] | Iterator[bytes]:
        """The text: the chunks as rendered while they are kept (a small text is never dropped
        for its piece), else inflated as `stream` does."""
        chunks = self._chunks
        return chunks if chunks is not None else self.stream()

    def deflated_alone(self) -> bool:
        """Whether gzip bodies splice this text in as a piece (else they compress its text)."""
        return self._piece is not None or self.size >= DEFLATE_ALONE_FROM

    def piece(self, compressor: Any = None) -> Piece:
        """The text deflated (once: by the first caller, with its compressor if it has one)."""
        piece = self._piece
        if piece is None:
            with self._lock:
                piece = self._piece
                if piece is None:
                    assert self._chunks is not None
                    piece = self._piece = Piece.of(self._chunks, compressor)
                    self._chunks = None
        return piece


def new_compressor() -> Any:
    """A raw DEFLATE compressor at level 1, as every piece and body here uses."""
    return zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)


# Compressors kept for the next response. A full flush leaves a compressor as good as new for
# what comes after it (nothing after refers back), and a new one costs more than deflating a
# 100-number subaccount's families: its ~270 kB of state is allocated (mmapped) and zeroed each
# time. A few suffice, as the scraper deflates one response at a time.
_SPARE: list[Any] = []
_SPARE_MAX = 4


@contextmanager
def spare_compressor() -> Iterator[Any]:
    """A compressor from the spares (or a new one), fully flushed; back to them after use."""
    try:
        compressor = _SPARE.pop()  # atomic: no lock needed
    except IndexError:
        compressor = new_compressor()
    yield compressor
    # Not in a `finally`: a compressor interrupted in the middle of a piece holds unflushed
    # input, and goes with the exception.
    if len(_SPARE) < _SPARE_MAX:
        _SPARE.append(compressor)


def deflate_all(texts: Iterable[SampleText]) -> None:
    """Deflate the texts of one response that are large enough, with one compressor for all.

    A compressor costs more to set up than a small text costs to deflate (so it is a spare one),
    and one response has a dozen small family texts: those are left to the gzip bodies (see
    DEFLATE_ALONE_FROM).
    """
    with spare_compressor() as compressor:
        for text in texts:
            if text.deflated_alone():
                text.piece(compressor)


TextPart = bytes | SampleText


# --- bodies -----------------------------------------------------------------------------------


def plain_size(parts: Sequence[TextPart]) -> int:
    """Length of the plain body, known without inflating anything."""
    return sum(part.size if isinstance(part, SampleText) else len(part) for part in parts)


def plain_body(parts: Sequence[TextPart]) -> Iterator[bytes]:
    """The text parts as they are, those kept only deflated inflated while they are sent."""
    for part in parts:
        if isinstance(part, SampleText):
            yield from part.stream()
        elif part:
            yield part


def gzip_body(parts: Sequence[TextPart]) -> list[bytes]:
    """One gzip member: deflated pieces as they are, the text between them compressed now.

    The text between two pieces is joined and compressed in one call. Before a piece, the
    compressor is fully flushed only if it compressed something since its last flush: the flush
    ends its output on a byte boundary and makes it forget what it compressed, so that nothing
    after the piece refers back across it. Pieces side by side (the subaccounts of one family)
    need nothing between them, as each ends on a byte boundary and refers to nothing before it.
    """
    out = [GZIP_HEADER]
    compressor = new_compressor()
    crc = size = 0
    pending: list[bytes] = []  # text not yet compressed
    compressed = False  # whether the compressor holds anything since its last flush
    for part in parts:
        if not isinstance(part, SampleText):
            pending.append(part)
        elif not part.deflated_alone():
            pending.extend(part.kept_text())
        else:
            piece = part.piece()
            if pending:
                text = b"".join(pending)
                pending.clear()
                out.append(compressor.compress(text))
                crc = zlib.crc32(text, crc)
                size += len(text)
                compressed = True
            if compressed:
                out.append(compressor.flush(zlib.Z_FULL_FLUSH))
                compressed = False
            out.append(piece.deflated)
            crc = piece.crc_after(crc)
            size += piece.size
    text = b"".join(pending)
    out.append(compressor.compress(text))
    crc = zlib.crc32(text, crc)
    size += len(text)
    out.append(compressor.flush())
    out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return [chunk for chunk in out if chunk]
