"""Benchmarks: rtdelivery against a naive Channels consumer and the raw Python floor.

Run ``python -m bench --help`` from the repository root (``make bench``). Every process it
measures is started separately on loopback and stopped by it. This package is part of the
repository, not of the installed rtdelivery distribution.
"""
