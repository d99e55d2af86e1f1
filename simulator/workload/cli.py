"""``servesim workload …``: list the named workloads, describe one (statistics and plots).

``describe NAME`` accepts a named workload (``servesim workload list``), a workload spec file, or a
scenario file (its workload, block size and max_model_len), with ``--set field=value`` overrides of
the workload's fields. Heavy imports happen inside the commands so ``servesim --help`` stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from simulator.errors import ConfigError

workload_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Named workloads: list them, describe their statistics, plot them.")


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _num(v: Any, nd: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:,.{nd}f}"


def _resolve(name: str, overrides: list[str]) -> tuple[Any, int, int | None, str | None]:
    """(WorkloadConfig, block_size, max_model_len, base_dir) for a name, spec or scenario file."""
    from simulator.config import WorkloadConfig, apply_overrides, load_scenario
    from simulator.errors import format_validation_error, read_yaml

    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        data, _ = read_yaml(p)
        if isinstance(data, dict) and "workload" in data:
            sc = load_scenario(p, [f"workload.{o}" for o in overrides])
            return sc.workload, sc.engine.block_size, sc.engine.max_model_len, sc.base_dir
        raw: dict[str, Any] = {"spec": str(p)}
    else:
        raw = {"name": name}
    from pydantic import ValidationError

    try:
        cfg = WorkloadConfig.model_validate(apply_overrides(raw, overrides))
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, f"workload {name}", data=raw)) from None
    return cfg, 16, None, str(p.resolve().parent) if "spec" in raw else None


@workload_app.command("list")
def list_command() -> None:
    """List the named workloads shipped in workloads/ (and whether they need ../shared/data)."""
    from rich.console import Console
    from rich.table import Table

    from simulator.profiles import data_root
    from simulator.workload.spec import TraceArrivals, load_workload_file

    con = Console(width=160) if not Console().is_terminal else Console()
    t = Table(title="named workloads (workload: {name: …})", show_edge=False)
    for c in ("name", "arrival", "needs shared data", "description"):
        t.add_column(c)
    for path in sorted(data_root("workloads").glob("*.yaml")):
        try:
            data = load_workload_file(path)
        except ConfigError as e:
            t.add_row(path.stem, "—", "—", f"[red]invalid: {e}[/]")
            continue
        arrival = data.get("arrival", {}).get("kind", "poisson")
        needs = "yes" if arrival == TraceArrivals.model_fields["kind"].default else "no"
        t.add_row(path.stem, arrival, needs, str(data.get("description", "")))
    con.print(t)


@workload_app.command("describe")
def describe_command(
    name: Annotated[str, typer.Argument(help="Named workload, workload spec file or scenario file.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a workload field: "
                                                   "arrival.rate=5")] = None,
    requests: Annotated[int, typer.Option(help="Requests to sample.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    max_model_len: Annotated[int | None, typer.Option(help="Clip lengths / end sessions as a "
                                                      "deployment with this max_model_len would.")
                             ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write arrivals-per-minute and length "
                                              "histograms to this PNG.")] = None,
) -> None:
    """Print a workload's statistics: rate, inter-arrival CV, lengths, correlation, tenants."""
    from rich.console import Console
    from rich.table import Table

    from simulator.workload.describe import plot as plot_sample
    from simulator.workload.describe import sample_workload, statistics

    try:
        cfg, block, mml, base_dir = _resolve(name, set_ or [])
        sample = sample_workload(cfg, seed, requests, block, max_model_len or mml, base_dir)
        st = statistics(cfg, sample)
    except ConfigError as e:
        _fail(str(e))
        return
    con = Console(width=160) if not Console().is_terminal else Console()
    con.print(f"[bold]{st['name']}[/]: {st['description']}")
    a = st["arrivals"]
    tgt = st["target"]
    t = Table(title=f"arrivals ({st['arrival']}; {st['requests']:,} requests sampled, seed {seed})",
              show_edge=False)
    for c in ("", "measured", "target"):
        t.add_column(c, justify="left" if not c else "right")
    if st["closed_loop"] and not a:
        t.add_row("closed loop", "arrivals depend on the server", "")
    else:
        t.add_row("rate (req/s)", _num(a.get("rate"), 3), _num(tgt["rate"], 3))
        t.add_row("CV of inter-arrival times", _num(a.get("cv"), 3), _num(tgt["cv"], 3))
        t.add_row("variance/mean of per-minute counts", _num(a.get("dispersion_60s"), 2), "")
        t.add_row("span (s)", _num(a.get("span_s"), 1), "")
    con.print(t)
    t2 = Table(title="lengths (tokens)", show_edge=False)
    for c in ("", "mean", "p50", "p90", "p99", "max"):
        t2.add_column(c, justify="left" if not c else "right")
    for key, label in (("input", "input (prompt)"), ("output", "output")):
        d = st[key]
        t2.add_row(label, *(_num(d[c], 0) for c in ("mean", "p50", "p90", "p99", "max")))
    con.print(t2)
    con.print(f"Spearman rank correlation (input, output): {_num(st['spearman'], 3)}   "
              f"ideal prefix-cache hit rate (one replica, infinite cache): "
              f"{st['ideal_prefix_hit_rate']:.1%}")
    if "sessions" in st:
        s = st["sessions"]
        con.print(f"sessions: {s['sessions']:,}, {s['turns_mean']:.2f} turns each on average "
                  f"(turn times assume instant responses)")
    t3 = Table(title="tenants", show_edge=False)
    for c in ("tenant", "requests", "share", "req/s", "input mean", "output mean", "priority",
              "SLO class"):
        t3.add_column(c, justify="left" if c in ("tenant", "SLO class") else "right")
    for tn, d in st["tenants"].items():
        t3.add_row(tn, f"{d['requests']:,}", f"{d['share']:.1%}", _num(d["rate"], 3),
                   _num(d["input_mean"], 0), _num(d["output_mean"], 0), str(d["priority"]),
                   d["slo_class"])
    con.print(t3)
    if plot is not None:
        plot_sample(sample, f"{st['name']} (seed {seed})", str(plot))
        con.print(f"wrote {plot}")
