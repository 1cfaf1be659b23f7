"""Factories for provenance tests: throwaway key rings, a fixed clock, sequential ids."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from workers.provenance.envelope import Envelope, Signer
from workers.provenance.keys import KeyRing

LONG_TEXT = (
    "The quarterly report shows revenue growth across every region. Customers in the north "
    "renewed early, while the southern team closed three new accounts. Next quarter we expect "
    "steady demand, although shipping costs may rise again before the holidays."
)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate(["k-2024", "k-2025"], active_kid="k-2025")


@pytest.fixture
def make_signer() -> Callable[[KeyRing], Signer]:
    def make(keys: KeyRing) -> Signer:
        counter = itertools.count(1)
        return Signer(keys, clock=lambda: 1_700_000_000.25, new_id=lambda: f"{next(counter):016x}")

    return make


@pytest.fixture
def signed(ring: KeyRing, make_signer: Callable[[KeyRing], Signer]) -> Envelope:
    return make_signer(ring).sign(
        model_name="minilm-intent",
        model_version="3",
        backend="openvino",
        input_text="How do I reset my password?",
        output_text=LONG_TEXT,
        policy_version="policy-7",
        decisions=[{"filter": "terms", "action": "allow", "score": 0.12}],
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    )
