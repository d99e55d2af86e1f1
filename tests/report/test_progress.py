"""Progress bars: off when stderr is not a terminal or with --quiet; watching a run changes nothing."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from simulator import load_scenario, simulate
from simulator.cli import app
from simulator.report import progress as pg


def test_not_wanted_off_a_terminal_or_quiet():
    assert pg.wanted(quiet=True) is False
    r = CliRunner().invoke(app, ["run", "--set", "workload.num_requests=30"])
    assert r.exit_code == 0 and "simulating" not in r.output
    q = CliRunner().invoke(app, ["run", "--quiet", "--set", "workload.num_requests=30"])
    assert q.exit_code == 0
    # same tables either way (the run line's wall time aside)
    strip = [x for x in r.output.splitlines() if not x.startswith("run ")]
    assert strip == [x for x in q.output.splitlines() if not x.startswith("run ")]


def test_watching_a_run_reads_it_and_changes_nothing(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(pg, "SHOW_AFTER_S", 0.0)
    monkeypatch.setattr(pg, "POLL_S", 0.001)
    seen: list[int] = []

    class Bar:
        def __init__(self, *a, **k): ...
        def add_task(self, unit, total=None):
            assert unit == "requests" and total == 400
            return 0
        def start(self): ...
        def stop(self): ...
        def update(self, task, completed):
            seen.append(completed)

    monkeypatch.setattr(pg, "_bar", lambda label: Bar())
    sc = load_scenario(None, ["workload.num_requests=400"])
    watched = simulate(sc, progress=pg.RunWatcher(True))
    plain = simulate(sc)
    pd.testing.assert_frame_equal(watched.requests, plain.requests)
    assert seen and all(0 <= x <= 400 for x in seen) and seen == sorted(seen)


def test_counter_reports_done_of_total(monkeypatch: pytest.MonkeyPatch):
    calls: list[tuple[int, int | None]] = []

    class Bar:
        def __init__(self, *a, **k): ...
        def add_task(self, d, total=None):
            return 0
        def start(self): ...
        def stop(self): calls.append((-1, None))
        def update(self, task, completed, total):
            calls.append((completed, total))

    monkeypatch.setattr(pg, "_bar", lambda label: Bar())
    with pg.counter("validate", True) as tick:
        tick(1, 3)
        tick(3, 3)
    assert calls == [(1, 3), (3, 3), (-1, None)]
    with pg.counter("validate", False) as tick:
        tick(1, 3)  # disabled: nothing drawn
    assert len(calls) == 3


def test_validate_fast_counts_what_was_simulated():
    from simulator.calibrate import datasets as ds
    from simulator.calibrate.validate import validate

    try:
        rep = validate(["silicon-dense"], fast=True, jobs=1)
    except ds.DataMissing as e:
        pytest.skip(f"shared data not found: {e}")
    notes = rep.notes["silicon-dense"]
    assert f"fast subset: {len(rep.points)} points simulated" in notes
    assert not any(n.endswith(" points simulated") and not n.startswith("fast subset")
                   for n in notes)
