"""KEDA ``ScaledObject`` (``keda.sh/v1alpha1``) ↔ the scenario's ``autoscaling`` section.

What this mirrors: KEDA scaling a vLLM Deployment with ``prometheus`` triggers. KEDA turns each
trigger into an HPA ``External`` metric: with ``metricType: AverageValue`` (the default) the desired
count is ceil(query / threshold), with ``Value`` it is ceil(replicas × query / threshold). So

- ``sum(vllm:num_requests_waiting)`` / AverageValue → the ``queue`` signal (``sum(…running +
  …waiting)``: its ``metric: in_flight``; ``threshold`` = target,
  ``activationThreshold`` = activation; scale to zero with ``minReplicaCount: 0`` or
  ``idleReplicaCount: 0``, back to zero after ``cooldownPeriod``);
- ``sum(M)`` / AverageValue or ``avg(M)`` / Value on another vLLM metric M → a ``pods`` signal on M
  (the HPA's per-replica formula);
- ``histogram_quantile(0.9, … time_to_first_token_seconds_bucket …)`` / Value → ``pods`` on
  ``time_to_first_token_p90_s``.

``pollingInterval`` is the autoscaler's sync period, the query's range (``[1m]``) its averaging
window, ``minReplicaCount`` / ``maxReplicaCount`` the bounds, and
``advanced.horizontalPodAutoscalerConfig.behavior`` the HPA behavior; the vLLM production-stack
chart's ``modelSpec[].keda`` values are read as the ScaledObject it renders. The export writes the same
shapes (schema: KEDA's CRD, tests/deploy/data/keda-scaledobject.schema.json).

Refused, with the part named: other trigger types (cron schedules are wall-clock, CPU / memory are
not modelled), the query forms :mod:`simulator.deploy.promql` does not evaluate, aggregation /
metricType combinations whose arithmetic is not one of the above, ``scalingModifiers``, triggers
with different ranges. Not modelled but listed: ``fallback``, ``initialCooldownPeriod``.
"""

from __future__ import annotations

from typing import Any

from simulator.deploy.hpa import (
    _behavior,
    check_target,
    format_quantity,
    parse_quantity,
    read_annotations,
    write_annotations,
)
from simulator.deploy.promql import format_query, parse_query
from simulator.errors import ConfigError

DEFAULT_PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
_SPEC_KEYS = ("scaleTargetRef", "pollingInterval", "cooldownPeriod", "idleReplicaCount",
              "minReplicaCount", "maxReplicaCount", "advanced", "fallback", "triggers",
              "initialCooldownPeriod")


def import_keda(doc: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any],
                                                          list[str]]:
    """(PoolAutoscaling fields, AutoscalingConfig fields, header notes) of one ScaledObject."""
    api = str(doc.get("apiVersion", ""))
    if not api.startswith("keda.sh/"):
        raise ConfigError(f"{where}: apiVersion {api!r}: expected keda.sh/v1alpha1")
    spec = doc.get("spec") or {}
    for key in spec:
        if key not in _SPEC_KEYS:
            raise ConfigError(f"{where}: spec.{key}: unknown ScaledObject field")
    notes: list[str] = []
    not_modelled = [f"{k}: {spec[k]}" for k in ("fallback", "initialCooldownPeriod") if k in spec]
    cooldown = float(spec.get("cooldownPeriod", 300))
    signals: list[dict[str, Any]] = []
    windows: set[float] = set()
    for i, t in enumerate(spec.get("triggers") or []):
        w = f"{where}: spec.triggers[{i}]"
        ttype = t.get("type")
        if ttype == "cron":
            raise ConfigError(f"{w}: cron trigger: its schedule is wall-clock cron, the "
                              f"simulator's is in simulated seconds; write autoscaling.pools.*."
                              f"signals: [{{kind: schedule, entries: [...]}}] by hand")
        if ttype != "prometheus":
            raise ConfigError(f"{w}: trigger type {ttype!r}: only prometheus triggers on vLLM "
                              f"metrics are modelled")
        md = t.get("metadata") or {}
        if "query" not in md or "threshold" not in md:
            raise ConfigError(f"{w}: metadata needs query and threshold")
        mtype = t.get("metricType") or md.get("metricType") or "AverageValue"
        q = parse_query(str(md["query"]), f"{w}.metadata")
        thr = parse_quantity(md["threshold"], f"{w}.metadata.threshold")
        check_target(q.metric, thr, w)
        act = parse_quantity(md.get("activationThreshold", 0), f"{w}.metadata.activationThreshold")
        if q.window_s is not None:
            windows.add(q.window_s)
        if mtype == "Utilization":
            raise ConfigError(f"{w}: metricType Utilization applies to CPU/memory; use "
                              f"AverageValue or Value")
        if mtype not in ("AverageValue", "Value"):
            raise ConfigError(f"{w}: metricType {mtype!r}: expected AverageValue or Value")
        if q.aggregation == "quantile" and mtype != "Value":
            raise ConfigError(f"{w}: a latency quantile with metricType AverageValue is divided "
                              f"among the replicas; use metricType: Value")
        if q.aggregation == "avg" and mtype == "AverageValue":
            raise ConfigError(f"{w}: avg(…) with metricType AverageValue divides an average by the "
                              f"replicas again; use sum(…), or metricType: Value")
        if q.aggregation == "sum" and mtype == "Value":
            raise ConfigError(f"{w}: sum(…) with metricType Value scales on replicas × total / "
                              f"threshold; use avg(…), or metricType: AverageValue")
        if q.metric in ("num_requests_waiting", "in_flight") and mtype == "AverageValue":
            sig = {"kind": "queue", "target": thr, "activation_threshold": act,
                   "cooldown_period_s": cooldown}
            if q.metric == "in_flight":
                sig["metric"] = "in_flight"
            signals.append(sig)
            continue
        if q.metric == "in_flight":
            raise ConfigError(f"{w}: running + waiting with metricType Value: the in_flight queue "
                              f"is a fleet total; use metricType: AverageValue")
        if act:
            raise ConfigError(f"{w}: activationThreshold on a non-queue trigger: the simulator "
                              f"activates from zero on the waiting queue only "
                              f"(sum(vllm:num_requests_waiting), AverageValue)")
        signals.append({"kind": "pods", "metric": q.metric, "target": thr})
    if not signals:
        raise ConfigError(f"{where}: spec.triggers: none given")
    if len(windows) > 1:
        raise ConfigError(f"{where}: triggers read different ranges "
                          f"({', '.join(f'{x:g}s' for x in sorted(windows))}); the simulator's "
                          f"autoscaler averages every signal over one window")
    lo = int(spec.get("minReplicaCount", 0))
    idle = spec.get("idleReplicaCount")
    if idle is not None:
        if int(idle) != 0:
            raise ConfigError(f"{where}: spec.idleReplicaCount {idle}: KEDA allows only 0")
        if lo > 1:
            raise ConfigError(f"{where}: idleReplicaCount 0 with minReplicaCount {lo}: an active "
                              f"floor above 1 after scale-from-zero is not modelled")
        lo = 0
        notes.append("idleReplicaCount 0: scale to zero when the queue is inactive")
    has_queue = any(s["kind"] == "queue" for s in signals)
    if lo == 0 and not has_queue:
        raise ConfigError(f"{where}: minReplicaCount 0 (scale to zero) needs a trigger on the "
                          f"queue (sum(vllm:num_requests_waiting), AverageValue) for activation; "
                          f"add one or set minReplicaCount >= 1")
    if "cooldownPeriod" in spec and not has_queue:
        notes.append(f"cooldownPeriod {spec['cooldownPeriod']}: only used when scaling to zero")
    adv = spec.get("advanced") or {}
    for key in adv:
        if key not in ("horizontalPodAutoscalerConfig", "restoreToOriginalReplicaCount"):
            raise ConfigError(f"{where}: spec.advanced.{key}: not modelled (composite metrics); "
                              f"use one trigger per signal")
    pool: dict[str, Any] = {"min_replicas": lo, "max_replicas": int(spec.get("maxReplicaCount", 100)),
                            "signals": signals,
                            "sync_period_s": float(spec.get("pollingInterval", 30))}
    hpa_cfg = adv.get("horizontalPodAutoscalerConfig") or {}
    if "behavior" in hpa_cfg:
        pool["behavior"] = _behavior(hpa_cfg["behavior"],
                                     f"{where}: spec.advanced.horizontalPodAutoscalerConfig.behavior")
    top, extra = read_annotations(doc.get("metadata") or {}, where)
    extra.pop("sync_period_s", None)  # pollingInterval says it
    pool.update(extra)
    if windows:
        top["window_s"] = windows.pop()
    target = (spec.get("scaleTargetRef") or {}).get("name")
    header = [f"autoscaling imported by `servesim import keda` from ScaledObject "
              f"{(doc.get('metadata') or {}).get('name', '?')} (target {target})"]
    header += [f"note: {n}" for n in notes]
    if not_modelled:
        header.append("not modelled: " + "; ".join(not_modelled))
    return pool, top, header


def from_helm_values(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The ScaledObjects the vLLM production-stack chart renders from ``modelSpec[].keda``
    (helm/values.yaml of vllm-project/production-stack: ``enabled``, the ScaledObject's spec
    fields, ``triggers`` as a list or one mapping, ``scalingModifiers`` only with a formula)."""
    out: list[dict[str, Any]] = []
    for ms in (doc.get("servingEngineSpec") or {}).get("modelSpec") or []:
        k = (ms or {}).get("keda") or {}
        if not k.get("enabled") or ms.get("enabled", True) is False:
            continue
        spec = {key: k[key] for key in ("pollingInterval", "cooldownPeriod", "idleReplicaCount",
                                        "minReplicaCount", "maxReplicaCount", "fallback",
                                        "initialCooldownPeriod") if key in k}
        triggers = k.get("triggers") or []
        spec["triggers"] = [triggers] if isinstance(triggers, dict) else list(triggers)
        adv = dict(k.get("advanced") or {})
        mods = adv.pop("scalingModifiers", None) or {}
        if mods.get("formula"):
            adv["scalingModifiers"] = mods
        hpa = {kk: vv for kk, vv in (adv.get("horizontalPodAutoscalerConfig") or {}).items()
               if kk == "behavior" and vv}
        adv.pop("horizontalPodAutoscalerConfig", None)
        if hpa:
            adv["horizontalPodAutoscalerConfig"] = hpa
        if adv:
            spec["advanced"] = adv
        spec["scaleTargetRef"] = {"name": str(ms.get("name"))}
        out.append({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                    "metadata": {"name": f"{ms.get('name')} (Helm modelSpec.keda)"}, "spec": spec})
    return out


def export_keda(name: str, target: str, cfg: Any, pool: Any, model_name: str,
                prometheus: str = DEFAULT_PROMETHEUS) -> dict[str, Any]:
    """A ScaledObject for one pool's autoscaler (``cfg``: AutoscalingConfig)."""
    labels = f'{{model_name="{model_name}"}}'
    triggers: list[dict[str, Any]] = []
    cooldowns: set[float] = set()
    for i, s in enumerate(pool.signals):
        if s.kind == "queue":
            md = {"serverAddress": prometheus,
                  "query": format_query("in_flight" if getattr(s, "metric", "waiting") ==
                                        "in_flight" else "num_requests_waiting", "sum",
                                        cfg.window_s, labels),
                  "threshold": format_quantity(s.target)}
            if s.activation_threshold:
                md["activationThreshold"] = format_quantity(s.activation_threshold)
            cooldowns.add(s.cooldown_period_s)
            triggers.append({"type": "prometheus", "name": f"signal-{i}",
                             "metricType": "AverageValue", "metadata": md})
        elif s.kind == "pods":
            md = {"serverAddress": prometheus,
                  "query": format_query(s.metric, "avg", cfg.window_s, labels),
                  "threshold": format_quantity(s.target)}
            triggers.append({"type": "prometheus", "name": f"signal-{i}", "metricType": "Value",
                             "metadata": md})
        else:
            raise ConfigError(f"signal {s.kind}: no KEDA form the import reads back (a schedule "
                              f"is a cron trigger in wall-clock time, a forecast has none); "
                              f"remove it before exporting")
    if len(cooldowns) > 1:
        raise ConfigError("several queue signals with different cooldown_period_s: a "
                          "ScaledObject has one cooldownPeriod")
    if not float(pool.sync_period_s).is_integer():
        raise ConfigError(f"sync_period_s {pool.sync_period_s:g}: KEDA's pollingInterval is whole "
                          f"seconds")
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "pollingInterval": int(pool.sync_period_s),
        "minReplicaCount": pool.min_replicas, "maxReplicaCount": pool.max_replicas}
    if cooldowns:
        c = cooldowns.pop()
        if not float(c).is_integer():
            raise ConfigError(f"cooldown_period_s {c:g}: KEDA's cooldownPeriod is whole seconds")
        spec["cooldownPeriod"] = int(c)
    behavior = pool.behavior.model_dump(mode="json", exclude_none=True)
    if behavior != type(pool.behavior)().model_dump(mode="json", exclude_none=True):
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior}}
    spec["triggers"] = triggers
    ann = write_annotations(cfg, pool, with_window=False, with_sync=False)
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": name, "annotations": ann}, "spec": spec}
