"""The vLLM server inside manifests and Helm values (simulator.deploy.k8s) and `servesim import
vllm --k8s`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simulator.deploy.cli import import_vllm_text
from simulator.deploy.k8s import find_vllm
from simulator.errors import ConfigError

DATA = Path(__file__).parent / "data"


def imported(path: Path, **kw) -> tuple[dict, str]:  # type: ignore[no-untyped-def, type-arg]
    args = dict(gpu=None, version=None, model_profile=None, replicas=None, allow_unknown=False,
                name=None, base=None)
    args.update(kw)
    text = import_vllm_text([], path, **args)
    return yaml.safe_load(text), text


def test_deployment_with_env_references() -> None:
    vc = find_vllm(DATA / "deployment-llama70b.yaml")
    assert (vc.replicas, vc.gpus_per_pod, vc.gpu_vendor, vc.gpu) == (2, 2, "nvidia", "H100-SXM")
    assert "16384" in vc.argv  # $(MAX_MODEL_LEN) expanded from the container's env
    data, text = imported(DATA / "deployment-llama70b.yaml")
    assert data["model"] == {"name": "Llama-3.1-70B", "weight_dtype": "fp8",
                             "kv_cache_dtype": "auto"}
    assert data["fleet"] == {"gpu": "H100-SXM", "tp": 2, "replicas": 2}
    e = data["engine"]
    assert (e["max_model_len"], e["max_num_seqs"], e["gpu_memory_utilization"]) == (16384, 512, 0.92)
    assert e["max_num_batched_tokens"] == 8192  # vLLM 0.11 on an H100, from the image tag
    assert "# not modelled: --enforce-eager" in text
    assert "--served-model-name llama-70b" in text


def test_pod_with_shell_command_and_v0_engine() -> None:
    data, text = imported(DATA / "pod-shell.yaml")
    assert data["model"]["name"] == "Qwen3-32B" and data["model"]["weight_dtype"] == "int4"
    assert data["fleet"]["gpu"] == "H200-SXM"
    assert data["engine"]["scheduler"] == "v0"
    assert data["engine"]["max_model_len"] == 32768
    assert data["engine"]["max_num_batched_tokens"] == 4096
    assert "vLLM 0.8 defaults" in text and "VLLM_USE_V1=0" in text


def test_helm_values_of_the_production_stack() -> None:
    data, _ = imported(DATA / "helm-values.yaml")
    assert data["model"] == {"name": "Llama-3.1-8B", "weight_dtype": "bf16",
                             "kv_cache_dtype": "auto"}
    assert data["fleet"] == {"gpu": "H100-SXM", "tp": 1, "replicas": 3}
    assert data["engine"]["max_num_seqs"] == 256


def test_gpu_option_and_refusals(tmp_path: Path) -> None:
    data, text = imported(DATA / "deployment-llama70b.yaml", gpu="H200-SXM")
    assert data["fleet"]["gpu"] == "H200-SXM" and "replaces the pod's H100-SXM" in text
    with pytest.raises(ConfigError, match="needs tensor-parallel-size 4"):
        imported(_edit(tmp_path, "--tensor-parallel-size=2", "--tensor-parallel-size=4"))
    with pytest.raises(ConfigError, match=r"\$\(CTX\) comes from an env var"):
        imported(_edit(tmp_path, "$(MAX_MODEL_LEN)", "$(CTX)"))
    with pytest.raises(ConfigError, match="the GPU is not known: pass --gpu"):
        imported(_edit(tmp_path, "nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3", "team: ml"))
    (tmp_path / "svc.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    with pytest.raises(ConfigError, match="no vLLM container found"):
        find_vllm(tmp_path / "svc.yaml")


def _edit(tmp: Path, old: str, new: str) -> Path:
    text = (DATA / "deployment-llama70b.yaml").read_text()
    assert old in text
    p = tmp / "edited.yaml"
    p.write_text(text.replace(old, new))
    return p
