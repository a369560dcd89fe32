"""Memo: computed once per distinct key, except a zero, which prints two ways."""

from prometheus_client.utils import floatToGoString

from exporter.common.memo import Memo


def test_each_key_is_computed_once():
    calls = []

    def upper(text: str) -> str:
        calls.append(text)
        return text.upper()

    memo = Memo(upper)
    assert list(map(memo.__getitem__, ["a", "b", "a", "a", "b"])) == ["A", "B", "A", "A", "B"]
    assert calls == ["a", "b"]


def test_a_zero_is_never_kept_because_0_0_and_minus_0_0_are_one_key():
    memo = Memo(floatToGoString)
    assert memo[0.0] == "0.0"
    assert memo[-0.0] == "-0.0"
    assert memo[0.0] == "0.0"
    assert memo[2.5] == "2.5"
    assert set(memo) == {2.5}


def test_known_entries_are_served_without_computing():
    memo = Memo(str.lower, ((None, "unknown"), ("", "unknown")))
    assert memo[None] == "unknown"
    assert memo[""] == "unknown"
    assert memo["ACTIVE"] == "active"


def test_a_memo_with_a_limit_never_holds_more_and_keeps_its_known_entries():
    computed: list[int] = []

    def double(key: int) -> int:
        computed.append(key)
        return key * 2

    memo = Memo(double, known=[(-1, 0)], limit=3)
    assert [memo[k] for k in (1, 2)] == [2, 4]
    assert len(memo) == 3  # the known entry and two computed ones: the limit
    assert memo[3] == 6  # emptied back to the known entry first
    assert dict(memo) == {-1: 0, 3: 6}
    assert memo[-1] == 0
    assert computed == [1, 2, 3]
