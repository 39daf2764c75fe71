"""A django-eventstream-style SSE client: frames parsed as the browser's EventSource
parses them for its JavaScript client (``event``, ``id``, ``data`` lines, comments
ignored, ``lastEventId`` kept across frames), over a real socket with httpx."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Frame:
    type: str
    data: str
    last_event_id: str

    def json(self) -> Any:
        return json.loads(self.data)


class ESClient:
    """One stream, read by a thread into a queue of :class:`Frame`."""

    def __init__(self, url: str, *, last_event_id: str | None = None) -> None:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.frames: queue.Queue[Frame | None] = queue.Queue()
        self.last_event_id = ""
        self.raw = b""
        self.status = 0
        self.content_type = ""
        self._client = httpx.Client(trust_env=False, timeout=httpx.Timeout(30.0, read=None))
        self._response = self._client.send(
            self._client.build_request("GET", url, headers=headers), stream=True
        )
        self.status = self._response.status_code
        self.content_type = self._response.headers.get("content-type", "")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event_type, data, buffer = "", [], ""
        try:
            for chunk in self._response.iter_raw():
                if len(self.raw) < 8192:
                    self.raw += chunk
                buffer += chunk.decode()
                while "\n" in buffer:
                    line, buffer = buffer.split("\n", 1)
                    if line == "":
                        if data:
                            self.frames.put(
                                Frame(event_type or "message", "\n".join(data), self.last_event_id)
                            )
                        event_type, data = "", []
                        continue
                    if line.startswith(":"):
                        continue
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event_type = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        self.last_event_id = value
        except (httpx.HTTPError, UnicodeDecodeError):
            pass
        finally:
            self.frames.put(None)

    def next(self, timeout: float = 10.0, *, skip: tuple[str, ...] = ("keep-alive",)) -> Frame:
        while True:
            frame = self.frames.get(timeout=timeout)
            assert frame is not None, "the stream ended"
            if frame.type not in skip:
                return frame

    def ended(self, timeout: float = 10.0) -> bool:
        while True:
            frame = self.frames.get(timeout=timeout)
            if frame is None:
                return True

    def close(self) -> None:
        self._response.close()
        self._client.close()
        self._thread.join(10)

    def __enter__(self) -> ESClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def send_event_in_process(env: dict[str, str], *calls: tuple[str, str, Any]) -> str:
    """``django_eventstream.send_event`` for each (channel, type, data) in a new Python
    process that serves nothing (as a worker or a management command would); returns
    what it printed (the ids, or the error)."""
    script = (
        "import django, json, sys\n"
        "django.setup()\n"
        "from django_eventstream import send_event\n"
        "from django_eventstream.utils import get_storage\n"
        "for channel, kind, data in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        send_event(channel, kind, data)\n"
        "        print('ok', get_storage().get_current_id(channel))\n"
        "    except Exception as exc:\n"
        "        print('error', type(exc).__name__, exc)\n"
    )
    child_env = {**os.environ, **env}
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(calls)],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
