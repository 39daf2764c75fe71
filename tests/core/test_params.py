"""Strict numeric parameters: ASCII digits of bounded length, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtdelivery.core.errors import BadRequest
from rtdelivery.core.params import parse_int, parse_length, parse_seconds


@pytest.mark.parametrize(
    "raw", ["²", "٣", "1_0", " 5", "5 ", "+5", "-1", "0x10", "1e3", "", "5" * 5000, "0", "201"]
)
def test_parse_int_refuses(raw: str) -> None:
    with pytest.raises(BadRequest, match="Expected 'limit' as an integer from 1 to 200"):
        parse_int("limit", raw, 1, 200)


def test_parse_int_message_is_bounded() -> None:
    with pytest.raises(BadRequest) as info:
        parse_int("limit", "9" * 5000, 1, 200)
    assert len(info.value.message) < 200


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("200", 200), ("007", 7)])
def test_parse_int_accepts(raw: str, value: int) -> None:
    assert parse_int("limit", raw, 1, 200) == value


@pytest.mark.parametrize(
    "raw", ["nan", "inf", "-1", "1e3", "²", "٣", " 2", "2.", ".5", "1_0", "", "9" * 5000]
)
def test_parse_seconds_refuses(raw: str) -> None:
    with pytest.raises(BadRequest, match="Expected 'timeout' as a number of seconds"):
        parse_seconds("timeout", raw)


@pytest.mark.parametrize(("raw", "value"), [("0", 0.0), ("25", 25.0), ("2.5", 2.5)])
def test_parse_seconds_accepts(raw: str, value: float) -> None:
    assert parse_seconds("timeout", raw) == value


@given(st.text(max_size=30))
def test_parse_int_never_crashes(raw: str) -> None:
    try:
        value = parse_int("n", raw, 0, 10**6)
    except BadRequest:
        return
    assert raw.isascii()
    assert raw.isdigit()
    assert value == int(raw)


@pytest.mark.parametrize(("raw", "value"), [("12", 12), ("²", None), ("1e3", None), ("", None)])
def test_parse_length(raw: str, value: int | None) -> None:
    assert parse_length(raw) == value
