"""Hypothesis strategies shared by the core tests (valid topics, positions, JSON data)."""

from __future__ import annotations

import string

from hypothesis import settings
from hypothesis import strategies as st

from rtdelivery.core.cursors import Position
from rtdelivery.core.topics import MAX_TOPIC_LENGTH

#: Fast, deterministic-enough settings for property tests of pure code.
FAST = settings(max_examples=200, deadline=None)

TOPIC_PART_ALPHABET = string.ascii_letters + string.digits + "_-"
URLSAFE_ALPHABET = string.ascii_letters + string.digits + "_-"
MAX_INT63 = (1 << 63) - 1

_parts = st.lists(
    st.text(alphabet=TOPIC_PART_ALPHABET, min_size=1, max_size=20), min_size=1, max_size=5
).map(".".join)

#: Any valid topic name, short ones and ones up to the length limit.
topics = st.one_of(
    _parts.filter(lambda t: len(t) <= MAX_TOPIC_LENGTH),
    st.text(alphabet=TOPIC_PART_ALPHABET, min_size=MAX_TOPIC_LENGTH - 5, max_size=MAX_TOPIC_LENGTH),
)

positions = st.builds(
    Position,
    st.integers(min_value=0, max_value=MAX_INT63),
    st.integers(min_value=0, max_value=MAX_INT63),
)

#: A realistic position: 48-bit epochs (history.base.new_epoch) and modest seqs.
small_positions = st.builds(
    Position,
    st.integers(min_value=1, max_value=(1 << 48) - 1),
    st.integers(min_value=0, max_value=10**9),
)

#: Valid event types (1-64 of letters, digits and "_.:-").
event_types = st.text(
    alphabet=string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=64
).filter(lambda t: t[:3].lower() != "rt.")  # reserved for rtdelivery's SSE control frames

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(exclude_categories=("Cs",))),
)

#: JSON-serializable data (no lone surrogates, no NaN/inf).
json_data = st.recursive(
    _json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=8),
            children,
            max_size=5,
        ),
    ),
    max_leaves=20,
)
