"""`Memo`: a function's results, computed once per distinct argument.

The parser and the renderer see the same few label values, prices and line fragments over and
over (a large subaccount has 100,000 numbers but a few hundred distinct label values). A `Memo`
is a `dict`, so `map(memo.__getitem__, values)` looks each value up at C speed and calls the
function only for a value not seen before.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(dict[K, V]):
    """`memo[key]` is `compute(key)`, computed on the first lookup of each key.

    A key equal to zero is never kept: 0.0 and -0.0 (and False) are the same dict key but
    `floatToGoString` prints them differently, so a zero is computed on every lookup. Keys that
    are tuples must not hold floats for the same reason. `known` seeds entries that bypass
    `compute` (such as "missing or empty means unknown").
    """

    __slots__ = ("compute",)

    def __init__(self, compute: Callable[[K], V], known: Iterable[tuple[K, V]] = ()) -> None:
        super().__init__(known)
        self.compute = compute

    def __missing__(self, key: K) -> V:
        value = self.compute(key)
        if key != 0:
            self[key] = value
        return value
