"""The vLLM container inside Kubernetes manifests and Helm values, and the Deployment written for a
pool.

What this mirrors: where a cluster keeps a ``vllm serve`` command line — the ``command`` / ``args``
of a container in a Deployment, StatefulSet or Pod (also behind ``sh -c "vllm serve …"``, with
``$(VAR)`` references to the container's env), or the ``servingEngineSpec.modelSpec`` entries of the
vLLM production-stack Helm chart (``modelURL``, ``replicaCount``, ``requestGPU``, ``vllmConfig`` with
``extraArgs``; helm/values.yaml of vllm-project/production-stack) — with the pod's GPU request,
node selector / affinity and replica count. The export writes an ``apps/v1`` Deployment: the
``vllm/vllm-openai`` image of the version family, ``vllm serve`` with every modelled flag, the GPU
resource of the vendor's device plugin, the GPU feature discovery node selector, a ``/dev/shm``
memory volume (NCCL needs it for TP > 1), ``/health`` readiness and startup probes, and the
simulator's own assumptions as ``servesim.io/…`` annotations.

Leaves out: Services, PVCs and model caches, init containers, multi-node (LeaderWorkerSet / Ray)
deployments; Helm templates are not rendered (values files only).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simulator.errors import ConfigError

ANNOTATION_PREFIX = "servesim.io/"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet")


@dataclass
class VllmContainer:
    """What a manifest says about one vLLM server."""

    argv: list[str]
    """``vllm serve`` and its arguments (env references resolved)."""
    image: str = ""
    env: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    gpus_per_pod: int | None = None
    gpu_vendor: str | None = None
    gpu: str | None = None
    gpu_source: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    where: str = ""


def load_documents(path: Path) -> list[Any]:
    """Every document of a (multi-document) YAML file, with the checks of the scenario loader
    (UTF-8, nesting depth, duplicate keys, alias bombs); one-line errors with the line."""
    from simulator.errors import SAFE_LOADER, _check_depth, check_nodes, read_text

    text = read_text(Path(path))
    _check_depth(text, str(path))
    docs: list[Any] = []
    try:
        loader = SAFE_LOADER(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    continue
                check_nodes(node, str(path))
                docs.append(loader.construct_document(node))
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {getattr(e, 'problem', None) or e}"
                          ) from None
    return [d for d in docs if d is not None]


def find_vllm(path: Path) -> VllmContainer:
    """The one vLLM server described in ``path`` (manifest, multi-document file or Helm values)."""
    from simulator.deploy.gpus import gpu_count, gpu_from_pod, gpu_from_terms

    found: list[VllmContainer] = []
    for doc in load_documents(path):
        if not isinstance(doc, dict):
            continue
        kind = doc.get("kind")
        if kind in WORKLOAD_KINDS or kind == "Pod":
            spec = doc.get("spec") or {}
            pod = spec if kind == "Pod" else ((spec.get("template") or {}).get("spec") or {})
            meta = doc.get("metadata") or {}
            name = f"{kind}/{meta.get('name', '?')}"
            for c in pod.get("containers") or []:
                vc = _container(c, f"{path}: {name} container {c.get('name', '?')}")
                if vc is None:
                    continue
                vc.replicas = 1 if kind == "Pod" else int(spec.get("replicas", 1))
                vc.gpus_per_pod, vc.gpu_vendor = gpu_count(c.get("resources") or {})
                vc.gpu, vc.gpu_source = gpu_from_pod(pod)
                vc.annotations = {k: str(v) for k, v in (meta.get("annotations") or {}).items()}
                found.append(vc)
        elif kind is None and isinstance(doc.get("servingEngineSpec"), dict):
            for ms in doc["servingEngineSpec"].get("modelSpec") or []:
                if ms.get("enabled", True) is False:
                    continue
                vc = _helm_model_spec(ms, f"{path}: servingEngineSpec.modelSpec {ms.get('name')}")
                vc.gpu, vc.gpu_source = gpu_from_terms(ms.get("nodeSelectorTerms") or [])
                found.append(vc)
    if not found:
        raise ConfigError(f"{path}: no vLLM container found (looked for `vllm serve` or "
                          f"vllm.entrypoints.openai.api_server in the containers of Deployments, "
                          f"StatefulSets and Pods, and servingEngineSpec.modelSpec in Helm values)")
    if len(found) > 1:
        raise ConfigError(f"{path}: {len(found)} vLLM servers ({'; '.join(f.where for f in found)});"
                          f" keep one per file to import a single-model pool")
    return found[0]


def _is_vllm(words: list[str]) -> bool:
    from simulator.deploy.vllm_args import strip_launcher

    return strip_launcher(words) != words or any(
        w.endswith("vllm.entrypoints.openai.api_server") for w in words)


def _container(c: dict[str, Any], where: str) -> VllmContainer | None:
    env = {str(e.get("name")): str(e["value"]) for e in c.get("env") or []
           if isinstance(e, dict) and "value" in e}
    words = [str(w) for w in (c.get("command") or [])] + [str(w) for w in (c.get("args") or [])]
    words = [_expand_k8s(w, env, where) for w in words]
    if len(words) >= 3 and words[0].rsplit("/", 1)[-1] in ("sh", "bash") and words[1] in ("-c",
                                                                                         "-lc"):
        words = _from_shell(" ".join(words[2:]), env, where)
    image = str(c.get("image", ""))
    if not _is_vllm(words):
        # the vllm/vllm-openai image's entrypoint is the API server: args alone are its flags
        if "vllm-openai" in image and words and not c.get("command"):
            words = ["python3", "-m", "vllm.entrypoints.openai.api_server", *words]
        else:
            return None
    return VllmContainer(argv=words, image=image, env=env, where=where)


def _expand_k8s(word: str, env: dict[str, str], where: str) -> str:
    """Kubernetes ``$(VAR)`` expansion in command/args (``$$`` escapes)."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        if name not in env:
            raise ConfigError(f"{where}: $({name}) comes from an env var without a literal value "
                              f"in the manifest; set it there or pass the command line instead")
        return env[name]

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, word)


def _from_shell(script: str, env: dict[str, str], where: str) -> list[str]:
    """The ``vllm serve …`` words of a ``sh -c`` script (up to the next ``&&``, ``;`` or ``|``)."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in env:
            raise ConfigError(f"{where}: ${name} in the shell command has no literal value in the "
                              f"container's env")
        return env[name]

    script = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", sub, script)
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    words: list[list[str]] = []
    cur: list[str] = []
    for tok in lexer:
        if tok in (";", "&&", "||", "|", "&"):
            words.append(cur)
            cur = []
        else:
            cur.append(tok)
    words.append(cur)
    for part in words:
        if _is_vllm(part):
            return part
    return words[0] if words else []


_HELM_FLAGS = {"tensorParallelSize": "--tensor-parallel-size", "maxModelLen": "--max-model-len",
               "maxNumSeqs": "--max-num-seqs", "dtype": "--dtype",
               "gpuMemoryUtilization": "--gpu-memory-utilization", "maxLoras": "--max-loras"}
_HELM_BOOLS = {"enablePrefixCaching": "enable-prefix-caching",
               "enableChunkedPrefill": "enable-chunked-prefill"}


def _helm_model_spec(ms: dict[str, Any], where: str) -> VllmContainer:
    """production-stack ``modelSpec`` → the command line its chart renders."""
    if not ms.get("modelURL"):
        raise ConfigError(f"{where}: no modelURL")
    vc_cfg = ms.get("vllmConfig") or {}
    argv = ["vllm", "serve", str(ms["modelURL"])]
    env: dict[str, str] = {}
    for key, value in vc_cfg.items():
        if key in _HELM_FLAGS:
            argv += [_HELM_FLAGS[key], str(value)]
        elif key in _HELM_BOOLS:
            argv.append(("--" if value else "--no-") + _HELM_BOOLS[key])
        elif key == "v0":
            env["VLLM_USE_V1"] = "0" if str(value) == "1" else "1"
        elif key == "extraArgs":
            argv += [str(a) for a in value or []]
        elif key in ("runner", "convert"):
            argv += [f"--{key}", str(value)]
        else:
            raise ConfigError(f"{where}: vllmConfig.{key} is not a key this import knows; move it "
                              f"to vllmConfig.extraArgs as a vllm serve flag")
    gpu_type = str(ms.get("requestGPUType", "nvidia.com/gpu"))
    if "mig" in gpu_type:
        raise ConfigError(f"{where}: requestGPUType {gpu_type}: MIG slices are not modelled")
    image = f"{ms.get('repository', 'vllm/vllm-openai')}:{ms.get('tag', 'latest')}"
    return VllmContainer(argv=argv, image=image, env=env, replicas=int(ms.get("replicaCount", 1)),
                         gpus_per_pod=int(ms["requestGPU"]) if "requestGPU" in ms else None,
                         gpu_vendor="amd" if gpu_type.startswith("amd.com") else "nvidia",
                         where=where)


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """A DNS-1123 name (lower case, digits, '-'; at most 63 characters)."""
    s = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return (s or "servesim")[:63].rstrip("-")


def deployment(name: str, args: list[str], env: dict[str, str], *, image: str, gpu: str,
               vendor: str, tp: int, replicas: int, annotations: dict[str, str]) -> dict[str, Any]:
    """An apps/v1 Deployment running ``vllm serve`` with ``args`` on ``tp`` GPUs of ``gpu``."""
    from simulator.deploy.gpus import GPU_RESOURCES, PRODUCT_LABEL, PRODUCT_VALUE

    res = GPU_RESOURCES.get(vendor)
    if res is None or gpu not in PRODUCT_VALUE:
        raise ConfigError(f"fleet.gpu {gpu}: no Kubernetes device plugin resource / node label is "
                          f"known for it")
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "vllm"}
    probe = {"httpGet": {"path": "/health", "port": 8000}}
    container: dict[str, Any] = {
        "name": "vllm",
        "image": image,
        "command": ["vllm", "serve"],
        "args": args,
        "ports": [{"name": "http", "containerPort": 8000}],
        "resources": {"limits": {res: tp}, "requests": {res: tp}},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
        "readinessProbe": {**probe, "periodSeconds": 5},
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 180},
    }
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {PRODUCT_LABEL[vendor]: PRODUCT_VALUE[gpu]},
                    "containers": [container],
                    "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
                    "terminationGracePeriodSeconds": 600,
                },
            },
        },
    }


class _NoAliases(yaml.SafeDumper):
    """Writes shared sub-objects out in full (manifests are read by people, not only parsers)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(docs: list[dict[str, Any]], header: list[str]) -> str:
    """YAML documents with a comment header."""
    import textwrap

    head = "".join(f"# {line}\n" for h in header
                   for line in textwrap.wrap(h, 100, break_long_words=False,
                                             break_on_hyphens=False, subsequent_indent="  "))
    return head + "---\n".join(yaml.dump(d, Dumper=_NoAliases, sort_keys=False, width=100,
                                         allow_unicode=True) for d in docs)
