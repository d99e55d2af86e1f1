"""Shared fixtures: small scenarios built through the same models a user's YAML goes through."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.config import Scenario, scenario_from_dict


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
