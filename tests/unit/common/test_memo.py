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
