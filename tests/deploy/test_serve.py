"""A `vllm serve` command line ↔ scenario fields (simulator.deploy.serve)."""

from __future__ import annotations

import pytest

from simulator.config import EngineConfig, scenario_from_dict
from simulator.deploy.serve import scenario_to_serve, serve_to_scenario
from simulator.deploy.vllm_args import FAMILIES, parse_serve
from simulator.errors import ConfigError

F11 = FAMILIES["0.11"]


def imp(cmd: str, gpu: str = "H100-SXM", fam: str = "0.11", **kw):  # type: ignore[no-untyped-def]
    f = FAMILIES[fam]
    return serve_to_scenario(parse_serve(cmd, f), f, gpu, **kw)


def test_absent_flags_take_vllm_defaults_written_explicitly() -> None:
    i = imp("vllm serve meta-llama/Llama-3.1-8B-Instruct")
    assert i.data["model"] == {"name": "Llama-3.1-8B", "kv_cache_dtype": "auto"}
    assert i.data["fleet"] == {"gpu": "H100-SXM", "tp": 1, "replicas": 1}
    assert i.data["engine"] == {
        "max_num_seqs": 1024, "max_num_batched_tokens": 8192, "enable_chunked_prefill": True,
        "long_prefill_token_threshold": 0, "enable_prefix_caching": True, "block_size": 16,
        "gpu_memory_utilization": 0.9, "scheduling_policy": "fcfs", "scheduler": "v1"}
    assert "not modelled: (none)" in i.header
    # the V0 engine's defaults differ: prefix caching off, 256 sequences, whole prompts
    v0 = imp("vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 8192", fam="v0")
    assert v0.data["engine"]["enable_prefix_caching"] is False
    assert v0.data["engine"]["enable_chunked_prefill"] is False
    assert v0.data["engine"]["max_num_batched_tokens"] == 8192
    assert v0.data["engine"]["scheduler"] == "v0"
    # with max_num_batched_tokens given, 0.11 caps max_num_seqs at it
    assert imp("vllm serve Qwen/Qwen3-32B --max-num-batched-tokens 512").data["engine"][
        "max_num_seqs"] == 512


def test_unmodelled_flags_are_listed_not_dropped() -> None:
    i = imp("vllm serve Qwen/Qwen3-32B --enforce-eager --speculative-config "
            "'{\"method\": \"ngram\"}' --cpu-offload-gb 8 --swap-space 16 --port 9000")
    assert i.header[-2] == ("not modelled: --enforce-eager --speculative-config "
                            "'{\"method\": \"ngram\"}' --cpu-offload-gb 8")
    assert i.header[-1].startswith("no effect on the simulation: --port 9000 --swap-space 16")


def test_precision_flags() -> None:
    assert imp("vllm serve meta-llama/Llama-3.1-70B-Instruct -tp 2 -q fp8").data["model"][
        "weight_dtype"] == "fp8"
    assert imp("vllm serve Qwen/Qwen3-32B-AWQ").data["model"]["weight_dtype"] == "int4"
    i = imp("vllm serve RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8 --kv-cache-dtype fp8_e4m3")
    assert i.data["model"] == {"name": "Llama-3.1-8B", "weight_dtype": "fp8",
                               "kv_cache_dtype": "fp8"}
    assert imp("vllm serve Qwen/Qwen3-32B --dtype half").data["model"]["weight_dtype"] == "fp16"
    with pytest.raises(ConfigError, match="--quantization gguf: not modelled"):
        imp("vllm serve Qwen/Qwen3-32B --quantization gguf")
    with pytest.raises(ConfigError, match=r"vLLM 0\.8 takes auto, fp8"):
        imp("vllm serve Qwen/Qwen3-32B --kv-cache-dtype bfloat16", fam="0.8")


def test_parallelism() -> None:
    with pytest.raises(ConfigError, match=r"pipeline parallelism is not modelled.*"
                                          r"--tensor-parallel-size 4"):
        imp("vllm serve meta-llama/Llama-3.1-70B-Instruct -tp 2 -pp 2")
    i = imp("vllm serve meta-llama/Llama-3.1-8B-Instruct -dp 4", replicas=2)
    assert i.data["fleet"]["replicas"] == 8
    assert any("data-parallel-size 4" in h for h in i.header)


def test_v1_always_chunks_and_env_selects_v0() -> None:
    i = imp("vllm serve Qwen/Qwen3-32B --no-enable-chunked-prefill")
    assert i.data["engine"]["enable_chunked_prefill"] is True
    assert "always chunks" in i.header[-1]
    v0 = imp("vllm serve Qwen/Qwen3-32B --max-model-len 8192", fam="0.8",
             env={"VLLM_USE_V1": "0"})
    assert v0.data["engine"]["scheduler"] == "v0"
    with pytest.raises(ConfigError, match=r"vLLM 0\.11 has no V0 engine"):
        imp("vllm serve Qwen/Qwen3-32B", env={"VLLM_USE_V1": "0"})


def test_export_arguments_parse_back_to_the_same_engine() -> None:
    eng = EngineConfig(max_num_seqs=96, max_num_batched_tokens=4096, max_model_len=16384,
                       enable_prefix_caching=False, block_size=32, gpu_memory_utilization=0.85,
                       scheduling_policy="priority", long_prefill_token_threshold=1024)
    args, env, _ = scenario_to_serve("Llama-3.1-70B", "fp8", "fp8", 4, eng, F11)
    assert env == {}
    back = serve_to_scenario(parse_serve(["vllm", "serve", *args], F11), F11, "H200-SXM")
    sc = scenario_from_dict(back.data)
    assert sc.engine == eng
    assert (sc.model.name, sc.model.weight_dtype, sc.model.kv_cache_dtype, sc.fleet.tp) == (
        "Llama-3.1-70B", "fp8", "fp8", 4)


def test_export_refuses_what_vllm_cannot_run() -> None:
    with pytest.raises(ConfigError, match="V1 engine always chunks"):
        scenario_to_serve("Llama-3.1-8B", None, "auto", 1,
                          EngineConfig(enable_chunked_prefill=False), F11)
    with pytest.raises(ConfigError, match="no vLLM flag turns"):
        scenario_to_serve("Llama-3.1-8B", "int8", "auto", 1, EngineConfig(), F11)


def test_api_server_count_round_trips() -> None:
    i = imp("vllm serve meta-llama/Llama-3.1-8B-Instruct --api-server-count 4")
    assert i.data["engine"]["api_server"] == {"api_server_count": 4}
    sc = scenario_from_dict(i.data)
    assert sc.engine.api_server.api_server_count == 4 and sc.engine.api_server.enabled
    args, _, _ = scenario_to_serve("Llama-3.1-8B", "bf16", "auto", 1, sc.engine, F11)
    assert args[args.index("--api-server-count") + 1] == "4"
