"""Shared fixtures: small scenarios built through the same models a user's YAML goes through."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings

from simulator.config import Scenario, scenario_from_dict

# ``pytest --hypothesis-profile=long``: the deep local search of tests/test_fuzz_inputs.py (CI runs
# a few derandomized examples per property).
settings.register_profile("long", max_examples=1000, deadline=None)


def small_scenario(**over: Any) -> Scenario:
    """Default scenario with fewer requests, plus nested overrides given as dicts."""
    base: dict[str, Any] = {"workload": {"num_requests": 300}}
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **val}
        else:
            base[key] = val
    return scenario_from_dict(base)


@pytest.fixture
def make_scenario():
    return small_scenario
