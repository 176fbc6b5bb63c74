"""Fixtures shared by the core tests: the simulator's test PKI and its trust store."""

from __future__ import annotations

import pytest

from pipeline.core.trust import TrustStore
from pipeline.simulate.ca import Pki, default_pki


@pytest.fixture(scope="module")
def pki() -> Pki:
    return default_pki()


@pytest.fixture(scope="module")
def trust(pki: Pki) -> TrustStore:
    return TrustStore.from_bytes(pki.anchor_pem())
