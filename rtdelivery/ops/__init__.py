"""Operations: the Prometheus metrics view and the live operations page in the admin.

- :func:`rtdelivery.ops.metrics.metrics_view`: the text exposition of
  ``prometheus_client`` (every process's values in multiprocess mode), for a staff session
  or ``Authorization: Bearer <one of METRICS_TOKENS>``.
- ``include("rtdelivery.ops.urls")`` under the admin's prefix: the live page (staff only,
  fed by the ``rtdelivery.ops`` topic), its state as JSON and the staff actions.
- :mod:`rtdelivery.ops.reporter`: each serving process writes a small snapshot to Redis
  every ``OPS_INTERVAL`` seconds (with an expiry), which the page aggregates.

docs/operations.md says what to alert on and how to read the page.
"""

#: The topic the live page listens on: staff may subscribe, nobody may publish (only
#: rtdelivery's own reporters do, server side). An exact ``TOPICS["rtdelivery.ops"]``
#: entry overrides it; a wildcard pattern never does.
OPS_TOPIC = "rtdelivery.ops"
