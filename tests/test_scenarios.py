"""Examples are tests: every shipped scenario runs and its key numbers match the golden file.

After an intended change of the model or the calibration, regenerate the golden file with
``python scripts/update_goldens.py`` and say why in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from simulator import load_scenario, simulate

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
GOLDEN = json.loads((ROOT / "tests" / "golden" / "scenarios.json").read_text())
sys.path.insert(0, str(ROOT / "scripts"))
from update_goldens import key_numbers  # noqa: E402


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_matches_golden(path: Path):
    assert path.name in GOLDEN, f"no golden numbers for {path.name}: run scripts/update_goldens.py"
    res = simulate(load_scenario(path))
    r = res.summary["requests"]
    assert r["arrived"] == r["completed"] + r["rejected"] + r["timed_out"] + r["failed"] \
        + r["in_flight"]
    got = key_numbers(res.summary)
    want = GOLDEN[path.name]
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=0.02, abs=1e-6), key
