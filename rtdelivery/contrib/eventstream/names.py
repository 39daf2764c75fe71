"""django-eventstream channel names as rtdelivery topics, by a reversible rule.

A channel ``C`` is the topic ``"es." + escape(C)``:

- letters, digits, ``-`` and ``.`` stay as they are (a dot keeps separating parts:
  channel ``room.1`` is topic ``es.room.1``), except a dot that would leave an empty
  part (first, last, or next to another dot);
- every other character, ``_`` included, becomes ``_`` and two upper-case hex digits per
  UTF-8 byte (``_`` is ``_5F``, a space ``_20``, ``é`` ``_C3_A9``).

:func:`topic_to_channel` undoes it exactly. A channel whose topic would be longer than
rtdelivery's 80 characters, an empty channel, or one that is not a string cannot be
mapped: :class:`InvalidChannel`, never a silent drop.
"""

from __future__ import annotations

import re

from ...core.errors import InvalidTopic
from ...core.topics import MAX_TOPIC_LENGTH, validate_topic

#: Every bridged channel's topic starts with this; TOPICS patterns use ``"es.*"``.
TOPIC_PREFIX = "es."

_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_ESCAPE = re.compile(r"_([0-9A-F]{2})")


class InvalidChannel(InvalidTopic):
    """A django-eventstream channel that cannot be an rtdelivery topic (code
    ``invalid_topic``, 400)."""

    def __init__(self, message: str, channel: object = None) -> None:
        super().__init__(message)
        self.channel = channel


def _escape_char(char: str) -> str:
    return "".join(f"_{byte:02X}" for byte in char.encode("utf-8"))


def channel_to_topic(channel: object) -> str:
    """The topic of django-eventstream channel ``channel``; :class:`InvalidChannel` when
    there is none."""
    if not isinstance(channel, str):
        raise InvalidChannel(
            f"Expected a django-eventstream channel name as a string, got "
            f"{type(channel).__name__}.",
            channel,
        )
    if not channel:
        raise InvalidChannel("Expected a django-eventstream channel name, got ''.", channel)
    try:
        channel.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidChannel(
            f"Expected a channel name of valid Unicode text, got {channel[:40]!r}.", channel
        ) from exc
    out = []
    last = len(channel) - 1
    for index, char in enumerate(channel):
        # A dot stays only between two parts that are not empty.
        inner_dot = (
            char == "."
            and 0 < index < last
            and "."
            not in (
                channel[index - 1],
                channel[index + 1],
            )
        )
        if char in _KEEP or inner_dot:
            out.append(char)
        else:
            out.append(_escape_char(char))
    topic = TOPIC_PREFIX + "".join(out)
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidChannel(
            f"Expected a django-eventstream channel whose rtdelivery topic "
            f"({TOPIC_PREFIX!r} + the escaped name) has at most {MAX_TOPIC_LENGTH} "
            f"characters, got {len(topic)} for channel {channel[:40]!r}"
            f"{'…' if len(channel) > 40 else ''}: use a shorter channel name.",
            channel,
        )
    validate_topic(topic)  # cannot fail: the rule only makes valid names
    return topic


def topic_to_channel(topic: str) -> str:
    """The django-eventstream channel of a bridged ``topic`` (one that
    :func:`channel_to_topic` makes); :class:`InvalidChannel` for any other topic."""
    if not isinstance(topic, str) or not topic.startswith(TOPIC_PREFIX):
        raise InvalidChannel(
            f"Expected a topic starting with {TOPIC_PREFIX!r} (a django-eventstream "
            f"channel), got {topic!r}.",
            None,
        )
    raw = topic[len(TOPIC_PREFIX) :]
    data = bytearray()
    pos = 0
    while pos < len(raw):
        char = raw[pos]
        if char == "_":
            match = _ESCAPE.match(raw, pos)
            if match is None:
                raise InvalidChannel(
                    f"Expected '_' followed by two upper-case hex digits in topic {topic!r}.",
                    None,
                )
            data.append(int(match[1], 16))
            pos += 3
        else:
            data += char.encode("ascii")
            pos += 1
    try:
        channel = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidChannel(f"Topic {topic!r} does not escape UTF-8 text.", None) from exc
    if channel_to_topic(channel) != topic:
        # Not how the rule writes this channel (e.g. an escaped letter): refuse, so
        # that one channel never has two topics.
        raise InvalidChannel(
            f"Expected the canonical topic of a django-eventstream channel, got {topic!r} "
            f"(channel {channel!r} is {channel_to_topic(channel)!r}).",
            None,
        )
    return channel
