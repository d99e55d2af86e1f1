"""Helpers for fleet tests: run a scenario on hand-made traffic, and make small scenarios."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

import simulator.run as run_mod
from simulator.config import Scenario, scenario_from_dict
from simulator.run import Results, simulate
from simulator.workload.generator import OpenLoopStream, RequestSpec, Session, Traffic

LENS: dict[str, Any] = {
    "input_len": {"kind": "lognormal", "mean": 215, "cv": 1.13, "min": 4, "max": 1024},
    "output_len": {"kind": "lognormal", "mean": 197, "cv": 0.88, "min": 1, "max": 512},
}


def deep(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``b`` merged onto ``a`` (nested dicts merge)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = deep(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return out


def scenario(**over: Any) -> Scenario:
    """A small Llama-3.1-8B/H100 scenario (no step rows) with nested overrides."""
    base: dict[str, Any] = {"engine": {"max_model_len": 8192},
                            "workload": {**LENS, "num_requests": 200},
                            "metrics": {"record_steps": False}}
    return scenario_from_dict(deep(base, over))


def traffic(items: Iterable[tuple[float, RequestSpec]], sessions: list[Session] | None = None,
            until: float | None = None) -> Traffic:
    items = list(items)
    t = Traffic(until=until)
    if items:
        t.open_loop.append(OpenLoopStream(iter([x for x, _ in items]), iter([s for _, s in items])))
    if sessions:
        t.sessions.append(iter(sessions))
    t.expected_requests = None if sessions or until else len(items)
    return t


def simulate_traffic(monkeypatch: pytest.MonkeyPatch, sc: Scenario, tr: Traffic) -> Results:
    """Run ``sc`` on the hand-made traffic ``tr`` instead of its workload's."""
    monkeypatch.setattr(run_mod, "build_traffic", lambda *a, **k: tr)
    return simulate(sc)
