"""Topic names: a short ASCII name from a fixed alphabet."""

from __future__ import annotations

import re

from .errors import InvalidTopic

MAX_TOPIC_LENGTH = 80
# Letters, digits, "_" and "-", in dot-separated parts: "chat.lobby", "user.42".
# The same alphabet as Channels group names, so "rtdelivery." + topic is a valid group.
_TOPIC_RE = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*")


#: Characters of an invalid topic echoed back in the error's ``topic`` field.
SHOWN_TOPIC_LENGTH = 2 * MAX_TOPIC_LENGTH


def shown_topic(value: str) -> str:
    """An invalid topic as the error names it: as received, cut after
    ``SHOWN_TOPIC_LENGTH`` characters (with ``…``) so an answer stays small."""
    if len(value) <= SHOWN_TOPIC_LENGTH:
        return value
    return value[:SHOWN_TOPIC_LENGTH] + "…"


def validate_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic name, else raise :class:`InvalidTopic`
    (its ``topic``: the value received when a string, see :func:`shown_topic`)."""
    if not isinstance(topic, str):
        raise InvalidTopic(f"Expected the topic as a string, got {type(topic).__name__}.")
    if not topic:
        raise InvalidTopic("Expected a topic name, got an empty string.", topic="")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(
            f"Expected a topic name of at most {MAX_TOPIC_LENGTH} characters, got {len(topic)}.",
            topic=shown_topic(topic),
        )
    if not _TOPIC_RE.fullmatch(topic):
        raise InvalidTopic(
            f"Expected a topic name of letters, digits, '_' and '-' in dot-separated parts "
            f"(like 'chat.lobby'), got {topic[:MAX_TOPIC_LENGTH]!r}.",
            topic=topic,
        )
    return topic
