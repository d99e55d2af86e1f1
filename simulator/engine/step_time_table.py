"""Step times from a user's table of measurements: the ``table`` step-time backend.

What this models: nothing physical — it replays what a real engine was *measured* to take per step
(e.g. from vLLM step logs or a profiling sweep on the user's own hardware), interpolated between the
measured points. Use it when you have measured your model on your GPU and trust that more than the
calibrated roofline (``simulator.engine.step_time``).

CSV schema (one header line; lines starting with ``#`` and blank lines are ignored):

==================  ========  =====================================================================
column              required  meaning
==================  ========  =====================================================================
``num_tokens``      yes       tokens scheduled in the step (prefill-chunk tokens + one per decode),
                              integer ≥ 1
``num_seqs``        yes       sequences in the step, integer, 1 ≤ num_seqs ≤ num_tokens
``avg_context``     no        mean over the step's sequences of the tokens already in the KV cache
                              before the step (``StepPlan.context_lens``), ≥ 0; without this column
                              the step time does not depend on context length
``step_time_ms``    yes       measured wall time of the step, milliseconds, > 0
==================  ========  =====================================================================

Example::

    # Llama-3.1-8B bf16 on 1×H100, vLLM 0.10, measured with ...
    num_tokens,num_seqs,avg_context,step_time_ms
    1,1,0,6.1
    64,64,1024,7.9
    2048,1,0,48.0

Any other column is an error (as an unknown field in a scenario is). Rows repeating the same
(num_tokens, num_seqs[, avg_context]) are repeat measurements: their median is used. The table
must be measured for the scenario's model, GPU, TP size and dtypes; nothing checks that.

Interpolation. The distinct values of each column form the axes of a grid (a full grid is not
required). ``linear``: multilinear interpolation between the grid points around the query; corners
that were not measured (e.g. num_seqs > num_tokens, which no step can have) are left out and the
weights of the others renormalised; when none of the surrounding corners was measured, the nearest
measured point is used. ``nearest``: the measured point nearest to the query, distances measured in
units of each axis' range. Extrapolation clamps: outside the measured range each coordinate is
clamped to the nearest edge, so a step larger than any measured one takes the time of the largest
measured step (an *under*-estimate) — measure up to the scenario's ``max_num_batched_tokens`` and
``max_num_seqs``. Malformed files raise a one-line :class:`~simulator.errors.ConfigError` naming the
file, the line and the column.

Leaves out: anything the table does not vary (e.g. the split of tokens between prefill and decode at
equal num_tokens and num_seqs, or prefix-cache hits), and run-to-run noise (no sampling).
"""

from __future__ import annotations

import bisect
import csv
import itertools
import math
from pathlib import Path
from typing import Literal

import numpy as np

from simulator.engine.scheduler import StepPlan
from simulator.errors import ConfigError

Interpolation = Literal["linear", "nearest"]

REQUIRED_COLUMNS = ("num_tokens", "num_seqs", "step_time_ms")
OPTIONAL_COLUMNS = ("avg_context",)
AXES = ("num_tokens", "num_seqs", "avg_context")
"""Grid axes in the order coordinates are stored (those present in the file)."""


class TableStepTime:
    """Measured step times, interpolated on their grid (see module docstring)."""

    def __init__(self, points: np.ndarray, times_s: np.ndarray, axes: tuple[str, ...],
                 interpolation: Interpolation = "linear", source: str = "<table>") -> None:
        pts = np.asarray(points, dtype=float)
        vals = np.asarray(times_s, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != len(axes) or len(pts) != len(vals) or not len(pts):
            raise ValueError("points must be (n, len(axes)) with one time per point, n ≥ 1")
        self.axes = axes
        self.interpolation: Interpolation = interpolation
        self.source = source
        self._use_ctx = "avg_context" in axes
        # Repeat measurements of one grid point → their median.
        groups: dict[tuple[float, ...], list[float]] = {}
        for p, v in zip(map(tuple, pts.tolist()), vals.tolist(), strict=True):
            groups.setdefault(p, []).append(v)
        keys = sorted(groups)
        self.points = np.array(keys, dtype=float)
        self.times_s = np.array([float(np.median(groups[k])) for k in keys])
        self.grid: list[list[float]] = [sorted({k[d] for k in keys}) for d in range(len(axes))]
        index = [{v: i for i, v in enumerate(g)} for g in self.grid]
        self.cells: dict[tuple[int, ...], float] = {
            tuple(index[d][k[d]] for d in range(len(axes))): t
            for k, t in zip(keys, self.times_s.tolist(), strict=True)}
        self.lo = self.points.min(axis=0)
        self.hi = self.points.max(axis=0)
        span = self.hi - self.lo
        self._scale = np.where(span > 0, span, 1.0)

    # ---- loading -----------------------------------------------------------------------------
    @classmethod
    def from_csv(cls, path: str | Path, interpolation: Interpolation = "linear") -> TableStepTime:
        """Read and validate a step-time CSV (schema in the module docstring)."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise ConfigError(f"step_time.table_file: cannot read {p} ({e.strerror})") from None
        header: list[str] | None = None
        header_line = 0
        rows: list[list[float]] = []
        times: list[float] = []
        cols: dict[str, int] = {}
        for lineno, fields in _csv_lines(text):
            if header is None:
                header, header_line = [f.strip() for f in fields], lineno
                cols = _check_header(p, header, lineno)
                continue
            if len(fields) != len(header):
                raise ConfigError(f"{p}:{lineno}: expected {len(header)} fields "
                                  f"({', '.join(header)}), got {len(fields)}")
            vals = {name: _number(p, lineno, j, name, fields[j]) for name, j in cols.items()}
            tok, seqs, t_ms = vals["num_tokens"], vals["num_seqs"], vals["step_time_ms"]
            for name in ("num_tokens", "num_seqs"):
                v = vals[name]
                if v < 1 or v != math.floor(v):
                    raise ConfigError(f"{p}:{lineno}: column {cols[name] + 1} ('{name}'): must "
                                      f"be an integer ≥ 1, got {fields[cols[name]].strip()!r}")
            if seqs > tok:
                raise ConfigError(f"{p}:{lineno}: column {cols['num_seqs'] + 1} ('num_seqs'): "
                                  f"{seqs:g} sequences cannot share {tok:g} tokens (every "
                                  f"sequence gets ≥ 1 token per step)")
            if t_ms <= 0:
                raise ConfigError(f"{p}:{lineno}: column {cols['step_time_ms'] + 1} "
                                  f"('step_time_ms'): must be > 0 ms, got "
                                  f"{fields[cols['step_time_ms']].strip()!r}")
            if "avg_context" in vals and vals["avg_context"] < 0:
                raise ConfigError(f"{p}:{lineno}: column {cols['avg_context'] + 1} "
                                  f"('avg_context'): must be ≥ 0, got "
                                  f"{fields[cols['avg_context']].strip()!r}")
            rows.append([vals[a] for a in AXES if a in cols])
            times.append(t_ms / 1000.0)
        if header is None:
            raise ConfigError(f"{p}: empty step-time table: expected a header line "
                              f"({', '.join(REQUIRED_COLUMNS)}[, avg_context]) and data rows")
        if not rows:
            raise ConfigError(f"{p}:{header_line}: step-time table has a header but no data rows")
        axes = tuple(a for a in AXES if a in cols)
        return cls(np.array(rows), np.array(times), axes, interpolation, str(p))

    # ---- prediction ----------------------------------------------------------------------------
    def query(self, plan: StepPlan) -> tuple[float, ...]:
        """The plan's coordinates on the table's axes."""
        n_seq = plan.num_seqs
        if self._use_ctx:
            ctx = sum(plan.context_lens) / n_seq if n_seq else 0.0
            return (float(plan.num_tokens), float(n_seq), float(ctx))
        return (float(plan.num_tokens), float(n_seq))

    def predict(self, plan: StepPlan) -> float:
        """Seconds the step takes (0 for an empty step)."""
        if plan.num_tokens <= 0:
            return 0.0
        return self.at(self.query(plan))

    def at(self, q: tuple[float, ...] | list[float]) -> float:
        """Interpolated step time (s) at coordinates ``q`` (one per axis), clamped to the table."""
        x = [min(max(float(v), lo), hi) for v, lo, hi in
             zip(q, self.lo.tolist(), self.hi.tolist(), strict=True)]
        if self.interpolation == "nearest":
            return self._nearest(x)
        corners: list[list[tuple[int, float]]] = []
        for d, g in enumerate(self.grid):
            i = bisect.bisect_right(g, x[d]) - 1
            i = min(max(i, 0), len(g) - 1)
            if i == len(g) - 1 or g[i] == x[d]:
                corners.append([(i, 1.0)])
            else:
                t = (x[d] - g[i]) / (g[i + 1] - g[i])
                corners.append([(i, 1.0 - t), (i + 1, t)])
        total = 0.0
        weight = 0.0
        for combo in itertools.product(*corners):
            w = 1.0
            for _, wd in combo:
                w *= wd
            if w <= 0.0:
                continue
            v = self.cells.get(tuple(i for i, _ in combo))
            if v is not None:
                total += w * v
                weight += w
        if weight > 1e-12:
            return total / weight
        return self._nearest(x)

    def _nearest(self, x: list[float]) -> float:
        d = (self.points - np.asarray(x)) / self._scale
        return float(self.times_s[int(np.argmin((d * d).sum(axis=1)))])

    def describe(self) -> str:
        ranges = ", ".join(f"{a} {lo:g}–{hi:g}" for a, lo, hi in
                           zip(self.axes, self.lo.tolist(), self.hi.tolist(), strict=True))
        return f"table {self.source} ({len(self.points)} points, {self.interpolation}; {ranges})"


def _csv_lines(text: str) -> list[tuple[int, list[str]]]:
    """(1-based line number, fields) of each non-blank, non-comment line."""
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        out.append((lineno, next(csv.reader([line]))))
    return out


def _check_header(p: Path, header: list[str], lineno: int) -> dict[str, int]:
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    cols: dict[str, int] = {}
    for j, name in enumerate(header):
        if name not in known:
            raise ConfigError(f"{p}:{lineno}: column {j + 1} ('{name}'): unknown column; expected "
                              f"{', '.join(REQUIRED_COLUMNS)} and optionally "
                              f"{', '.join(OPTIONAL_COLUMNS)}")
        if name in cols:
            raise ConfigError(f"{p}:{lineno}: column {j + 1} ('{name}'): duplicate column")
        cols[name] = j
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise ConfigError(f"{p}:{lineno}: missing column(s) {', '.join(missing)}; a step-time "
                          f"table needs {', '.join(REQUIRED_COLUMNS)} (optionally avg_context)")
    return cols


def _number(p: Path, lineno: int, j: int, name: str, raw: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise ConfigError(f"{p}:{lineno}: column {j + 1} ('{name}'): not a number: "
                          f"{raw.strip()!r}") from None
    if not math.isfinite(v):
        raise ConfigError(f"{p}:{lineno}: column {j + 1} ('{name}'): must be finite, got "
                          f"{raw.strip()!r}")
    return v
