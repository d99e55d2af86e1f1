"""KEDA ScaledObjects ↔ the autoscaling section (simulator.deploy.keda)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.cluster.autoscale_spec import PoolAutoscaling
from simulator.deploy.keda import import_keda
from simulator.errors import ConfigError

DATA = Path(__file__).parent / "data"


def so() -> dict[str, Any]:
    return yaml.safe_load((DATA / "keda-queue.yaml").read_text())


def test_fixture() -> None:
    pool, top, header = import_keda(so(), "so.yaml")
    p = PoolAutoscaling.model_validate(pool)
    assert (p.min_replicas, p.max_replicas, p.sync_period_s) == (0, 6, 15.0)
    q, t = p.signals
    assert (q.kind, q.target, q.activation_threshold, q.cooldown_period_s) == (  # type: ignore[union-attr]
        "queue", 8.0, 1.0, 600.0)
    assert (t.kind, t.metric, t.target) == ("pods", "time_to_first_token_p90_s", 0.5)  # type: ignore[union-attr]
    assert p.behavior.scaleDown.stabilizationWindowSeconds == 300
    assert top == {"window_s": 60.0}
    assert any(h.startswith("not modelled: fallback") for h in header)


def test_token_rate_trigger() -> None:
    doc = so()
    doc["spec"]["minReplicaCount"] = 1
    doc["spec"]["triggers"] = [{"type": "prometheus", "metadata": {
        "serverAddress": "http://p:9090", "threshold": "2500",
        "query": "sum(rate(vllm:generation_tokens_total[1m]))"}}]
    pool, _, _ = import_keda(doc, "so.yaml")
    assert pool["signals"] == [{"kind": "pods", "metric": "generation_tokens_per_s",
                                "target": 2500.0}]


def _trigger(query: str, metric_type: str | None = None, **md: str) -> dict[str, Any]:
    doc = copy.deepcopy(so())
    doc["spec"]["minReplicaCount"] = 1
    t: dict[str, Any] = {"type": "prometheus", "metadata": {"serverAddress": "http://p:9090",
                                                            "query": query, "threshold": "5", **md}}
    if metric_type:
        t["metricType"] = metric_type
    doc["spec"]["triggers"] = [t]
    return doc


@pytest.mark.parametrize(("doc", "msg"), [
    (_trigger("avg(vllm:num_requests_running)"), "avg(…) with metricType AverageValue"),
    (_trigger("sum(vllm:num_requests_running)", "Value"), "sum(…) with metricType Value"),
    (_trigger("histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket"
              "[1m])))"), "a latency quantile with metricType AverageValue"),
    (_trigger("sum(vllm:num_requests_running)", activationThreshold="2"),
     "activationThreshold on a non-queue trigger"),
    (_trigger("sum(vllm:num_requests_waiting) > 3"), ">: arithmetic"),
    (_trigger("sum(vllm:num_requests_waiting)", "Utilization"), "metricType Utilization"),
])
def test_refusals(doc: dict[str, Any], msg: str) -> None:
    with pytest.raises(ConfigError) as e:
        import_keda(doc, "so.yaml")
    assert msg in str(e.value) and "spec.triggers[0]" in str(e.value)


def test_spec_level_refusals() -> None:
    doc = so()
    doc["spec"]["triggers"][0] = {"type": "cron", "metadata": {"timezone": "UTC", "start":
                                                               "0 8 * * *", "end": "0 20 * * *",
                                                               "desiredReplicas": "4"}}
    with pytest.raises(ConfigError, match="cron trigger: its schedule is wall-clock"):
        import_keda(doc, "so.yaml")
    doc = so()
    doc["spec"]["triggers"] = doc["spec"]["triggers"][1:]
    with pytest.raises(ConfigError, match=r"minReplicaCount 0 \(scale to zero\) needs a trigger on "
                                          r"the queue"):
        import_keda(doc, "so.yaml")
    doc = so()
    doc["spec"]["triggers"][1]["metadata"]["query"] = doc["spec"]["triggers"][1]["metadata"][
        "query"].replace("[1m]", "[5m]")
    with pytest.raises(ConfigError, match=r"different ranges \(60s, 300s\)"):
        import_keda(doc, "so.yaml")
    doc = so()
    doc["spec"]["advanced"]["scalingModifiers"] = {"formula": "a + b", "target": "5"}
    with pytest.raises(ConfigError, match="scalingModifiers: not modelled"):
        import_keda(doc, "so.yaml")
    doc = so()
    doc["spec"]["idleReplicaCount"] = 0
    doc["spec"]["minReplicaCount"] = 1
    assert import_keda(doc, "so.yaml")[0]["min_replicas"] == 0


def test_production_stack_helm_values() -> None:
    from simulator.deploy.keda import from_helm_values

    (doc,) = from_helm_values(yaml.safe_load((DATA / "helm-values.yaml").read_text()))
    pool, top, _ = import_keda(doc, "values.yaml")
    assert pool["signals"] == [{"kind": "queue", "target": 5.0, "activation_threshold": 0.0,
                                "cooldown_period_s": 360.0}]
    assert (pool["min_replicas"], pool["max_replicas"], pool["sync_period_s"]) == (1, 5, 15.0)
    assert "behavior" not in pool and top == {}
