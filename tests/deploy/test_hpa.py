"""autoscaling/v2 HPAs ↔ the autoscaling section (simulator.deploy.hpa)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.cluster.autoscale_spec import PoolAutoscaling
from simulator.deploy.hpa import format_quantity, import_hpa, parse_quantity
from simulator.errors import ConfigError

DATA = Path(__file__).parent / "data"


def hpa() -> dict[str, Any]:
    return yaml.safe_load((DATA / "hpa-waiting.yaml").read_text())


def test_fixture_maps_field_for_field() -> None:
    pool, top, header = import_hpa(hpa(), "hpa.yaml")
    p = PoolAutoscaling.model_validate(pool)
    assert (p.min_replicas, p.max_replicas) == (2, 12)
    assert [(s.kind, s.metric, s.target) for s in p.signals] == [  # type: ignore[union-attr]
        ("pods", "num_requests_waiting", 4.0), ("pods", "kv_cache_usage_perc", 0.8)]
    assert p.behavior.scaleDown.stabilizationWindowSeconds == 600
    assert p.behavior.scaleUp.policies[0].periodSeconds == 60  # type: ignore[index]
    assert top == {} and "HorizontalPodAutoscaler llama70b" in header[0]


def test_external_total_of_the_queue_is_the_queue_signal() -> None:
    doc = hpa()
    doc["spec"]["metrics"] = [{"type": "External", "external": {
        "metric": {"name": "vllm_num_requests_waiting", "selector": {"matchLabels": {"a": "b"}}},
        "target": {"type": "AverageValue", "averageValue": "10"}}}]
    pool, _, _ = import_hpa(doc, "hpa.yaml")
    assert pool["signals"] == [{"kind": "queue", "target": 10.0}]


def _with_metric(m: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(hpa())
    doc["spec"]["metrics"] = [m]
    return doc


@pytest.mark.parametrize(("metric", "msg"), [
    ({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                 "averageUtilization": 70}}},
     "spec.metrics[0]: Resource cpu: the simulator has no CPU/memory model"),
    ({"type": "Pods", "pods": {"metric": {"name": "vllm:num_requests_waiting"},
                               "target": {"type": "Utilization", "averageUtilization": 50}}},
     "target type Utilization"),
    ({"type": "External", "external": {"metric": {"name": "vllm:num_requests_running"},
                                       "target": {"type": "Value", "value": "30"}}},
     "cannot tell whether vllm:num_requests_running is a sum"),
    ({"type": "Pods", "pods": {"metric": {"name": "vllm:prompt_tokens_total"},
                               "target": {"type": "AverageValue", "averageValue": "1k"}}},
     "metric 'vllm:prompt_tokens_total' is not a vLLM gauge"),
    ({"type": "Pods", "pods": {"metric": {"name": "vllm:kv_cache_usage_perc"},
                               "target": {"type": "AverageValue", "averageValue": "80"}}},
     "is a fraction 0..1; target 80"),
])
def test_refusals_name_the_part(metric: dict[str, Any], msg: str) -> None:
    with pytest.raises(ConfigError) as e:
        import_hpa(_with_metric(metric), "hpa.yaml")
    assert msg in str(e.value) and str(e.value).startswith("hpa.yaml")


def test_v1_and_annotations() -> None:
    with pytest.raises(ConfigError, match="autoscaling/v1 scales on CPU only"):
        import_hpa({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler"}, "h")
    doc = hpa()
    doc["metadata"]["annotations"] = {"servesim.io/sync-period-s": "30",
                                      "servesim.io/window-s": "120",
                                      "servesim.io/warm-pool-size": "2"}
    pool, top, _ = import_hpa(doc, "h")
    assert top == {"window_s": 120.0}
    assert pool["sync_period_s"] == 30.0 and pool["warm_pool"] == {"size": 2}


@pytest.mark.parametrize("x", [4.0, 0.8, 0.25, 1500.0, 0.8125, 1 / 3])
def test_quantities_round_trip(x: float) -> None:
    assert parse_quantity(format_quantity(x), "q") == x
    assert parse_quantity("2Ki", "q") == 2048
