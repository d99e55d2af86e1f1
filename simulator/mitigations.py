"""Cold-start mitigations compared on the same traffic: one table, one command.

What this models: the what-if a planner runs after seeing a cold-start cascade — the same scenario
and seed (so the same arrivals), changed by one mitigation at a time, each a list of ``--set``
overrides (:data:`VARIANTS`; users add their own): a warm pool of sleeping replicas, a higher
minimum replica count, cached weights with a faster loader, scaling on KV-cache usage instead of
the queue, a longer scale-up stabilization window. For each: p99 / p90 TTFT, timed-out requests,
scale-up waves, peak replicas, GPU-hours spent not ready, and cost ($ total and $/h).

Runs go through the sweep's local executor (:mod:`simulator.sweep`: one process per run when
``jobs`` > 1). ``{pool}`` in an override stands for the autoscaled pool (the scenario's first
``autoscaling.pools`` entry unless given).

Leaves out: combinations of mitigations (give them as one variant), replications (the seed is the
scenario's; run ``servesim sweep`` for intervals).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from simulator.errors import ConfigError

VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "warm_pool": ["autoscaling.pools.{pool}.warm_pool.size=2"],
    "higher_min_replicas": ["autoscaling.pools.{pool}.min_replicas=3"],
    # Weights on the node's local NVMe (no shared-storage fetch) loaded by a parallel streamer:
    # Llama-2-70B download + init 4 m 25 s → 20 s (Anyscale blog; FACTS.md).
    "cached_weights_fast_loader": ["provisioning.weights_cached_on_node=true",
                                   "provisioning.load_s=20"],
    "scale_on_kv_cache": [
        "autoscaling.pools.{pool}.signals=[{kind: pods, metric: kv_cache_usage_perc, target: 0.3}]"],
    "longer_scale_up_stabilization": [
        "autoscaling.pools.{pool}.behavior.scaleUp.stabilizationWindowSeconds=180"],
}
"""Mitigation name → ``--set`` overrides (``{pool}``: the autoscaled pool)."""

COLUMNS = {
    "ttft_p99_s": "ttft_ms.p99",
    "ttft_p90_s": "ttft_ms.p90",
    "completed": "requests.completed",
    "timed_out": "requests.timed_out",
    "retries": "fleet.retries",
    "scale_up_events": "autoscaling.scale_up_events",
    "waves_while_loading": "autoscaling.scale_up_waves_while_loading",
    "peak_replicas": "autoscaling.peak_replicas",
    "gpu_hours_not_ready": "autoscaling.gpu_hours_not_ready",
    "total_usd": "cost.total_usd",
    "usd_per_hour": "cost.usd_per_hour",
}
"""Table column → flattened summary key."""


def parse_variant(item: str) -> tuple[str, list[str]]:
    """``name=path.a=1;path.b=2`` → (name, [overrides])."""
    name, sep, rest = item.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"--variant {item!r}: expected name=path.to.field=value[;path=value…]")
    return name.strip(), [s.strip() for s in rest.split(";") if s.strip()]


def compare(scenario: str | Path, variants: dict[str, list[str]] | None = None,
            overrides: list[str] | None = None, pool: str | None = None,
            jobs: int = 1, progress: Any = None) -> pd.DataFrame:
    """Run ``scenario`` once per variant (same seed and traffic) and return the comparison table,
    one row per variant in the given order (``progress(done, total)`` after each variant)."""
    from simulator.config import format_path, parse_override, scenario_path, set_path
    from simulator.sweep import RunPoint, _raw_scenario, _run_local, build_scenario

    path = scenario_path(scenario)
    raw, base_dir, label = _raw_scenario(path)
    base = copy.deepcopy(raw)
    for item in overrides or []:
        keys, value = parse_override(item)
        set_path(base, keys, value)
    if pool is None:
        pools = (base.get("autoscaling") or {}).get("pools") or {}
        if not pools:
            raise ConfigError(f"{path}: autoscaling.pools: the scenario has no autoscaler; the "
                              f"mitigations compare autoscaled runs (see scenarios/"
                              f"cold-start-cascade.yaml)")
        pool = str(next(iter(pools)))
    points = []
    for name, sets in (variants or VARIANTS).items():
        changes: dict[str, Any] = {}
        for item in sets:
            keys, value = parse_override(item.replace("{pool}", pool))
            changes[format_path(keys)] = value
        sc = build_scenario(base, base_dir, changes, f"variant {name}")
        points.append(RunPoint(name, label, {"variant": name}, sc))
    rows: dict[str, Any] = {}
    for r in _run_local(points, jobs):
        rows[r["key"]] = r
        if progress is not None:
            progress(len(rows), len(points))
    out = []
    for p in points:
        r = rows[p.key]
        if r["status"] != "ok":
            raise ConfigError(f"variant {p.key}: {r['error']}")
        row: dict[str, Any] = {"variant": p.key}
        for col, key in COLUMNS.items():
            v = r.get(key)
            row[col] = v / 1000.0 if v is not None and key.startswith("ttft_ms") else v
        out.append(row)
    return pd.DataFrame(out)


def mitigations_command(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML with an autoscaling section.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override for every variant: "
                                                   "path.to.field=value")] = None,
    variant: Annotated[list[str] | None, typer.Option(
        "--variant", help="Add a variant: name=path.a=1;path.b=2 ({pool} = the autoscaled pool). "
        "Repeatable.")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Run only these variants (names). Repeatable.")] = None,
    pool: Annotated[str | None, typer.Option(help="Autoscaled pool the variants change "
                                             "(default: the first).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Also write the table as CSV here.")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar (it is drawn on stderr, on a terminal only).")
    ] = False,
) -> None:
    """Compare cold-start mitigations on the same traffic (warm pool, min replicas, cached
    weights, KV-cache scaling, longer stabilization): p99 TTFT, timeouts, peak replicas, cost."""
    from rich.console import Console
    from rich.table import Table

    try:
        vs = dict(VARIANTS)
        for item in variant or []:
            name, sets = parse_variant(item)
            vs[name] = sets
        if only:
            missing = [n for n in only if n not in vs]
            if missing:
                raise ConfigError(f"--only: unknown variant(s) {missing}; known: {sorted(vs)}")
            vs = {n: vs[n] for n in only}
        from simulator.report.progress import counter, wanted

        with counter("mitigations", wanted(quiet)) as tick:
            df = compare(scenario, vs, set_ or [], pool, jobs, progress=tick)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    t = Table(title=f"cold-start mitigations: {scenario}", show_edge=False)
    heads = ("variant", "TTFT p99 s", "TTFT p90 s", "completed", "timed out", "scale-ups",
             "waves while loading", "peak replicas", "GPU-h not ready", "$ total", "$/h")
    for h in heads:
        t.add_column(h, justify="left" if h == "variant" else "right", no_wrap=h == "variant")

    def f(v: Any, nd: int = 1) -> str:
        return "—" if v is None or v != v else f"{v:,.{nd}f}"

    for r in df.to_dict("records"):
        t.add_row(r["variant"], f(r["ttft_p99_s"]), f(r["ttft_p90_s"]), f(r["completed"], 0),
                  f(r["timed_out"], 0), f(r["scale_up_events"], 0),
                  f(r["waves_while_loading"], 0), f(r["peak_replicas"], 0),
                  f(r["gpu_hours_not_ready"], 2), f(r["total_usd"], 2), f(r["usd_per_hour"], 2))
    Console(width=160).print(t)
    if out is not None:
        df.to_csv(out, index=False)
