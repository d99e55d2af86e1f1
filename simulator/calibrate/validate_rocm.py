"""Validation suite ``rocm-mi300x``: ROCm's vLLM dev-docker fixed-batch latency on 8×MI300X, for
the vLLM versions the MI300X fit did not use.

Reads: ``datasets.rocm_mi300x_latency()`` — the ``benchmark_latency`` rows of ROCm's vLLM
dev-docker READMEs (``calibration/rocm-vllm-devdocker`` under the shared data folder; its
``SOURCE.txt`` names the repository and commit), and the provenance of
``hardware_profiles/calibration/MI300X__*.yaml`` for which versions were fitted
(:func:`rocm_version_split`, also used by ``rocm-throughput`` in :mod:`validate_load`).

ROCm's vLLM dev-docker fixed-batch latency (``benchmark_latency``: ``batch`` prompts at once,
fixed input, 2,048 output tokens, whole-batch wall time), Llama-3.1-70B/405B FP8 with FP8 KV
cache, TP8 on MI300X. Only vLLM versions the MI300X fit did not use are validated: the fit's
versions are read from ``hardware_profiles/calibration/MI300X__*.yaml`` (provenance); when no
such file names them, the fallback is 0.9.x and 0.10.0. Values carried over from an older
README version are not re-measurements and are dropped (``carried_over``); the newest value
per version and config is used. Simulated as an offline batch: all requests at t = 0,
``max_num_seqs`` = batch, vLLM's offline defaults on ≥ 70 GB GPUs (chunked prefill, 16,384-
token budget).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.calibrate import datasets as ds
from simulator.calibrate.validate_base import _QUIET_METRICS, Case, Skipped
from simulator.cluster.spec import APIServerConfig
from simulator.config import (
    EngineConfig,
    FixedLength,
    FleetConfig,
    MetricsConfig,
    ModelConfig,
    OfflineArrivals,
    Scenario,
    WorkloadConfig,
)
from simulator.errors import safe_load

ROCM_FALLBACK_HELD_OUT = ("0.9.0.1", "0.9.1", "0.10.0")
"""ROCm versions validated when no MI300X calibration file names the versions it was fitted on."""

FAST_ROCM_BATCHES = (1, 16, 128)
"""Fast subset of rocm-mi300x: newest held-out version, input 2,048, these batch sizes."""


def rocm_scenario(model: str, batch: int, input_len: int, output_len: int,
                  name: str = "rocm") -> Scenario:
    """Offline fixed batch (benchmark_latency) on 8×MI300X, FP8 weights and KV cache."""
    return Scenario(
        name=name,
        seed=0,
        model=ModelConfig(name=model, weight_dtype="fp8", kv_cache_dtype="fp8"),
        fleet=FleetConfig(gpu="MI300X", tp=8, replicas=1),
        engine=EngineConfig(max_num_seqs=batch, max_num_batched_tokens=16384,
                            max_model_len=input_len + output_len, enable_chunked_prefill=True,
                            enable_prefix_caching=True,
                            # benchmark_latency.py runs vLLM's offline LLM class: no API server.
                            api_server=APIServerConfig(enabled=False)),
        workload=WorkloadConfig(arrival=OfflineArrivals(), input_len=FixedLength(value=input_len),
                                output_len=FixedLength(value=output_len), num_requests=batch),
        metrics=MetricsConfig(**_QUIET_METRICS),
    )


_VERSION_RE = re.compile(r"(?<![\d.])(\d+\.\d+(?:\.\d+){1,2})(?!\d)(?!\.\d)")
_FIT_KEYS = ("fit_versions", "vllm_versions", "versions", "fit_vllm_versions", "train_versions")
_HELD_KEYS = ("held_out_versions", "validation_versions", "held_out")
_HELD_PHRASE = re.compile(r"held[ _-]?out[^:;\n]*:([^;\n]*)", re.I)
_FIT_PHRASE = re.compile(r"fit(?:ted)?[ _-]?(?:set|on|versions)[^:;\n]*:([^;\n]*)", re.I)


def _walk(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k), v
            yield from _walk(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield key, v
            yield from _walk(v, key)


def _versions_in(text: str) -> list[str]:
    """Version strings (x.y.z[.w]) in ``text`` up to its first sentence end (". ")."""
    return _VERSION_RE.findall(re.split(r"\.\s", text, maxsplit=1)[0])


def rocm_version_split(all_versions: Sequence[str],
                       calibration_dir: Path | None = None) -> tuple[list[str], str]:
    """(held-out versions, where the split came from).

    Reads ``MI300X__*.yaml`` under ``hardware_profiles/calibration/``, in this order of trust:
    an explicit list under ``provenance`` (``held_out_versions``/``validation_versions``, else
    ``fit_versions``/``vllm_versions``/…); a "HELD OUT …: <versions>" or "FIT SET: <versions>"
    phrase in a provenance text; else every version string in a provenance text mentioning
    ``rocm`` counts as fitted. Held out = the data's versions not fitted. Without such a file:
    0.9.x and 0.10.0 (``ROCM_FALLBACK_HELD_OUT``).
    """
    from simulator.profiles import data_root

    cdir = calibration_dir or data_root("hardware_profiles") / "calibration"
    files = sorted(cdir.glob("MI300X__*.yaml")) if cdir.is_dir() else []
    avail = list(dict.fromkeys(all_versions))

    def split(held: Iterable[str], how: str, f: Path) -> tuple[list[str], str]:
        hs = {str(x).lstrip("v") for x in held}
        return [x for x in avail if x in hs], f"{f.name}: {how}"

    for f in files:
        raw = safe_load(f.read_text()) or {}
        prov = raw.get("provenance", {}) if isinstance(raw, dict) else {}
        items = list(_walk(prov))
        for k, v in items:
            if k in _HELD_KEYS and isinstance(v, list) and v:
                return split(v, f"provenance.{k}", f)
        for k, v in items:
            if k in _FIT_KEYS and isinstance(v, list) and v:
                fit = {str(x).lstrip("v") for x in v}
                return split((x for x in avail if x not in fit), f"provenance.{k}", f)
        texts = [v for _, v in items if isinstance(v, str)]
        for t in texts:
            m = _HELD_PHRASE.search(t)
            if m and _versions_in(m.group(1)):
                held = _versions_in(m.group(1))
                return split(held, f"held out {', '.join(held)} (provenance text)", f)
        for t in texts:
            m = _FIT_PHRASE.search(t)
            if m and _versions_in(m.group(1)):
                fit = set(_versions_in(m.group(1)))
                return split((x for x in avail if x not in fit),
                             f"fitted on {', '.join(sorted(fit, key=ds._version_key))} "
                             f"(provenance text)", f)
        fit = {x for t in texts if "rocm" in t.lower() for x in _VERSION_RE.findall(t)}
        if fit:
            return split((x for x in avail if x not in fit),
                         f"fitted on {', '.join(sorted(fit, key=ds._version_key))} "
                         f"(versions named in the provenance)", f)
    held = [x for x in avail if x in ROCM_FALLBACK_HELD_OUT]
    return held, ("fallback 0.9.x and 0.10.0 (no MI300X calibration file names the versions "
                  "it was fitted on)")


def build_rocm() -> tuple[list[Case], list[Skipped], list[str]]:
    """Cases of ``rocm-mi300x``: held-out versions' fixed-batch latency points."""
    lat = ds.rocm_mi300x_latency()
    versions = sorted(lat["vllm_version"].unique(), key=ds._version_key)
    held, source = rocm_version_split(versions)
    sel = lat[lat["vllm_version"].isin(held) & lat["latest_in_version"] & ~lat["carried_over"]]
    newest = max(held, key=ds._version_key) if held else None
    cases: list[Case] = []
    for row in sel.to_dict(orient="records"):
        size = "405B" if "405B" in str(row["model"]) else "70B"
        model = f"Llama-3.1-{size}"
        b, i, o = int(row["batch_size"]), int(row["input_len"]), int(row["output_len"])
        v = str(row["vllm_version"])
        pid = f"rocm-{v}-{size}-b{b}-in{i}-out{o}"
        sc = rocm_scenario(model, b, i, o, name=pid)
        fast = v == newest and i == 2048 and b in FAST_ROCM_BATCHES
        info = {"model": model, "vllm": v, "batch": b, "input": i, "output": o}
        cases.append(Case("rocm-mi300x", "MI300X", pid, f"{size} b{b} {i}/{o} v{v}", "offline",
                          sc, {"latency": float(row["latency_s"])}, fast=fast, info=info))
    notes = [f"held-out versions: {', '.join(held) or 'none'} ({source})",
             f"{len(cases)} points (newest value per version and config; values carried over "
             f"from an older README version dropped)"]
    return cases, [], notes


def reduce_batch(case: Case, req: pd.DataFrame) -> dict[str, float]:
    """A fixed batch's predicted whole-batch latency (the last request's finish) and its load."""
    # A fixed batch runs all its sequences together (benchmark_latency: max_num_seqs = batch).
    return {"latency": float(req["finish_s"].max()),
            "running_per_gpu": float(case.info.get("batch", len(req))) / max(
                case.scenario.fleet.tp, 1)}
