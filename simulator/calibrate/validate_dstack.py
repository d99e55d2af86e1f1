"""Validation suite ``dstack-405b``: dstack's Llama-3.1-405B-FP8 serving runs, replayed request
by request.

Reads: ``datasets.dstack_serving_runs()`` and each run's ``benchmark_serving`` result JSON
(``datasets.benchmark_serving``: per-request input/output lengths, TTFT, ITL, ``ok``) under
``benchmarks/dstack`` in the shared data folder (its ``SOURCE.txt`` names the repository and
commit). None of it is used by the step-time fit.

dstack's Llama-3.1-405B-FP8 TP8 serving runs (vLLM 0.6.3 ``benchmark_serving``, ShareGPT,
1,000 prompts, Poisson arrivals at 16, 32 and 1000 QPS) on 8×H100 and 8×MI300X. The recorded
per-request input and output lengths are replayed in order at the recorded rate. About 38 % of
the requests came back with no output (the base model stopped at once: ``ok`` is false); they
carry 68 % of the prompt tokens, so they are replayed as prompts with one output token — the
prefill work the server really did — and left out of the compared statistics, as they are
left out of the measured ones. Engine flags from the run (H100: chunked prefill, 512-token
budget, 512 sequences, ``max_model_len`` 91680; MI300X: no chunked prefill, so the budget is
``max_model_len`` 131072 as in vLLM V0, 1024 sequences). Compared: TTFT and ITL mean, p50,
p90, p99, mean TPOT and output throughput. vLLM 0.6.3 is the V0 engine, simulated with the
V0 scheduler rules (``engine.scheduler: v0``): the MI300X runs with their 15-step multi-step
scheduling (``num_scheduler_steps``) and chunked prefill off (prefills first, never mixed
with decodes), the H100 runs with chunked prefill (V0's decodes-first rule, the V1 one). The
data's author calls the MI300X runs pathological (TPOT 0.64–1.6 s, ``VLLM_RPC_TIMEOUT``
hangs); they are compared like the others. The 1000-QPS runs (every request arrives within
about a second) are the offline end of the suite. Its step times use the GPU's pre-V1
calibration family when there is one (``v0``: the same kernel coefficients with the CPU
overheads fitted on a 2024 vLLM; :func:`dstack_calibration`) —
chosen by the engine version the run recorded, not by its outcome. The client is vLLM 0.6.3's
``benchmarks/benchmark_serving.py`` (``--request-rate`` Poisson, no ``--max-concurrency``, every
request counted), in front of ``vllm serve``'s API server (``engine.api_server`` on, the default
priors of :mod:`simulator.cluster.frontend`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import numpy as np
import pandas as pd

from simulator.calibrate import datasets as ds
from simulator.calibrate.validate_base import _QUIET_METRICS, Case, Skipped, _mean
from simulator.cluster.spec import APIServerConfig
from simulator.config import (
    EngineConfig,
    FixedLength,
    FleetConfig,
    MetricsConfig,
    ModelConfig,
    PoissonArrivals,
    Scenario,
    StepTimeConfig,
    WorkloadConfig,
)
from simulator.errors import ConfigError

if TYPE_CHECKING:
    from simulator.results import Results

FAST_DSTACK_QPS = 16.0
"""Fast subset of dstack-405b: the 16-QPS run of each GPU."""

#: dstack engine flags (``vllm serve`` of the runs; see the comparison README and qps_comparison.csv).
DSTACK_ENGINE: dict[str, dict[str, Any]] = {
    "H100-SXM": dict(enable_chunked_prefill=True, max_num_batched_tokens=512, max_num_seqs=512,
                     max_model_len=91680, enable_prefix_caching=False, scheduler="v0"),
    # NOTE: vLLM 0.6.3 on ROCm with --num-scheduler-steps 15 (qps_comparison.csv): V0 multi-step.
    "MI300X": dict(enable_chunked_prefill=False, max_num_batched_tokens=131072,
                   max_num_seqs=1024, max_model_len=131072, enable_prefix_caching=False,
                   scheduler="v0", num_scheduler_steps=15),
}


def dstack_calibration(gpu: str) -> str:
    """Calibration family the dstack runs (vLLM 0.6.3, pre-V1 engine) are simulated with: the
    GPU's pre-V1 family when one exists (``fit.V0_FAMILY``: the same kernels with pre-V1 CPU
    overheads), else the GPU's newest."""
    from simulator.calibrate.fit import V0_FAMILY
    from simulator.profiles import find_calibration

    return V0_FAMILY if find_calibration(gpu, V0_FAMILY) is not None else "auto"


def dstack_scenario(gpu: str, qps: float, n_requests: int, name: str = "dstack") -> Scenario:
    """Llama-3.1-405B FP8 TP8 with the run's engine flags, Poisson arrivals at ``qps``."""
    return Scenario(
        name=name,
        seed=0,
        model=ModelConfig(name="Llama-3.1-405B", weight_dtype="fp8"),
        fleet=FleetConfig(gpu=gpu, tp=8, replicas=1),
        # benchmark_serving against `vllm serve`: the API server tokenises and streams.
        engine=EngineConfig(**DSTACK_ENGINE[gpu], api_server=APIServerConfig()),
        step_time=StepTimeConfig(calibration=dstack_calibration(gpu)),
        workload=WorkloadConfig(arrival=PoissonArrivals(rate=qps),
                                input_len=FixedLength(value=1), output_len=FixedLength(value=1),
                                num_requests=n_requests),
        metrics=MetricsConfig(**(_QUIET_METRICS | {"record_itl": True})),  # ITL percentiles
    )


def dstack_measured(req: pd.DataFrame, duration_s: float) -> dict[str, float]:
    """The compared statistics of a benchmark_serving run, over its ``ok`` requests."""
    ok = req[req["ok"]]
    ttft = ok["ttft_s"].to_numpy(dtype=float) * 1000
    itl = np.concatenate([np.asarray(x, dtype=float) for x in ok["itl_s"]] or [np.zeros(0)])
    itl = itl * 1000
    tpot = ok["tpot_s"].dropna().to_numpy(dtype=float) * 1000
    out = _dist("ttft", ttft) | _dist("itl", itl)
    out["tpot_mean"] = float(tpot.mean()) if tpot.size else float("nan")
    out["throughput"] = float(ok["output_len"].sum()) / duration_s
    return out


def _dist(prefix: str, a: np.ndarray) -> dict[str, float]:
    if a.size == 0:
        return {f"{prefix}_{k}": float("nan") for k in ("mean", "p50", "p90", "p99")}
    q = np.percentile(a, [50, 90, 99])
    return {f"{prefix}_mean": float(a.mean()), f"{prefix}_p50": float(q[0]),
            f"{prefix}_p90": float(q[1]), f"{prefix}_p99": float(q[2])}


def build_dstack() -> tuple[list[Case], list[Skipped], list[str]]:
    """Cases of ``dstack-405b``: the H100 and MI300X runs at 16, 32 and 1000 QPS (the last
    effectively offline: every request arrives in the first second), replayed."""
    runs = ds.dstack_serving_runs()
    runs = runs[runs["variant"].isin(["default", "VLLM_RPC_TIMEOUT=30000"])
                & runs["qps"].isin([16.0, 32.0, 1000.0])]
    # The no-timeout 1000-QPS MI300X run failed (983 client errors): its retried run is kept.
    runs = runs[~((runs["qps"] == 1000.0) & (runs["variant"] == "default")
                  & (runs["gpu"] == "MI300X"))]
    cases: list[Case] = []
    for run in runs.to_dict(orient="records"):
        req, meta = ds.benchmark_serving(run["path"])
        gpu = str(run["gpu"])
        qps = float(run["qps"])
        pairs = tuple((int(i), max(int(o), 1)) for i, o in
                      zip(req["input_len"], req["output_len"], strict=True))
        ok_ids = tuple(int(i) for i in np.flatnonzero(req["ok"].to_numpy()))
        duration = float(meta.get("duration") or run["duration_s"])
        measured = dstack_measured(req, duration)
        flags: tuple[str, ...] = ()
        pid = Path(str(run["path"])).stem
        sc = dstack_scenario(gpu, qps, len(pairs), name=pid)
        info = {"qps": qps, "vllm": str(run["vllm_version_short"]), "requests": len(pairs),
                "ok": len(ok_ids), "variant": str(run["variant"])}
        cases.append(Case("dstack-405b", gpu, pid, f"405B-FP8 tp8 {qps:g} QPS", "replay", sc,
                          measured, fast=qps == FAST_DSTACK_QPS, flags=flags, info=info,
                          replay=pairs, compare_ids=ok_ids, duration_s=duration))
    n_empty = sum(len(c.replay) - len(c.compare_ids) for c in cases)
    notes = [f"{len(cases)} runs replayed ({n_empty} requests without output replayed as "
             f"1-token requests and not compared)",
             "both engines are vLLM 0.6.3 V0 (engine.scheduler v0); MI300X with 15-step "
             "multi-step scheduling (engine.num_scheduler_steps 15, chunked prefill off), H100 "
             "with chunked prefill (512-token budget); the 1000-QPS runs are effectively offline"]
    return cases, [], notes


@contextmanager
def replayed_requests(pairs: Sequence[tuple[int, int]]) -> Iterator[None]:
    """Make :func:`simulator.run.simulate` send exactly ``pairs`` (input, output), in order.

    NOTE: the workload config has no trace-replay length kind yet (empirical lengths resample with
    replacement, losing order and the input/output pairing), so for the duration of the call the
    traffic ``simulate`` builds keeps its open-loop arrival times (Poisson at the recorded rate,
    from the scenario's seed) but has its request contents swapped for the recorded pairs.
    Replace this with a ``workload.trace`` kind when the workload issue adds one.
    """
    import simulator.run as run_mod
    from simulator.workload.generator import RequestSpec, Traffic

    original = run_mod.build_traffic

    def build(*args: Any, **kwargs: Any) -> Traffic:
        traffic = original(*args, **kwargs)
        if len(traffic.open_loop) != 1 or traffic.closed_loop or traffic.sessions:
            raise ConfigError("replay needs exactly one open-loop stream")
        traffic.open_loop[0].specs = iter([RequestSpec(int(i), int(o)) for i, o in pairs])
        traffic.expected_requests = len(pairs)
        return traffic

    with mock.patch.object(run_mod, "build_traffic", build):
        yield


KNOWN_GAPS: tuple[str, ...] = (
    "dstack runs used vLLM 0.6.3 (V0 engine; MI300X with 15-step multi-step scheduling): "
    "simulated with the V0 scheduler rules (engine.scheduler v0, num_scheduler_steps); V0's "
    "CPU path beyond the fitted per-step and per-sequence overheads is not modelled.",
)
"""Caveats of the dstack comparison, printed in fidelity.md (:data:`validate_report.KNOWN_GAPS`)."""


def reduce_replay(case: Case, res: Results, req: pd.DataFrame) -> dict[str, float]:
    """A replayed run's predicted statistics over the requests the measurement compared
    (``case.compare_ids``), as :func:`dstack_measured` reduces the measured ones."""
    keep = set(case.compare_ids)
    sel = req[req["request_id"].isin(keep)]
    itl = res.itl.loc[res.itl["request_id"].isin(keep), "itl_s"].to_numpy(dtype=float)
    out = _dist("ttft", sel["ttft_s"].to_numpy(dtype=float) * 1000) | _dist("itl", itl * 1000)
    out["tpot_mean"] = _mean(sel["tpot_s"]) * 1000
    out["throughput"] = float(sel["output_tokens"].sum()) / float(req["finish_s"].max())
    return out
