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

    With `limit`, a memo that has grown to that many entries is emptied before it keeps another
    (back to `known`): one that lives across responses stays bounded whatever values arrive.
    """

    __slots__ = ("_known", "compute", "limit")

    def __init__(
        self,
        compute: Callable[[K], V],
        known: Iterable[tuple[K, V]] = (),
        limit: int | None = None,
    ) -> None:
        self._known = tuple(known)
        super().__init__(self._known)
        self.compute = compute
        self.limit = limit

    def __missing__(self, key: K) -> V:
        value = self.compute(key)
        if key != 0:
            if self.limit is not None and len(self) >= self.limit:
                self.clear()
                self.update(self._known)
            self[key] = value
        return value
