"""What ``servesim run`` prints: a planner's answer on one screen.

The run's headline as rich tables sized to the terminal (rich's own width detection, so ``COLUMNS``
is honoured and a pipe gets 80 columns): latency percentiles, throughput and engine gauges, then —
when they apply — cost, SLO attainment and goodput, autoscaling, per-pool and per-tenant lines.
Every figure is read from the run's summary dict (``summary.json``), defensively: a block whose
keys are absent is left out rather than failing. Replicated runs (``--replications K``) print each
figure as a mean and 95 % interval over the seeds (:func:`print_intervals`).
"""

from __future__ import annotations

from typing import Any


def make_console(stderr: bool = False) -> Any:
    """A rich console at the terminal's width (``COLUMNS`` honoured; 80 when not a terminal)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _f(v: Any, nd: int = 1) -> str:
    return "—" if v is None else f"{v:,.{nd}f}"


def _pct(v: Any) -> str:
    return "—" if v is None else f"{v:.1%}"


def _usd(v: Any) -> str:
    if v is None:
        return "—"
    v = float(v)
    if abs(v) >= 100:
        return f"${v:,.0f}"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    return f"${v:,.3f}" if abs(v) >= 0.01 else f"${v:.4f}"


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _kv_table(title: str | None = None) -> Any:
    from rich.table import Table

    t = Table(title=title, show_header=False, show_edge=False, box=None, pad_edge=False,
              title_justify="left", title_style="bold")
    t.add_column("what", style="dim", no_wrap=True)
    t.add_column("value", overflow="fold")
    return t


def _grid(title: str, columns: list[str]) -> Any:
    from rich.table import Table

    t = Table(title=title, show_edge=False, title_justify="left", title_style="bold",
              pad_edge=False)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right", no_wrap=i == 0)
    return t


def loading_timeouts(res: Any) -> int | None:
    """Requests that timed out while the autoscaler had capacity loading (provisioning replicas)
    in their pool: end time inside a fleet time-series interval whose sample shows one loading.
    None without autoscaling."""
    import numpy as np

    ts = getattr(res, "extra", {}).get("fleet_timeseries") if res is not None else None
    if ts is None or not len(ts) or "provisioning" not in ts.columns:
        return None
    req = res.requests
    if not len(req) or "end_s" not in req.columns:
        return 0
    timed = req[req["outcome"].astype(str) == "timed_out"]
    n = 0
    for pool, t in ts.groupby("pool", sort=False, observed=True):
        times = t["time_s"].to_numpy(float)
        loading = t["provisioning"].to_numpy() > 0
        if "waking" in t.columns:
            loading |= t["waking"].to_numpy() > 0
        own = timed[timed["pool"].astype(str) == str(pool)] if "pool" in timed.columns else timed
        if not len(own):
            continue
        end = own["end_s"].to_numpy(float)
        # NOTE: the samples are instants; an end time in (times[i-1], times[i]] counts when
        # either end of that interval shows a replica provisioning or waking.
        idx = np.searchsorted(times, end, side="left")
        idx = idx[idx < len(times)]
        n += int((loading[idx] | loading[np.maximum(idx - 1, 0)]).sum())
    return n


def _regime(con: Any, summary: dict[str, Any]) -> None:
    """One line: whether the run stayed inside the regime its calibration was measured in
    (summary["regime"], simulator.metrics.regime)."""
    reg = summary.get("regime") or {}
    note = reg.get("note")
    if not note:
        return
    outside = reg.get("outside")
    beyond = outside is None or any(
        (v > 0 if k == "running_seqs_share" else v is True) for k, v in outside.items()
        if k != "running_seqs_max")
    if beyond:
        con.print(f"extrapolation: {note}", style="yellow", markup=False)
    else:
        con.print(f"measured regime: {note}", style="dim", markup=False)


def render_run(summary: dict[str, Any], res: Any = None, console: Any = None) -> None:
    """Print a run's summary: latency, throughput/engine, and cost, SLO, autoscaling, pools and
    tenants where they apply. ``res`` (the Results) adds what the summary lacks (per-pool
    outcomes, requests timed out while capacity loaded)."""
    con = console or make_console()
    dep = summary.get("deployment") or {}
    kv_tok = dep.get("kv_cache_tokens")
    head = (f"[bold]{summary.get('scenario', '')}[/]: {dep.get('model')} "
            f"{dep.get('weight_dtype')} on {dep.get('gpu')} tp={dep.get('tp')}")
    if isinstance(kv_tok, int):
        gib = dep.get("kv_cache_gib_per_gpu")
        gib_s = f"{gib:.1f}" if isinstance(gib, (int, float)) else str(gib)
        head += f", KV {gib_s} GiB/GPU = {kv_tok:,} tokens"
    con.print(head)
    if dep.get("calibration"):
        con.print(f"calibration: {dep['calibration']}", style="dim")
    _regime(con, summary)
    lat = _grid("latency (ms)", ["", "mean", "p50", "p90", "p99"])
    for key, label in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"),
                       ("e2e_ms", "E2E"), ("queue_ms", "queue")):
        d = summary.get(key) or {}
        lat.add_row(label, *(_f(d.get(c)) for c in ("mean", "p50", "p90", "p99")))
    con.print(lat)
    _throughput(con, summary)
    _cost(con, summary)
    _slo(con, summary)
    _autoscaling(con, summary, res)
    _pools(con, summary, res)
    _tenants(con, summary)


def _throughput(con: Any, s: dict[str, Any]) -> None:
    th = s.get("throughput") or {}
    req = s.get("requests") or {}
    sim = s.get("sim") or {}
    kv = s.get("kv_cache_usage") or {}
    t = _kv_table("throughput and engine")
    t.add_row("throughput", f"{_f(th.get('requests_per_s'), 2)} req/s, "
              f"{_f(th.get('input_tokens_per_s'), 0)} in + "
              f"{_f(th.get('output_tokens_per_s'), 0)} out tok/s")
    if kv:
        t.add_row("KV cache", f"{_pct(kv.get('mean'))} mean, {_pct(kv.get('max'))} max")
    t.add_row("engine", f"{s.get('preemptions', 0):,} preemptions, prefix cache hit "
              f"{_pct(s.get('prefix_cache_hit_rate'))}")
    parts = [f"{req.get('arrived', 0):,} arrived", f"{req.get('completed', 0):,} completed"]
    for k, label in (("rejected", "rejected"), ("timed_out", "timed out"),
                     ("failed", "failed"), ("in_flight", "in flight")):
        if req.get(k):
            parts.append(f"{req[k]:,} {label}")
    t.add_row("requests", ", ".join(parts))
    if sim:
        t.add_row("run", f"{sim.get('sim_time_s', 0):,.1f} s simulated in "
                  f"{sim.get('wall_s', 0):.2f} s, seed {sim.get('seed')}")
    if sim.get("native"):
        t.add_row("simulator", str(sim["native"]))
    con.print(t)


def _cost(con: Any, s: dict[str, Any]) -> None:
    c = s.get("cost")
    if not isinstance(c, dict) or c.get("usd_per_hour") is None:
        return
    t = _kv_table("cost")
    gpus = c.get("gpus")
    basis = (f" ({gpus:g} GPU{'' if gpus == 1 else 's'}, {c.get('pricing', '')})"
             if isinstance(gpus, (int, float)) else "")
    t.add_row("rate", f"{_usd(c.get('usd_per_hour'))}/h, {_usd(c.get('usd_per_month'))}/month"
              + basis)
    t.add_row("per 1M tokens", f"{_usd(c.get('usd_per_1m_input_tokens'))} input, "
              f"{_usd(c.get('usd_per_1m_output_tokens'))} output")
    run_line = f"{_usd(c.get('total_usd'))} for {_f(c.get('gpu_hours'), 2)} GPU-hours"
    rounding = _get(c, "bill", "rounding_usd")
    if rounding:
        run_line += f" (incl. {_usd(rounding)} billing rounding)"
    idle = _get(c, "utilisation", "idle_usd")
    if idle is not None:
        total = c.get("total_usd") or 0
        share = f" ({idle / total:.0%})" if total else ""
        run_line += f"; idle {_usd(idle)}{share}"
    t.add_row("this run", run_line)
    if c.get("usd_per_good_request") is not None:
        t.add_row("per good request", _usd(c["usd_per_good_request"]))
    busy = _get(c, "utilisation", "replica_busy_frac")
    cap = _get(c, "utilisation", "capacity_frac")
    if busy is not None:
        t.add_row("utilisation", f"replicas busy {_pct(busy)}"
                  + (f", {_pct(cap)} of token capacity" if cap is not None else ""))
    con.print(t)


_TARGET_LABEL = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e": "E2E", "queue": "queue"}


def _target_label(name: str) -> str:
    """``ttft_p90_ms`` → ``TTFT p90``."""
    parts = name.removesuffix("_ms").split("_")
    return " ".join([_TARGET_LABEL.get(parts[0], parts[0]), *parts[1:]])


def _slo(con: Any, s: dict[str, Any]) -> None:
    slo = s.get("slo")
    if not isinstance(slo, dict):
        return
    t = _grid("SLO", ["target", "limit ms", "value ms", "attained", "met"])
    for name, chk in (slo.get("targets") or {}).items():
        t.add_row(_target_label(name), _f(chk.get("target_ms"), 0), _f(chk.get("value_ms")),
                  _pct(chk.get("attainment")), "yes" if chk.get("met") else "[red]no[/]")
    if t.row_count:
        con.print(t)
    line = (f"SLO {'met' if slo.get('met') else '[red]not met[/]'}: "
            f"{_pct(slo.get('attainment'))} of requests good, goodput "
            f"{_f(slo.get('goodput_rps'), 2)} req/s")
    if slo.get("undecided_requests"):
        line += f" ({slo['undecided_requests']:,} undecided)"
    con.print(line)
    tenants = slo.get("tenants") or {}
    if len(tenants) > 1:
        tt = _grid("SLO per tenant", ["tenant", "requests", "attained", "goodput req/s", "met"])
        for name, d in tenants.items():
            tt.add_row(name, f"{d.get('requests', 0):,}", _pct(d.get("attainment")),
                       _f(d.get("goodput_rps"), 2), "yes" if d.get("met") else "[red]no[/]")
        con.print(tt)


def _autoscaling(con: Any, s: dict[str, Any], res: Any) -> None:
    a = s.get("autoscaling")
    if not isinstance(a, dict):
        return
    t = _kv_table("autoscaling")
    t.add_row("scaling", f"{a.get('scale_up_events', 0)} scale-ups "
              f"({a.get('scale_up_waves_while_loading', 0)} while loading), "
              f"{a.get('scale_down_events', 0)} scale-downs, peak "
              f"{a.get('peak_replicas', 0)} replicas")
    cs = a.get("cold_start_s") or {}
    t.add_row("cold starts", f"{a.get('cold_starts', 0)}, mean {_f(cs.get('mean'), 0)} s, "
              f"max {_f(cs.get('max'), 0)} s; {_f(a.get('gpu_hours_not_ready'), 2)} GPU-hours "
              f"not ready")
    lost = a.get("timed_out_while_loading")
    if lost is None:
        lost = loading_timeouts(res)
    if lost is not None:
        t.add_row("timed out", f"{lost:,} requests while capacity was loading")
    extra = [f"{a[k]} {label}" for k, label in (("stockouts", "stockouts"),
                                                ("capacity_waits", "capacity waits"))
             if a.get(k)]
    zero = a.get("scale_to_zero_under_traffic")
    if zero:
        extra.append(f"{len(zero) if isinstance(zero, list) else zero} scale-to-zero under traffic")
    if extra:
        t.add_row("capacity", ", ".join(extra))
    for e in a.get("scale_to_zero_under_traffic") or []:
        back = e.get("back_at_s")
        t.add_row("[yellow]to zero[/]",
                  f"[yellow]{e['pool']} {e['from_replicas']} → 0 at {_f(e['at_s'], 0)} s while "
                  f"{_f(e['arriving_per_s'], 1)} req/s arrived ({e['running']} running); "
                  + (f"back from zero at {_f(back, 0)} s (a cold start)" if back is not None
                     else "never back") + "[/]")
    if a.get("scale_to_zero_under_traffic"):
        t.add_row("", "[dim]a waiting-only queue signal: use metric: in_flight or "
                  "min_replicas: 1 (README, Autoscaling)[/]")
    con.print(t)


def _pools(con: Any, s: dict[str, Any], res: Any) -> None:
    by_cost = _get(s, "cost", "by_pool") or {}
    by_fleet = _get(s, "fleet", "by_pool") or {}
    scaling = _get(s, "autoscaling", "pools") or {}
    names = list(dict.fromkeys([*by_cost, *by_fleet]))
    if len(names) < 2 and not scaling:
        return
    outcomes: dict[str, dict[str, int]] = {}
    req = getattr(res, "requests", None)
    if req is not None and len(req) and "pool" in req.columns:
        for (pool, outcome), n in req.groupby(["pool", "outcome"], observed=True).size().items():
            outcomes.setdefault(str(pool), {})[str(outcome)] = int(n)
    t = _grid("pools", ["pool", "GPU", "replicas", "completed", "timed out", "GPU-h", "$"])
    for name in names:
        c = by_cost.get(name) or {}
        sc = scaling.get(name) or {}
        reps = c.get("replicas")
        if sc.get("peak_replicas") is not None:
            reps = f"{sc.get('final_replicas', reps)} (peak {sc['peak_replicas']})"
        done = (by_fleet.get(name) or {}).get("completed")
        tout = outcomes.get(name, {}).get("timed_out") if outcomes else None
        t.add_row(name, str(c.get("gpu", "—")), "—" if reps is None else str(reps),
                  "—" if done is None else f"{done:,}", "—" if tout is None else f"{tout:,}",
                  _f(c.get("gpu_hours"), 2), _usd(c.get("usd")))
    con.print(t)


def _tenants(con: Any, s: dict[str, Any]) -> None:
    tenants = s.get("tenants") or {}
    if len(tenants) < 2:
        return
    t = _grid("tenants", ["tenant", "completed", "TTFT p90", "TPOT p90", "E2E p90", "req/s"])
    for name, d in tenants.items():
        r = d.get("requests") or {}
        t.add_row(name, f"{r.get('completed', 0):,}/{r.get('arrived', 0):,}",
                  _f(_get(d, "ttft_ms", "p90")), _f(_get(d, "tpot_ms", "p90")),
                  _f(_get(d, "e2e_ms", "p90")), _f(_get(d, "throughput", "requests_per_s"), 2))
    con.print(t)
    con.print("(latency in ms; completed/arrived)", style="dim")

#: (summary path, label) of the figures shown with intervals.
FIGURES: tuple[tuple[str, str], ...] = (
    ("ttft_ms.mean", "TTFT mean (ms)"), ("ttft_ms.p50", "TTFT p50 (ms)"),
    ("ttft_ms.p90", "TTFT p90 (ms)"), ("ttft_ms.p99", "TTFT p99 (ms)"),
    ("tpot_ms.mean", "TPOT mean (ms)"), ("tpot_ms.p90", "TPOT p90 (ms)"),
    ("e2e_ms.p50", "E2E p50 (ms)"), ("e2e_ms.p99", "E2E p99 (ms)"),
    ("throughput.requests_per_s", "requests/s"),
    ("throughput.output_tokens_per_s", "output tokens/s"),
    ("kv_cache_usage.mean", "KV cache usage mean"),
    ("slo.attainment", "SLO attainment"), ("slo.goodput_rps", "goodput (req/s)"),
    ("cost.usd_per_hour", "$ per hour"),
    ("cost.usd_per_1m_output_tokens", "$ per 1M output tokens"),
)


def _at(d: Any, path: str) -> Any:
    for p in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def replication_report(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``run --replications K`` writes and prints: seeds, per-figure intervals, every run."""
    from simulator.metrics.summary import interval_summary

    return {"replications": len(summaries), "seeds": [s["sim"]["seed"] for s in summaries],
            "intervals": interval_summary(summaries), "runs": summaries}


def print_intervals(rep: dict[str, Any]) -> None:
    from rich.table import Table

    con = make_console()
    first = rep["runs"][0]
    dep = first.get("deployment", {})
    con.print(f"[bold]{first.get('scenario', '')}[/]: {dep.get('model')} on {dep.get('gpu')} "
              f"tp={dep.get('tp')}; {rep['replications']} replications, seeds "
              f"{', '.join(str(s) for s in rep['seeds'])}")
    t = Table(title="mean and 95% interval over replications (t-distribution)", show_edge=False)
    for c in ("figure", "mean", "95% interval"):
        t.add_column(c, justify="left" if c == "figure" else "right")
    for path, label in FIGURES:
        iv = _at(rep["intervals"], path)
        if not isinstance(iv, dict) or iv.get("mean") is None:
            continue
        t.add_row(label, f"{iv['mean']:,.3f}", f"[{iv['lo']:,.3f}, {iv['hi']:,.3f}]")
    con.print(t)
    met = _at(rep["intervals"], "slo.met")
    if met is not None:
        con.print(f"SLO met in {met:.0%} of the runs")


def run_replicated(scenario: Any, overrides: list[str], seed: int | None, k: int,
                   out: Any, as_json: bool) -> None:
    """``servesim run --replications K``: K seeds; the first run's files and replications.json."""
    import json
    from pathlib import Path

    import typer

    from simulator.config import load_scenario
    from simulator.errors import ConfigError
    from simulator.run import simulate_replications

    try:
        runs = simulate_replications(load_scenario(scenario, overrides, seed), k)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    rep = replication_report([r.summary for r in runs])
    if out is not None:
        from simulator.report.html import save_run

        save_run(runs[0], out)
        from simulator.store import strict_json

        (Path(out) / "replications.json").write_text(strict_json(rep) + "\n")
    if as_json:
        typer.echo(json.dumps(rep, indent=2))
    else:
        print_intervals(rep)
        if out is not None:
            typer.echo(f"wrote {out}/summary.json (seed {rep['seeds'][0]}), replications.json")
