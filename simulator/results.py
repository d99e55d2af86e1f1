"""What one run produced: :class:`Results` (frames, summary, the resolved scenario) and the
:class:`Deployment` that was actually simulated.

What this models: the output folder of one what-if experiment (``summary.json``, the parquet
frames, the resolved ``scenario.yaml``). It lives apart from :mod:`simulator.run` so that the layers
below the run (``cost``, ``plan``) can name a result without importing the code that builds one.
``from simulator.run import Results`` and ``from simulator import Results`` still work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from simulator.config import Scenario
from simulator.profiles import Calibration, GpuProfile, MemoryBudget, ModelProfile


@dataclass
class Deployment:
    """The resolved replica configuration: what was actually simulated."""

    model: ModelProfile
    gpu: GpuProfile
    tp: int
    weight_dtype: str
    kv_dtype: str
    max_model_len: int
    memory: MemoryBudget
    calibration: Calibration
    calibration_source: str
    calibration_regime: dict[str, Any] = field(default_factory=dict)
    """The step shapes the calibration's fit data covered (its ``provenance.regime``)."""

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model.name, "gpu": self.gpu.name, "tp": self.tp,
            "weight_dtype": self.weight_dtype, "kv_cache_dtype": self.kv_dtype,
            "max_model_len": self.max_model_len,
            "kv_cache_gib_per_gpu": round(self.memory.kv_cache_gib, 3),
            "weights_gib_per_gpu": round(self.memory.weights_gib, 3),
            "num_gpu_blocks": self.memory.num_blocks,
            "kv_cache_tokens": self.memory.max_tokens,
            "calibration": self.calibration_source,
        }


@dataclass
class Results:
    """Everything one run produced."""

    scenario: Scenario
    deployment: Deployment
    requests: pd.DataFrame
    steps: pd.DataFrame
    timeseries: pd.DataFrame
    itl: pd.DataFrame
    summary: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, out: str | Path, force: bool = False) -> Path:
        """Write summary.json, requests.parquet, steps.parquet, timeseries.parquet, scenario.yaml,
        and attempts.parquet / replicas.parquet / fleet_timeseries.parquet (autoscaling) when the
        fleet recorded them, with a manifest.json (sizes, SHA-256): whole or not at all, an
        existing run folder replaced, never mixed (:mod:`simulator.store`)."""
        from simulator.store import strict_json, write_run

        files: dict[str, Any] = {
            "summary.json": lambda p: p.write_text(strict_json(self.summary) + "\n"),
            "requests.parquet": lambda p: self.requests.to_parquet(p, index=False),
            "steps.parquet": lambda p: self.steps.to_parquet(p, index=False),
            "timeseries.parquet": lambda p: self.timeseries.to_parquet(p, index=False),
        }
        for name in ("attempts", "replicas", "fleet_timeseries"):
            frame = self.extra.get(name)
            if isinstance(frame, pd.DataFrame):
                files[f"{name}.parquet"] = (
                    lambda p, frame=frame: frame.to_parquet(p, index=False))
        files["scenario.yaml"] = lambda p: p.write_text(
            yaml.safe_dump(self.scenario.model_dump(mode="json"), sort_keys=False))
        return write_run(out, files, force=force)
