"""Tidy loaders for the real measurements the step-time model is calibrated and validated on.

Every loader reads the published files in place under the shared data root (``$SERVESIM_DATA_DIR``,
else ``<repo>/../shared/data``, else ``<cwd>/../shared/data``; see :func:`shared_data_root`) and
returns a pandas DataFrame with snake_case columns and explicit units in the column names
(``_ms``, ``_s``, ``_tok_s``, ``_w``). Nothing is copied into the repository. When the data root or
a file is absent the loaders raise :class:`DataMissing` with one line naming the path and the
environment variable.

What each loader reads, and what it leaves out
----------------------------------------------
:func:`silicon_points` — ``calibration/aiconfigurator/silicon_sample.csv`` (5,221 end-to-end points
measured by NVIDIA's aiconfigurator team: vLLM, SGLang and TRT-LLM on H100/H200/B200/B300/GB200/
GB300). One row per *measurement*: copies of the same benchmark result exported in several source
dumps are merged (rule below). Keeps TTFT/TPOT (ms), the parallel layout, concurrency, engine
version and provenance. Leaves out: nothing measured is dropped; the file has no throughput column
(so none is returned — derive it from concurrency, ISL/OSL, TTFT and TPOT if needed).
``silicon_refs.csv`` (35 rows) is a subset of the sample (every id is in it); it is only used to
set the ``in_refs`` flag.

    Dedup rule. Two rows are copies of one measurement when they have the same engine, system,
    mode, isl, osl and client concurrency AND their ttft_ms and tpot_ms both agree within
    0.01 ms. (Identical float64 values are a fingerprint of one benchmark result; the
    ``kimi-k2.5-gap-analysis.csv`` dump re-exports some of them rounded to 2 decimals, hence
    the tolerance.) Labels are *not* part of the key because the dumps disagree on them for the
    same result (the db-dump names DeepSeek-R1 runs ``DeepSeek-V3`` and once reports tp=64). For
    each copy group the kept row is the full-precision one from the highest-ranked dump
    (2026-03-25.csv, 2026-04-06.csv, db-dump/2026-04-27, then the gap-analysis files); its
    missing fields are filled from the other copies. ``n_copies`` and ``sources`` record what
    was merged. Rows with the same configuration but *different* measured values (re-runs on
    other dates) are kept: they are independent measurements. For vLLM rows the copies agree
    on every configuration field except in ``kimi-k2.5-gap-analysis.csv``, which re-exports
    Kimi-K2.5 B200 points rounded and labelled dp=1/ep=4 where the other dumps say dp=4/ep=16.
    Counts (vLLM): 1,345 rows -> 1,100 measurements; H100 240 -> 225, H200 336 -> 273 (the
    README's "H100 240, H200 336" are the counts *before* dedup). All engines: 5,221 -> 3,780.

:func:`benchmark_serving` — one vLLM ``benchmark_serving.py`` result JSON saved with per-request
details (``input_lens``, ``output_lens``, ``ttfts``, ``itls``): one row per request plus a dict of
the run-level scalars. Leaves out ``generated_texts``.

:func:`dstack_serving_runs` — index of the dstack serving JSONs
(``benchmarks/dstack/comparison/h100sxm5_vs_mi300x/raw_data/*-serving*/`` and the MI300X
"no-rpc" re-runs in ``raw_data/misc/``): Llama-3.1-405B-FP8 on 8xH100-SXM5 and 8xMI300X, ShareGPT,
1,000 prompts at 16, 32 and 1000 QPS, with the vLLM version from the folder's README and the engine
flags from ``csv_data/qps_comparison.csv``. Leaves out the offline-throughput JSONs and the
``pd_ratio`` SGLang study.

:func:`rocm_mi300x_latency` / :func:`rocm_mi300x_throughput` — the ``*_dedup.csv`` tables of
``calibration/rocm-vllm-devdocker/`` (the README tables of ROCm's vLLM dev-docker, every historical
version: one row per distinct (vLLM version, config, reported value) with the first commit that
showed it). Leaves out the 3 cells the README left as ``TODO`` and the raw per-commit rows (the
dedup files are exactly their distinct values; checked). vLLM 0.6.3 has no measured values.

:func:`llm_inference_bench` — ``calibration/llm-inference-bench/Plots/All_results.csv`` (static
batch sweeps, in = out length) and ``Plots/Fig_22/all_results_TTFT_ITL.csv`` (TTFT at in=1024,
batch 16), in long format (one metric per row). Leaves out the per-figure ablations (KV block
size, quantisation, speculative decoding, power, TP/PP) and the Fig_22 ``end_latency`` column
(the same runs as All_results at in = out = 1024).

:func:`aiconfigurator_kernels` — kernel latency tables (parquet) under
``calibration/aiconfigurator/systems/data/<gpu>/{gemm,attention,moe,comm}/{vllm,nccl}/<version>/``.
Leaves out MLA, DSA/sparse attention, GDN/KDA, encoder attention and quantisation tables.
:func:`aiconfigurator_inventory` lists every table, version and ``reuse.yaml`` redirection.

:func:`splitwise_perf_model` — ``calibration/splitwise-sim/perf_model.csv`` (Llama-2-70B and
BLOOM-176B on A100/H100, prompt/token/e2e times). :func:`vidur_mlp` — one Vidur per-operator
profile ``calibration/vidur/data/profiling/compute/<gpu>/<model>/mlp.csv``. Vidur's network
(all-reduce / send-recv) tables and processed traces are left out.

Why one module (~1.1k lines): it is the index of the shared data folder, and this docstring its
catalogue. Each published source has its own section of loaders (40–200 lines) that reads nothing
of the others; what they share is the data-root lookup, :class:`DataMissing`'s one-line error,
:func:`_version_key` and the file caches, and every caller — the validation suites, the fits,
``gpu_kernels``, ``workload/traces`` and their tests — reads them through one namespace
(``datasets.<loader>``). A package of one module per source would be the natural split if a source
grows; today it would change every one of those imports and move no behaviour.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.errors import safe_load

ENV_VAR = "SERVESIM_DATA_DIR"
"""Environment variable naming the shared data root (the folder holding ``calibration/``)."""

DEDUP_TOL_MS = 0.01
"""Two silicon rows are copies of one measurement when TTFT and TPOT agree within this (ms)."""


class DataMissing(Exception):
    """A shared-data file or folder is absent. ``str(err)`` is one line naming the path."""


class BadBenchmarkFile(ValueError):
    """A benchmark_serving JSON lacks a required key or is malformed (message names file and key)."""


# --------------------------------------------------------------------------------------------
# Data root
# --------------------------------------------------------------------------------------------


def shared_data_root() -> Path:
    """The shared data root: ``$SERVESIM_DATA_DIR``, else ``<repo>/../shared/data``, else
    ``<cwd>/../shared/data``. Returns the first candidate even when it does not exist (loaders
    then raise :class:`DataMissing` naming it)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    candidates = [repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def _root() -> str:
    """The data root as a string: the first argument (cache key) of every cached reader, so
    changing ``$SERVESIM_DATA_DIR`` takes effect without clearing caches."""
    return str(shared_data_root())


def _path(root: str | Path, *parts: str) -> Path:
    """``root / parts``; raises :class:`DataMissing` when absent."""
    p = Path(root).joinpath(*parts)
    if not p.exists():
        raise DataMissing(
            f"{p} not found: set {ENV_VAR} to the shared data root (the folder holding "
            "'calibration/' and 'benchmarks/')"
        )
    return p


def _rel(p: Path) -> str:
    """Path relative to the data root (for provenance columns)."""
    try:
        return str(p.relative_to(shared_data_root()))
    except ValueError:
        return str(p)


#: aiconfigurator system folder -> servesim GPU profile name (hardware_profiles/gpus).
SYSTEM_TO_GPU = {
    "h100_sxm": "H100-SXM",
    "h200_sxm": "H200-SXM",
    "b200_sxm": "B200",
    "b300_sxm": "B300",
    "a100_sxm": "A100-80G",
    "gb200": "GB200",
    "gb300": "GB300",
}


def _version_key(v: object) -> tuple[int, ...]:
    """Sort key for version strings like ``0.9.0.1`` or ``v0.10.0`` (non-numeric parts ignored)."""
    return tuple(int(x) for x in re.findall(r"\d+", str(v))[:4])


# --------------------------------------------------------------------------------------------
# 1. aiconfigurator silicon_sample.csv
# --------------------------------------------------------------------------------------------

SILICON_COLUMNS = [
    "point_id", "engine", "engine_version", "vllm_version", "model", "model_path", "system", "gpu",
    "precision", "gemm_quant", "moe_quant", "mode", "isl", "osl", "concurrency", "batch_size",
    "tp", "pp", "dp", "moe_tp", "ep", "num_gpus",
    "prefill_workers", "prefill_batch_size", "prefill_tp", "prefill_pp", "prefill_dp",
    "prefill_moe_tp", "prefill_ep",
    "decode_workers", "decode_batch_size", "decode_tp", "decode_pp", "decode_dp",
    "decode_moe_tp", "decode_ep",
    "ttft_ms", "tpot_ms", "source", "measured", "image", "config_id", "wip", "in_refs",
    "n_copies", "sources",
]

_SILICON_RENAME = {
    "id": "point_id",
    "backend": "engine",
    "backend_version": "engine_version",
    "gemm_quant_mode": "gemm_quant",
    "moe_quant_mode": "moe_quant",
    "tp_size": "tp",
    "pp_size": "pp",
    "attention_dp_size": "dp",
    "moe_tp_size": "moe_tp",
    "moe_ep_size": "ep",
    "silicon_ttft_ms": "ttft_ms",
    "silicon_tpot_ms": "tpot_ms",
}
for _phase in ("prefill", "decode"):
    _SILICON_RENAME.update({
        f"{_phase}_num_workers": f"{_phase}_workers",
        f"{_phase}_tp_size": f"{_phase}_tp",
        f"{_phase}_pp_size": f"{_phase}_pp",
        f"{_phase}_attention_dp_size": f"{_phase}_dp",
        f"{_phase}_moe_tp_size": f"{_phase}_moe_tp",
        f"{_phase}_moe_ep_size": f"{_phase}_ep",
    })

_SILICON_INT = [
    "isl", "osl", "concurrency", "batch_size", "tp", "pp", "dp", "moe_tp", "ep", "num_gpus",
    "prefill_workers", "prefill_batch_size", "prefill_tp", "prefill_pp", "prefill_dp",
    "prefill_moe_tp", "prefill_ep", "decode_workers", "decode_batch_size", "decode_tp",
    "decode_pp", "decode_dp", "decode_moe_tp", "decode_ep", "config_id",
]

#: Preference among source dumps when merging copies (lower wins; others rank after these).
_SOURCE_RANK = {"2026-03-25.csv": 0, "2026-04-06.csv": 1, "db-dump/2026-04-27": 2}


_SOURCE_FIELDS = ("source", "measured", "image", "config_id", "wip", "silicon_concurrency")


def _parse_source(s: str) -> dict[str, str]:
    """Split ``silicon_data_source`` into its dump name and ``key=value`` fields."""
    parts = [p.strip() for p in str(s).split(";") if p.strip()]
    out: dict[str, str] = {}
    head = parts[0] if parts else ""
    if head.startswith("source_file="):
        f = head.removeprefix("source_file=")
        m = re.search(r"(aic-auto-gap-analysis)/data/(.+)$", f)
        out["source"] = f"{m.group(1)}/{m.group(2)}" if m else f
    else:
        out["source"] = head
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            out[k.strip()] = v.strip()
        elif "/" in p or ":" in p:
            out["image"] = p
    return out


def _model_short(model_path: str) -> str:
    """``nvidia/Llama-3.1-8B-Instruct-FP8`` -> ``Llama-3.1-8B`` (HF basename, quant suffix dropped)."""
    base = str(model_path).rsplit("/", 1)[-1]
    return re.sub(r"(-Instruct)?(-FP8|-NVFP4)?$", "", base)


def _version_from_image(image: object, engine: str) -> str | None:
    if not isinstance(image, str):
        return None
    pat = {
        "vllm": r"vllm-openai:v?([0-9][\w.]*?)(?:-cu\d+.*)?$",
        "sglang": r"sglang:v?([0-9][\w.]*?)(?:-cu\d+.*)?$",
        "trtllm": r"tensorrt-llm/release:v?([0-9][\w.]*)$",
    }.get(engine)
    m = re.search(pat, image) if pat else None
    return m.group(1) if m else None


@functools.lru_cache(maxsize=1)
def _silicon_raw(root: str) -> pd.DataFrame:
    path = _path(root, "calibration", "aiconfigurator", "silicon_sample.csv")
    raw = pd.read_csv(path)
    src = pd.DataFrame([_parse_source(s) for s in raw["silicon_data_source"]], index=raw.index)
    src = src.reindex(columns=[*src.columns, *(c for c in _SOURCE_FIELDS if c not in src)])
    df = raw.drop(columns=["silicon_data_source"]).rename(columns=_SILICON_RENAME)
    df["source"] = src["source"]
    df["measured"] = pd.to_datetime(src["measured"], utc=True, format="mixed", errors="coerce")
    df["image"] = src["image"]
    df["config_id"] = pd.to_numeric(src["config_id"], errors="coerce")
    df["wip"] = src["wip"].map({"True": True, "False": False}).astype("boolean")
    # Client concurrency: the benchmark's own field, else the id's ``_c<N>_``, else batch x dp.
    conc = pd.to_numeric(src["silicon_concurrency"], errors="coerce")
    conc = conc.fillna(pd.to_numeric(df["point_id"].str.extract(r"_c(\d+)_")[0], errors="coerce"))
    conc = conc.fillna(df["batch_size"] * df["dp"].fillna(1))
    df["concurrency"] = conc
    # Engine version: the column, else the container image tag.
    from_image = [_version_from_image(i, e) for i, e in zip(df["image"], df["engine"], strict=True)]
    df["engine_version"] = df["engine_version"].fillna(pd.Series(from_image, index=df.index))
    df["vllm_version"] = df["engine_version"].where(df["engine"] == "vllm")
    df["model"] = df["model_path"].map(_model_short)
    df["gpu"] = df["system"].map(SYSTEM_TO_GPU).fillna(df["system"])
    agg_gpus = df["tp"] * df["pp"].fillna(1) * df["dp"].fillna(1)
    dis_gpus = sum(
        df[f"{ph}_workers"] * df[f"{ph}_tp"] * df[f"{ph}_pp"].fillna(1) * df[f"{ph}_dp"].fillna(1)
        for ph in ("prefill", "decode")
    )
    df["num_gpus"] = agg_gpus.where(df["mode"] == "agg", dis_gpus)
    refs_path = path.with_name("silicon_refs.csv")
    refs = set(pd.read_csv(refs_path, usecols=["id"])["id"]) if refs_path.exists() else set()
    df["in_refs"] = df["point_id"].isin(refs)
    df["n_copies"] = 1
    df["sources"] = df["source"]
    for c in _SILICON_INT:
        df[c] = pd.to_numeric(df[c], errors="coerce").round().astype("Int64")
    for c in ("ttft_ms", "tpot_ms"):
        df[c] = df[c].astype(float)
    return df[SILICON_COLUMNS]


def _is_rounded(x: pd.Series) -> pd.Series:
    """True where a value has at most 2 decimals (a rounded re-export)."""
    v = x.to_numpy(dtype=float) * 100.0
    return pd.Series(np.abs(v - np.round(v)) < 1e-6, index=x.index)


def _dedup_silicon(df: pd.DataFrame, tol: float = DEDUP_TOL_MS) -> pd.DataFrame:
    """Merge copies of one measurement (see the module docstring for the rule)."""
    pref = df.assign(
        _rounded=(_is_rounded(df["ttft_ms"]) & _is_rounded(df["tpot_ms"])).astype(int),
        _rank=df["source"].map(_SOURCE_RANK).fillna(len(_SOURCE_RANK)).astype(int),
    ).sort_values(["_rounded", "_rank", "point_id"], kind="stable")
    key = ["engine", "system", "mode", "isl", "osl", "concurrency"]
    ttft = pref["ttft_ms"].to_numpy()
    tpot = pref["tpot_ms"].to_numpy()
    cluster = np.empty(len(pref), dtype=np.int64)
    next_id = 0
    for positions in pref.groupby(key, dropna=False, sort=False).indices.values():
        reps: list[tuple[float, float, int]] = []
        for pos in positions:  # preference order: the first row of a cluster is the kept one
            for t0, p0, cid in reps:
                if abs(ttft[pos] - t0) <= tol and abs(tpot[pos] - p0) <= tol:
                    cluster[pos] = cid
                    break
            else:
                reps.append((ttft[pos], tpot[pos], next_id))
                cluster[pos] = next_id
                next_id += 1
    pref = pref.assign(_cluster=cluster)
    grouped = pref.groupby("_cluster", sort=False)
    out = grouped.first()  # first non-null value per column, in preference order
    out["n_copies"] = grouped.size()
    out["sources"] = grouped["source"].agg(lambda s: ";".join(dict.fromkeys(s)))
    out["in_refs"] = grouped["in_refs"].any()
    out = out.reset_index(drop=True)[SILICON_COLUMNS]
    for c in _SILICON_INT:
        out[c] = out[c].astype("Int64")
    return out


@functools.lru_cache(maxsize=2)
def _silicon_all(root: str, dedup: bool) -> pd.DataFrame:
    raw = _silicon_raw(root)
    return _dedup_silicon(raw) if dedup else raw


def silicon_points(engine: str | None = "vllm", dedup: bool = True) -> pd.DataFrame:
    """aiconfigurator measured end-to-end points (``silicon_sample.csv``), one row per measurement.

    ``engine``: ``"vllm"`` (default), ``"sglang"``, ``"trtllm"`` or ``None`` for all.
    ``dedup=False`` returns every CSV row (``n_copies`` = 1), e.g. to check the README counts.

    Columns (``Int64`` = nullable integer; NA where the dump does not say):

    - ``point_id`` str: the CSV ``id`` of the kept row.
    - ``engine`` str (vllm/sglang/trtllm); ``engine_version`` str (``backend_version``, else the
      container image tag; ``nightly-…``/``gpt-oss-dev`` kept verbatim); ``vllm_version`` str
      (= engine_version for vLLM rows, else NA).
    - ``model`` str (HF basename without ``-Instruct``/``-FP8``/``-NVFP4``), ``model_path`` str.
    - ``system`` str (aiconfigurator name, e.g. ``h100_sxm``), ``gpu`` str (servesim profile name,
      e.g. ``H100-SXM``).
    - ``precision`` str (weight precision: fp8/fp4/int4/bf16; NA in the gap-analysis rows),
      ``gemm_quant``, ``moe_quant`` str (fp8, fp8_block, nvfp4, int4_wo).
    - ``mode`` str: ``agg`` (one aggregated replica) or ``disagg`` (prefill/decode workers).
    - ``isl``, ``osl`` Int64: fixed input / output tokens per request.
    - ``concurrency`` Int64: concurrent requests kept in flight by the client (closed loop;
      ``silicon_concurrency``). ``batch_size`` Int64 is the CSV ``batch_size`` = concurrency per
      attention-DP rank, so concurrency = batch_size x dp (they differ only when dp > 1).
    - ``tp``, ``pp``, ``dp`` (attention data parallel), ``moe_tp``, ``ep`` (MoE expert parallel)
      Int64 — agg layout; ``num_gpus`` Int64 = tp x pp x dp (agg) or the sum over prefill/decode
      of workers x tp x pp x dp (disagg; NA when the worker count is missing).
    - ``prefill_*`` / ``decode_*`` Int64: disagg worker layouts (NA for agg).
    - ``ttft_ms``, ``tpot_ms`` float: measured mean time to first token and time per output token.
    - ``source`` str: dump of the kept row (``2026-03-25.csv``, ``2026-04-06.csv``,
      ``db-dump/2026-04-27``, ``kimi-k2.5-gap-analysis.csv``, ``aic-auto-gap-analysis/...``);
      ``measured`` datetime (UTC; date-only in some dumps); ``image`` str; ``config_id`` Int64
      (db-dump); ``wip`` boolean.
    - ``in_refs`` bool: the point is in ``silicon_refs.csv``; ``n_copies`` int and ``sources`` str
      (``;``-joined dumps) describe the merged copies.
    """
    df = _silicon_all(_root(), bool(dedup))
    if engine is not None:
        df = df[df["engine"] == engine]
    return df.reset_index(drop=True).copy()


# --------------------------------------------------------------------------------------------
# 2. vLLM benchmark_serving JSON
# --------------------------------------------------------------------------------------------

BENCHMARK_REQUIRED_KEYS = ("input_lens", "output_lens", "ttfts", "itls")
"""Per-request arrays a benchmark_serving result must hold (``--save-result`` with details)."""

_PER_REQUEST_OPTIONAL = ("errors", "generated_texts", "e2els", "start_times")


@functools.lru_cache(maxsize=32)
def _benchmark_serving_cached(path: str, mtime: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as e:
        raise BadBenchmarkFile(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise BadBenchmarkFile(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key in BENCHMARK_REQUIRED_KEYS:
        if key not in data:
            raise BadBenchmarkFile(
                f"{path}: missing required key '{key}' (a vLLM benchmark_serving result saved "
                f"with per-request details needs {', '.join(BENCHMARK_REQUIRED_KEYS)})"
            )
        if not isinstance(data[key], list):
            raise BadBenchmarkFile(f"{path}: key '{key}' must be a list, got "
                                   f"{type(data[key]).__name__}")
    n = len(data["input_lens"])
    for key in BENCHMARK_REQUIRED_KEYS + _PER_REQUEST_OPTIONAL:
        if key in data and isinstance(data[key], list) and len(data[key]) != n:
            raise BadBenchmarkFile(f"{path}: key '{key}' has {len(data[key])} entries but "
                                   f"'input_lens' has {n}")
    itls: list[list[float]] = []
    for i, x in enumerate(data["itls"]):
        if not isinstance(x, list):
            raise BadBenchmarkFile(f"{path}: 'itls[{i}]' must be a list of seconds")
        itls.append([float(v) for v in x])
    errors = data.get("errors")
    err = [str(e) if e else "" for e in errors] if isinstance(errors, list) else [""] * n
    ttft = np.asarray(data["ttfts"], dtype=float)
    out_len = np.asarray(data["output_lens"], dtype=np.int64)
    decode = np.array([sum(x) for x in itls], dtype=float)
    e2e = ttft + decode
    if isinstance(data.get("e2els"), list):
        e2e = np.asarray(data["e2els"], dtype=float)

    def stat(fn: Any) -> np.ndarray:
        return np.array([fn(x) if x else np.nan for x in itls], dtype=float)

    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out_len > 1, (e2e - ttft) / np.maximum(out_len - 1, 1), np.nan)
    req = pd.DataFrame({
        "request_idx": np.arange(n, dtype=np.int64),
        "input_len": np.asarray(data["input_lens"], dtype=np.int64),
        "output_len": out_len,
        "ttft_s": ttft,
        "itl_s": pd.Series(itls, dtype=object),
        "n_itl": np.array([len(x) for x in itls], dtype=np.int64),
        "itl_mean_s": stat(np.mean),
        "itl_p50_s": stat(lambda x: np.percentile(x, 50)),
        "itl_p90_s": stat(lambda x: np.percentile(x, 90)),
        "itl_p99_s": stat(lambda x: np.percentile(x, 99)),
        "itl_max_s": stat(max),
        "decode_s": decode,
        "e2e_s": e2e,
        "tpot_s": tpot,
        "error": err,
    })
    if isinstance(data.get("start_times"), list):
        req["start_s"] = np.asarray(data["start_times"], dtype=float)
    req["ok"] = (req["error"] == "") & (req["output_len"] > 0) & (req["ttft_s"] > 0)
    meta: dict[str, Any] = {k: v for k, v in data.items() if not isinstance(v, list)}
    meta.update(
        path=path,
        n_requests=n,
        n_ok=int(req["ok"].sum()),
        n_errors=int((req["error"] != "").sum()),
        n_empty=int(((req["error"] == "") & (req["output_len"] == 0)).sum()),
    )
    return req, meta


def benchmark_serving(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Parse a vLLM ``benchmark_serving.py`` result JSON (dstack's or a user's own).

    Required keys: ``input_lens``, ``output_lens``, ``ttfts`` (s) and ``itls`` (per request, a list
    of inter-token gaps in s); all other keys are optional. A missing required key raises
    :class:`BadBenchmarkFile` naming the file and the key.

    Returns ``(requests, meta)``. ``requests`` has one row per request: ``request_idx`` int,
    ``input_len``, ``output_len`` int (tokens), ``ttft_s`` float, ``itl_s`` (object: list of
    floats, s), ``n_itl`` int, ``itl_mean_s``/``itl_p50_s``/``itl_p90_s``/``itl_p99_s``/
    ``itl_max_s`` float (NaN without gaps), ``decode_s`` = sum of gaps, ``e2e_s`` = ttft + decode
    (or the file's ``e2els``), ``tpot_s`` = (e2e - ttft) / (output_len - 1) as vLLM defines it
    (NaN for output_len <= 1), ``error`` str ("" if none), ``start_s`` when the file has
    ``start_times``, and ``ok`` bool = no error, output_len > 0 and ttft > 0. Requests that are not
    ``ok`` still carry ttft 0: vLLM's summary means (``mean_ttft_ms`` …) *include* them, so
    recompute statistics on ``ok`` rows. ``meta`` holds every scalar key of the file (e.g.
    ``request_rate``, ``model_id``, ``duration`` s, ``completed``, ``total_input_tokens``,
    ``mean_ttft_ms`` …, whichever are present) plus ``path``, ``n_requests``, ``n_ok``,
    ``n_errors`` and ``n_empty`` (no error but no output).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: benchmark_serving result file not found")
    req, meta = _benchmark_serving_cached(str(p.resolve()), p.stat().st_mtime)
    return req.copy(), dict(meta)


# --------------------------------------------------------------------------------------------
# 3. dstack serving runs (index)
# --------------------------------------------------------------------------------------------

DSTACK_COMPARISON = ("benchmarks", "dstack", "comparison", "h100sxm5_vs_mi300x")

#: Per folder: hardware and the vLLM version printed by ``collect_env`` in the comparison
#: README (the H100 server is the nightly wheel reporting 0.6.3.post2.dev308; the MI300X server
#: is the ``ghcr.io/embeddedllm/vllm-rocm:cb3b2b9`` image = 0.6.3.dev109+gcb3b2b9b).
_DSTACK_FOLDERS: dict[str, dict[str, Any]] = {
    "8xH100SXM5-serving": dict(gpu="H100-SXM", hardware="8xH100-SXM5", num_gpus=8,
                               vllm_version="0.6.3.post2.dev308+gb489fc3c",
                               variant="default"),
    "8xMi300x-serving-meta": dict(gpu="MI300X", hardware="8xMI300X", num_gpus=8,
                                  vllm_version="0.6.3.dev109+gcb3b2b9b",
                                  variant="VLLM_RPC_TIMEOUT=30000"),
    "misc": dict(gpu="MI300X", hardware="8xMI300X", num_gpus=8,
                 vllm_version="0.6.3.dev109+gcb3b2b9b", variant="no VLLM_RPC_TIMEOUT"),
}

_DSTACK_FLAG_COLS = {
    "num-scheduler-step": "num_scheduler_steps",
    "enable-chunked-prefill": "chunked_prefill",
    "max-num-batched-tokens": "max_num_batched_tokens",
    "max-num-seqs": "max_num_seqs",
    "max-seq-len-to-capture": "max_seq_len_to_capture",
    "enable-prefix-caching": "prefix_caching",
}


@functools.lru_cache(maxsize=1)
def _dstack_runs(root: str) -> pd.DataFrame:
    raw_dir = _path(root, *DSTACK_COMPARISON, "raw_data")
    files = sorted(raw_dir.glob("*-serving*/*.json")) + sorted(raw_dir.glob("misc/*no-rpc*.json"))
    flags = pd.DataFrame()
    qps_csv = raw_dir.parent / "csv_data" / "qps_comparison.csv"
    if qps_csv.exists():
        flags = pd.read_csv(qps_csv, encoding="utf-8-sig").dropna(subset=["filename"])
        flags["stem"] = flags["filename"].str.removesuffix(".json")
        flags = flags.set_index("stem")
    rows = []
    for f in files:
        info = _DSTACK_FOLDERS.get(f.parent.name)
        if info is None:
            continue
        m = re.search(r"([\d.]+)qps-(.+?)-(\d{8}-\d{6})", f.name)
        with open(f, encoding="utf-8") as fh:
            data = json.load(fh)
        out_lens = data.get("output_lens", [])
        errors = [e for e in data.get("errors", []) if e]
        ttfts = data.get("ttfts", [])
        n_ok = sum(1 for o, t, e in zip(out_lens, ttfts, data.get("errors", [""] * len(ttfts)),
                                         strict=False) if o > 0 and t > 0 and not e)
        row: dict[str, Any] = {
            "gpu": info["gpu"],
            "hardware": info["hardware"],
            "num_gpus": info["num_gpus"],
            "tp": 8,
            "model": data.get("model_id", m.group(2) if m else None),
            "qps": float(m.group(1)) if m else float(data.get("request_rate", np.nan)),
            "vllm_version": info["vllm_version"],
            "vllm_version_short": ".".join(info["vllm_version"].split(".")[:3]),
            "variant": info["variant"],
            "dataset": "sharegpt",
            "date": pd.to_datetime(data.get("date", m.group(3) if m else None),
                                   format="%Y%m%d-%H%M%S", errors="coerce"),
            "num_prompts": data.get("num_prompts"),
            "completed": data.get("completed"),
            "n_ok": n_ok,
            "n_errors": len(errors),
            "duration_s": data.get("duration"),
            "path": str(f),
            "rel_path": _rel(f),
        }
        stem = f.stem
        for src, dst in _DSTACK_FLAG_COLS.items():
            row[dst] = flags.loc[stem, src] if stem in flags.index and src in flags else None
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        raise DataMissing(f"{raw_dir}: no dstack serving JSONs found (set {ENV_VAR})")
    for c in ("num_prompts", "completed", "num_scheduler_steps", "max_num_seqs",
              "max_seq_len_to_capture"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    df["max_num_batched_tokens"] = df["max_num_batched_tokens"].astype("string")
    for c in ("chunked_prefill", "prefix_caching"):
        df[c] = df[c].astype("boolean")
    return df.sort_values(["gpu", "variant", "qps"]).reset_index(drop=True)


def dstack_serving_runs() -> pd.DataFrame:
    """Index of the dstack vLLM serving runs (Llama-3.1-405B-FP8, ShareGPT, 1,000 prompts).

    One row per JSON: ``gpu`` (``H100-SXM``/``MI300X``), ``hardware`` (8xH100-SXM5 / 8xMI300X),
    ``num_gpus``, ``tp`` (8), ``model`` (served weights, ``meta-llama/Llama-3.1-405B-FP8`` for all),
    ``qps`` float (request rate, Poisson; 1000 = effectively all at once), ``vllm_version`` (full,
    from the README's collect_env) and ``vllm_version_short``, ``variant`` (the MI300X runs with and
    without ``VLLM_RPC_TIMEOUT=30000``; the no-timeout 1000-QPS run failed: 983 client errors),
    ``dataset``, ``date``, ``num_prompts``, ``completed`` (as the file says), ``n_ok`` (requests
    with output, ttft > 0 and no error), ``n_errors``, ``duration_s``, ``path`` (absolute),
    ``rel_path`` and the engine flags from ``csv_data/qps_comparison.csv`` (``num_scheduler_steps``,
    ``chunked_prefill``, ``max_num_batched_tokens`` str ("default" on MI300X), ``max_num_seqs``,
    ``max_seq_len_to_capture``, ``prefix_caching``; NA for the misc re-runs). Parse a run with
    ``benchmark_serving(row.path)``.
    """
    return _dstack_runs(_root()).copy()


# --------------------------------------------------------------------------------------------
# 4. ROCm vLLM dev-docker (MI300X)
# --------------------------------------------------------------------------------------------

ROCM_DIR = ("calibration", "rocm-vllm-devdocker")


def _rocm_model(label: str) -> tuple[str, str, bool]:
    """``Llama 3.1 405B (amd/Llama-3.1-70B-Instruct-FP8-KV)`` -> (model, hf_repo, mismatch)."""
    m = re.match(r"\s*Llama 3\.1 (\d+B)\s*\(([^)]+)\)", label)
    if not m:
        return label, "", False
    size, repo = m.group(1), m.group(2).strip()
    model = f"Llama-3.1-{size}-Instruct-FP8-KV"
    return model, repo, f"-{size}-" not in repo


@functools.lru_cache(maxsize=1)
def _rocm_rocm_versions(root: str) -> dict[str, str]:
    raw = pd.read_csv(_path(root, *ROCM_DIR, "mi300x_devdocker_latency.csv"),
                      usecols=["vllm_version_in_readme", "rocm"])
    return {str(k).lstrip("v"): str(v) for k, v in
            raw.drop_duplicates("vllm_version_in_readme").itertuples(index=False)}


def _rocm_common(root: str, df: pd.DataFrame, config: list[str], value: str) -> pd.DataFrame:
    parsed = [_rocm_model(x) for x in df["Model"]]
    df = df.assign(
        vllm_version_raw=df["vllm_version_in_readme"].astype(str),
        vllm_version=df["vllm_version_in_readme"].astype(str).str.lstrip("v"),
        model=[p[0] for p in parsed],
        model_label=df["Model"],
        hf_repo=[p[1] for p in parsed],
        label_repo_mismatch=[p[2] for p in parsed],
        gpu="MI300X",
        dtype=df["Precision"].str.lower(),
        first_commit_date=pd.to_datetime(df["first_commit_date"], utc=True),
    )
    df["rocm"] = df["vllm_version"].map(_rocm_rocm_versions(root))
    df["_vkey"] = df["vllm_version"].map(_version_key)
    # The README kept old numbers for a while after a version bump: flag values first shown
    # under an earlier version, and the newest value per (version, config).
    first_v = df.groupby(["model", *config, value])["_vkey"].transform("min")
    df["carried_over"] = df["_vkey"] > first_v
    newest = df.groupby(["vllm_version", "model", *config])["first_commit_date"].transform("max")
    df["latest_in_version"] = df["first_commit_date"] == newest
    return df.sort_values(["_vkey", "model", *config, "first_commit_date"]).reset_index(drop=True)


@functools.lru_cache(maxsize=1)
def _rocm_latency(root: str) -> pd.DataFrame:
    raw = pd.read_csv(_path(root, *ROCM_DIR, "mi300x_devdocker_latency_dedup.csv"))
    sec = pd.to_numeric(raw["MI300X Latency (sec)"], errors="coerce")
    ms = pd.to_numeric(raw["MI300X Latency (ms)"], errors="coerce")
    raw = raw.assign(latency_s=sec.fillna(ms / 1000.0),
                     latency_unit_in_readme=np.where(sec.notna(), "s", "ms"))
    raw = raw[raw["latency_s"].notna()]  # drops the 3 'TODO' cells
    raw = raw.assign(tp=raw["TP Size"].astype(int), batch_size=raw["Batch Size"].astype(int),
                     input_len=raw["Input"].astype(int), output_len=raw["Output"].astype(int))
    config = ["tp", "batch_size", "input_len", "output_len"]
    df = _rocm_common(root, raw, config, "latency_s")
    cols = ["vllm_version", "vllm_version_raw", "rocm", "gpu", "model", "hf_repo", "model_label",
            "label_repo_mismatch", "dtype", "tp", "batch_size", "input_len", "output_len",
            "latency_s", "latency_unit_in_readme", "first_commit_date", "n_commits",
            "carried_over", "latest_in_version"]
    return df[cols]


@functools.lru_cache(maxsize=1)
def _rocm_throughput(root: str) -> pd.DataFrame:
    raw = pd.read_csv(_path(root, *ROCM_DIR, "mi300x_devdocker_throughput_dedup.csv"))
    raw = raw.assign(tp=raw["TP Size"].astype(int), input_len=raw["Input"].astype(int),
                     output_len=raw["Output"].astype(int),
                     num_prompts=raw["Num Prompts"].astype(int),
                     max_num_seqs=raw["Max Num Seqs"].astype(int),
                     throughput_tok_s=raw["Throughput (tokens/s)"].astype(float))
    config = ["tp", "input_len", "output_len", "num_prompts", "max_num_seqs"]
    df = _rocm_common(root, raw, config, "throughput_tok_s")
    cols = ["vllm_version", "vllm_version_raw", "rocm", "gpu", "model", "hf_repo", "model_label",
            "label_repo_mismatch", "dtype", *config, "throughput_tok_s", "first_commit_date",
            "n_commits", "carried_over", "latest_in_version"]
    return df[cols]


def rocm_mi300x_latency() -> pd.DataFrame:
    """MI300X fixed-batch latency (``benchmark_latency.py``) from ROCm's vLLM dev-docker README.

    Reads ``mi300x_devdocker_latency_dedup.csv``: one row per distinct (README vLLM version,
    model, config, reported value). Columns: ``vllm_version`` (``v`` stripped; 0.6.6 … 0.10.0),
    ``vllm_version_raw``, ``rocm`` (6.3.1 / 6.4.1), ``gpu`` ("MI300X"), ``model``
    (``Llama-3.1-70B-Instruct-FP8-KV`` / ``Llama-3.1-405B-Instruct-FP8-KV``, from the label's
    size), ``hf_repo`` (the link in the label), ``model_label``, ``label_repo_mismatch`` (True
    where the README labels 405B but links the 70B repo: the values match the 405B rows, so the
    link is the typo), ``dtype`` (fp8), ``tp`` (8), ``batch_size`` (1…128), ``input_len``
    (128/2048), ``output_len`` (2048), ``latency_s`` (whole batch, prefill + all decode steps; the
    README gave ms for early 0.6.6 tables, converted), ``latency_unit_in_readme``,
    ``first_commit_date`` (UTC), ``n_commits`` (README revisions showing the value),
    ``carried_over`` (value first shown under an earlier version: not re-measured), and
    ``latest_in_version`` (newest value for that version and config).
    """
    return _rocm_latency(_root()).copy()


def rocm_mi300x_throughput() -> pd.DataFrame:
    """MI300X offline throughput (``benchmark_throughput.py``) from ROCm's vLLM dev-docker README.

    Reads ``mi300x_devdocker_throughput_dedup.csv``; columns as :func:`rocm_mi300x_latency` but
    with ``num_prompts``, ``max_num_seqs`` and ``throughput_tok_s`` (tokens/s as the README
    prints it: benchmark_throughput's figure, which the README does not say is total or output
    tokens) instead of batch/latency. Configs: (in, out) ∈ {(128, 2048), (128, 4096),
    (500, 2000), (2048, 2048)}, TP8.
    """
    return _rocm_throughput(_root()).copy()


MLPERF_DIR = ("benchmarks", "mlperf")


@functools.lru_cache(maxsize=1)
def _mlperf(root: str) -> pd.DataFrame:
    return pd.read_csv(_path(root, *MLPERF_DIR, "results.csv"))


def mlperf_results() -> pd.DataFrame:
    """MLPerf Inference v5.0 open-division vLLM results (Krai; ``benchmarks/mlperf/results.csv``):
    one row per (system, model, scenario) with the engine flags (``max_num_seqs``,
    ``max_num_batched_tokens``, ``gpu_memory_utilization``, ``tensor_parallel`` ×
    ``data_parallel``), ``tokens_per_s`` (output tokens/s of the whole system: Offline "Tokens per
    second", Server "Completed tokens per second"), ``server_target_qps``, TTFT/TPOT mean, p50,
    p90, p99 (ms, Server only), ``samples_issued`` and the accuracy run's
    ``accuracy_run_tokens_per_sample`` (mean output tokens per sample)."""
    return _mlperf(_root()).copy()


# --------------------------------------------------------------------------------------------
# 5. LLM-Inference-Bench
# --------------------------------------------------------------------------------------------

LIB_DIR = ("calibration", "llm-inference-bench", "Plots")

_LIB_GPU = {
    "Nvidia A100 GPU": "A100",
    "Nvidia H100 GPU": "H100",
    "Nvidia GH200 GPU": "GH200",
    "AMD MI250 GPU": "MI250",
    "AMD MI300X GPU": "MI300X",
    "Habana Gaudi2": "Gaudi2",
    "Intel Max 1550": "Max1550",
    "Intel PVC GPU": "PVC",
    "SambaNova SN40L": "SN40L",
}

LIB_COLUMNS = ["hardware", "gpu", "num_devices", "framework", "model", "batch_size", "input_len",
               "output_len", "metric", "value", "source"]


@functools.lru_cache(maxsize=1)
def _lib_all(root: str) -> pd.DataFrame:
    main_path = _path(root, *LIB_DIR, "All_results.csv")
    a = pd.read_csv(main_path)
    base = pd.DataFrame({
        "hardware": a["Hardware"], "num_devices": a["Num of Hardware"],
        "framework": a["Framework"], "model": a["Model"], "batch_size": a["Batch Size"],
        "input_len": a["Input Output Length"], "output_len": a["Input Output Length"],
        "source": _rel(main_path),
    })
    parts = [base.assign(metric="latency_s", value=a["Latency"]),
             base.assign(metric="throughput_tok_s", value=a["Throughput"])]
    ttft_path = Path(root).joinpath(*LIB_DIR, "Fig_22", "all_results_TTFT_ITL.csv")
    if ttft_path.exists():
        t = pd.read_csv(ttft_path)
        t.columns = [c.strip() for c in t.columns]
        parts.append(pd.DataFrame({
            "hardware": t["Hardware"], "num_devices": t["Num of Hardware"],
            "framework": t["Framework"], "model": t["Model"], "batch_size": t["Batch Size"],
            "input_len": t["Input Length"], "output_len": t["Output Length"],
            "metric": "ttft_s", "value": t["TTFT Latency"], "source": _rel(ttft_path),
        }))
    df = pd.concat(parts, ignore_index=True)
    df["gpu"] = df["hardware"].map(_LIB_GPU).fillna(df["hardware"])
    for c in ("num_devices", "batch_size", "input_len", "output_len"):
        df[c] = df[c].astype(np.int64)
    df["value"] = df["value"].astype(float)
    return df[LIB_COLUMNS]


def _norm_gpu(name: str) -> str:
    return re.sub(r"[-_ ]?(SXM\d?|80G(B)?|PCIE)$", "", name.strip().upper()).replace("-", "")


def llm_inference_bench(gpu: str | None = None, framework: str | None = None) -> pd.DataFrame:
    """LLM-Inference-Bench (Argonne) static-batch results in long format.

    Columns: ``hardware`` (as published, e.g. "Nvidia H100 GPU"), ``gpu`` (short: A100, H100,
    GH200, MI250, MI300X, Gaudi2, Max1550, PVC, SN40L), ``num_devices`` int (TP degree for vLLM),
    ``framework`` (vLLM, TensorRT-LLM, llama.cpp, Deepspeed-MII, Deepspeed, sambaflow),
    ``model`` (HF id), ``batch_size`` int (1…256), ``input_len``/``output_len`` int, ``metric``
    and ``value``:

    - ``latency_s``: wall time of one static batch (prefill + output_len decode steps), in = out
      ∈ {128, 256, 512, 1024, 2048} (All_results.csv).
    - ``throughput_tok_s``: as published = batch x (in + out) / latency (total tokens/s) for every
      framework except llama.cpp, whose figure is (in + out) / latency (one sequence).
    - ``ttft_s``: time to first token at in = 1024, out = 1, batch 16 (Fig_22).

    ``source`` is the file. ``gpu`` filters on the short name (``"H100"``, ``"H100-SXM"`` and
    ``"h100"`` all match H100; note GH200 is separate); ``framework`` is case-insensitive
    (``"vllm"``). All_results.csv repeats 57 configurations (repeat runs); both are kept.
    """
    df = _lib_all(_root())
    if gpu is not None:
        df = df[df["gpu"].map(_norm_gpu) == _norm_gpu(gpu)]
    if framework is not None:
        df = df[df["framework"].str.lower() == framework.lower()]
    return df.reset_index(drop=True).copy()


# --------------------------------------------------------------------------------------------
# 6. aiconfigurator kernel tables
# --------------------------------------------------------------------------------------------

AIC_DATA = ("calibration", "aiconfigurator", "systems", "data")

#: kind -> list of (subfolder, table stem, backend folder)
_AIC_KINDS: dict[str, list[tuple[str, str, str]]] = {
    "gemm": [("gemm", "gemm_perf", "vllm")],
    "context_attention": [("attention", "context_attention_perf", "vllm")],
    "generation_attention": [("attention", "generation_attention_perf", "vllm")],
    "moe": [("moe", "moe_perf", "vllm")],
    "allreduce": [("comm", "custom_allreduce_perf", "vllm"), ("comm", "nccl_perf", "nccl")],
    "nccl": [("comm", "nccl_perf", "nccl")],
}
AIC_KINDS = tuple(_AIC_KINDS)

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "fp16": 2, "int8": 1, "fp8": 1,
                "float32": 4, "float": 4}

_AIC_COMMON = ["gpu", "system", "kind", "op_name", "backend", "folder_version", "vllm_version",
               "runtime_version", "reused_from", "kernel_source", "device"]
_AIC_TAIL = ["latency_ms", "power_w", "power_limit_w", "source_path"]
_AIC_KIND_COLS = {
    "gemm": ["dtype", "m", "n", "k", "tflops"],
    "context_attention": ["batch_size", "seq_len", "num_heads", "num_kv_heads", "head_dim",
                          "attn_dtype", "kv_cache_dtype", "window_size"],
    "generation_attention": ["batch_size", "kv_len", "step", "num_heads", "num_kv_heads",
                             "head_dim", "attn_dtype", "kv_cache_dtype", "window_size"],
    "moe": ["dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp",
            "moe_ep", "distribution"],
    "allreduce": ["dtype", "num_gpus", "message_elems", "message_bytes"],
    "nccl": ["dtype", "num_gpus", "message_elems", "message_bytes"],
}


def _aic_system(gpu: str) -> str:
    root = _path(_root(), *AIC_DATA)
    systems = sorted(p.name for p in root.iterdir() if p.is_dir())
    g = gpu.strip()
    inverse = {v.upper(): k for k, v in SYSTEM_TO_GPU.items()}
    cand = [inverse.get(g.upper(), ""), g.lower().replace("-", "_"),
            g.lower().replace("-", "_") + "_sxm"]
    for c in cand:
        if c in systems:
            return c
    raise ValueError(f"unknown aiconfigurator GPU {gpu!r}; available: {', '.join(systems)}")


@functools.lru_cache(maxsize=64)
def _read_parquet(path: str) -> pd.DataFrame:
    return pd.read_parquet(path)


def _reuse_map(version_dir: Path) -> dict[str, str]:
    f = version_dir / "reuse.yaml"
    if not f.exists():
        return {}
    data = safe_load(f.read_text()) or {}
    return {str(r["table"]): str(r["from_version"]) for r in data.get("reuse", []) or []}


def _aic_tables(system: str, kind: str, version: str | None) -> list[tuple[Path, str, str, str]]:
    """(parquet path, backend, folder_version, reused_from) for a kind."""
    root = _path(_root(), *AIC_DATA, system)
    found: list[tuple[Path, str, str, str]] = []
    for sub, stem, backend in _AIC_KINDS[kind]:
        bdir = root / sub / backend
        if not bdir.is_dir():
            continue
        for vdir in sorted(bdir.iterdir(), key=lambda p: _version_key(p.name)):
            if version is not None and backend == "vllm" and vdir.name != version:
                continue
            f = vdir / f"{stem}.parquet"
            if f.exists():
                found.append((f, backend, vdir.name, ""))
            elif version is not None and stem in _reuse_map(vdir):
                donor = bdir / _reuse_map(vdir)[stem] / f"{stem}.parquet"
                if donor.exists():
                    found.append((donor, backend, vdir.name, _reuse_map(vdir)[stem]))
    return found


def _tidy_kernel(raw: pd.DataFrame, kind: str) -> pd.DataFrame:
    out = pd.DataFrame(index=raw.index)

    def col(name: str, default: Any = pd.NA) -> pd.Series:
        return raw[name] if name in raw else pd.Series(default, index=raw.index)

    if kind == "gemm":
        out["dtype"] = raw["gemm_dtype"]
        for c in ("m", "n", "k"):
            out[c] = raw[c].astype(np.int64)
        out["tflops"] = 2.0 * out["m"] * out["n"] * out["k"] / (raw["latency"] * 1e-3) / 1e12
    elif kind in ("context_attention", "generation_attention"):
        out["batch_size"] = raw["batch_size"].astype(np.int64)
        if kind == "context_attention":
            out["seq_len"] = raw["isl"].astype(np.int64)
        else:
            out["kv_len"] = (raw["isl"] + raw["step"]).astype(np.int64)
            out["step"] = raw["step"].astype(np.int64)
        out["num_heads"] = raw["num_heads"].astype(np.int64)
        out["num_kv_heads"] = raw["num_key_value_heads"].astype(np.int64)
        out["head_dim"] = raw["head_dim"].astype(np.int64)
        out["attn_dtype"] = raw["attn_dtype"]
        out["kv_cache_dtype"] = raw["kv_cache_dtype"]
        out["window_size"] = col("window_size", 0).astype(np.int64)
    elif kind == "moe":
        out["dtype"] = raw["moe_dtype"]
        for src, dst in (("num_tokens", "num_tokens"), ("hidden_size", "hidden_size"),
                         ("inter_size", "inter_size"), ("topk", "topk"),
                         ("num_experts", "num_experts"), ("moe_tp_size", "moe_tp"),
                         ("moe_ep_size", "moe_ep")):
            out[dst] = raw[src].astype(np.int64)
        out["distribution"] = raw["distribution"]
    else:  # allreduce / nccl
        dtype = raw["allreduce_dtype"] if "allreduce_dtype" in raw else raw["nccl_dtype"]
        out["dtype"] = dtype
        out["num_gpus"] = raw["num_gpus"].astype(np.int64)
        out["message_elems"] = raw["message_size"].astype(np.int64)
        out["message_bytes"] = out["message_elems"] * dtype.map(_DTYPE_BYTES).astype("Int64")
    out["op_name"] = col("op_name", kind)
    out["kernel_source"] = col("kernel_source")
    out["device"] = col("device")
    out["runtime_version"] = col("version")
    out["latency_ms"] = raw["latency"].astype(float)
    out["power_w"] = pd.to_numeric(col("power"), errors="coerce").astype(float)
    out["power_limit_w"] = pd.to_numeric(col("power_limit"), errors="coerce").astype(float)
    return out


def aiconfigurator_kernels(gpu: str, kind: str, version: str | None = None,
                           collapse_repeats: bool = False) -> pd.DataFrame:
    """aiconfigurator per-kernel latency tables for one GPU and one kernel kind.

    ``gpu``: aiconfigurator system (``h100_sxm``, ``h200_sxm``, ``b200_sxm``, ``a100_sxm``) or the
    servesim name (``H100-SXM`` …). ``kind``: ``gemm``, ``context_attention``,
    ``generation_attention``, ``moe``, ``allreduce`` (vLLM custom all-reduce, graph and eager, plus
    NCCL ``all_reduce`` rows) or ``nccl`` (all NCCL collectives). ``version``: a vLLM version
    folder (e.g. ``"0.19.0"``); ``None`` = every folder that holds the table. With an explicit
    version whose folder only has a ``reuse.yaml``, the donor table is loaded and ``reused_from``
    names it. NCCL tables are not vLLM-versioned and are always all returned.
    ``collapse_repeats=True`` replaces rows repeating a key (same table, same inputs: repeat
    measurements, common in older tables) by one row with the median latency.

    Common columns: ``gpu`` (servesim name), ``system``, ``kind``, ``op_name``, ``backend``
    ("vllm" or "nccl" folder), ``folder_version`` (version folder), ``vllm_version``
    (= folder_version for vLLM tables, NA for NCCL), ``runtime_version`` (what the collector
    recorded: may differ, e.g. 0.14.1.dev1 in h200 0.14.0, 2.29.2 inside the nccl/2.27.3 folder,
    NA in nccl/2.23), ``reused_from`` ("" unless redirected), ``kernel_source`` (the vLLM kernel /
    backend that ran, e.g. ``vllm_flash_attn_fa3``, ``CutlassFP8ScaledMMLinearKernel``,
    ``vLLM_custom_graph``, ``NCCL``), ``device`` (CUDA device name), ``latency_ms`` (per kernel
    call, one GPU), ``power_w`` / ``power_limit_w`` (only in the 0.22.0 tables), ``source_path``.

    Per kind:

    - gemm: ``dtype`` (bfloat16, fp8 per-tensor, fp8_block; fp4 kinds on B200), ``m`` (tokens),
      ``n`` (output features), ``k`` (input features), ``tflops`` (= 2mnk / latency, derived).
    - context_attention (prefill, causal, no cached prefix): ``batch_size``, ``seq_len`` (prompt
      tokens per sequence), ``num_heads``, ``num_kv_heads`` (per GPU), ``head_dim``,
      ``attn_dtype``, ``kv_cache_dtype`` (bfloat16/fp8), ``window_size`` (0 = full attention).
    - generation_attention (one decode token per sequence): ``batch_size``, ``kv_len`` (=
      isl + step: tokens attended, aiconfigurator's convention), ``step``, heads, ``head_dim``,
      dtypes, ``window_size``.
    - moe (whole fused-MoE layer on one GPU): ``dtype``, ``num_tokens``, ``hidden_size``,
      ``inter_size``, ``topk``, ``num_experts``, ``moe_tp``, ``moe_ep``, ``distribution`` (token
      routing: balanced, power_law_1.01, power_law_1.2).
    - allreduce / nccl: ``dtype`` (bfloat16/half/int8), ``num_gpus`` (2, 4, 8), ``message_elems``
      (tensor elements — the parquet's ``message_size``; half vs int8 timings show it counts
      elements, not bytes), ``message_bytes`` (= elems x dtype size).
    """
    if kind not in _AIC_KINDS:
        raise ValueError(f"unknown kernel kind {kind!r}; choose from {', '.join(AIC_KINDS)}")
    system = _aic_system(gpu)
    tables = _aic_tables(system, kind, version)
    if not tables:
        raise DataMissing(f"{shared_data_root().joinpath(*AIC_DATA, system)}: no {kind} table"
                          + (f" for version {version}" if version else ""))
    frames = []
    for path, backend, folder_version, reused_from in tables:
        raw = _read_parquet(str(path))
        if kind == "allreduce" and backend == "nccl":
            raw = raw[raw["op_name"] == "all_reduce"]
        t = _tidy_kernel(raw, kind)
        if collapse_repeats:
            keys = [c for c in _AIC_KIND_COLS[kind] if c != "tflops"]
            keys += ["op_name", "kernel_source"]
            t = (t.groupby(keys, dropna=False, sort=False, as_index=False)
                 .agg({"latency_ms": "median", "device": "first", "runtime_version": "first",
                       "power_w": "median", "power_limit_w": "median"}))
            if kind == "gemm":
                t["tflops"] = 2.0 * t["m"] * t["n"] * t["k"] / (t["latency_ms"] * 1e-3) / 1e12
        if kind == "allreduce":
            t["kernel_source"] = t["kernel_source"].astype(str)
        t["backend"] = backend
        t["folder_version"] = folder_version
        t["vllm_version"] = folder_version if backend == "vllm" else None
        t["reused_from"] = reused_from
        t["source_path"] = _rel(path)
        frames.append(t)
    df = pd.concat(frames, ignore_index=True)
    df["gpu"] = SYSTEM_TO_GPU.get(system, system)
    df["system"] = system
    df["kind"] = kind
    return df[_AIC_COMMON + _AIC_KIND_COLS[kind] + _AIC_TAIL]


def aiconfigurator_inventory() -> pd.DataFrame:
    """Every aiconfigurator kernel table: ``system``, ``gpu``, ``subfolder`` (gemm, attention,
    moe, comm, mla, …), ``backend`` (vllm/nccl), ``folder_version``, ``table``, ``status``
    ("present"; "reuse" = only a ``reuse.yaml`` redirects to ``reused_from``;
    "present_and_reuse" = the folder has its own parquet *and* a reuse.yaml naming a donor, as in
    h200_sxm and b200_sxm 0.22.0), ``reused_from`` and ``rows`` (parquet row count; NA for
    reuse)."""
    import pyarrow.parquet as pq

    root = _path(_root(), *AIC_DATA)
    rows: list[dict[str, Any]] = []
    for sysdir in sorted(p for p in root.iterdir() if p.is_dir()):
        for sub in sorted(p for p in sysdir.iterdir() if p.is_dir()):
            for bdir in sorted(p for p in sub.iterdir() if p.is_dir()):
                for vdir in sorted(bdir.iterdir(), key=lambda p: _version_key(p.name)):
                    base = dict(system=sysdir.name, gpu=SYSTEM_TO_GPU.get(sysdir.name),
                                subfolder=sub.name, backend=bdir.name, folder_version=vdir.name)
                    reuse = _reuse_map(vdir)
                    for f in sorted(vdir.glob("*.parquet")):
                        donor = reuse.get(f.stem, "")
                        rows.append({**base, "table": f.stem,
                                     "status": "present_and_reuse" if donor else "present",
                                     "reused_from": donor,
                                     "rows": pq.read_metadata(f).num_rows})
                    for table, donor in reuse.items():
                        if not (vdir / f"{table}.parquet").exists():
                            rows.append({**base, "table": table, "status": "reuse",
                                         "reused_from": donor, "rows": None})
    df = pd.DataFrame(rows)
    df["rows"] = df["rows"].astype("Int64")
    return df


# --------------------------------------------------------------------------------------------
# 7. Cross-check data: splitwise-sim and Vidur
# --------------------------------------------------------------------------------------------

_SPLITWISE_GPU = {"a100-80gb": "A100-80G", "h100-80gb": "H100-SXM", "h100-80gb-pcap": "H100-SXM"}


@functools.lru_cache(maxsize=1)
def _splitwise(root: str) -> pd.DataFrame:
    raw = pd.read_csv(_path(root, "calibration", "splitwise-sim", "perf_model.csv"))
    return pd.DataFrame({
        "model": raw["model"],
        "hardware": raw["hardware"],
        "gpu": raw["hardware"].map(_SPLITWISE_GPU).fillna(raw["hardware"]),
        "power_capped": raw["hardware"].str.endswith("-pcap"),
        "tp": raw["tensor_parallel"].astype(np.int64),
        "batch_size": raw["batch_size"].astype(np.int64),
        "prompt_len": raw["prompt_size"].astype(np.int64),
        "output_len": raw["token_size"].astype(np.int64),
        "prompt_time_ms": raw["prompt_time"].astype(float),
        "token_time_ms": raw["token_time"].astype(float),
        "e2e_time_ms": raw["e2e_time"].astype(float),
        "peak_power_frac": raw["peak_power"].astype(float),
        "avg_power_frac": raw["average_power"].astype(float),
    })


def splitwise_perf_model() -> pd.DataFrame:
    """splitwise-sim's profiled performance model (``perf_model.csv``, 1,260 rows).

    Columns: ``model`` (llama2-70b, bloom-176b), ``hardware`` (a100-80gb, h100-80gb,
    h100-80gb-pcap = power-capped H100), ``gpu`` (A100-80G / H100-SXM: DGX machines),
    ``power_capped`` bool, ``tp`` (2, 4, 8), ``batch_size`` (1…64), ``prompt_len`` (128…8192),
    ``output_len`` (128…8192), ``prompt_time_ms`` (prefill of the whole batch),
    ``token_time_ms`` (one decode step), ``e2e_time_ms`` (as published: ≈ prompt_time +
    (output_len − 1) x token_time for ~70% of rows, but far off for batch 64 and for
    output_len 8192 — prefer the two step times), ``peak_power_frac`` / ``avg_power_frac``
    (fraction of GPU TDP; 0 where not recorded). The grid is not full: a prompt sweep at
    output_len 128 and an output sweep at prompt_len 512, batch 1…64 each; repeat runs of one
    configuration are separate rows (5 per point). The engine is not named in the source.
    """
    return _splitwise(_root()).copy()


@functools.lru_cache(maxsize=16)
def _vidur_mlp(root: str, gpu: str, model: str) -> pd.DataFrame:
    compute = _path(root, "calibration", "vidur", "data", "profiling", "compute")
    g = gpu.strip().lower().split("-")[0]
    gdir = compute / g
    if not gdir.is_dir():
        avail = ", ".join(sorted(p.name for p in compute.iterdir() if p.is_dir()))
        raise ValueError(f"unknown Vidur GPU {gpu!r}; available: {avail}")
    files = sorted(gdir.glob("*/*/mlp.csv"))
    names = {f"{f.parent.parent.name}/{f.parent.name}": f for f in files}
    match = [f for k, f in names.items() if k.lower() == model.lower()
             or k.split("/", 1)[1].lower() == model.lower()]
    if not match:
        raise ValueError(f"no Vidur profile for {model!r} on {g}; available: "
                         f"{', '.join(sorted(names))}")
    path = match[0]
    raw = pd.read_csv(path)
    dims = ["num_tokens", "num_tensor_parallel_workers", "n_head", "n_kv_head", "n_embd",
            "n_expanded_embd", "vocab_size", "use_gated_mlp"]
    ops = sorted({c.split(".")[1] for c in raw.columns if c.startswith("time_stats.")})
    frames = []
    for op in ops:
        f = raw[dims].copy()
        f["op"] = op
        for stat in ("mean", "median", "min", "max", "std"):
            f[f"{stat}_ms"] = raw[f"time_stats.{op}.{stat}"].astype(float)
        frames.append(f)
    df = pd.concat(frames, ignore_index=True).rename(
        columns={"num_tensor_parallel_workers": "tp"})
    df.insert(0, "model", f"{path.parent.parent.name}/{path.parent.name}")
    df.insert(0, "gpu", g)
    df["source_path"] = _rel(path)
    return df


def vidur_mlp(gpu: str, model: str) -> pd.DataFrame:
    """Vidur per-operator timings of one transformer layer (``compute/<gpu>/<model>/mlp.csv``).

    ``gpu``: ``a100``, ``h100`` or ``a40`` (``H100-SXM`` also works); ``model``: HF id
    (``meta-llama/Llama-2-70b-hf``) or its basename. Long format, one row per (num_tokens, tp,
    op): ``gpu``, ``model``, ``num_tokens`` (tokens in the batch), ``tp``, the layer shape
    (``n_head``, ``n_kv_head``, ``n_embd``, ``n_expanded_embd`` = MLP width, ``vocab_size``,
    ``use_gated_mlp``), ``op`` (emb, input_layernorm, attn_pre_proj = QKV GEMM, attn_rope,
    attn_post_proj = O GEMM, post_attention_layernorm, mlp_up_proj, mlp_act, mlp_down_proj, add),
    ``mean_ms``/``median_ms``/``min_ms``/``max_ms``/``std_ms`` (per call, one GPU, sharded by tp)
    and ``source_path``. Attention kernels themselves are in Vidur's ``attention.csv``, not
    shipped here.
    """
    return _vidur_mlp(_root(), gpu, model).copy()
