"""Replaying real request traces: Azure LLM inference 2023, Mooncake, and users' own logs.

What this models: production traffic as it was recorded — each request's arrival time, prompt and
output length and, where the trace has them, its prefix blocks — so a fleet can be sized against
real burstiness and real length mixes rather than a fitted stand-in.

Formats (``arrival.format``; ``auto`` picks from the file's header or first line):

``generic`` — the documented format for your own logs. CSV with a header row, or JSON Lines (one
JSON object per line; ``.jsonl``/``.ndjson``/``.json``). One request per row, in arrival order:

  ============== ======== ===================================================================
  column         required meaning
  ============== ======== ===================================================================
  timestamp      yes      arrival: seconds (a number, any origin: the first row is t = 0) or an
                          ISO-8601 date-time (``2024-05-01T12:00:00.250``, naive = UTC)
  input_tokens   yes      prompt tokens, integer ≥ 1
  output_tokens  yes      generated tokens, integer ≥ 1
  hash_ids       no       chained prefix-block ids, ``hash_block_tokens`` (512) tokens each:
                          equal ids at position i ⇔ identical prompt up to the end of block i
                          (JSON: a list of integers; CSV: integers separated by spaces)
  tenant         no       tenant name (used when the workload defines no tenants)
  priority       no       integer, lower = served first
  ============== ======== ===================================================================

  Other columns are ignored. Timestamps must not decrease. A bad row stops the load with one line
  ``file:LINE: field: problem (got …); fix or drop that line``.

``azure`` — ``AzureLLMInferenceTrace_{code,conv}.csv``: TIMESTAMP (date-time), ContextTokens,
GeneratedTokens. ``mooncake`` — Mooncake's JSONL: timestamp (ms), input_length, output_length,
hash_ids (512-token blocks).

Scaling (see :class:`simulator.workload.spec.TraceArrivals`): ``time_scale`` divides every
timestamp (rate × s; CV, order and burst shapes kept exactly). ``rate_scale`` k with ``superpose``
adds k − 1 independent copies, each circularly shifted by a uniform random offset over the replayed
span (a fractional part: one more copy, thinned; k < 1: thinning) — the rate is multiplied by k, the
rate profile's mean and the variance-to-mean ratio of counts in a window are kept, but the
inter-arrival CV drifts towards 1 as independent streams mix (Azure conv: 1.09 → 1.06 at ×2;
Azure code: 13.2 → 11.0). With ``tile`` the trace is played k times faster, k times in a row: the
inter-arrival distribution and CV are kept exactly, the slow profile is repeated. Copies are other
users: their ``hash_ids`` are renumbered so they share no prefix with the original, except ids
carried by at least 1 % of the trace's requests (system prompts), which stay shared.

Leaves out: request contents, per-request sampling parameters, trace-recorded response times (the
simulator predicts them).
"""

from __future__ import annotations

import csv
import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import ConfigError, clip, decode_text
from simulator.workload.spec import MAX_TOKENS, TraceArrivals

BUILTIN_TRACES: dict[str, tuple[str, str]] = {
    "azure-conv-2023": ("traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure"),
    "azure-code-2023": ("traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv", "azure"),
    "mooncake-conversation": ("traces/mooncake/conversation_trace.jsonl", "mooncake"),
}
"""Built-in trace name → (path under the shared data root, format)."""

GLOBAL_ID_SHARE = 0.01
"""Hash ids carried by at least this share of a trace's requests stay shared across copies."""

GENERIC_REQUIRED = ("timestamp", "input_tokens", "output_tokens")
GENERIC_OPTIONAL = ("hash_ids", "tenant", "priority")


@dataclass(frozen=True)
class Layout:
    timestamp: str
    unit: float
    """Seconds per timestamp unit for numeric timestamps."""
    input: str
    output: str
    hash_ids: str | None
    tenant: str | None
    priority: str | None


LAYOUTS: dict[str, Layout] = {
    "generic": Layout("timestamp", 1.0, "input_tokens", "output_tokens", "hash_ids", "tenant",
                      "priority"),
    "azure": Layout("TIMESTAMP", 1.0, "ContextTokens", "GeneratedTokens", None, None, None),
    "mooncake": Layout("timestamp", 1e-3, "input_length", "output_length", "hash_ids", None, None),
}


class TraceError(ConfigError):
    """A trace file that does not follow its format (one line: file, line, field, fix)."""


@dataclass(frozen=True)
class Trace:
    """A loaded trace, in arrival order (never modified after loading)."""

    path: str
    format: str
    times: np.ndarray
    """Seconds since the first request."""
    input: np.ndarray
    output: np.ndarray
    hash_ids: list[tuple[int, ...]] | None
    tenant: list[str] | None
    priority: np.ndarray | None

    def __len__(self) -> int:
        return len(self.times)


# --------------------------------------------------------------------------------------------
# Loading with a schema check
# --------------------------------------------------------------------------------------------


MAX_ID = 2**63 - 1
"""Largest hash id (a 64-bit signed integer, as the cache keys hold it)."""
MAX_PRIORITY = 2**31
"""Priorities lie in [-2**31, 2**31)."""


def _bad(path: Path, line: int, field: str, problem: str, value: Any) -> TraceError:
    return TraceError(f"{path}:{line}: {field}: {problem} (got {clip(value, 60)}); fix or drop "
                      f"that line")


def _timestamp(path: Path, line: int, field: str, value: Any, unit: float) -> float:
    if isinstance(value, bool) or value is None or value == "":
        raise _bad(path, line, field, "needs a number of seconds or an ISO-8601 date-time", value)
    if isinstance(value, int | float):
        x = float(value)
    else:
        try:
            x = float(value)
        except ValueError:
            try:
                dt = datetime.fromisoformat(str(value).strip())
            except ValueError:
                raise _bad(path, line, field, "needs a number of seconds or an ISO-8601 date-time",
                           value) from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return dt.timestamp()
    if not np.isfinite(x):
        raise _bad(path, line, field, "must be finite", value)
    return x * unit


def _tokens(path: Path, line: int, field: str, value: Any) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        x = float(value)
        if not x.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise _bad(path, line, field, "must be an integer number of tokens >= 1", value) from None
    if x < 1:
        raise _bad(path, line, field, "must be an integer number of tokens >= 1", value)
    if x > MAX_TOKENS:
        raise _bad(path, line, field, f"must be at most {MAX_TOKENS:,} tokens (the longest "
                   f"context of any model)", value)
    return int(x)


def _hash_ids(path: Path, line: int, field: str, value: Any) -> tuple[int, ...]:
    if value is None or value == "":
        return ()
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _bad(path, line, field, "must be a list of non-negative integers", value)
    try:
        ids = tuple(int(v) for v in items)
        if any(isinstance(v, bool) or (isinstance(v, float) and not v.is_integer())
               for v in items):
            raise ValueError
    except (TypeError, ValueError):
        raise _bad(path, line, field, "must be a list of non-negative integers", value) from None
    if any(v < 0 or v > MAX_ID for v in ids):
        raise _bad(path, line, field, "must be a list of integers in [0, 2**63)", value)
    return ids


def _detect(path: Path) -> str:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8-sig") as fh:
            for raw in fh:
                if raw.strip():
                    try:
                        rec = json.loads(raw)
                    except (json.JSONDecodeError, RecursionError):
                        return "generic"
                    return "mooncake" if isinstance(rec, dict) and "input_length" in rec \
                        else "generic"
        return "generic"
    with path.open(encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh), [])
    return "azure" if "ContextTokens" in header else "generic"


def _records(path: Path, layout: Layout) -> Any:
    """(line, mapping) for each request row of a CSV or JSONL file."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8-sig") as fh:
            for i, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise TraceError(f"{path}:{i}: not valid JSON ({e.msg} at column {e.colno}); "
                                     f"fix or drop that line") from None
                except RecursionError:
                    raise TraceError(f"{path}:{i}: a JSON value nested too deeply to read; fix "
                                     f"or drop that line") from None
                if not isinstance(rec, dict):
                    raise _bad(path, i, "(line)", "must be a JSON object", raw.strip())
                for col in (layout.timestamp, layout.input, layout.output):
                    if col not in rec:
                        raise _bad(path, i, col, "required field is missing", raw.strip())
                yield i, rec
        return
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in (layout.timestamp, layout.input, layout.output) if c not in header]
        if missing:
            need = ",".join((layout.timestamp, layout.input, layout.output))
            raise TraceError(f"{path}:1: header: missing column(s) {', '.join(missing)}; this "
                             f"format needs {need} (see simulator/workload/traces.py)")
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise TraceError(f"{path}:{reader.line_num + 1}: not a readable CSV row ({e}); fix "
                                 f"or drop that line") from None
            extra = rec.pop(None, None)
            if extra is not None or any(v is None for v in rec.values()):
                n = sum(v is not None for v in rec.values()) + len(extra or [])
                raise _bad(path, reader.line_num, "(row)",
                           f"has {n} fields but the header has {len(header)}",
                           ",".join(str(v) for v in rec.values() if v is not None))
            yield reader.line_num, rec


@functools.lru_cache(maxsize=8)
def _load_cached(path_s: str, fmt: str, _mtime: int, _size: int) -> Trace:
    path = Path(path_s)
    layout = LAYOUTS[fmt]
    times: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    hashes: list[tuple[int, ...]] = []
    tenants: list[str] = []
    prios: list[int] = []
    has_hash = has_tenant = has_prio = False
    prev = -np.inf
    for line, rec in _records(path, layout):
        t = _timestamp(path, line, layout.timestamp, rec[layout.timestamp], layout.unit)
        if t < prev:
            raise _bad(path, line, layout.timestamp, "is earlier than the previous request's; a "
                       "trace must be in arrival order (sort it by timestamp)", rec[layout.timestamp])
        prev = t
        times.append(t)
        ins.append(_tokens(path, line, layout.input, rec[layout.input]))
        outs.append(_tokens(path, line, layout.output, rec[layout.output]))
        if layout.hash_ids and layout.hash_ids in rec:
            has_hash = True
            hashes.append(_hash_ids(path, line, layout.hash_ids, rec[layout.hash_ids]))
        else:
            hashes.append(())
        if layout.tenant and rec.get(layout.tenant) not in (None, ""):
            has_tenant = True
            tenants.append(str(rec[layout.tenant]))
        else:
            tenants.append("default")
        if layout.priority and rec.get(layout.priority) not in (None, ""):
            has_prio = True
            try:
                v = rec[layout.priority]
                if isinstance(v, bool) or float(v) != int(float(v)):
                    raise ValueError
                prio = int(float(v))
                if not -MAX_PRIORITY <= prio < MAX_PRIORITY:
                    raise ValueError
                prios.append(prio)
            except (TypeError, ValueError, OverflowError):
                raise _bad(path, line, layout.priority, "must be an integer in [-2**31, 2**31)",
                           rec[layout.priority]) from None
        else:
            prios.append(0)
    if not times:
        raise TraceError(f"{path}: no requests in the trace")
    t0 = times[0]
    return Trace(str(path), fmt, np.asarray(times) - t0, np.asarray(ins, dtype=np.int64),
                 np.asarray(outs, dtype=np.int64), hashes if has_hash else None,
                 tenants if has_tenant else None,
                 np.asarray(prios, dtype=np.int64) if has_prio else None)


def load_trace_file(path: str | Path, fmt: str = "auto") -> Trace:
    """Load and check a trace file (cached while the file is unchanged)."""
    p = Path(path)
    try:
        if not p.is_file():
            raise ConfigError(f"workload.arrival.file: trace {clip_path(p)} not found")
        st = p.stat()
    except (OSError, ValueError) as e:
        raise ConfigError(f"workload.arrival.file: cannot use {clip_path(p)} "
                          f"({getattr(e, 'strerror', None) or e})") from None
    try:
        if fmt == "auto":
            fmt = _detect(p)
        return _load_cached(str(p.resolve()), fmt, st.st_mtime_ns, st.st_size)
    except UnicodeDecodeError:
        decode_text(p.read_bytes(), str(p))  # raises, naming the line and byte
        raise  # pragma: no cover - decode_text raised
    except csv.Error as e:
        raise TraceError(f"{p}: not a readable CSV ({e}); fix the file or use JSON Lines"
                         ) from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the trace ({e.strerror or e})") from None


def clip_path(p: Path) -> str:
    """A path as an error line shows it (at most 120 characters)."""
    s = str(p)
    return s if len(s) <= 120 else s[:117] + "..."


def builtin_trace_path(name: str) -> Path:
    """Where a built-in trace lives under the shared data root (ConfigError if absent)."""
    from simulator.calibrate.datasets import shared_data_root

    rel, _ = BUILTIN_TRACES[name]
    p = shared_data_root() / rel
    if not p.is_file():
        raise ConfigError(f"workload.arrival: trace '{name}' needs {p} (the shared data; set "
                          f"SERVESIM_DATA_DIR), or use the named workload '{name}' (fitted, ships "
                          f"with servesim)")
    return p


def load_trace(spec: TraceArrivals, base_dir: str | None = None) -> Trace:
    """The trace an arrival spec names."""
    if spec.name is not None:
        return load_trace_file(builtin_trace_path(spec.name), BUILTIN_TRACES[spec.name][1])
    assert spec.file is not None
    p = Path(spec.file).expanduser()
    if not p.is_absolute() and base_dir:
        p = Path(base_dir) / p
    return load_trace_file(p, spec.format)


# --------------------------------------------------------------------------------------------
# Windowing and scaling
# --------------------------------------------------------------------------------------------


@dataclass
class Replay:
    """What is sent: times (seconds from the start of the replay, non-decreasing), the trace row
    each request replays, and the copy it belongs to (0 = the original)."""

    times: np.ndarray
    rows: np.ndarray
    copies: np.ndarray
    span_s: float
    """Length of the replayed window after scaling (seconds)."""

    def __len__(self) -> int:
        return len(self.times)


def spread_ties(t: np.ndarray) -> np.ndarray:
    """Spread runs of equal timestamps evenly up to the next distinct one (order kept)."""
    uniq, first, counts = np.unique(t, return_index=True, return_counts=True)
    if len(uniq) == len(t):
        return t
    gaps = np.diff(uniq)
    last = float(np.median(gaps)) if len(gaps) else 0.0
    width = np.append(gaps, last)
    pos = np.arange(len(t)) - np.repeat(first, counts)
    return t + np.repeat(width / counts, counts) * pos


def replay(trace: Trace, spec: TraceArrivals, rng: np.random.Generator) -> Replay:
    """Window, spread, rate-scale and time-scale a trace."""
    t = spread_ties(trace.times) if spec.spread_ties else trace.times
    hi = np.inf if spec.end_s is None else spec.end_s
    sel = np.flatnonzero((t >= spec.start_s) & (t <= hi))
    if len(sel) == 0:
        raise ConfigError(f"workload.arrival: no requests of {trace.path} between start_s "
                          f"{spec.start_s} and end_s {spec.end_s}")
    times = t[sel] - spec.start_s
    if spec.end_s is not None:
        span = spec.end_s - spec.start_s
    else:
        mean_gap = times[-1] / (len(times) - 1) if len(times) > 1 and times[-1] > 0 else 1.0
        span = float(times[-1] + mean_gap)
    k = spec.rate_scale
    parts_t: list[np.ndarray] = []
    parts_r: list[np.ndarray] = []
    parts_c: list[np.ndarray] = []
    if k == 1:
        parts_t, parts_r, parts_c = [times], [sel], [np.zeros(len(sel), dtype=np.int64)]
    elif spec.rate_method == "superpose":
        whole = int(np.floor(k))
        frac = k - whole
        for c in range(whole + (1 if frac > 1e-12 else 0)):
            tc = times if c == 0 else np.mod(times + rng.uniform(0, span), span)
            keep = np.ones(len(tc), dtype=bool)
            if c == whole or k < 1:  # the fractional copy (or k < 1: the original), thinned
                keep = rng.random(len(tc)) < (frac if k > 1 else k)
            parts_t.append(tc[keep])
            parts_r.append(sel[keep])
            parts_c.append(np.full(int(keep.sum()), c, dtype=np.int64))
    else:  # tile
        for c in range(int(np.ceil(k))):
            tc = times / k + c * span / k
            keep = tc < span if c == int(np.ceil(k)) - 1 else np.ones(len(tc), dtype=bool)
            parts_t.append(tc[keep])
            parts_r.append(sel[keep])
            parts_c.append(np.full(int(keep.sum()), c, dtype=np.int64))
    all_t = np.concatenate(parts_t)
    all_r = np.concatenate(parts_r)
    all_c = np.concatenate(parts_c)
    order = np.lexsort((all_r, all_c, all_t)) if k != 1 else np.arange(len(all_t))
    return Replay(all_t[order] / spec.time_scale, all_r[order], all_c[order],
                  span / spec.time_scale)


def id_remapper(trace: Trace) -> tuple[frozenset[int], int]:
    """Hash ids shared across copies (carried by ≥ 1 % of requests) and the stride that gives
    copy c's other ids a range of their own."""
    assert trace.hash_ids is not None
    counts: dict[int, int] = {}
    top = 0
    for ids in trace.hash_ids:
        for h in set(ids):
            counts[h] = counts.get(h, 0) + 1
        if ids:
            top = max(top, max(ids))
    need = GLOBAL_ID_SHARE * len(trace)
    return frozenset(h for h, c in counts.items() if c >= need), top + 1
