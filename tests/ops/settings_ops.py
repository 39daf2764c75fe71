"""The e2e servers' settings (tests/e2e/settings_e2e.py) with the metrics view mounted,
a metrics token and a short OPS_INTERVAL, so scrapes see every process within a second."""

import os

from tests.e2e.settings_e2e import *  # noqa: F403
from tests.e2e.settings_e2e import RTDELIVERY as _E2E_RTDELIVERY

#: The bearer token the scrapes present (METRICS_TOKENS).
METRICS_TOKEN = os.environ.get("RTD_METRICS_TOKEN", "ops-tests-metrics-token")

RTDELIVERY = {
    **_E2E_RTDELIVERY,
    "METRICS_TOKENS": [METRICS_TOKEN],
    # "none": no reporter (deliveries must still reach a scrape of another worker).
    "OPS_INTERVAL": (
        None
        if os.environ.get("RTD_OPS_INTERVAL") == "none"
        else float(os.environ.get("RTD_OPS_INTERVAL", "0.5"))
    ),
}
