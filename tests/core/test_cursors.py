"""Cursors: opaque, URL-safe, signed topic -> Position maps.

Properties: encode/decode round-trips; anything else (random text, random bytes, bytes
signed with the right key but malformed, tampered or foreign-key cursors) is rejected with
InvalidCursor and never another exception.
"""

from __future__ import annotations

import base64
import hashlib
import re
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rtdelivery.core.cursors import (
    MAC_SIZE,
    MAX_CURSOR_LENGTH,
    MAX_CURSOR_TOPICS,
    Cursor,
    Position,
    event_id,
)
from rtdelivery.core.errors import InvalidCursor, RTDeliveryError
from rtdelivery.core.topics import MAX_TOPIC_LENGTH, validate_topic
from tests.core.strategies import (
    FAST,
    MAX_INT63,
    URLSAFE_ALPHABET,
    positions,
    small_positions,
    topics,
)

KEY = hashlib.sha256(b"rtdelivery.cursor:test-secret").digest()
OTHER_KEY = hashlib.sha256(b"rtdelivery.cursor:another-secret").digest()
URLSAFE = re.compile(r"[A-Za-z0-9_-]+")
B64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"

cursor_maps = st.dictionaries(topics, positions, max_size=8)


# -- helpers: an independent encoder of the documented format --------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sign(body: bytes, key: bytes = KEY) -> str:
    """base64url(body + keyed BLAKE2b MAC), as docs in cursors.py describe the format."""
    mac = hashlib.blake2b(body, key=key, digest_size=MAC_SIZE).digest()
    return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode("ascii")


def entry(topic: bytes, epoch: int, seq: int) -> bytes:
    return varint(len(topic)) + topic + varint(epoch) + varint(seq)


def decode_or_invalid(text: object, key: bytes = KEY) -> Cursor | None:
    """Decode; None for InvalidCursor. Any other exception fails the test."""
    try:
        cursor = Cursor.decode(text, key)
    except InvalidCursor as exc:
        error = exc
    else:
        error = None
    if error is not None:
        assert error.code == "invalid_cursor"
        assert error.message.startswith("Expected ")
        return None
    # Whatever decodes is a well-formed cursor.
    assert isinstance(cursor, Cursor)
    assert len(cursor) <= MAX_CURSOR_TOPICS
    for topic, pos in cursor.items():
        assert validate_topic(topic) == topic
        assert isinstance(pos, Position)
        assert 0 <= pos.epoch <= MAX_INT63
        assert 0 <= pos.seq <= MAX_INT63
    return cursor


# -- round trip -------------------------------------------------------------------------


@FAST
@given(cursor_maps)
def test_encode_decode_round_trip(mapping: dict[str, Position]) -> None:
    text = Cursor(mapping).encode(KEY)
    decoded = Cursor.decode(text, KEY)
    assert decoded == Cursor(mapping)
    assert dict(decoded) == mapping
    assert list(decoded) == list(mapping)  # order kept
    assert all(type(p) is Position for p in decoded.values())


@FAST
@given(cursor_maps)
def test_encoded_cursor_is_url_safe_and_deterministic(mapping: dict[str, Position]) -> None:
    text = Cursor(mapping).encode(KEY)
    assert URLSAFE.fullmatch(text), text
    assert len(text) <= MAX_CURSOR_LENGTH
    assert Cursor(mapping).encode(KEY) == text


@FAST
@given(cursor_maps)
def test_encoding_matches_the_documented_format(mapping: dict[str, Position]) -> None:
    body = b"\x01" + b"".join(entry(t.encode(), e, s) for t, (e, s) in mapping.items())
    assert Cursor(mapping).encode(KEY) == sign(body)


@FAST
@given(topics, positions)
def test_event_id_is_a_cursor_at_that_event(topic: str, pos: Position) -> None:
    text = event_id(topic, pos.epoch, pos.seq, KEY)
    assert URLSAFE.fullmatch(text)
    assert Cursor.decode(text, KEY) == Cursor({topic: pos})
    assert text == Cursor({topic: pos}).encode(KEY)


def test_empty_cursor_round_trips() -> None:
    text = Cursor().encode(KEY)
    assert URLSAFE.fullmatch(text)
    assert Cursor.decode(text, KEY) == Cursor({})
    assert len(Cursor.decode(text, KEY)) == 0


def test_extreme_values_round_trip() -> None:
    mapping = {
        "x" * MAX_TOPIC_LENGTH: Position(MAX_INT63, MAX_INT63),
        "a": Position(0, 0),
        "b.c": Position(127, 128),
        "d": Position(2**48 - 1, 2**32),
    }
    assert dict(Cursor.decode(Cursor(mapping).encode(KEY), KEY)) == mapping


# -- garbage is InvalidCursor, never anything else ----------------------------------------


@FAST
@given(st.text(max_size=300))
def test_random_text_decodes_or_is_invalid(text: str) -> None:
    decode_or_invalid(text)


@FAST
@given(st.text(alphabet=URLSAFE_ALPHABET + "=+/ \n.", max_size=300))
def test_random_base64ish_text_decodes_or_is_invalid(text: str) -> None:
    decode_or_invalid(text)


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_as_base64_are_invalid(data: bytes) -> None:
    text = base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    # Without the key a random MAC matches with probability 2**-48.
    assert decode_or_invalid(text) is None


@FAST
@given(st.binary(max_size=200))
def test_signed_random_bodies_decode_or_are_invalid(body: bytes) -> None:
    # Correctly signed, so the parser behind the MAC check is what gets fuzzed.
    decode_or_invalid(sign(body))


@FAST
@given(st.binary(max_size=200))
def test_signed_version1_random_bodies_decode_or_are_invalid(rest: bytes) -> None:
    decode_or_invalid(sign(b"\x01" + rest))


@FAST
@given(
    st.lists(
        st.tuples(
            st.binary(max_size=12),
            st.integers(min_value=0, max_value=2**72),
            st.integers(min_value=0, max_value=2**72),
        ),
        max_size=6,
    ),
    st.binary(max_size=4),
)
def test_signed_structured_bodies_decode_or_are_invalid(
    entries: list[tuple[bytes, int, int]], tail: bytes
) -> None:
    body = b"\x01" + b"".join(entry(*e) for e in entries) + tail
    cursor = decode_or_invalid(sign(body))
    if cursor is not None and not tail:
        # Every entry was valid: the decoded cursor is exactly those entries.
        assert dict(cursor) == {t.decode(): Position(e, s) for t, e, s in entries}


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(None, "NoneType"), (b"AQ", "bytes"), (123, "int"), (["a"], "list")],
)
def test_non_string_cursor_is_invalid(value: object, type_name: str) -> None:
    with pytest.raises(InvalidCursor) as info:
        Cursor.decode(value, KEY)
    assert info.value.message == f"Expected the cursor as a string, got {type_name}."


def test_empty_cursor_text_is_invalid() -> None:
    with pytest.raises(InvalidCursor, match=r"^Expected a cursor, got an empty string\.$"):
        Cursor.decode("", KEY)


@pytest.mark.parametrize("text", ["!!!!", "AQ AQ", "é", "AQ\n", "\x00", "A", "AQ=A", "\ud800"])
def test_non_base64_text_is_invalid(text: str) -> None:
    with pytest.raises(InvalidCursor) as info:
        Cursor.decode(text, KEY)
    assert info.value.message == (
        "Expected a cursor from rtdelivery (URL-safe base64), got something else."
    )


def test_too_short_cursor_is_invalid() -> None:
    text = base64.urlsafe_b64encode(b"\x01" + b"\x00" * (MAC_SIZE - 1)).rstrip(b"=").decode()
    with pytest.raises(InvalidCursor, match="too short"):
        Cursor.decode(text, KEY)


def test_invalid_cursor_is_a_400_with_a_stable_code() -> None:
    with pytest.raises(InvalidCursor) as info:
        Cursor.decode("nope", KEY)
    assert isinstance(info.value, RTDeliveryError)
    assert info.value.status == 400
    assert info.value.as_dict()["code"] == "invalid_cursor"


# -- tampering -----------------------------------------------------------------------------


@FAST
@given(cursor_maps, st.data())
def test_any_single_changed_character_is_rejected(
    mapping: dict[str, Position], data: st.DataObject
) -> None:
    text = Cursor(mapping).encode(KEY)
    index = data.draw(st.integers(min_value=0, max_value=len(text) - 1), label="index")
    char = data.draw(st.sampled_from(URLSAFE_ALPHABET), label="char")
    assume(char != text[index])
    tampered = text[:index] + char + text[index + 1 :]
    with pytest.raises(InvalidCursor):
        Cursor.decode(tampered, KEY)


@FAST
@given(cursor_maps, st.data())
def test_any_single_flipped_bit_is_rejected(
    mapping: dict[str, Position], data: st.DataObject
) -> None:
    text = Cursor(mapping).encode(KEY)
    raw = bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    bit = data.draw(st.integers(min_value=0, max_value=len(raw) * 8 - 1), label="bit")
    raw[bit // 8] ^= 1 << (bit % 8)
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidCursor) as info:
        Cursor.decode(tampered, KEY)
    assert "altered or signed with another SECRET_KEY" in info.value.message


def test_unused_low_bits_of_the_last_character_are_rejected() -> None:
    # The last base64 character may carry padding bits; a variant that decodes to the same
    # bytes must still be refused (one cursor, one spelling).
    checked = 0
    for n in range(1, 4):
        text = Cursor({"t" * n: Position(1, 1)}).encode(KEY)
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if len(raw) % 3 == 0:
            continue  # no padding bits at this length
        variant = text[:-1] + B64URL[B64URL.index(text[-1]) ^ 1]
        assert base64.urlsafe_b64decode(variant + "=" * (-len(variant) % 4)) == raw
        with pytest.raises(InvalidCursor):
            Cursor.decode(variant, KEY)
        checked += 1
    assert checked >= 2


def test_standard_base64_spelling_is_rejected() -> None:
    texts = [Cursor({"t": Position(1, seq)}).encode(KEY) for seq in range(200)]
    texts = [t for t in texts if "-" in t or "_" in t]
    assert len(texts) > 50
    for text in texts:
        with pytest.raises(InvalidCursor):
            Cursor.decode(text.replace("-", "+").replace("_", "/"), KEY)


@FAST
@given(cursor_maps, st.sampled_from(["\n", " ", ".", "!", "%3D"]))
def test_appended_junk_is_rejected(mapping: dict[str, Position], junk: str) -> None:
    text = Cursor(mapping).encode(KEY)
    with pytest.raises(InvalidCursor):
        Cursor.decode(text + junk, KEY)


@FAST
@given(cursor_maps)
def test_cursor_signed_with_another_key_is_rejected(mapping: dict[str, Position]) -> None:
    text = Cursor(mapping).encode(OTHER_KEY)
    with pytest.raises(InvalidCursor) as info:
        Cursor.decode(text, KEY)
    assert info.value.message == (
        "Expected a cursor issued by this server, got one that was altered or signed "
        "with another SECRET_KEY."
    )


@FAST
@given(st.binary(max_size=64), st.binary(max_size=64), small_positions)
def test_keys_are_not_interchangeable(key1: bytes, key2: bytes, pos: Position) -> None:
    assume(key1 != key2)
    text = Cursor({"t": pos}).encode(key1)
    assert Cursor.decode(text, key1) == Cursor({"t": pos})
    with pytest.raises(InvalidCursor):
        Cursor.decode(text, key2)


# -- the parser's own errors, behind a valid MAC ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x02", "Expected cursor version 1, got version 2."),
        (b"\x00" + entry(b"a", 1, 1), "Expected cursor version 1, got version 0."),
        (b"\x01\x80", "Expected a cursor from rtdelivery, got a truncated one."),
        (b"\x01\x05ab", "Expected a cursor from rtdelivery, got a truncated one."),
        (b"\x01\x01a\x01", "Expected a cursor from rtdelivery, got a truncated one."),
        (b"\x01\x01a", "Expected a cursor from rtdelivery, got a truncated one."),
        (b"\x01" + entry(b"", 1, 1), "Expected a cursor with valid topic names."),
        (b"\x01" + entry(b"a b", 1, 1), "Expected a cursor with valid topic names."),
        (b"\x01" + entry(b"a..b", 1, 1), "Expected a cursor with valid topic names."),
        (b"\x01" + entry("é".encode(), 1, 1), "Expected a cursor with valid topic names."),
        (b"\x01" + entry(b"\xff", 1, 1), "Expected a cursor with valid topic names."),
        (
            b"\x01" + entry(b"x" * (MAX_TOPIC_LENGTH + 1), 1, 1),
            "Expected a cursor with valid topic names.",
        ),
        (
            b"\x01\x01a" + b"\x80" * 10 + b"\x01\x01",
            "Expected a cursor from rtdelivery, got a malformed number.",
        ),
        (
            b"\x01" + entry(b"a", 2**63, 1),
            "Expected a cursor from rtdelivery, got an out-of-range number.",
        ),
        (
            b"\x01" + entry(b"a", 1, 2**70 - 1),
            "Expected a cursor from rtdelivery, got an out-of-range number.",
        ),
        (
            b"\x01" + b"".join(entry(f"t{i}".encode(), 1, 1) for i in range(257)),
            f"Expected a cursor of at most {MAX_CURSOR_TOPICS} topics.",
        ),
    ],
)
def test_malformed_signed_bodies_give_specific_messages(body: bytes, message: str) -> None:
    with pytest.raises(InvalidCursor) as info:
        Cursor.decode(sign(body), KEY)
    assert info.value.message == message


def test_largest_number_is_accepted() -> None:
    assert dict(Cursor.decode(sign(b"\x01" + entry(b"a", MAX_INT63, MAX_INT63)), KEY)) == {
        "a": Position(MAX_INT63, MAX_INT63)
    }


def test_repeated_topic_keeps_the_last_position() -> None:
    body = b"\x01" + entry(b"a", 1, 1) + entry(b"a", 1, 5)
    assert dict(Cursor.decode(sign(body), KEY)) == {"a": Position(1, 5)}


# -- limits --------------------------------------------------------------------------------------


def test_cursor_longer_than_the_limit_is_rejected_before_decoding() -> None:
    with pytest.raises(InvalidCursor) as info:
        Cursor.decode("A" * (MAX_CURSOR_LENGTH + 1), KEY)
    assert info.value.message == (
        f"Expected a cursor of at most {MAX_CURSOR_LENGTH} characters, got {MAX_CURSOR_LENGTH + 1}."
    )


def test_cursor_at_the_length_limit_is_not_refused_for_its_length() -> None:
    with pytest.raises(InvalidCursor) as info:
        Cursor.decode("A" * MAX_CURSOR_LENGTH, KEY)
    assert "characters" not in info.value.message


def test_max_topic_count_round_trips() -> None:
    mapping = {f"topic.{i}": Position(2**47 + i, i) for i in range(MAX_CURSOR_TOPICS)}
    text = Cursor(mapping).encode(KEY)
    assert len(text) <= MAX_CURSOR_LENGTH
    assert dict(Cursor.decode(text, KEY)) == mapping


def test_encoding_more_topics_than_decode_accepts_raises() -> None:
    mapping = {f"t{i}": Position(1, 1) for i in range(MAX_CURSOR_TOPICS + 1)}
    with pytest.raises(ValueError, match=f"more than {MAX_CURSOR_TOPICS} topics"):
        Cursor(mapping).encode(KEY)


def test_encoding_a_cursor_longer_than_decode_accepts_raises() -> None:
    long_topics = {
        f"{i:03d}" + "x" * (MAX_TOPIC_LENGTH - 3): Position(2**47, 2**40) for i in range(100)
    }
    with pytest.raises(ValueError, match=f"longer than {MAX_CURSOR_LENGTH} characters"):
        Cursor(long_topics).encode(KEY)


def test_fifty_topics_of_maximal_size_fit() -> None:
    # MAX_TOPICS defaults to 50: a stream over 50 maximal topics must still get a cursor.
    mapping = {
        f"{i:02d}" + "x" * (MAX_TOPIC_LENGTH - 2): Position(MAX_INT63, MAX_INT63) for i in range(50)
    }
    text = Cursor(mapping).encode(KEY)
    assert dict(Cursor.decode(text, KEY)) == mapping


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"a b": Position(1, 1)}, "Cannot encode a cursor: Expected a topic name of"),
        ({"": Position(1, 1)}, "Cannot encode a cursor: Expected a topic name, got an empty"),
        ({"é": Position(1, 1)}, "Cannot encode a cursor: Expected a topic name of"),
        ({"a": Position(-1, 1)}, "epoch and seq must be integers in 0..2**63-1"),
        ({"a": Position(1, -1)}, "epoch and seq must be integers in 0..2**63-1"),
        ({"a": Position(2**63, 1)}, "epoch and seq must be integers in 0..2**63-1"),
        ({"a": Position(1.5, 1)}, "epoch and seq must be integers in 0..2**63-1"),  # type: ignore[arg-type]
        ({"a": Position(True, 1)}, "epoch and seq must be integers in 0..2**63-1"),
    ],
)
def test_encoding_what_decode_would_reject_raises_value_error(
    mapping: dict[str, Position], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Cursor(mapping).encode(KEY)


# -- the Mapping API -----------------------------------------------------------------------------


def test_cursor_is_an_immutable_mapping_of_positions() -> None:
    cursor = Cursor([("a", (1, 2)), ("b", Position(3, 4))])
    assert cursor["a"] == Position(1, 2)
    assert type(cursor["a"]) is Position
    assert cursor["a"].epoch == 1
    assert cursor["a"].seq == 2
    assert list(cursor) == ["a", "b"]
    assert len(cursor) == 2
    assert "a" in cursor
    assert "c" not in cursor
    assert cursor.get("c") is None
    with pytest.raises(TypeError):
        cursor["c"] = Position(1, 1)  # type: ignore[index]
    assert repr(cursor) == "Cursor({'a': Position(epoch=1, seq=2), 'b': Position(epoch=3, seq=4)})"


def test_cursor_equality_and_hash() -> None:
    one = Cursor({"a": Position(1, 2), "b": Position(3, 4)})
    same = Cursor({"b": Position(3, 4), "a": Position(1, 2)})
    assert one == same
    assert hash(one) == hash(same)
    assert one != Cursor({"a": Position(1, 2)})
    assert len({one, same}) == 1


def test_replace_and_only_return_new_cursors() -> None:
    cursor = Cursor({"a": Position(1, 2), "b": Position(3, 4)})
    moved = cursor.replace("a", Position(1, 9))
    assert moved == Cursor({"a": Position(1, 9), "b": Position(3, 4)})
    assert cursor["a"] == Position(1, 2)
    added = cursor.replace("c", Position(5, 6))
    assert list(added) == ["a", "b", "c"]
    assert cursor.only(["b", "z"]) == Cursor({"b": Position(3, 4)})
    # Any iterable, consumed once (a generator used to match only the first topic).
    assert cursor.only(t for t in ["b", "a"]) == cursor
    assert cursor.only(iter(["b"])) == Cursor({"b": Position(3, 4)})
    assert cursor.only([]) == Cursor()
