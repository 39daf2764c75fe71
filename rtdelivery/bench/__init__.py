"""Benchmarks: rtdelivery against a naive Channels consumer and the raw Python floor.

Run ``python -m rtdelivery.bench --help`` (or ``manage.py rtdelivery_bench``). Every
process it measures is started separately on loopback and stopped by it.
"""
