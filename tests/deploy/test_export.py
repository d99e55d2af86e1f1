"""`servesim export k8s`: manifests validated against Kubernetes' and KEDA's schemas, and
import(export(x)) == x for every shipped single-pool scenario (simulator.deploy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.config import Scenario, load_scenario, scenario_from_dict, shipped_scenarios
from simulator.deploy.cli import export_manifests, import_autoscaler_text, import_vllm_text
from simulator.deploy.k8s import dump
from simulator.deploy.scenario_io import deployment_view
from simulator.errors import ConfigError

DATA = Path(__file__).parent / "data"
SINGLE_POOL = [n for n in shipped_scenarios() if not load_scenario(n).fleet.pools]


def write_manifests(sc: Scenario, out: Path, **kw: Any) -> list[Path]:
    files = export_manifests(sc, **kw)
    out.mkdir(parents=True, exist_ok=True)
    for name, (docs, header) in files.items():
        (out / name).write_text(dump(docs, header))
    return [out / n for n in files]


def import_manifests(folder: Path) -> Scenario:
    """The scenario fragment the import reads back from an export folder."""
    (dep,) = folder.glob("*-deployment.yaml")
    data = yaml.safe_load(import_vllm_text([], dep, None, None, None, None, False, None, None))
    for kind, pattern in (("hpa", "*-hpa.yaml"), ("keda", "*-scaledobject.yaml")):
        for f in folder.glob(pattern):
            data["autoscaling"] = yaml.safe_load(import_autoscaler_text(
                kind, f, "default", None))["autoscaling"]
    return scenario_from_dict(data)


def test_some_shipped_scenarios_are_single_pool() -> None:
    assert "cold-start-cascade" in SINGLE_POOL and "default" in SINGLE_POOL
    assert "disagg-vs-agg" not in SINGLE_POOL


@pytest.mark.parametrize("name", SINGLE_POOL)
def test_round_trip_of_shipped_scenarios(name: str, tmp_path: Path) -> None:
    sc = load_scenario(name)
    write_manifests(sc, tmp_path)
    assert deployment_view(import_manifests(tmp_path)) == deployment_view(sc)


def _autoscaled(signals: list[dict[str, Any]], min_replicas: int = 1, **pool: Any) -> Scenario:
    base = load_scenario("cold-start-cascade")
    data = base.model_dump(mode="json")
    data["autoscaling"]["window_s"] = 120.0
    data["autoscaling"]["pools"]["default"].update(
        {"signals": signals, "min_replicas": min_replicas, **pool})
    return scenario_from_dict(data)


VARIANTS = {
    "queue-to-zero": ([{"kind": "queue", "target": 6, "activation_threshold": 0.5,
                        "cooldown_period_s": 900}], 0, {}),
    "in-flight-to-zero": ([{"kind": "queue", "metric": "in_flight", "target": 40,
                            "cooldown_period_s": 300}], 0, {}),
    "ttft-and-tokens": ([{"kind": "pods", "metric": "time_to_first_token_p90_s", "target": 0.4},
                         {"kind": "pods", "metric": "generation_tokens_per_s", "target": 3000}],
                        2, {"sync_period_s": 30, "tolerance": 0.05}),
    "kv-and-running": ([{"kind": "pods", "metric": "kv_cache_usage_perc", "target": 0.75},
                        {"kind": "pods", "metric": "num_requests_running", "target": 96}],
                       1, {"warm_pool": {"size": 2, "wake_s": 20}}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("autoscaler", ["auto", "keda", "hpa"])
def test_round_trip_of_autoscalers(variant: str, autoscaler: str, tmp_path: Path) -> None:
    signals, lo, extra = VARIANTS[variant]
    sc = _autoscaled(signals, lo, **extra)
    if autoscaler == "hpa" and variant != "kv-and-running":
        with pytest.raises(ConfigError, match="--autoscaler keda"):
            export_manifests(sc, autoscaler=autoscaler)
        return
    files = write_manifests(sc, tmp_path, autoscaler=autoscaler)
    kinds = {f.name.rsplit("-", 1)[1] for f in files}
    assert kinds == {"deployment.yaml", "hpa.yaml" if autoscaler == "hpa" or (
        autoscaler == "auto" and variant == "kv-and-running") else "scaledobject.yaml"}
    assert deployment_view(import_manifests(tmp_path)) == deployment_view(sc)


def _documents(paths: list[Path]) -> list[dict[str, Any]]:
    return [d for p in paths for d in yaml.safe_load_all(p.read_text())]


@pytest.mark.parametrize("autoscaler", ["hpa", "keda"])
def test_manifests_pass_the_kubernetes_and_keda_schemas(autoscaler: str, tmp_path: Path) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="the dev extra's kubernetes-validate "
                                                           "(Kubernetes OpenAPI JSON schemas)")
    jsonschema = pytest.importorskip("jsonschema")
    keda_schema = json.loads((DATA / "keda-scaledobject.schema.json").read_text())
    scenarios = [load_scenario(n) for n in ("cold-start-cascade", "mi300x-70b-fp8")]
    scenarios.append(_autoscaled(VARIANTS["kv-and-running"][0]))
    if autoscaler == "keda":
        scenarios.append(_autoscaled(*VARIANTS["queue-to-zero"][:2]))
    seen = set()
    for i, sc in enumerate(scenarios):
        for doc in _documents(write_manifests(sc, tmp_path / str(i), autoscaler=autoscaler)):
            seen.add(doc["kind"])
            if doc["kind"] == "ScaledObject":
                jsonschema.validate(doc, keda_schema)
            else:
                kv.validate(doc, kv.latest_version(), strict=True)
    assert seen == {"Deployment", "HorizontalPodAutoscaler" if autoscaler == "hpa"
                    else "ScaledObject"}


def test_the_schemas_catch_a_broken_manifest(tmp_path: Path) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="the dev extra's kubernetes-validate")
    jsonschema = pytest.importorskip("jsonschema")
    docs = _documents(write_manifests(_autoscaled(*VARIANTS["queue-to-zero"][:2]), tmp_path))
    dep = next(d for d in docs if d["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, kv.latest_version(), strict=True)
    so = next(d for d in docs if d["kind"] == "ScaledObject")
    so["spec"]["pollingInterval"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(so, json.loads((DATA / "keda-scaledobject.schema.json").read_text()))


def test_deployment_content() -> None:
    files = export_manifests(load_scenario("mi300x-70b-fp8"))
    ((dep,), header) = files["mi300x-70b-fp8-deployment.yaml"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"] == {"amd.com/gpu": 1}
    assert pod["nodeSelector"] == {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"}
    assert c["image"] == "vllm/vllm-openai:v0.11.0"
    assert c["args"][:5] == ["meta-llama/Llama-3.1-70B-Instruct", "--tensor-parallel-size", "1",
                             "--quantization", "fp8"]
    assert header[1].startswith("vLLM 0.11: vllm serve meta-llama/Llama-3.1-70B-Instruct")


def test_image_follows_the_version_asked_for() -> None:
    files = export_manifests(load_scenario("default"), version="0.24")
    ((dep,), header) = files["default-deployment.yaml"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "vllm/vllm-openai:v0.24.0"
    assert header[1].startswith("vLLM 0.11:")  # the newest definitions read
    files = export_manifests(load_scenario("default").model_copy(update={
        "engine": load_scenario("default").engine.model_copy(update={"scheduler": "v0"})}))
    ((dep,), _) = files["default-deployment.yaml"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "vllm/vllm-openai:v0.7.3"


def test_multi_pool_scenarios_get_one_deployment_per_pool() -> None:
    sc = load_scenario("disagg-vs-agg")
    files = export_manifests(sc)
    assert len(files) == len(sc.fleet.pools)
    assert all(f.startswith("disagg-vs-agg-") and f.endswith("-deployment.yaml") for f in files)


def test_export_refuses_signals_without_a_manifest_form() -> None:
    sc = _autoscaled([{"kind": "schedule", "entries": [{"at_s": 0, "replicas": 2}]}])
    with pytest.raises(ConfigError, match="signal schedule: no HPA or KEDA form"):
        export_manifests(sc, autoscaler="hpa")
