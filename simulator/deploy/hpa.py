"""Kubernetes ``autoscaling/v2`` HorizontalPodAutoscaler ↔ the scenario's ``autoscaling`` section.

What this mirrors: an HPA scaling a vLLM Deployment on vLLM's metrics as a Prometheus adapter exposes
them — ``Pods`` metrics with an ``AverageValue`` target (``vllm:num_requests_waiting``,
``vllm:num_requests_running``, ``vllm:kv_cache_usage_perc`` / ``gpu_cache_usage_perc``; the adapter's
``vllm_…`` spelling is read too) become ``pods`` signals with the same arithmetic; an ``External`` or
``Object`` metric with an ``AverageValue`` target is a fleet total divided by the target: on the
waiting queue that is the ``queue`` signal, on another gauge the same formula as a ``pods`` signal.
``minReplicas`` / ``maxReplicas`` and ``behavior`` (stabilization windows, ``selectPolicy``, rate
policies) map field for field (the scenario uses the ``autoscaling/v2`` names).

What a manifest cannot say — the controller's sync period, the Prometheus scrape interval and the
averaging window, the HPA tolerance, a warm pool — is written by the export as ``servesim.io/…``
annotations and read back from them (absent: the simulator's defaults).

Refused, with the part named: ``Resource`` / ``ContainerResource`` metrics (no CPU or memory model),
``Utilization`` targets, ``Value`` targets on External / Object metrics (a sum or an average cannot
be told apart from the name), metrics the simulator does not export.
"""

from __future__ import annotations

import re
from typing import Any

from simulator.deploy.promql import GAUGES
from simulator.errors import ConfigError

ANNOTATIONS = {"scrape_interval_s": "servesim.io/scrape-interval-s",
               "window_s": "servesim.io/window-s",
               "timeseries_interval_s": "servesim.io/timeseries-interval-s"}
"""AutoscalingConfig fields kept as annotations (Prometheus and simulator settings)."""
POOL_ANNOTATIONS = {"sync_period_s": "servesim.io/sync-period-s",
                    "tolerance": "servesim.io/tolerance",
                    "warm_pool.size": "servesim.io/warm-pool-size",
                    "warm_pool.wake_s": "servesim.io/warm-pool-wake-s"}
"""PoolAutoscaling fields kept as annotations (controller flags and the warm pool)."""

_SUFFIX = {"m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_quantity(value: Any, where: str) -> float:
    """A Kubernetes quantity (``4``, ``500m``, ``0.8``, ``1k``, ``2Ki``) as a number."""
    s = str(value).strip()
    m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", s)
    if not m:
        raise ConfigError(f"{where}: {value!r} is not a Kubernetes quantity (4, 500m, 0.8)")
    return float(m.group(1)) * _SUFFIX[m.group(2) or ""]


def format_quantity(x: float) -> str:
    """The shortest quantity :func:`parse_quantity` reads back as ``x``."""
    if float(x).is_integer():
        return str(int(x))
    milli = round(x * 1000)
    if abs(milli / 1000 - x) < 1e-12 * max(1.0, abs(x)):
        return f"{milli}m"
    return repr(float(x))


def metric_name(name: str, where: str) -> str:
    """``vllm:num_requests_waiting`` / ``vllm_num_requests_waiting`` → the simulator signal."""
    base = name
    for pre in ("vllm:", "vllm_"):
        if base.startswith(pre):
            base = base[len(pre):]
    if base in GAUGES:
        return GAUGES[base]
    raise ConfigError(f"{where}: metric {name!r} is not a vLLM gauge the simulator exports "
                      f"(vllm:num_requests_waiting, vllm:num_requests_running, "
                      f"vllm:kv_cache_usage_perc); token rates and TTFT quantiles need a query: "
                      f"use a KEDA prometheus trigger")


def check_target(metric: str, target: float, where: str) -> None:
    if target <= 0:
        raise ConfigError(f"{where}: target {target:g} must be > 0")
    if metric == "kv_cache_usage_perc" and target > 1:
        raise ConfigError(f"{where}: vllm:kv_cache_usage_perc is a fraction 0..1; target "
                          f"{target:g} can never be reached (write 0.8 or 800m for 80%)")


def read_annotations(meta: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(AutoscalingConfig fields, PoolAutoscaling fields) from ``servesim.io/…`` annotations."""
    ann = (meta or {}).get("annotations") or {}
    top: dict[str, Any] = {}
    pool: dict[str, Any] = {}
    for field, key in ANNOTATIONS.items():
        if key in ann:
            top[field] = _num(ann[key], f"{where}: annotation {key}")
    for field, key in POOL_ANNOTATIONS.items():
        if key in ann:
            v = _num(ann[key], f"{where}: annotation {key}")
            if field.startswith("warm_pool."):
                pool.setdefault("warm_pool", {})[field.split(".")[1]] = (
                    int(v) if field.endswith("size") else v)
            else:
                pool[field] = v
    return top, pool


def write_annotations(cfg: Any, pool: Any, *, with_window: bool, with_sync: bool
                      ) -> dict[str, str]:
    """The annotations :func:`read_annotations` reads back (only fields not in the manifest)."""
    out: dict[str, str] = {}
    for field, key in ANNOTATIONS.items():
        if field == "window_s" and not with_window:
            continue
        out[key] = f"{getattr(cfg, field):g}"
    if with_sync:
        out[POOL_ANNOTATIONS["sync_period_s"]] = f"{pool.sync_period_s:g}"
    out[POOL_ANNOTATIONS["tolerance"]] = f"{pool.tolerance:g}"
    if pool.warm_pool.size:
        out[POOL_ANNOTATIONS["warm_pool.size"]] = str(pool.warm_pool.size)
        if pool.warm_pool.wake_s is not None:
            out[POOL_ANNOTATIONS["warm_pool.wake_s"]] = f"{pool.warm_pool.wake_s:g}"
    return out


def _num(v: Any, where: str) -> float:
    try:
        return float(str(v))
    except ValueError:
        raise ConfigError(f"{where}: {v!r} is not a number") from None


def _behavior(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    out: dict[str, Any] = {}
    for side, rules in raw.items():
        if side not in ("scaleUp", "scaleDown"):
            raise ConfigError(f"{where}.{side}: unknown field (scaleUp, scaleDown)")
        if not isinstance(rules, dict):
            raise ConfigError(f"{where}.{side}: expected a mapping")
        r = dict(rules)
        if "tolerance" in r:
            raise ConfigError(f"{where}.{side}.tolerance: per-direction tolerances are not "
                              f"modelled (one tolerance, annotation servesim.io/tolerance)")
        out[side] = r
    return out


def import_hpa(doc: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(PoolAutoscaling fields, AutoscalingConfig fields, header notes) of one HPA."""
    api = str(doc.get("apiVersion", ""))
    if api == "autoscaling/v1":
        raise ConfigError(f"{where}: autoscaling/v1 scales on CPU only (not modelled); write the "
                          f"HPA as autoscaling/v2 with a vLLM metric")
    if api not in ("autoscaling/v2", "autoscaling/v2beta2"):
        raise ConfigError(f"{where}: apiVersion {api!r}: expected autoscaling/v2")
    spec = doc.get("spec") or {}
    for key in spec:
        if key not in ("scaleTargetRef", "minReplicas", "maxReplicas", "metrics", "behavior"):
            raise ConfigError(f"{where}: spec.{key}: unknown HPA field")
    if "maxReplicas" not in spec:
        raise ConfigError(f"{where}: spec.maxReplicas is required")
    notes: list[str] = []
    signals: list[dict[str, Any]] = []
    for i, m in enumerate(spec.get("metrics") or []):
        w = f"{where}: spec.metrics[{i}]"
        kind = m.get("type")
        if kind in ("Resource", "ContainerResource"):
            res = (m.get("resource") or m.get("containerResource") or {}).get("name", "?")
            raise ConfigError(f"{w}: {kind} {res}: the simulator has no CPU/memory model; scale on "
                              f"a vLLM metric (Pods vllm:num_requests_waiting …)")
        if kind not in ("Pods", "External", "Object"):
            raise ConfigError(f"{w}: type {kind!r}: expected Pods, External or Object")
        body = m.get(kind.lower()) or {}
        name = str((body.get("metric") or {}).get("name", ""))
        target = body.get("target") or {}
        ttype = target.get("type")
        if ttype == "Utilization":
            raise ConfigError(f"{w}: target type Utilization applies to CPU/memory requests; use "
                              f"AverageValue")
        metric = metric_name(name, w)
        if kind == "Pods":
            if ttype != "AverageValue":
                raise ConfigError(f"{w}: Pods metrics take an AverageValue target (got {ttype})")
            value = parse_quantity(target.get("averageValue"), f"{w}.target.averageValue")
            check_target(metric, value, w)
            signals.append({"kind": "pods", "metric": metric, "target": value})
            continue
        if ttype != "AverageValue":
            raise ConfigError(f"{w}: {kind} metric with target type {ttype}: cannot tell whether "
                              f"{name} is a sum over the pods or an average; use a Pods metric, or "
                              f"an AverageValue target on the fleet total")
        value = parse_quantity(target.get("averageValue"), f"{w}.target.averageValue")
        check_target(metric, value, w)
        if metric == "num_requests_waiting":
            signals.append({"kind": "queue", "target": value})
        else:
            signals.append({"kind": "pods", "metric": metric, "target": value})
            notes.append(f"{w}: total {name} / {value:g} per replica = the pods signal's formula")
    if not signals:
        raise ConfigError(f"{where}: spec.metrics: none given (the HPA's default is CPU, not "
                          f"modelled); add a vLLM metric")
    pool: dict[str, Any] = {"min_replicas": int(spec.get("minReplicas", 1)),
                            "max_replicas": int(spec["maxReplicas"]), "signals": signals}
    if "behavior" in spec:
        pool["behavior"] = _behavior(spec["behavior"], f"{where}: spec.behavior")
    top, extra = read_annotations(doc.get("metadata") or {}, where)
    pool.update(extra)
    target = (spec.get("scaleTargetRef") or {}).get("name")
    header = [f"autoscaling imported by `servesim import hpa` from HorizontalPodAutoscaler "
              f"{(doc.get('metadata') or {}).get('name', '?')} (target {target})"]
    header += [f"note: {n}" for n in notes]
    return pool, top, header


def export_hpa(name: str, target: str, cfg: Any, pool: Any) -> dict[str, Any]:
    """An autoscaling/v2 HPA for one pool's autoscaler (``cfg``: AutoscalingConfig)."""
    from simulator.deploy.promql import _VLLM_NAME

    metrics: list[dict[str, Any]] = []
    for s in pool.signals:
        if s.kind == "pods":
            if s.metric not in _VLLM_NAME:
                raise ConfigError(f"signal pods {s.metric}: not a vLLM gauge an HPA can name; "
                                  f"export with --autoscaler keda (a Prometheus query)")
            metrics.append({"type": "Pods", "pods": {
                "metric": {"name": _VLLM_NAME[s.metric]},
                "target": {"type": "AverageValue", "averageValue": format_quantity(s.target)}}})
        elif s.kind == "queue":
            if s.activation_threshold or s.cooldown_period_s != 300.0 or pool.min_replicas == 0 \
                    or getattr(s, "metric", "waiting") != "waiting":
                raise ConfigError("signal queue with activation / cooldown / scale to zero / "
                                  "metric in_flight: export with --autoscaler keda")
            metrics.append({"type": "External", "external": {
                "metric": {"name": "vllm:num_requests_waiting"},
                "target": {"type": "AverageValue", "averageValue": format_quantity(s.target)}}})
        else:
            raise ConfigError(f"signal {s.kind}: no HPA or KEDA form (a schedule is a KEDA cron "
                              f"trigger in wall-clock time, a forecast has none); remove it "
                              f"before exporting")
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": pool.min_replicas, "maxReplicas": pool.max_replicas, "metrics": metrics}
    behavior = pool.behavior.model_dump(mode="json", exclude_none=True)
    if behavior != type(pool.behavior)().model_dump(mode="json", exclude_none=True):
        spec["behavior"] = behavior
    ann = write_annotations(cfg, pool, with_window=True, with_sync=True)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "annotations": ann}, "spec": spec}
