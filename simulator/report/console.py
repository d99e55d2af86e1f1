"""Terminal output of replicated runs: each figure as mean and 95% interval over K seeds."""

from __future__ import annotations

from typing import Any

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
    from rich.console import Console
    from rich.table import Table

    con = Console() if Console().is_terminal else Console(width=150)
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
        (Path(out) / "replications.json").write_text(json.dumps(rep, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(rep, indent=2))
    else:
        print_intervals(rep)
        if out is not None:
            typer.echo(f"wrote {out}/summary.json (seed {rep['seeds'][0]}), replications.json")
