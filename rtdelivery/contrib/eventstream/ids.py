"""django-eventstream's event ids, over rtdelivery positions.

django-eventstream's id is ``quote(channel) ":" id`` per channel, joined by ``,``
(``make_id``), and a client resumes by sending it back as ``Last-Event-ID`` or
``?lastEventId=``. Here each channel's id is its topic's ``seq``, and one more part,
``*:<epoch>.<epoch>…`` (the topics' epochs in base 36, in the order of the channels),
lets a resume tell a lost history from a continued one. ``*`` is never a quoted channel
name (``quote`` escapes it), and django-eventstream's own parser ignores that part.

Ids without the ``*`` part (django-eventstream's own ``get_current_event_id()``, ids
stored by an older front end) resume by ``seq`` in the topic's current epoch; the bridge's
``get_current_event_id()`` includes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote

from ...core.cursors import Position

EPOCH_KEY = "*"
#: The id django-eventstream gives its ``stream-error`` frames (a resume from it is 400).
ERROR_ID = "error"


class BadEventId(ValueError):
    """An id that is not django-eventstream's shape."""


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if not value:
            return out


def make_id(positions: Iterable[tuple[str, Position | None]]) -> str:
    """The id of a stream at ``positions`` (channel, position), in that order (None: a
    topic with no history yet, seq 0 in whatever epoch it gets)."""
    parts = []
    epochs = []
    for channel, position in positions:
        if position is None:
            parts.append(f"{quote(channel)}:0")
            epochs.append("")
            continue
        parts.append(f"{quote(channel)}:{position.seq}")
        epochs.append(_base36(position.epoch))
    if not parts:
        return ""
    return ",".join(parts) + f",{EPOCH_KEY}:" + ".".join(epochs)


@dataclass(frozen=True)
class ParsedId:
    """Per channel the ``seq`` it had reached and, when the id said, the epoch."""

    seqs: dict[str, int]
    epochs: dict[str, int]


def parse_id(text: str) -> ParsedId:
    """Parse an id as django-eventstream's ``parse_last_event_id`` does (plus the epoch
    part); :class:`BadEventId` for anything else."""
    seqs: dict[str, int] = {}
    order: list[str] = []
    epoch_text = None
    for part in text.split(","):
        pieces = part.split(":")
        if len(pieces) != 2:
            raise BadEventId(f"Expected 'channel:id' parts separated by ',', got {part!r}.")
        key, value = pieces
        if key == EPOCH_KEY:
            epoch_text = value
            continue
        if not value.isdigit() or not value.isascii() or len(value) > 18:
            raise BadEventId(f"Expected a number after the channel, got {value!r}.")
        channel = unquote(key)
        seqs[channel] = int(value)
        order.append(channel)
    epochs: dict[str, int] = {}
    if epoch_text is not None:
        values = epoch_text.split(".")
        if len(values) == len(order):
            try:
                epochs = {c: int(v, 36) for c, v in zip(order, values, strict=True) if v}
            except ValueError:
                epochs = {}  # not ours: resume by seq alone
    return ParsedId(seqs, epochs)
