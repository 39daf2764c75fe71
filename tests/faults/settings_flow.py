"""Settings of the servers in the slow-client and shutdown fault tests.

The e2e settings, plus the limits these tests set from the environment: ``QUEUE_SIZE``
(``RTD_QUEUE_SIZE``) and ``SHUTDOWN_TIMEOUT`` (``RTD_SHUTDOWN_TIMEOUT``, ``none`` for None).
"""

import os

from rtdelivery.conf import DEFAULTS
from tests.e2e.settings_e2e import *  # noqa: F403
from tests.e2e.settings_e2e import RTDELIVERY as E2E_RTDELIVERY

_shutdown = os.environ.get("RTD_SHUTDOWN_TIMEOUT", "5")

RTDELIVERY = {
    **E2E_RTDELIVERY,
    "QUEUE_SIZE": int(os.environ.get("RTD_QUEUE_SIZE", "1000")),
    "SHUTDOWN_TIMEOUT": None if _shutdown == "none" else float(_shutdown),
    "LONGPOLL_MAX_TIMEOUT": 60.0,
}
if "PUBLISH_RATE" in DEFAULTS:
    # The tests publish thousands of events over one WebSocket: no per-client rate.
    RTDELIVERY["PUBLISH_RATE"] = None
