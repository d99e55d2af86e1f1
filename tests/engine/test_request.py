"""The engine request's hand-written constructor (compiled with the engine, simulator._native) sets
every field to the default its dataclass declares."""

from __future__ import annotations

import dataclasses
from typing import Any

from simulator.engine.request import Request


def defaults_hold(obj: Any, given: dict[str, Any]) -> None:
    """Every field of dataclass ``obj`` is ``given`` or else its declared default."""
    for f in dataclasses.fields(obj):
        if f.name in given:
            want = given[f.name]
        elif f.default is not dataclasses.MISSING:
            want = f.default
        else:
            assert f.default_factory is not dataclasses.MISSING, f.name
            want = f.default_factory()
        got = getattr(obj, f.name)
        assert got == want and type(got) is type(want), (f.name, got, want)


def test_request_constructor_sets_every_field_to_its_declared_default() -> None:
    defaults_hold(Request(7, 100, 20), {"request_id": 7, "prompt_len": 100, "max_tokens": 20})
    r = Request(8, 10, 2, 1.5, 3, (11, 12))
    defaults_hold(r, {"request_id": 8, "prompt_len": 10, "max_tokens": 2, "arrival_time": 1.5,
                      "priority": 3, "prefix_hashes": (11, 12)})
