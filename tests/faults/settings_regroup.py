"""Settings of the servers in the regroup fault test: the e2e settings (the layer's hosts
from ``RTD_LAYER_HOSTS``) with the tail check at its default interval
(``RTD_TAIL_CHECK_INTERVAL``, 2 s): the fallback that live delivery must not depend on
after a Redis restart."""

import os

from tests.e2e.settings_e2e import *  # noqa: F403
from tests.e2e.settings_e2e import RTDELIVERY as E2E_RTDELIVERY

RTDELIVERY = {
    **E2E_RTDELIVERY,
    "TAIL_CHECK_INTERVAL": float(os.environ.get("RTD_TAIL_CHECK_INTERVAL", "2.0")),
}
