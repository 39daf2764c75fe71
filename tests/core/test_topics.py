"""Topic names: validation (alphabet, parts, length) and the Channels group they map to."""

from __future__ import annotations

import string

import pytest
from channels.layers import BaseChannelLayer
from hypothesis import given
from hypothesis import strategies as st

from rtdelivery.backplane import group_name
from rtdelivery.core.errors import InvalidTopic, RTDeliveryError
from rtdelivery.core.topics import MAX_TOPIC_LENGTH, validate_topic
from tests.core.strategies import FAST, TOPIC_PART_ALPHABET, topics


def is_valid_topic(text: str) -> bool:
    """Reference predicate, written independently of the module's regex."""
    if not 1 <= len(text) <= MAX_TOPIC_LENGTH:
        return False
    parts = text.split(".")
    return all(part and all(c in TOPIC_PART_ALPHABET for c in part) for part in parts)


@pytest.mark.parametrize(
    "topic",
    [
        "a",
        "7",
        "feed",
        "chat.lobby",
        "user.42",
        "A-b_c.D-1.e_",
        "-.-._",
        "a.b.c.d.e.f.g",
        "x" * MAX_TOPIC_LENGTH,
        ".".join(["ab"] * 26) + ".a",  # 80 characters, 27 parts
    ],
)
def test_valid_topics_are_returned_unchanged(topic: str) -> None:
    assert validate_topic(topic) is topic


@pytest.mark.parametrize(
    "topic",
    [
        ".",
        ".a",
        "a.",
        "a..b",
        "a b",
        " a",
        "a\n",
        "a\r",
        "a\x00",
        "chat/lobby",
        "chat:lobby",
        "a*",
        "a?",
        "é",
        "\uff43hat",  # fullwidth letter c
        "٣",  # Arabic-Indic digit (\d would accept it)
        "\u212a",  # Kelvin sign (case-insensitive matching would accept it)
        "a|b",
        '"a"',
        "a\u2028",
    ],
)
def test_invalid_characters_and_shapes_are_rejected_with_the_rules(topic: str) -> None:
    with pytest.raises(InvalidTopic) as info:
        validate_topic(topic)
    assert info.value.message == (
        "Expected a topic name of letters, digits, '_' and '-' in dot-separated parts "
        f"(like 'chat.lobby'), got {topic!r}."
    )


def test_empty_topic_has_its_own_message() -> None:
    with pytest.raises(InvalidTopic, match=r"^Expected a topic name, got an empty string\.$"):
        validate_topic("")


def test_too_long_topic_reports_the_limit_and_the_length() -> None:
    with pytest.raises(InvalidTopic) as info:
        validate_topic("x" * (MAX_TOPIC_LENGTH + 1))
    assert info.value.message == (
        f"Expected a topic name of at most {MAX_TOPIC_LENGTH} characters, "
        f"got {MAX_TOPIC_LENGTH + 1}."
    )


def test_long_invalid_topic_is_quoted_truncated() -> None:
    topic = "é" * 60
    with pytest.raises(InvalidTopic) as info:
        validate_topic(topic)
    assert repr(topic) in info.value.message
    huge = "é" * 1000
    with pytest.raises(InvalidTopic) as info:
        validate_topic(huge)
    assert len(info.value.message) < 200


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(None, "NoneType"), (42, "int"), (b"chat", "bytes"), (["a"], "list"), (1.5, "float")],
)
def test_non_strings_are_rejected_with_their_type(value: object, type_name: str) -> None:
    with pytest.raises(InvalidTopic) as info:
        validate_topic(value)
    assert info.value.message == f"Expected the topic as a string, got {type_name}."


def test_invalid_topic_is_a_400_with_a_stable_code() -> None:
    with pytest.raises(InvalidTopic) as info:
        validate_topic("a b")
    exc = info.value
    assert isinstance(exc, RTDeliveryError)
    assert exc.code == "invalid_topic"
    assert exc.status == 400
    assert exc.as_dict() == {"code": "invalid_topic", "message": exc.message, "topic": "a b"}
    assert str(exc) == exc.message


@FAST
@given(st.text(max_size=100))
def test_any_text_is_either_valid_or_invalid_topic(text: str) -> None:
    if is_valid_topic(text):
        assert validate_topic(text) == text
    else:
        with pytest.raises(InvalidTopic):
            validate_topic(text)


@FAST
@given(st.text(alphabet=TOPIC_PART_ALPHABET + ".", max_size=MAX_TOPIC_LENGTH + 5))
def test_topic_alphabet_strings_agree_with_reference(text: str) -> None:
    # Biased to the alphabet so that both outcomes (and the dot rules) are exercised often.
    if is_valid_topic(text):
        assert validate_topic(text) == text
    else:
        with pytest.raises(InvalidTopic):
            validate_topic(text)


@FAST
@given(topics)
def test_generated_topics_are_valid(topic: str) -> None:
    assert is_valid_topic(topic)
    assert validate_topic(topic) == topic


def test_group_name_prefixes_the_topic() -> None:
    assert group_name("chat.lobby") == "rtdelivery.chat.lobby"


@FAST
@given(topics)
def test_every_valid_topic_gives_a_valid_channels_group_name(topic: str) -> None:
    layer = BaseChannelLayer()
    name = group_name(topic)
    assert layer.require_valid_group_name(name) is True
    assert len(name) < layer.MAX_NAME_LENGTH


def test_longest_topic_still_fits_a_channels_group_name() -> None:
    name = group_name("x" * MAX_TOPIC_LENGTH)
    assert BaseChannelLayer().require_valid_group_name(name) is True


def test_alphabet_is_exactly_ascii_letters_digits_underscore_hyphen() -> None:
    # The whole Basic Multilingual Plane: every look-alike letter and digit is in it.
    accepted = {chr(c) for c in range(0x10000) if _accepts(chr(c))}
    assert accepted == set(string.ascii_letters + string.digits + "_-")


def _accepts(char: str) -> bool:
    try:
        validate_topic(char)
    except InvalidTopic:
        return False
    return True
