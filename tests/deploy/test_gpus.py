"""Kubernetes GPU resources and labels → GPU profiles (simulator.deploy.gpus)."""

from __future__ import annotations

import pytest

from simulator.deploy.gpus import gpu_count, gpu_from_label, gpu_from_pod, gpu_profile
from simulator.errors import ConfigError


@pytest.mark.parametrize(("value", "profile"), [
    ("NVIDIA-H100-80GB-HBM3", "H100-SXM"), ("nvidia-h200-141gb", "H200-SXM"),
    ("p5.48xlarge", "H100-SXM"), ("a3-ultragpu-8g", "H200-SXM"), ("h100", "H100-SXM"),
    ("Standard_ND96isr_MI300X_v5", "MI300X"), ("NVIDIA-A100-SXM4-80GB", "A100-80G"),
    ("nvidia-l4", None)])
def test_labels(value: str, profile: str | None) -> None:
    assert gpu_from_label(value) == profile


def test_variants_without_a_profile_are_refused() -> None:
    with pytest.raises(ConfigError, match="PCIe/NVL"):
        gpu_from_label("NVIDIA-H100-PCIe")
    with pytest.raises(ConfigError, match="MIG slices"):
        gpu_from_label("NVIDIA-A100-SXM4-80GB-MIG-3g.40gb")
    with pytest.raises(ConfigError, match="MIG slices"):
        gpu_count({"limits": {"nvidia.com/mig-3g.40gb": 1}})


def test_pod_spec() -> None:
    pod = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "karpenter.k8s.aws/instance-gpu-name", "operator": "In", "values": ["h200"]}]}]}}}}
    assert gpu_from_pod(pod) == ("H200-SXM", "node affinity karpenter.k8s.aws/instance-gpu-name")
    assert gpu_count({"limits": {"amd.com/gpu": "8"}}) == (8, "amd")
    assert gpu_profile("h100-sxm") == "H100-SXM"
    with pytest.raises(ConfigError, match="known: A100-80G"):
        gpu_profile("TPU-v5e")
