"""Measure, on the GPU this runs on, the kernels servesim's step-time model prices (PyTorch only).

What it measures (the real thing: one kernel call of a vLLM forward pass on one GPU, timed with CUDA
events, weights and KV not resident in L2):

- dense GEMMs, ``F.linear`` in bf16 (cuBLAS, as vLLM's unquantised linear layers run) and FP8 W8A8
  through ``torch._scaled_mm`` with per-tensor scales (the GEMM alone: inputs already quantised),
  at the per-rank (N, K) of every GEMM class — QKV, O, gate-up, down — of Llama-3.1-8B (TP 1) and
  Llama-3.1-70B (TP 1, 2, 4, 8), M = 1 … 16384 (powers of two plus aiconfigurator's mid points);
- prefill attention: causal ``scaled_dot_product_attention`` over a fresh prompt (no cached
  prefix), GQA, with the flash backend (FlashAttention-2 inside PyTorch) and, where it runs, the
  cuDNN backend;
- decode attention: one query per sequence over a contiguous KV of length L (batch 1 … 256,
  L = 128 … 8192), same backends;
- HBM bandwidth (a large device-to-device copy, bytes read + written), the time of a tiny kernel
  (eager launches back to back, CUDA-graph replay, and a host launch + synchronise round trip), and
  the 8192³ bf16 / fp8 matrix-product peak;
- the Llama-3.1-8B bf16 GEMMs again with no flush (note ``no_l2_flush``) and with a flush that
  zeroes the buffer (``l2_flush_write``), and the 8B and 70B-TP8 bf16 GEMMs the way
  aiconfigurator's vLLM collector times them: six weight copies called in turn in one CUDA graph,
  no flush (``graph6``) — to show how much the timing method moves small-M GEMMs.

Each point: warm-up calls, then ``reps`` timed calls (adaptive: more for short kernels), each
preceded by summing a 512 MiB buffer (a read: it flushes the 50 MB L2 and leaves it full of clean
lines, as the previous kernels of a real step do, so weights and KV stream from HBM; zeroing it
instead leaves dirty lines the timed kernel must write back), timed with a CUDA event pair, all
reps enqueued behind a spin kernel (so no host-side gap lands inside a timed pair); the CSV holds
the median and the 10th/90th percentiles in microseconds. Inputs are random (never zeros). A JSON
sidecar next to the CSV records the GPU, driver, PyTorch/CUDA/cuDNN versions, UTC date, clocks and
power before and after (from nvidia-smi), the settings, correctness checks and any errors.

Leaves out: vLLM's own kernels (FA3 paged attention, CUTLASS FP8 with its activation
quantisation), the activation-quantisation kernel of W8A8, all-reduce (one GPU) and MoE.

Only the standard library and torch are used, so it runs on a bare GPU machine:

    python benchmarks/gpu_kernels/measure.py --out $OUT/h100_kernels.csv
    python benchmarks/gpu_kernels/measure.py --dry-run --out /tmp/k.csv     # tiny shapes, CPU ok

Model shapes below are the published config.json figures (hardware_profiles/models/*.yaml; a test
checks they match).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

#: Architecture of the measured models (hardware_profiles/models/*.yaml) and their TP degrees.
MODELS: dict[str, dict[str, Any]] = {
    "Llama-3.1-8B": {"hidden": 4096, "heads": 32, "kv_heads": 8, "head_dim": 128,
                     "inter": 14336, "tps": (1,)},
    "Llama-3.1-70B": {"hidden": 8192, "heads": 64, "kv_heads": 8, "head_dim": 128,
                      "inter": 28672, "tps": (1, 2, 4, 8)},
}
#: GEMM rows (M): powers of two and aiconfigurator's grid points in between.
M_GRID = sorted({2 ** i for i in range(15)} | {48, 96, 192, 768, 1536, 3072})
#: Prefill (batch, prompt length): aiconfigurator's context-attention grid, ≤ 65,536 tokens.
PREFILL_GRID = [(1, s) for s in (128, 256, 512, 1024, 2048, 4096, 8192, 16384)] + \
    [(4, s) for s in (256, 1024, 4096, 16384)] + [(16, s) for s in (128, 512, 2048)]
#: Decode batch sizes and KV lengths.
DECODE_BATCHES = (1, 4, 16, 64, 256)
DECODE_KV = (128, 512, 2048, 8192)

COLUMNS = ["kind", "dtype", "backend", "model", "tp", "gemm_class", "m", "n", "k", "batch",
           "q_len", "kv_len", "num_heads", "num_kv_heads", "head_dim", "median_us", "p10_us",
           "p90_us", "min_us", "reps", "flops", "bytes", "note"]
FLUSH_BYTES = 512 * 2 ** 20
FLUSH_MODES = ("read", "write", "none")
#: Row note per flush mode (the default, "read", leaves the note empty).
FLUSH_NOTE = {"read": "", "write": "l2_flush_write", "none": "no_l2_flush"}
SPIN_HZ = 1.98e9
"""Cycles per second assumed when sizing the spin kernel that holds the GPU while reps queue."""


def gemm_shapes(models: dict[str, dict[str, Any]] = MODELS) -> list[dict[str, Any]]:
    """Per-rank GEMM classes of each model and TP degree: (model, tp, class, N, K) — the weight of
    a linear layer is N × K, its input M × K (vLLM's layout, ``F.linear``)."""
    out = []
    for name, a in models.items():
        h, hd = a["hidden"], a["head_dim"]
        for tp in a["tps"]:
            q = a["heads"] // tp * hd
            kv = max(1, a["kv_heads"] // tp) * hd
            inter = a["inter"] // tp
            for cls, n, k in (("qkv", q + 2 * kv, h), ("o", h, q), ("gate_up", 2 * inter, h),
                              ("down", h, inter)):
                out.append({"model": name, "tp": tp, "gemm_class": cls, "n": n, "k": k})
    return out


def attention_layouts(models: dict[str, dict[str, Any]] = MODELS) -> list[dict[str, Any]]:
    """Per-rank head layouts (query heads, KV heads, head_dim) of each model and TP degree."""
    return [{"model": name, "tp": tp, "num_heads": a["heads"] // tp,
             "num_kv_heads": max(1, a["kv_heads"] // tp), "head_dim": a["head_dim"]}
            for name, a in models.items() for tp in a["tps"]]


def _tiny_models() -> dict[str, dict[str, Any]]:
    """The same models shrunk 64× (dry run): exercises every code path in seconds on a CPU."""
    return {n: {**a, "hidden": a["hidden"] // 64, "inter": a["inter"] // 64,
                "heads": a["heads"] // 4, "kv_heads": max(1, a["kv_heads"] // 4),
                "head_dim": 16, "tps": a["tps"][:2]} for n, a in MODELS.items()}


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    i = (len(s) - 1) * q
    lo, hi = math.floor(i), math.ceil(i)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def _nvidia_smi() -> dict[str, str]:
    """Clocks, power, temperature and driver as nvidia-smi reports them (empty if unavailable)."""
    fields = ["name", "driver_version", "pstate", "clocks.sm", "clocks.max.sm", "clocks.mem",
              "clocks.max.mem", "power.draw", "power.limit", "temperature.gpu"]
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": str(e)}
    if r.returncode != 0:
        return {"error": r.stderr.strip()[:200]}
    vals = [v.strip() for v in r.stdout.strip().splitlines()[0].split(",")]
    return dict(zip(fields, vals, strict=False))


class Bench:
    """Times one callable: warm-up, then ``reps`` calls, each after an L2 flush, between a CUDA
    event pair (host clock on a CPU dry run)."""

    def __init__(self, torch: Any, device: str, *, flush: str, target_s: float,
                 min_reps: int, max_reps: int, warmup: int) -> None:
        self.torch = torch
        self.cuda = device == "cuda"
        if flush not in FLUSH_MODES:
            raise ValueError(f"flush mode {flush!r} is not one of {', '.join(FLUSH_MODES)}")
        self.flush_mode = flush if self.cuda else "none"
        self.flush_buf = (torch.ones(FLUSH_BYTES, dtype=torch.uint8, device=device)
                          if self.flush_mode != "none" else None)
        self.target_s, self.min_reps, self.max_reps, self.warmup = \
            target_s, min_reps, max_reps, warmup

    def flush(self) -> None:
        """Evict L2: "read" sums the buffer (L2 left holding clean lines, as after the previous
        kernels of a forward pass), "write" zeroes it (L2 left full of dirty lines that the timed
        kernel must write back: slower than a real step), "none" does nothing."""
        if self.flush_mode == "read":
            self.flush_buf.sum(dtype=self.torch.int32)
        elif self.flush_mode == "write":
            self.flush_buf.zero_()

    def _once(self, fn: Callable[[], Any]) -> float:
        """Seconds of one call (flushed first)."""
        t = self.torch
        if not self.cuda:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        self.flush()
        s, e = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        return s.elapsed_time(e) * 1e-3

    def __call__(self, fn: Callable[[], Any]) -> dict[str, float]:
        t = self.torch
        for _ in range(self.warmup):
            fn()
        est = self._once(fn)
        reps = int(min(self.max_reps, max(self.min_reps, self.target_s / max(est, 1e-7))))
        if self.cuda:
            ev = [(t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True))
                  for _ in range(reps)]
            # NOTE: hold the GPU in a spin kernel while every rep is enqueued, so that no CPU-side
            # gap (Python dispatch, a descheduled thread) falls between an event pair: without it
            # a few points of a first run read 2-40x their repeat (seen on the H100 VM).
            if hasattr(t.cuda, "_sleep"):
                t.cuda._sleep(int(SPIN_HZ * (2e-3 + reps * 100e-6)))
            for s, e in ev:
                self.flush()
                s.record()
                fn()
                e.record()
            t.cuda.synchronize()
            us = [s.elapsed_time(e) * 1e3 for s, e in ev]
        else:
            us = [self._once(fn) * 1e6 for _ in range(reps)]
        return {"median_us": _pct(us, 0.5), "p10_us": _pct(us, 0.1), "p90_us": _pct(us, 0.9),
                "min_us": min(us), "reps": reps}


class Run:
    """One measurement session: CSV rows, sidecar metadata, errors, a time budget."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.torch = torch
        self.args = args
        self.t0 = time.monotonic()
        self.device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
        if self.device == "cpu" and not args.dry_run:
            sys.exit("measure.py: no CUDA device (use --dry-run to exercise the script on a CPU)")
        self.dry = args.dry_run
        self.models = _tiny_models() if self.dry else MODELS
        self.bench = Bench(torch, self.device, flush=args.flush,
                           target_s=0.002 if self.dry else args.target_ms * 1e-3,
                           min_reps=3 if self.dry else args.min_reps,
                           max_reps=5 if self.dry else args.max_reps,
                           warmup=1 if self.dry else args.warmup)
        self.rows: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.checks: dict[str, Any] = {}
        self.skipped: list[str] = []
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(20261124)
        self.out = args.out
        os.makedirs(os.path.dirname(os.path.abspath(self.out)) or ".", exist_ok=True)

    # ---- helpers ------------------------------------------------------------------------------
    def randn(self, *shape: int, dtype: Any = None, scale: float = 1.0) -> Any:
        t = self.torch
        x = t.randn(*shape, generator=self.gen, device=self.device, dtype=t.float32)
        if scale != 1.0:
            x.mul_(scale)
        return x.to(dtype or t.bfloat16)

    def over_budget(self) -> bool:
        return time.monotonic() - self.t0 > self.args.budget_s

    def add(self, kind: str, res: dict[str, float], **kw: Any) -> None:
        row = {c: "" for c in COLUMNS}
        row.update(kind=kind, **kw)
        row.update({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in res.items()})
        self.rows.append(row)

    def error(self, what: str, e: BaseException) -> None:
        msg = f"{what}: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        self.errors.append(msg)
        print("  error", msg, flush=True)

    def write(self) -> None:
        tmp = self.out + ".tmp"
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.out)
        side = os.path.splitext(self.out)[0] + ".json"
        with open(side, "w") as fh:
            json.dump(self.meta, fh, indent=1, sort_keys=True)

    # ---- environment ------------------------------------------------------------------------
    def environment(self) -> None:
        t = self.torch
        meta: dict[str, Any] = {
            "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "python": platform.python_version(), "torch": t.__version__,
            "cuda_runtime": t.version.cuda, "device": self.device, "dry_run": self.dry,
            "settings": {"warmup": self.bench.warmup, "min_reps": self.bench.min_reps,
                         "max_reps": self.bench.max_reps, "target_ms": self.bench.target_s * 1e3,
                         "l2_flush_bytes": FLUSH_BYTES if self.bench.flush_buf is not None else 0,
                         "l2_flush": self.bench.flush_mode,
                         "statistic": "median of reps, each call timed by a CUDA event pair",
                         "enqueue": "all reps queued behind torch.cuda._sleep"},
        }
        if self.device == "cuda":
            p = t.cuda.get_device_properties(0)
            meta["nvidia_smi_before"] = _nvidia_smi()
            meta.update({
                "gpu_name": p.name, "compute_capability": f"{p.major}.{p.minor}",
                "multiprocessors": p.multi_processor_count,
                "total_memory_gib": round(p.total_memory / 2 ** 30, 2),
                "l2_cache_bytes": getattr(p, "L2_cache_size", None),
                "cudnn": t.backends.cudnn.version(),
                "flash_sdp_available": bool(t.backends.cuda.is_flash_attention_available()),
                "tf32_matmul": bool(t.backends.cuda.matmul.allow_tf32),
            })
        self.meta = meta
        print(json.dumps({k: v for k, v in meta.items() if k != "settings"}), flush=True)

    # ---- sections ---------------------------------------------------------------------------
    def hbm_and_launch(self) -> None:
        t = self.torch
        n = (2 ** 20 if self.dry else 2 ** 30)  # bf16 elements: 2 GiB on the GPU
        try:
            src = self.randn(n)
            dst = t.empty_like(src)
            res = self.bench(lambda src=src, dst=dst: dst.copy_(src))
            nbytes = 2 * src.numel() * src.element_size()
            self.add("hbm_copy", res, dtype="bf16", backend="copy_", bytes=nbytes,
                     note="bytes = read + written")
            src = dst = None
        except Exception as e:
            self.error("hbm_copy", e)
        x = t.zeros(1, device=self.device)
        n_launch = 200 if self.dry else 2000
        try:
            # Eager launches back to back: events around the whole loop, per launch.
            for _ in range(10):
                x.add_(1.0)
            samples = []
            for _ in range(5):
                if self.device == "cuda":
                    t.cuda.synchronize()
                    s, e = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
                    s.record()
                    for _ in range(n_launch):
                        x.add_(1.0)
                    e.record()
                    e.synchronize()
                    samples.append(s.elapsed_time(e) * 1e3 / n_launch)
                else:
                    t0 = time.perf_counter()
                    for _ in range(n_launch):
                        x.add_(1.0)
                    samples.append((time.perf_counter() - t0) * 1e6 / n_launch)
            self.add("launch", {"median_us": _pct(samples, 0.5), "p10_us": _pct(samples, 0.1),
                                "p90_us": _pct(samples, 0.9), "min_us": min(samples),
                                "reps": len(samples)}, dtype="fp32", backend="eager",
                     note=f"per launch, {n_launch} tiny add_ kernels back to back")
            # Host round trip: launch one tiny kernel and synchronise.
            rt = []
            for _ in range(200):
                t0 = time.perf_counter()
                x.add_(1.0)
                if self.device == "cuda":
                    t.cuda.synchronize()
                rt.append((time.perf_counter() - t0) * 1e6)
            self.add("launch", {"median_us": _pct(rt, 0.5), "p10_us": _pct(rt, 0.1),
                                "p90_us": _pct(rt, 0.9), "min_us": min(rt), "reps": len(rt)},
                     dtype="fp32", backend="sync",
                     note="host clock: one tiny kernel launched and synchronised")
        except Exception as e:
            self.error("launch eager", e)
        if self.device == "cuda":
            try:
                s_ = t.cuda.Stream()
                s_.wait_stream(t.cuda.current_stream())
                with t.cuda.stream(s_):
                    for _ in range(3):
                        x.add_(1.0)
                t.cuda.current_stream().wait_stream(s_)
                g = t.cuda.CUDAGraph()
                per = 100
                with t.cuda.graph(g):
                    for _ in range(per):
                        x.add_(1.0)
                res = Bench(t, "cuda", flush="none", target_s=0.01, min_reps=20, max_reps=50,
                            warmup=3)(g.replay)
                self.add("launch", {k: (v / per if k != "reps" else v) for k, v in res.items()},
                         dtype="fp32", backend="graph",
                         note=f"per kernel, CUDA graph of {per} tiny add_ kernels replayed")
            except Exception as e:
                self.error("launch graph", e)

    def peak(self) -> None:
        t = self.torch
        n = 256 if self.dry else 8192
        try:
            a, b = self.randn(n, n), self.randn(n, n)
            res = self.bench(lambda: t.matmul(a, b))
            self.add("matmul_peak", res, dtype="bf16", backend="matmul", m=n, n=n, k=n,
                     flops=2 * n ** 3)
        except Exception as e:
            self.error("matmul_peak bf16", e)
        try:
            a8 = self.randn(n, n).to(t.float8_e4m3fn)
            b8 = self.randn(n, n).to(t.float8_e4m3fn)
            one = t.ones((), device=self.device, dtype=t.float32)
            res = self.bench(lambda: t._scaled_mm(a8, b8.t(), scale_a=one, scale_b=one,
                                                  out_dtype=t.bfloat16))
            self.add("matmul_peak", res, dtype="fp8", backend="_scaled_mm", m=n, n=n, k=n,
                     flops=2 * n ** 3)
        except Exception as e:
            self.error("matmul_peak fp8", e)

    def checks_(self) -> None:
        """Correctness of each measured kernel on fresh random inputs (relative Frobenius error
        against a float32 reference)."""
        t = self.torch
        F = t.nn.functional

        def rel(out: Any, ref: Any) -> float:
            out, ref = out.float(), ref.float()
            if not bool(t.isfinite(out).all()):
                return float("nan")
            return float((out - ref).norm() / ref.norm())

        try:
            x, w = self.randn(256, 512), self.randn(1024, 512)
            self.checks["gemm_bf16_rel_err"] = rel(F.linear(x, w), x.float() @ w.float().t())
        except Exception as e:
            self.error("check gemm bf16", e)
        try:
            x, w = self.randn(256, 512), self.randn(1024, 512)
            x8, w8 = x.to(t.float8_e4m3fn), w.to(t.float8_e4m3fn)
            one = t.ones((), device=self.device, dtype=t.float32)
            out = t._scaled_mm(x8, w8.t(), scale_a=one, scale_b=one, out_dtype=t.bfloat16)
            self.checks["gemm_fp8_rel_err_vs_dequantised"] = rel(
                out, x8.float() @ w8.float().t())
            self.checks["gemm_fp8_rel_err_vs_bf16_inputs"] = rel(out, x.float() @ w.float().t())
        except Exception as e:
            self.error("check gemm fp8", e)
        for name, backend in self._sdpa_backends():
            try:
                q, k, v = self.randn(2, 8, 128, 64), self.randn(2, 2, 128, 64), \
                    self.randn(2, 2, 128, 64)
                ref = F.scaled_dot_product_attention(
                    q.float(), k.float().repeat_interleave(4, 1), v.float().repeat_interleave(4, 1),
                    is_causal=True)
                out, note = self._sdpa(backend, q, k, v, causal=True)
                self.checks[f"prefill_{name}_rel_err"] = rel(out, ref)
                if note:
                    self.checks[f"prefill_{name}_note"] = note
            except Exception as e:
                self.error(f"check sdpa {name}", e)

    def _sdpa_backends(self) -> list[tuple[str, Any]]:
        if self.device != "cuda":
            return [("default", None)]
        from torch.nn.attention import SDPBackend

        return [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]

    def _sdpa_inputs(self, backend: Any, q: Any, k: Any, v: Any, *, causal: bool,
                     allow_expand: bool) -> tuple[Any, Any, bool, str]:
        """K, V and the GQA flag one SDPA call on ``backend`` runs with: native GQA, else (when
        the backend refuses it and ``allow_expand``) K and V expanded to the query heads —
        expanded here, outside any timing. Raises when the backend cannot run the call."""
        t = self.torch
        F = t.nn.functional
        try:
            F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
            return k, v, True, ""
        except RuntimeError:
            if not allow_expand or q.shape[1] == k.shape[1]:
                raise
        g = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
        F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return k, v, False, "kv_expanded"

    def _backend(self, backend: Any) -> Any:
        """Context manager restricting SDPA to ``backend`` (a no-op on the CPU dry run)."""
        import contextlib

        if backend is None:
            return contextlib.nullcontext()
        from torch.nn.attention import sdpa_kernel

        return sdpa_kernel([backend])

    def _sdpa(self, backend: Any, q: Any, k: Any, v: Any, *, causal: bool) -> tuple[Any, str]:
        """One SDPA call on ``backend`` (GQA native or expanded): (output, note)."""
        F = self.torch.nn.functional
        with self._backend(backend):
            k, v, gqa, note = self._sdpa_inputs(backend, q, k, v, causal=causal,
                                                allow_expand=True)
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                  enable_gqa=gqa), note

    def gemms(self, dtype: str, *, flush: str | None = None, only: str | None = None) -> None:
        """GEMMs of ``dtype`` at every model's shapes (``only``: one model's), L2 flushed before
        each timed call as ``flush`` says (default: the run's mode; another mode is noted in the
        rows)."""
        t = self.torch
        F = t.nn.functional
        shapes = [s for s in gemm_shapes(self.models) if only is None or s["model"] == only]
        bench = self.bench
        if flush is not None and flush != self.bench.flush_mode:
            bench = Bench(t, self.device, flush=flush, target_s=self.bench.target_s,
                          min_reps=self.bench.min_reps, max_reps=self.bench.max_reps,
                          warmup=self.bench.warmup)
        failures = 0
        grid = [m for m in M_GRID if m <= 64] if self.dry else M_GRID
        done: dict[tuple[int, int, int], dict[str, float]] = {}
        one = t.ones((), device=self.device, dtype=t.float32)
        for sh in shapes:
            n, k = sh["n"], sh["k"]
            if self.over_budget():
                self.skipped.append(f"gemm {dtype} {sh['model']} tp{sh['tp']} {sh['gemm_class']}")
                continue
            try:
                w = self.randn(n, k, scale=0.05)
                w8 = w.to(t.float8_e4m3fn) if dtype == "fp8" else None
            except Exception as e:
                self.error(f"gemm {dtype} alloc {n}x{k}", e)
                continue
            for m in grid:
                key = (m, n, k)
                res = done.get(key)
                if res is None:
                    try:
                        x = self.randn(m, k)
                        if dtype == "bf16":
                            def fn(x: Any = x, w: Any = w) -> Any:
                                return F.linear(x, w)
                        else:
                            x8 = x.to(t.float8_e4m3fn)

                            def fn(x8: Any = x8, w8: Any = w8) -> Any:
                                return t._scaled_mm(x8, w8.t(), scale_a=one, scale_b=one,
                                                    out_dtype=t.bfloat16)
                        res = bench(fn)
                        done[key] = res
                    except Exception as e:
                        self.error(f"gemm {dtype} m={m} n={n} k={k}", e)
                        failures += 1
                        if failures >= 10:
                            self.skipped.append(f"gemm {dtype}: the rest, after 10 failures")
                            return
                        continue
                self.add("gemm", res, dtype=dtype,
                         backend="F.linear" if dtype == "bf16" else "_scaled_mm",
                         model=sh["model"], tp=sh["tp"], gemm_class=sh["gemm_class"], m=m, n=n,
                         k=k, flops=2 * m * n * k,
                         bytes=(n * k + m * k) * (2 if dtype == "bf16" else 1) + 2 * m * n,
                         note=FLUSH_NOTE[bench.flush_mode] if self.device == "cuda" else "")
            w = w8 = None
        self.write()

    def gemms_graph(self, models: tuple[tuple[str, int], ...], copies: int = 6) -> None:
        """bf16 GEMMs timed the way aiconfigurator's vLLM collector times them: ``copies``
        layers with distinct weights called in turn inside one CUDA graph, no flush; the time per
        GEMM is the replay time / ``copies`` (rows noted ``graph6``)."""
        t = self.torch
        F = t.nn.functional
        shapes = [s for s in gemm_shapes(self.models) if (s["model"], s["tp"]) in models]
        grid = [m for m in M_GRID if m <= 64] if self.dry else M_GRID
        bench = Bench(t, self.device, flush="none", target_s=self.bench.target_s,
                      min_reps=self.bench.min_reps, max_reps=self.bench.max_reps,
                      warmup=self.bench.warmup)
        for sh in shapes:
            n, k = sh["n"], sh["k"]
            if self.over_budget():
                self.skipped.append(f"gemm graph {sh['model']} tp{sh['tp']} {sh['gemm_class']}")
                continue
            try:
                ws = [self.randn(n, k, scale=0.05) for _ in range(copies)]
            except Exception as e:
                self.error(f"gemm graph alloc {n}x{k}", e)
                continue
            for m in grid:
                try:
                    x = self.randn(m, k)

                    def calls(x: Any = x, ws: list[Any] = ws) -> None:
                        for w in ws:
                            F.linear(x, w)
                    if self.device == "cuda":
                        side = t.cuda.Stream()
                        side.wait_stream(t.cuda.current_stream())
                        with t.cuda.stream(side):
                            for _ in range(2):
                                calls()
                        t.cuda.current_stream().wait_stream(side)
                        g = t.cuda.CUDAGraph()
                        with t.cuda.graph(g):
                            calls()
                        res = bench(g.replay)
                    else:
                        res = bench(calls)
                except Exception as e:
                    self.error(f"gemm graph m={m} n={n} k={k}", e)
                    continue
                res = {key: (v / copies if key != "reps" else v) for key, v in res.items()}
                self.add("gemm", res, dtype="bf16", backend="F.linear", model=sh["model"],
                         tp=sh["tp"], gemm_class=sh["gemm_class"], m=m, n=n, k=k,
                         flops=2 * m * n * k, bytes=(n * k + m * k) * 2 + 2 * m * n,
                         note=f"graph{copies}")
            ws = []
        self.write()

    def attention(self, phase: str) -> None:
        F = self.torch.nn.functional
        layouts = attention_layouts(self.models)
        if self.dry:
            pre, bs, kvs = [(1, 64), (2, 32)], (1, 4), (32, 64)
        else:
            pre, bs, kvs = PREFILL_GRID, DECODE_BATCHES, DECODE_KV
        for name, backend in self._sdpa_backends():
            failed = False
            for lay in layouts:
                hq, hkv, d = lay["num_heads"], lay["num_kv_heads"], lay["head_dim"]
                pts = pre if phase == "prefill" else [(b, L) for b in bs for L in kvs]
                for b, s in pts:
                    if failed:
                        break
                    if self.over_budget():
                        self.skipped.append(f"{phase} {name} {lay['model']} tp{lay['tp']} "
                                            f"b={b} s={s}")
                        continue
                    q_len, kv_len = (s, s) if phase == "prefill" else (1, s)
                    try:
                        q = self.randn(b, hq, q_len, d)
                        kk, vv = self.randn(b, hkv, kv_len, d), self.randn(b, hkv, kv_len, d)
                        causal = phase == "prefill"
                        with self._backend(backend):
                            kk, vv, gqa, note = self._sdpa_inputs(
                                backend, q, kk, vv, causal=causal, allow_expand=causal)
                            res = self.bench(lambda q=q, kk=kk, vv=vv, gqa=gqa, causal=causal:
                                             F.scaled_dot_product_attention(
                                                 q, kk, vv, is_causal=causal, enable_gqa=gqa))
                    except Exception as e:
                        self.error(f"{phase} {name} hq={hq} hkv={hkv} b={b} s={s}", e)
                        if name != "flash":
                            failed = True
                            self.skipped.append(f"{phase} {name} (first failure above)")
                        continue
                    if phase == "prefill":
                        flops = 4 * d * hq * b * s * (s + 1) // 2
                        nbytes = 2 * b * s * d * (2 * hq + 2 * hkv)
                    else:
                        flops = 4 * d * hq * b * s
                        nbytes = 2 * b * d * (2 * hq + 2 * hkv * s)
                    self.add(f"{phase}_attention", res, dtype="bf16", backend=name,
                             model=lay["model"], tp=lay["tp"], batch=b, q_len=q_len,
                             kv_len=kv_len, num_heads=hq, num_kv_heads=hkv, head_dim=d,
                             flops=flops, bytes=nbytes, note=note)
                    q = kk = vv = None
        self.write()

    def finish(self) -> None:
        if self.device == "cuda":
            self.meta["nvidia_smi_after"] = _nvidia_smi()
        self.meta.update({"checks": self.checks, "errors": self.errors, "skipped": self.skipped,
                          "rows": len(self.rows),
                          "elapsed_s": round(time.monotonic() - self.t0, 1)})
        self.write()


def _summary(rows: list[dict[str, Any]]) -> None:
    """A short table for the end of the output."""
    def f(r: dict[str, Any], key: str) -> float:
        return float(r[key]) if r[key] not in ("", None) else float("nan")

    print(f"{'kind':<18} {'dtype':<5} {'backend':<10} {'rows':>5} {'best TFLOP/s':>13} "
          f"{'best GB/s':>10} {'min median us':>14}")
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["dtype"], r["backend"]), []).append(r)
    for (kind, dt, be), rs in groups.items():
        tf = max((f(r, "flops") / f(r, "median_us") / 1e6 for r in rs if r["flops"] != ""),
                 default=float("nan"))
        gb = max((f(r, "bytes") / f(r, "median_us") / 1e3 for r in rs if r["bytes"] != ""),
                 default=float("nan"))
        lo = min(f(r, "median_us") for r in rs)
        print(f"{kind:<18} {dt:<5} {be:<10} {len(rs):>5} {tf:>13.1f} {gb:>10.1f} {lo:>14.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="CSV to write (a .json sidecar goes beside it)")
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny shapes, few repeats; runs on a CPU (checks the script, not the GPU)")
    ap.add_argument("--cpu", action="store_true", help="force the CPU (with --dry-run)")
    ap.add_argument("--sections", default="hbm,peak,checks,gemm_bf16,gemm_fp8,prefill,decode,"
                    "gemm_noflush,gemm_writeflush,gemm_graph",
                    help="comma-separated sections to run")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="stop starting new points after this many seconds")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-reps", type=int, default=10)
    ap.add_argument("--max-reps", type=int, default=60)
    ap.add_argument("--target-ms", type=float, default=40.0,
                    help="timed calls per point ≈ this / one call's time, within the rep bounds")
    ap.add_argument("--flush", choices=FLUSH_MODES, default="read",
                    help="how L2 is flushed before each timed call (default: read)")
    args = ap.parse_args(argv)
    run = Run(args)
    run.environment()
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    steps: list[tuple[str, Callable[[], None]]] = [
        ("hbm", run.hbm_and_launch), ("peak", run.peak), ("checks", run.checks_),
        ("gemm_bf16", lambda: run.gemms("bf16")), ("gemm_fp8", lambda: run.gemms("fp8")),
        ("gemm_noflush", lambda: run.gemms("bf16", flush="none", only="Llama-3.1-8B")),
        ("gemm_writeflush", lambda: run.gemms("bf16", flush="write", only="Llama-3.1-8B")),
        ("gemm_graph", lambda: run.gemms_graph((("Llama-3.1-8B", 1), ("Llama-3.1-70B", 8)))),
        ("prefill", lambda: run.attention("prefill")), ("decode", lambda: run.attention("decode"))]
    for name, step in steps:
        if name not in sections:
            continue
        t0 = time.monotonic()
        step()
        print(f"[{name}] done in {time.monotonic() - t0:.1f} s "
              f"({len(run.rows)} rows so far, {time.monotonic() - run.t0:.0f} s total)",
              flush=True)
        run.write()
    run.finish()
    print(json.dumps({"checks": run.checks, "errors": run.errors[:20],
                      "skipped": run.skipped[:20]}, indent=None))
    _summary(run.rows)
    print(f"wrote {args.out} ({len(run.rows)} rows) and its .json sidecar")
    return 0


if __name__ == "__main__":
    sys.exit(main())
