"""Cursors: where a client is in one or more topics (epoch + seq per topic).

On the wire a cursor is opaque, URL-safe and compact: base64url (no padding) of

    version(1 byte) | (varint len, topic bytes, varint epoch, varint seq)* | MAC(6 bytes)

The MAC is a keyed BLAKE2b over the rest, so garbage and tampered cursors are told
apart from real ones with a clear :class:`InvalidCursor` instead of being trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

from .errors import InvalidCursor, InvalidTopic
from .topics import validate_topic

VERSION = 1
MAC_SIZE = 6
MAX_CURSOR_LENGTH = 8192
MAX_CURSOR_TOPICS = 256
_MAX_VARINT = (1 << 63) - 1


class Position(NamedTuple):
    """A place in one topic: the history ``epoch`` and the last ``seq`` seen."""

    epoch: int
    seq: int


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _get_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise InvalidCursor("Expected a cursor from rtdelivery, got a truncated one.")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise InvalidCursor("Expected a cursor from rtdelivery, got a malformed number.")


def _mac(key: bytes, body: bytes) -> bytes:
    return hashlib.blake2b(body, key=key[:64], digest_size=MAC_SIZE).digest()


class Cursor(Mapping[str, Position]):
    """An immutable mapping of topic -> :class:`Position`."""

    __slots__ = ("_positions",)

    def __init__(self, positions: Mapping[str, Position] | Iterable[tuple[str, Position]] = ()):
        items = dict(positions)
        for topic, pos in items.items():
            if not isinstance(pos, Position):
                items[topic] = Position(*pos)
        self._positions: dict[str, Position] = items

    def __getitem__(self, topic: str) -> Position:
        return self._positions[topic]

    def __iter__(self) -> Iterator[str]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)

    def __repr__(self) -> str:
        return f"Cursor({self._positions!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Cursor):
            return self._positions == other._positions
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._positions.items()))

    def replace(self, topic: str, position: Position) -> Cursor:
        """A copy with ``topic`` moved to ``position``."""
        positions = dict(self._positions)
        positions[topic] = position
        return Cursor(positions)

    def only(self, topics: Iterable[str]) -> Cursor:
        """A copy restricted to ``topics``."""
        wanted = set(topics)
        return Cursor({t: p for t, p in self._positions.items() if t in wanted})

    def encode(self, key: bytes) -> str:
        """The opaque, URL-safe text form, signed with ``key``."""
        return encode_positions(self._positions.items(), key)

    @classmethod
    def decode(cls, text: object, key: bytes) -> Cursor:
        """Parse a cursor; raise :class:`InvalidCursor` for anything that isn't one of ours."""
        return cls(decode_positions(text, key))


def encode_positions(items: Iterable[tuple[str, Position]], key: bytes) -> str:
    """Encode and sign; raise ``ValueError`` for anything :func:`decode_positions` would
    reject, so the server never hands out a cursor it cannot read back."""
    out = bytearray((VERSION,))
    count = 0
    for topic, (epoch, seq) in items:
        try:
            validate_topic(topic)
        except InvalidTopic as exc:
            raise ValueError(f"Cannot encode a cursor: {exc.message}") from exc
        if not (
            type(epoch) is int
            and type(seq) is int
            and 0 <= epoch <= _MAX_VARINT
            and 0 <= seq <= _MAX_VARINT
        ):
            raise ValueError(
                f"Cannot encode a cursor: epoch and seq must be integers in 0..2**63-1, "
                f"got {epoch!r} and {seq!r} for {topic!r}."
            )
        count += 1
        if count > MAX_CURSOR_TOPICS:
            raise ValueError(f"Cannot encode a cursor of more than {MAX_CURSOR_TOPICS} topics.")
        raw = topic.encode("ascii")
        _put_varint(out, len(raw))
        out += raw
        _put_varint(out, epoch)
        _put_varint(out, seq)
    out += _mac(key, bytes(out))
    text = base64.urlsafe_b64encode(out).rstrip(b"=").decode("ascii")
    if len(text) > MAX_CURSOR_LENGTH:
        raise ValueError(
            f"Cannot encode a cursor longer than {MAX_CURSOR_LENGTH} characters "
            f"({len(text)} for {count} topics)."
        )
    return text


def event_id(topic: str, epoch: int, seq: int, key: bytes) -> str:
    """The id of one event: a cursor positioned at it in its topic."""
    return encode_positions(((topic, Position(epoch, seq)),), key)


def decode_positions(text: object, key: bytes) -> dict[str, Position]:
    if not isinstance(text, str):
        raise InvalidCursor(f"Expected the cursor as a string, got {type(text).__name__}.")
    if not text:
        raise InvalidCursor("Expected a cursor, got an empty string.")
    if len(text) > MAX_CURSOR_LENGTH:
        raise InvalidCursor(
            f"Expected a cursor of at most {MAX_CURSOR_LENGTH} characters, got {len(text)}."
        )
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text.rstrip("="):
            raise ValueError("not canonical")
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise InvalidCursor(
            "Expected a cursor from rtdelivery (URL-safe base64), got something else."
        ) from exc
    if len(raw) < 1 + MAC_SIZE:
        raise InvalidCursor("Expected a cursor from rtdelivery, got one that is too short.")
    body, mac = raw[:-MAC_SIZE], raw[-MAC_SIZE:]
    if not hmac.compare_digest(mac, _mac(key, body)):
        raise InvalidCursor(
            "Expected a cursor issued by this server, got one that was altered or signed "
            "with another SECRET_KEY."
        )
    if body[0] != VERSION:
        raise InvalidCursor(f"Expected cursor version {VERSION}, got version {body[0]}.")
    positions: dict[str, Position] = {}
    pos = 1
    while pos < len(body):
        length, pos = _get_varint(body, pos)
        if pos + length > len(body):
            raise InvalidCursor("Expected a cursor from rtdelivery, got a truncated one.")
        try:
            topic = validate_topic(body[pos : pos + length].decode("ascii"))
        except (UnicodeDecodeError, InvalidTopic) as exc:
            raise InvalidCursor("Expected a cursor with valid topic names.") from exc
        pos += length
        epoch, pos = _get_varint(body, pos)
        seq, pos = _get_varint(body, pos)
        if epoch > _MAX_VARINT or seq > _MAX_VARINT:
            raise InvalidCursor("Expected a cursor from rtdelivery, got an out-of-range number.")
        positions[topic] = Position(epoch, seq)
        if len(positions) > MAX_CURSOR_TOPICS:
            raise InvalidCursor(f"Expected a cursor of at most {MAX_CURSOR_TOPICS} topics.")
    return positions


def merge_cursors(texts: Sequence[str], key: bytes) -> Cursor:
    """Several cursors (``cursor=`` repeated) read as one: each topic at the position the
    cursor that covers it gives. A topic two cursors put at different positions is
    ambiguous, and refused (naming it); the same position twice is not (a client resending
    what it was given). In all they cover at most ``MAX_CURSOR_TOPICS`` topics, as one."""
    if len(texts) == 1:
        return Cursor.decode(texts[0], key)
    positions: dict[str, Position] = {}
    for text in texts:
        for topic, position in decode_positions(text, key).items():
            if positions.get(topic, position) != position:
                raise InvalidCursor(
                    f"Expected each topic at one position, got {topic!r} at two.",
                    topic=topic,
                )
            positions[topic] = position
        if len(positions) > MAX_CURSOR_TOPICS:
            raise InvalidCursor(
                f"Expected cursors covering at most {MAX_CURSOR_TOPICS} topics in all, "
                f"got {len(positions)}."
            )
    return Cursor(positions)
