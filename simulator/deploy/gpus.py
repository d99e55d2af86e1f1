"""Kubernetes GPU resources, node labels and instance types ↔ the simulator's GPU profiles.

What this mirrors: how a pod says which accelerator it runs on — the extended resource it requests
(``nvidia.com/gpu`` from NVIDIA's device plugin, ``amd.com/gpu`` from AMD's), and the node it is
pinned to through a ``nodeSelector`` or a required node affinity on a label that names the GPU:
NVIDIA GPU feature discovery's ``nvidia.com/gpu.product`` (``NVIDIA-H100-80GB-HBM3``), AMD's node
labeller ``amd.com/gpu.product-name``, GKE's ``cloud.google.com/gke-accelerator``
(``nvidia-h100-80gb``), Karpenter's ``karpenter.k8s.aws/instance-gpu-name`` (``h100``) or the cloud
instance type (``node.kubernetes.io/instance-type``: ``p5.48xlarge``, ``a3-highgpu-8g``,
``Standard_ND96isr_H100_v5``). The export writes the resource and the GPU feature discovery label.

Leaves out: MIG slices and fractional GPUs (a MIG resource is refused), PCIe / NVL variants that have
no profile (refused rather than simulated as SXM), and label keys not listed here.
"""

from __future__ import annotations

import re
from typing import Any

from simulator.errors import ConfigError

GPU_RESOURCES = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}
"""Extended resource of each vendor's device plugin."""

PRODUCT_LABEL = {"nvidia": "nvidia.com/gpu.product", "amd": "amd.com/gpu.product-name"}
"""The node label the export pins a pool's pods with."""

PRODUCT_VALUE = {
    "H100-SXM": "NVIDIA-H100-80GB-HBM3",
    "H200-SXM": "NVIDIA-H200",
    "A100-80G": "NVIDIA-A100-SXM4-80GB",
    "L40S": "NVIDIA-L40S",
    "B200": "NVIDIA-B200",
    "MI300X": "AMD_Instinct_MI300X_OAM",
    "MI325X": "AMD_Instinct_MI325X_OAM",
}
"""The label value of each profile on nodes labelled by the vendor's feature discovery."""

EXACT: dict[str, str] = {
    # GKE accelerators
    "nvidia-h100-80gb": "H100-SXM", "nvidia-h100-mega-80gb": "H100-SXM",
    "nvidia-h200-141gb": "H200-SXM", "nvidia-a100-80gb": "A100-80G", "nvidia-b200": "B200",
    "nvidia-l40s": "L40S",
    # instance types (AWS, GCP, Azure)
    "p5.48xlarge": "H100-SXM", "p5e.48xlarge": "H200-SXM", "p5en.48xlarge": "H200-SXM",
    "p4de.24xlarge": "A100-80G", "p6-b200.48xlarge": "B200",
    "a3-highgpu-8g": "H100-SXM", "a3-megagpu-8g": "H100-SXM", "a3-ultragpu-8g": "H200-SXM",
    "a2-ultragpu-8g": "A100-80G", "a4-highgpu-8g": "B200",
    "standard_nd96isr_h100_v5": "H100-SXM", "standard_nd96isr_h200_v5": "H200-SXM",
    "standard_nd96isr_mi300x_v5": "MI300X", "standard_nd96amsr_a100_v4": "A100-80G",
    **{v.lower(): k for k, v in PRODUCT_VALUE.items()},
}
GPU_LABEL_KEYS = ("nvidia.com/gpu.product", "amd.com/gpu.product-name",
                  "beta.amd.com/gpu.product-name", "cloud.google.com/gke-accelerator",
                  "karpenter.k8s.aws/instance-gpu-name", "node.kubernetes.io/instance-type",
                  "beta.kubernetes.io/instance-type")
_FUZZY = (("h200", "H200-SXM"), ("h100", "H100-SXM"), ("a100", "A100-80G"), ("l40s", "L40S"),
          ("b200", "B200"), ("mi325x", "MI325X"), ("mi300x", "MI300X"))


def gpu_profile(name: str) -> str:
    """A profile name given as ``--gpu`` (case-insensitive; a label value works too)."""
    from simulator.profiles import list_gpus

    names = [g.name for g in list_gpus()]
    for n in names:
        if n.lower() == name.strip().lower():
            return n
    found = gpu_from_label(name)
    if found is None:
        raise ConfigError(f"--gpu {name}: no GPU profile of that name; known: {', '.join(names)}")
    return found


def gpu_from_label(value: str) -> str | None:
    """The profile a node label value / instance type names, None if it names none."""
    v = value.strip().lower()
    if v in EXACT:
        return EXACT[v]
    if re.search(r"mig-|\d+g\.\d+gb", v):
        raise ConfigError(f"GPU {value!r}: MIG slices are not modelled; simulate whole GPUs")
    for key, prof in _FUZZY:
        if key in v:
            if re.search(r"pcie|nvl", v):
                raise ConfigError(f"GPU {value!r}: no profile for the PCIe/NVL variant; known "
                                  f"profiles are SXM/OAM parts (pass --gpu to pick one)")
            return prof
    return None


def gpu_from_pod(pod_spec: dict[str, Any]) -> tuple[str | None, str | None]:
    """(profile, where it was read) from a pod spec's nodeSelector / required node affinity."""
    sel = pod_spec.get("nodeSelector") or {}
    for key in GPU_LABEL_KEYS:
        if key in sel:
            found = gpu_from_label(str(sel[key]))
            if found:
                return found, f"nodeSelector {key}={sel[key]}"
    terms = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get(
                 "nodeSelectorTerms") or []
    return gpu_from_terms(terms)


def gpu_from_terms(terms: list[Any]) -> tuple[str | None, str | None]:
    """(profile, where) from nodeSelectorTerms (``key In [value]``)."""
    for term in terms or []:
        for ex in (term or {}).get("matchExpressions") or []:
            if ex.get("key") in GPU_LABEL_KEYS and ex.get("operator") == "In":
                vals = {gpu_from_label(str(v)) for v in ex.get("values") or []} - {None}
                if len(vals) > 1:
                    raise ConfigError(f"node affinity {ex['key']} In {ex.get('values')}: several "
                                      f"GPU kinds; pick one with --gpu")
                if vals:
                    return vals.pop(), f"node affinity {ex['key']}"
    return None, None


def gpu_count(resources: dict[str, Any]) -> tuple[int | None, str | None]:
    """(GPUs per pod, vendor) from a container's resources (limits first)."""
    for part in ("limits", "requests"):
        block = (resources or {}).get(part) or {}
        for vendor, res in GPU_RESOURCES.items():
            if res in block:
                try:
                    return int(str(block[res])), vendor
                except ValueError:
                    raise ConfigError(f"resources.{part}.{res}: {block[res]!r} is not a whole "
                                      f"number of GPUs") from None
        for key in block:
            if str(key).startswith("nvidia.com/mig-"):
                raise ConfigError(f"resources.{part}.{key}: MIG slices are not modelled")
    return None, None
