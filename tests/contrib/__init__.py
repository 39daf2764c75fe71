"""Tests of rtdelivery.contrib."""
