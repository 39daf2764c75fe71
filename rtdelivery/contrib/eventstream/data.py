"""How send_event's ``data`` is stored in rtdelivery, and read back exactly.

django-eventstream hands its storage the text it writes after ``data:`` (its
``send_event`` JSON-encodes the data first unless ``json_encode=False``); its storage
contract is that a read gives back what was appended. rtdelivery clients (WebSocket,
polling) should get the JSON value, not a string of JSON. So:

- text that is exactly ``json.dumps`` of an object, array, number, true, false or null
  (what ``send_event`` makes) is stored as that value; read back, ``json.dumps`` of it
  gives the same text again;
- any other text (``json_encode=False`` with text of your own, or a JSON string) is
  stored as a JSON string and read back as that text;
- a value that is not text (the storage API called directly with a dict) is stored
  wrapped, ``{"rtdelivery.eventstream.value": value}``, and read back as that value.
"""

from __future__ import annotations

import json
from typing import Any

WRAPPER = "rtdelivery.eventstream.value"


def _no_constants(name: str) -> Any:
    raise ValueError(name)


def to_stored(data: Any) -> Any:
    """The JSON value rtdelivery stores for ``data``."""
    if not isinstance(data, str):
        return {WRAPPER: data}
    try:
        value = json.loads(data, parse_constant=_no_constants)
    except ValueError:
        return data
    if isinstance(value, str) or json.dumps(value) != data:
        return data
    if isinstance(value, dict) and len(value) == 1 and WRAPPER in value:
        return data  # would read back as a wrapped value
    return value


def from_stored(value: Any) -> Any:
    """What ``to_stored`` was given."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1 and WRAPPER in value:
        return value[WRAPPER]
    return json.dumps(value)


def sse_text(data_json: str) -> str:
    """The text after ``data:`` for an event whose data is ``data_json`` (the stream
    caches what it builds from it, bounded: :func:`.stream.event_tail`)."""
    value = from_stored(json.loads(data_json))
    return value if isinstance(value, str) else json.dumps(value)
