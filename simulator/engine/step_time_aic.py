"""Step times from NVIDIA's measured kernel database: the ``aiconfigurator`` step-time backend.

What this models: one vLLM v1 engine step as the sum of the GPU kernels it launches, each kernel's
time looked up (and interpolated) in aiconfigurator's tables of kernels *measured* on real GPUs
with vLLM (package ``aiconfigurator-core``, Apache-2.0, optional extra
``servesim[aiconfigurator]``). It is a cross-check of, and an alternative to, the calibrated
roofline (:mod:`simulator.engine.step_time`), never a requirement: the package is imported only when
a scenario selects ``step_time.backend: aiconfigurator``.

How a :class:`~simulator.engine.scheduler.StepPlan` (prefill chunks and decodes in one flattened
batch, like vLLM v1) is mapped onto aiconfigurator's per-op queries of its compiled engine
(``EngineHandle.evaluate_context_ops`` / ``evaluate_generation_ops``; every value is already
summed over the model's layers):

- every op that is not attention (embedding, norms, QKV / O / MLP GEMMs, MoE router, dispatch
  and experts, TP all-reduces) is evaluated once for the whole step at M = the step's scheduled
  tokens T (``x = T``): vLLM runs these layers on the flattened batch of prefill and decode tokens
  together;
- the logits GEMM at M = the sequences in the step (one sampled row per sequence);
- prefill attention once per prefill chunk (batch 1, ``s`` = new tokens, ``prefix`` = tokens
  already in the cache), summed over the chunks;
- decode attention once for all decodes together (batch = number of decodes, ``s`` = their mean
  context + 1, rounded to ``CONTEXT_BUCKET`` tokens so that the shapes repeat);
- optionally (``step_time.aiconfigurator_cpu_overhead``, off by default) the CPU-side overhead
  per step, per sequence and per token (scheduling, input preparation, sampling) of the
  deployment's servesim calibration. NOTE: those terms were fitted together with the roofline's
  kernel terms, so they are the roofline's estimate of that cost; on aiconfigurator's measured
  end-to-end vLLM points the kernel times alone predict TPOT better (median |error| 13 % vs 22 %
  over 414 points, benchmarks/aiconfigurator_crosscheck.md) — vLLM hides most of that CPU work
  behind the GPU (CUDA graphs, asynchronous scheduling).

Leaves out: vLLM runs prefill and decode attention in one varlen kernel per layer (here they are
separate calls, so a mixed step pays the attention launch cost twice, and a step with several
prefill chunks once per chunk); the spread of decode contexts (decode attention is read at the
mean context, exact for bandwidth-bound kernels whose time is linear in the KV tokens read);
CUDA-graph padding of decode batches; expert parallelism as a choice (MoE experts are sharded by TP
as in the roofline, or — where aiconfigurator has no data for that, or the checkpoint's 128-wide
FP8 blocks cannot be split that many ways — spread by EP over the same GPUs, see
:attr:`AiconfiguratorStepTime.moe_layout`); aiconfigurator's own end-to-end corrections (queueing
factors, per-request dispatch overhead) — the simulator produces those effects itself. Coverage is
what the package measured: the NVIDIA systems in :data:`AIC_SYSTEMS` (vLLM 0.24.0 kernel data in
aiconfigurator-core 0.12; A100: 0.14.0, bf16 only) and the checkpoints in
:data:`AIC_CHECKPOINTS`; anything else is refused with a :class:`~simulator.errors.ConfigError`.

Repeated shapes are not re-queried: the shared ops are cached per (T, sequences), prefill
attention per (new tokens, context), decode attention per (decodes, context bucket). The values
depend only on the shape, so caching changes no result (determinism holds).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from simulator.engine.scheduler import StepPlan
from simulator.engine.step_time import split_plan
from simulator.errors import ConfigError
from simulator.profiles import Calibration

PIP_HINT = 'pip install "servesim[aiconfigurator]"'
"""How a user gets the optional package."""

#: servesim GPU profile name → aiconfigurator system (vLLM kernel data shipped for it).
AIC_SYSTEMS: dict[str, str] = {
    "H100-SXM": "h100_sxm",
    "H200-SXM": "h200_sxm",
    "B200": "b200_sxm",
    "A100-80G": "a100_sxm",
    "L40S": "l40s",
}

#: (servesim model, weight dtype) → (aiconfigurator model id, GEMM quant mode, MoE quant mode).
#: ``None`` quant modes: as the checkpoint's own quantisation config says (aiconfigurator infers
#: them; e.g. Qwen3 and MiniMax FP8 checkpoints are 128×128 block-scaled, ``fp8_block``, whose
#: vLLM kernels are much slower at small batches than per-tensor FP8). Every id is a config
#: shipped inside the package — aiconfigurator would download any other from Hugging Face.
#: NOTE: MiniMax-M2 maps to MiniMax-M2.5 (same architecture; the package ships no M2 config).
#: Not covered: Llama-2-70B and Mixtral-8x7B (no shipped config), int4 weights (no vLLM int4
#: GEMM data).
AIC_CHECKPOINTS: dict[tuple[str, str], tuple[str, str | None, str | None]] = {
    ("Llama-3.1-8B", "bf16"): ("meta-llama/Meta-Llama-3.1-8B", "bfloat16", "bfloat16"),
    ("Llama-3.1-8B", "fp8"): ("meta-llama/Meta-Llama-3.1-8B", "fp8", "fp8"),
    ("Llama-3.1-70B", "bf16"): ("meta-llama/Meta-Llama-3.1-70B", "bfloat16", "bfloat16"),
    ("Llama-3.1-70B", "fp8"): ("nvidia/Llama-3.1-70B-Instruct-FP8", None, None),
    ("Llama-3.1-405B", "bf16"): ("meta-llama/Meta-Llama-3.1-405B", "bfloat16", "bfloat16"),
    ("Llama-3.1-405B", "fp8"): ("meta-llama/Meta-Llama-3.1-405B", "fp8", "fp8"),
    ("Qwen3-32B", "bf16"): ("Qwen/Qwen3-32B", "bfloat16", "bfloat16"),
    ("Qwen3-32B", "fp8"): ("Qwen/Qwen3-32B-FP8", None, None),
    ("Qwen3-30B-A3B", "bf16"): ("Qwen/Qwen3-30B-A3B", "bfloat16", "bfloat16"),
    ("Qwen3-30B-A3B", "fp8"): ("Qwen/Qwen3-30B-A3B-FP8", None, None),
    ("Qwen3-235B-A22B", "bf16"): ("Qwen/Qwen3-235B-A22B", "bfloat16", "bfloat16"),
    ("Qwen3-235B-A22B", "fp8"): ("Qwen/Qwen3-235B-A22B-FP8", None, None),
    ("gpt-oss-120b", "fp4"): ("openai/gpt-oss-120b", None, None),
    ("gpt-oss-120b", "bf16"): ("openai/gpt-oss-120b", "bfloat16", "bfloat16"),
    ("MiniMax-M2", "fp8"): ("MiniMaxAI/MiniMax-M2.5", None, None),
}

#: servesim KV-cache dtype → aiconfigurator KV-cache quant mode.
AIC_KV_DTYPES: dict[str, str] = {"bf16": "bfloat16", "fp8": "fp8"}

CONTEXT_BUCKET = 16
"""Decode attention is read at the mean context rounded to this many tokens (vLLM's KV block
size): within a bucket the kernel time changes by well under 1 %, and the rounding lets decode
steps of similar shape share one query."""

_CACHE_LIMIT = 200_000
"""Entries per shape cache before it is emptied (bounds memory on very long runs)."""


def _unsupported(what: str, value: str, known: dict[str, str] | dict[str, Any]) -> ConfigError:
    return ConfigError(
        f"step_time.backend: aiconfigurator does not cover {what} {value!r}; supported: "
        f"{', '.join(sorted(known))}; use step_time.backend: roofline")


def import_aiconfigurator() -> Any:
    """The ``aiconfigurator_core.sdk`` module, or a one-line ConfigError saying how to install it."""
    try:
        import aiconfigurator_core.sdk as sdk
    except ImportError:
        raise ConfigError(
            "step_time.backend: 'aiconfigurator' needs the optional package aiconfigurator-core, "
            f"which is not installed; {PIP_HINT} or use step_time.backend: roofline") from None
    return sdk


@contextlib.contextmanager
def _quiet_aic_logs() -> Iterator[None]:
    """Silence aiconfigurator's INFO/WARNING chatter (e.g. notes on low-fidelity fallback tables
    for kernels this model never uses) while it loads its database."""
    log = logging.getLogger("aiconfigurator_core")
    before = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(before)


@dataclass(frozen=True)
class _Engine:
    """A compiled aiconfigurator engine and where its ops are in the context op list."""

    handle: Any
    shared: tuple[int, ...]
    """Context-op indices of everything but attention and the logits GEMM."""
    logits: tuple[int, ...]
    ctx_attn: tuple[int, ...]
    gen_attn: tuple[int, ...]
    moe_layout: str


_ENGINES: dict[tuple[Any, ...], _Engine] = {}
"""Compiled engines by configuration (compiling takes about a second; sweeps and validation build
the same deployment many times in one process)."""


def _op_names(handle: Any, phase: str) -> list[str]:
    """Op names of the compiled context or generation op list, in order."""
    evaluate = handle.evaluate_context_ops if phase == "context" else \
        handle.evaluate_generation_ops
    names: list[str] = []
    while True:
        try:
            names.append(evaluate([len(names)], batch_size=1, s=1)[0][0])
        except ValueError as err:
            if "out of range" in str(err):
                return names
            raise


def _compile(model_id: str, system: str, tp: int, gemm: str | None, moe: str | None, kv: str,
             version: str | None, is_moe: bool) -> _Engine:
    key = (model_id, system, tp, gemm, moe, kv, version)
    if key in _ENGINES:
        return _ENGINES[key]
    sdk = import_aiconfigurator()
    from aiconfigurator_core.sdk.common import DefaultHFModels
    from aiconfigurator_core.sdk.errors import PerfDataNotAvailableError

    if model_id not in DefaultHFModels:  # it would try to download the config: never do that
        raise ConfigError(f"step_time.backend: this aiconfigurator-core release ships no config "
                          f"for {model_id}; use step_time.backend: roofline")

    # NOTE: servesim shards MoE experts by TP; aiconfigurator measured some MoE models only with
    # experts spread by EP over the same GPUs (e.g. MiniMax TP4 EP4), so that layout is the
    # fallback. Per rank the expert bytes and FLOPs are the same under uniform routing.
    layouts = [("tp", tp, 1), ("ep", 1, tp)] if is_moe and tp > 1 else [("tp", tp, 1)]
    last: Exception | None = None
    for layout, moe_tp, moe_ep in layouts:
        try:
            with _quiet_aic_logs():
                handle = sdk.EngineHandle.compile(
                    model_id, system, "vllm", backend_version=version, tp_size=tp,
                    moe_tp_size=moe_tp, moe_ep_size=moe_ep, gemm_quant_mode=gemm,
                    moe_quant_mode=moe, kvcache_quant_mode=kv)
                ctx = _op_names(handle, "context")
                gen = _op_names(handle, "generation")
                eng = _Engine(
                    handle,
                    shared=tuple(i for i, n in enumerate(ctx)
                                 if "attention" not in n and not n.endswith("logits_gemm")),
                    logits=tuple(i for i, n in enumerate(ctx) if n.endswith("logits_gemm")),
                    ctx_attn=tuple(i for i, n in enumerate(ctx) if n == "context_attention"),
                    gen_attn=tuple(i for i, n in enumerate(gen) if n == "generation_attention"),
                    moe_layout=layout)
                # Probe every op once: missing kernel data is a property of the configuration,
                # not of the shape, so it surfaces here rather than mid-simulation.
                handle.evaluate_context_ops(list(range(len(ctx))), batch_size=1, s=64, prefix=64)
                handle.evaluate_generation_ops(list(eng.gen_attn), batch_size=4, s=128)
        except Exception as err:  # missing kernel data, unlisted version, unshardable layout …
            last = err
            continue
        _ENGINES[key] = eng
        return eng
    detail = str(last).splitlines()[0] if last else ""
    what = "has no measured kernels for" if isinstance(last, PerfDataNotAvailableError) else \
        "refused"
    raise ConfigError(f"step_time.backend: aiconfigurator {what} {model_id} on {system} with tp "
                      f"{tp}, weights {gemm or 'as the checkpoint'}, KV {kv} ({detail}); use "
                      f"step_time.backend: roofline")


class AiconfiguratorStepTime:
    """Step time = Σ aiconfigurator's measured kernel times for the plan (see module docstring)."""

    def __init__(self, *, model: str, gpu: str, tp: int, weight_dtype: str, kv_dtype: str,
                 is_moe: bool, calibration: Calibration | None = None,
                 version: str | None = None) -> None:
        """``model`` / ``gpu``: servesim profile names; ``calibration``: the CPU-side overhead
        (step, per sequence, per token) to add to the kernel times, or None for kernels only;
        ``version``: aiconfigurator's vLLM data version (None: its current one)."""
        if gpu not in AIC_SYSTEMS:
            raise _unsupported("GPU", gpu, AIC_SYSTEMS)
        if kv_dtype not in AIC_KV_DTYPES:
            raise _unsupported("KV-cache dtype", kv_dtype, AIC_KV_DTYPES)
        if (model, weight_dtype) not in AIC_CHECKPOINTS:
            raise ConfigError(
                f"step_time.backend: aiconfigurator does not cover {model} with {weight_dtype} "
                f"weights; supported: "
                f"{', '.join(f'{m} {d}' for m, d in AIC_CHECKPOINTS)}; use step_time.backend: "
                f"roofline")
        self.system = AIC_SYSTEMS[gpu]
        self.model_id, gemm, moe = AIC_CHECKPOINTS[(model, weight_dtype)]
        self._eng = _compile(self.model_id, self.system, tp, gemm, moe, AIC_KV_DTYPES[kv_dtype],
                             version, is_moe)
        self.moe_layout = self._eng.moe_layout
        """``tp`` (experts sharded by TP, as servesim models it) or ``ep`` (aiconfigurator had
        data only for experts spread by EP over the same GPUs)."""
        c = calibration
        self._overhead = ((c.step_overhead_us, c.per_seq_overhead_us, c.per_token_overhead_us)
                          if c is not None else (0.0, 0.0, 0.0))
        self._shared: dict[tuple[int, int], float] = {}
        self._prefill: dict[tuple[int, int], float] = {}
        self._decode: dict[tuple[int, int], float] = {}
        self.queries = 0
        """Kernel-table queries made so far (cache misses; for tests and diagnostics)."""

    # --------------------------------------------------------------------------------------------
    @staticmethod
    def _ms(rows: list[tuple[Any, ...]]) -> float:
        return float(sum(r[1] for r in rows))

    @staticmethod
    def _put(cache: dict[tuple[int, int], float], key: tuple[int, int], value: float) -> float:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value
        return value

    def shared_ms(self, num_tokens: int, num_seqs: int) -> float:
        """Non-attention ops at M = ``num_tokens`` plus the logits GEMM on ``num_seqs`` rows (ms)."""
        key = (num_tokens, num_seqs)
        hit = self._shared.get(key)
        if hit is not None:
            return hit
        self.queries += 1
        h, e = self._eng.handle, self._eng
        ms = self._ms(h.evaluate_context_ops(list(e.shared), batch_size=1, s=num_tokens,
                                             x=num_tokens))
        if e.logits:
            ms += self._ms(h.evaluate_context_ops(list(e.logits), batch_size=num_seqs, s=1))
        return self._put(self._shared, key, ms)

    def prefill_attention_ms(self, new_tokens: int, context: int) -> float:
        """Attention of one prefill chunk of ``new_tokens`` after ``context`` cached tokens (ms)."""
        key = (new_tokens, context)
        hit = self._prefill.get(key)
        if hit is not None:
            return hit
        self.queries += 1
        ms = self._ms(self._eng.handle.evaluate_context_ops(
            list(self._eng.ctx_attn), batch_size=1, s=new_tokens, prefix=context))
        return self._put(self._prefill, key, ms)

    def decode_attention_ms(self, num_decodes: int, mean_context: float) -> float:
        """Attention of ``num_decodes`` one-token entries at mean context ``mean_context`` (ms)."""
        kv = max(CONTEXT_BUCKET, round((mean_context + 1) / CONTEXT_BUCKET) * CONTEXT_BUCKET)
        key = (num_decodes, kv)
        hit = self._decode.get(key)
        if hit is not None:
            return hit
        self.queries += 1
        ms = self._ms(self._eng.handle.evaluate_generation_ops(
            list(self._eng.gen_attn), batch_size=num_decodes, s=kv))
        return self._put(self._decode, key, ms)

    def predict_totals(self, num_tokens: int, num_seqs: int, decode_ctx: int,
                       prefill: list[tuple[int, int]]) -> float:
        """Seconds of a step given its totals: ``decode_ctx`` is the summed context of the
        one-token entries, ``prefill`` the (new tokens, context) of the others. The same number as
        :meth:`predict` of that step, bit for bit (the replica's decode fast path uses it)."""
        if num_tokens <= 0:
            return 0.0
        parts = [self.shared_ms(num_tokens, num_seqs)]
        parts += [self.prefill_attention_ms(n, ctx) for n, ctx in prefill]
        n_dec = num_seqs - len(prefill)
        if n_dec > 0:
            parts.append(self.decode_attention_ms(n_dec, decode_ctx / n_dec))
        step_us, seq_us, tok_us = self._overhead
        # NOTE: fsum is exactly rounded, so the order the chunks come in cannot change the result.
        return math.fsum(parts) * 1e-3 + (step_us + seq_us * num_seqs + tok_us * num_tokens) * 1e-6

    def predict(self, plan: StepPlan) -> float:
        if plan.num_tokens <= 0:
            return 0.0
        dec_ctx, prefill = split_plan(plan)
        return self.predict_totals(plan.num_tokens, plan.num_seqs, dec_ctx, prefill)
