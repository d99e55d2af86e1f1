"""One ``vllm serve`` process as scenario fields, and back.

What this mirrors: the engine vLLM builds from its command line — which checkpoint in which
precision, how many GPUs per replica (tensor parallelism; data parallelism as more replicas), and
the scheduler and KV-cache settings after vLLM has filled in its defaults for the version family and
the GPU (:mod:`simulator.deploy.vllm_args`). The import writes every engine field explicitly, so the
scenario says what the server really runs; the export writes every modelled flag explicitly, so the
manifest pins what was simulated whatever vLLM's defaults become.

Leaves out: pipeline parallelism (refused: the simulator models a replica as one TP group),
speculative decoding, LoRA, CPU offload, eager mode and the other flags listed as not modelled in the
scenario's header comment.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from simulator.deploy.hf_models import hf_id_for, profile_for
from simulator.deploy.vllm_args import (
    BLOCK_SIZES,
    KV_DTYPE,
    Family,
    ServeArgs,
    as_float,
    as_int,
    human_readable_int,
    weight_dtype_of,
)
from simulator.errors import ConfigError


@dataclass
class Imported:
    """A scenario fragment plus the header comment that says where it came from."""

    data: dict[str, Any] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)
    """Comment lines (without ``#``)."""


def serve_to_scenario(args: ServeArgs, fam: Family, gpu: str, *, replicas: int = 1,
                      env: dict[str, str] | None = None, model_profile: str | None = None,
                      command: str | None = None) -> Imported:
    """Map a parsed command line to ``model`` / ``fleet`` / ``engine`` (vLLM's defaults of
    ``fam`` on ``gpu`` for every flag not given)."""
    from simulator.profiles import load_gpu, load_model

    assert args.model is not None
    prof = model_profile or profile_for(args.model)
    mp = load_model(prof)
    g = load_gpu(gpu)
    v = args.values
    notes: list[str] = []
    no_effect = list(args.no_effect)

    tp = as_int("tensor-parallel-size", v.get("tensor-parallel-size", 1))
    pp = as_int("pipeline-parallel-size", v.get("pipeline-parallel-size", 1))
    if pp != 1:
        raise ConfigError(f"vllm serve --pipeline-parallel-size {pp}: pipeline parallelism is not "
                          f"modelled (a replica is one tensor-parallel group); use "
                          f"--tensor-parallel-size {tp * pp} to simulate the same GPUs")
    dp = as_int("data-parallel-size", v.get("data-parallel-size", 1))
    if dp < 1 or tp < 1:
        raise ConfigError("vllm serve: --tensor-parallel-size and --data-parallel-size must be >= 1")
    if dp > 1:
        notes.append(f"--data-parallel-size {dp}: {dp} engines per pod, simulated as {dp} replicas "
                     f"per pod ({replicas * dp} in all)")

    engine_kind: str = fam.engine
    e = dict(env or {})
    if "VLLM_USE_V1" in e:
        want = "v0" if str(e["VLLM_USE_V1"]).strip() in ("0", "false", "False") else "v1"
        if want == "v0" and fam.name not in ("v0", "0.8"):
            raise ConfigError(f"env VLLM_USE_V1={e['VLLM_USE_V1']}: vLLM {fam.name} has no V0 "
                              f"engine; give --vllm-version of the server (0.8–0.10 still had it)")
        engine_kind = want
        notes.append(f"env VLLM_USE_V1={e['VLLM_USE_V1']}: the {want.upper()} engine")

    max_model_len = (human_readable_int("max-model-len", v["max-model-len"])
                     if "max-model-len" in v else None)
    eff_len = max_model_len or mp.max_position_embeddings

    steps = as_int("num-scheduler-steps", v.get("num-scheduler-steps", 1))
    if steps > 1 and engine_kind == "v1":
        engine_kind = "v0"
        notes.append(f"--num-scheduler-steps {steps}: multi-step scheduling runs on the V0 engine "
                     f"(vLLM {fam.name} falls back to V0)")

    if engine_kind == "v1":
        chunked = True
        if v.get("enable-chunked-prefill") is False:
            no_effect.append("--no-enable-chunked-prefill (vLLM's V1 engine always chunks "
                             "prefills of generative models)")
        prefix = bool(v.get("enable-prefix-caching", True))
    else:
        chunked = bool(v.get("enable-chunked-prefill", eff_len > 32768))
        prefix = bool(v.get("enable-prefix-caching", False))

    def_tokens, def_seqs = fam.batch_defaults(g.name, g.memory_gb, chunked, eff_len)
    tokens = (human_readable_int("max-num-batched-tokens", v["max-num-batched-tokens"])
              if "max-num-batched-tokens" in v else def_tokens)
    if "max-num-seqs" in v:
        seqs = as_int("max-num-seqs", v["max-num-seqs"])
    else:
        seqs = min(def_seqs, tokens) if fam.engine == "v1" and fam.name != "0.8" else def_seqs

    block = as_int("block-size", v.get("block-size", 16))
    if block not in BLOCK_SIZES:
        raise ConfigError(f"vllm serve --block-size {block}: vLLM accepts "
                          f"{', '.join(map(str, BLOCK_SIZES))}")
    policy = str(v.get("scheduling-policy", "fcfs"))
    if policy not in ("fcfs", "priority"):
        raise ConfigError(f"vllm serve --scheduling-policy {policy}: expected fcfs or priority")
    kv = str(v.get("kv-cache-dtype", "auto"))
    if kv not in fam.kv_cache_dtypes:
        raise ConfigError(f"vllm serve --kv-cache-dtype {kv}: vLLM {fam.name} takes "
                          f"{', '.join(fam.kv_cache_dtypes)}")
    for name in ("swap-space", "cpu-offload-gb"):
        if name in v:
            amount = as_float(name, v[name])
            text = f"--{name} {v[name]}"
            if name == "cpu-offload-gb" and amount > 0:
                args.not_modelled.append(text)
            else:
                no_effect.append(text + (" (preemption recomputes; swap is not used)"
                                         if name == "swap-space" else ""))

    engine: dict[str, Any] = {
        "max_num_seqs": seqs,
        "max_num_batched_tokens": tokens,
        "max_model_len": max_model_len,
        "enable_chunked_prefill": chunked,
        "long_prefill_token_threshold": as_int("long-prefill-token-threshold",
                                               v.get("long-prefill-token-threshold", 0)),
        "enable_prefix_caching": prefix,
        "block_size": block,
        "gpu_memory_utilization": as_float("gpu-memory-utilization",
                                           v.get("gpu-memory-utilization",
                                                 fam.gpu_memory_utilization)),
        "scheduling_policy": policy,
        "scheduler": engine_kind,
    }
    if "api-server-count" in v:
        engine["api_server"] = {"api_server_count": as_int("api-server-count",
                                                           v["api-server-count"])}
    if max_model_len is None:
        del engine["max_model_len"]
    if steps > 1:
        engine["num_scheduler_steps"] = steps
    model: dict[str, Any] = {"name": prof}
    wdt = weight_dtype_of(args, args.model)
    if wdt is not None:
        model["weight_dtype"] = wdt
    model["kv_cache_dtype"] = KV_DTYPE[kv]
    data = {"model": model,
            "fleet": {"gpu": g.name, "tp": tp, "replicas": replicas * dp},
            "engine": engine}
    header = [f"imported by `servesim import vllm` with vLLM {fam.name} defaults ({fam.source})"]
    if command:
        header.append(f"command: {command}")
    header += [f"note: {n}" for n in notes]
    header.append("not modelled: " + (" ".join(args.not_modelled) or "(none)"))
    if no_effect:
        header.append("no effect on the simulation: " + " ".join(no_effect))
    if args.unknown:
        header.append("not recognised (--allow-unknown): " + " ".join(args.unknown))
    return Imported(data, header)


# --------------------------------------------------------------------------------------------
# Export: scenario fields → vllm serve arguments
# --------------------------------------------------------------------------------------------

_KV_FLAG = {"bf16": "bfloat16", "fp16": "float16", "fp8": "fp8"}
_QUANT_FLAG = {"fp8": "fp8", "int4": "awq_marlin"}


def scenario_to_serve(model: str, weight_dtype: str | None, kv_cache_dtype: str, tp: int,
                      engine: Any, fam: Family) -> tuple[list[str], dict[str, str], list[str]]:
    """(``vllm serve`` arguments after the program name, container env, comments) for one pool.

    ``engine`` is an :class:`simulator.config.EngineConfig`; every modelled flag is written."""
    from simulator.profiles import load_model

    mp = load_model(model)
    notes: list[str] = []
    args: list[str] = [hf_id_for(model), "--tensor-parallel-size", str(tp)]
    wdt = weight_dtype or mp.native_dtype
    if wdt != mp.native_dtype:
        if wdt in _QUANT_FLAG:
            args += ["--quantization", _QUANT_FLAG[wdt]]
            if wdt == "int4":
                notes.append(f"int4: point the model at an AWQ checkpoint of {mp.hf_id}")
        elif wdt in ("bf16", "fp16"):
            args += ["--dtype", "bfloat16" if wdt == "bf16" else "float16"]
        else:
            raise ConfigError(f"model.weight_dtype {wdt}: no vLLM flag turns {mp.hf_id} into {wdt} "
                              f"weights; serve a {wdt} checkpoint and import its command line")
    native_kv = "fp16" if mp.native_dtype == "fp16" else "bf16"
    kv = native_kv if kv_cache_dtype == "auto" else kv_cache_dtype
    if kv != native_kv:
        flag = _KV_FLAG[kv]
        if flag not in fam.kv_cache_dtypes:
            raise ConfigError(f"model.kv_cache_dtype {kv_cache_dtype}: vLLM {fam.name} takes "
                              f"--kv-cache-dtype {', '.join(fam.kv_cache_dtypes)}")
        args += ["--kv-cache-dtype", flag]
    env: dict[str, str] = {}
    if engine.scheduler == "v0" and fam.engine == "v1":
        if fam.name != "0.8":
            raise ConfigError(f"engine.scheduler v0: vLLM {fam.name} has no V0 engine; export "
                              f"with --vllm-version v0 (or 0.8, with VLLM_USE_V1=0)")
        env["VLLM_USE_V1"] = "0"
    if engine.scheduler == "v1" and fam.engine == "v0":
        raise ConfigError("engine.scheduler v1: vLLM <= 0.7 runs the V0 engine; export with "
                          "--vllm-version 0.8 or later")
    if not engine.enable_chunked_prefill and engine.scheduler == "v1":
        raise ConfigError("engine.enable_chunked_prefill false: vLLM's V1 engine always chunks "
                          "prefills of generative models; enable it, or simulate the V0 engine "
                          "(engine.scheduler v0) and export with --vllm-version v0")
    args += ["--max-num-seqs", str(engine.max_num_seqs),
             "--max-num-batched-tokens", str(engine.max_num_batched_tokens)]
    if engine.max_model_len is not None:
        args += ["--max-model-len", str(engine.max_model_len)]
    args += ["--gpu-memory-utilization", _num(engine.gpu_memory_utilization),
             "--block-size", str(engine.block_size),
             "--enable-prefix-caching" if engine.enable_prefix_caching
             else "--no-enable-prefix-caching",
             "--enable-chunked-prefill" if engine.enable_chunked_prefill
             else "--no-enable-chunked-prefill",
             "--long-prefill-token-threshold", str(engine.long_prefill_token_threshold),
             "--scheduling-policy", engine.scheduling_policy]
    if engine.num_scheduler_steps > 1:
        args += ["--num-scheduler-steps", str(engine.num_scheduler_steps)]
    if engine.api_server.api_server_count > 1:
        args += ["--api-server-count", str(engine.api_server.api_server_count)]
    return args, env, notes


def _num(x: float) -> str:
    return f"{x:g}"


def command_line(args: list[str]) -> str:
    return shlex.join(["vllm", "serve", *args])
