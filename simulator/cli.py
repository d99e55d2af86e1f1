"""The ``servesim`` command line: plain functions over the Python API (typer).

One scenario file plus ``--set path.to.field=value`` overrides, validated by the same pydantic
models as the file. Bad input prints one line (file, line, field, what to do) and exits with 2.
Heavy imports happen inside the commands so ``servesim --help`` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from simulator.errors import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Capacity-planning simulator for LLM serving fleets (vLLM v1 on SimPy).")


def _fail(msg: str) -> None:
    from simulator.errors import clip_line

    typer.echo(f"error: {clip_line(msg)}", err=True)
    raise typer.Exit(2)


def _console() -> Any:
    from simulator.report.console import make_console

    return make_console()


def print_summary(summary: dict[str, Any], res: Any = None) -> None:
    """Render a run's summary as rich tables (simulator.report.console.render_run)."""
    from simulator.report.console import render_run

    render_run(summary, res)


@app.command()
def run(
    scenario: Annotated[Path | None, typer.Argument(
        help="Scenario YAML, or a shipped scenario's name (`servesim scenarios`); default: the "
             "embedded default.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: path.to.field=value")
                    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write summary.json + parquet files here.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json to stdout.")] = False,
    replications: Annotated[int, typer.Option(
        "--replications", min=1, help="Run K seeds (seed, seed+1, …) and report each figure as "
        "mean and 95% interval.")] = 1,
    plot_fleet: Annotated[Path | None, typer.Option(
        "--plot-fleet", help="Autoscaling: write the fleet time series plot (PNG) here.")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", help="Console output: 'table' (servesim's tables) or 'vllm-bench' (the block "
        "`vllm bench serve` prints).")] = "table",
    save_bench: Annotated[Path | None, typer.Option(
        "--save-bench", help="Write the run's result JSON with the keys of `vllm bench serve "
        "--save-result`.")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar (it is drawn on stderr, on a terminal only).")
    ] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Let --out replace a non-empty folder that is not a run folder (a run "
        "folder is always replaced whole).")] = False,
) -> None:
    """Simulate one scenario and print latency, throughput, cost, SLO and autoscaling figures."""
    from simulator.config import load_scenario
    from simulator.run import simulate

    if fmt not in ("table", "vllm-bench"):
        _fail(f"--format {fmt!r}: expected 'table' or 'vllm-bench'")
    if out is not None:  # before simulating: a run that cannot be saved is not run
        from simulator.store import check_out_dir

        try:
            check_out_dir(out, force)
        except ConfigError as e:
            _fail(str(e))
    if replications > 1:
        if fmt != "table" or save_bench is not None:
            _fail("--format vllm-bench and --save-bench describe one run; drop --replications")
        from simulator.report.console import run_replicated

        run_replicated(scenario, set_ or [], seed, replications, out, as_json)
        return
    try:
        from simulator.report.progress import RunWatcher, wanted

        sc = load_scenario(scenario, set_ or [], seed)
        res = simulate(sc, progress=RunWatcher(wanted(quiet)))
    except ConfigError as e:
        _fail(str(e))
        return
    if out is not None:
        try:
            res.save(out, force=force)
        except ConfigError as e:
            _fail(str(e))
    for w in res.summary.get("warnings") or []:
        typer.echo(f"warning: {w}", err=True)
    bench = None
    if fmt == "vllm-bench" or save_bench is not None:
        from simulator.report.bench import bench_result, format_block
        from simulator.report.bench import save_bench as write_bench

        bench = bench_result(res)
        if save_bench is not None:
            write_bench(bench, save_bench)
    if as_json:
        from simulator.store import strict_json

        typer.echo(strict_json(res.summary))
    elif bench is not None and fmt == "vllm-bench":
        typer.echo(format_block(bench))
    else:
        print_summary(res.summary, res)
        if out is not None:
            typer.echo(f"wrote {out}/summary.json, requests.parquet, steps.parquet, "
                       f"timeseries.parquet")
    if save_bench is not None and not as_json:
        typer.echo(f"wrote {save_bench}")
    if plot_fleet is not None:
        _write_fleet_plot(res.extra.get("fleet_timeseries"), plot_fleet, as_json)


def _write_fleet_plot(ts: Any, path: Path, quiet: bool = False) -> None:
    from simulator.report.plots import plot_fleet_timeseries

    if ts is None:
        _fail("--plot-fleet: the scenario has no autoscaling section (no fleet time series)")
    fig = plot_fleet_timeseries(ts)
    fig.savefig(path, dpi=110)
    if not quiet:
        typer.echo(f"wrote {path}")


@app.command("fleet-plot")
def fleet_plot(
    run_dir: Annotated[Path, typer.Argument(help="Folder written by `servesim run --out`.")],
    out: Annotated[Path | None, typer.Option(help="PNG to write (default: RUN_DIR/fleet.png).")
                   ] = None,
) -> None:
    """Plot an autoscaled run's fleet time series (replicas, queue, TTFT p90, $/h)."""
    import pandas as pd

    from simulator.store import verify_run

    try:
        verify_run(run_dir)
    except ConfigError as e:
        _fail(str(e))
    f = run_dir / "fleet_timeseries.parquet"
    if not f.is_file():
        _fail(f"{f}: not found; run an autoscaled scenario with --out {run_dir}")
    _write_fleet_plot(pd.read_parquet(f), out or run_dir / "fleet.png")


@app.command()
def profiles(
    model: Annotated[str | None, typer.Option(help="Check this model's memory fit.")] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU for the fit check.")] = None,
    tp: Annotated[int, typer.Option(help="Tensor-parallel size for the fit check.")] = 1,
    dtype: Annotated[str | None, typer.Option(help="Weight dtype for the fit check.")] = None,
    max_model_len: Annotated[int | None, typer.Option(help="max_model_len for the check.")] = None,
) -> None:
    """List GPU and model profiles, or check that a model fits a GPU at a TP size."""
    from rich.table import Table

    from simulator import profiles as pf

    con = _console()
    try:
        if model or gpu:
            from simulator.config import Scenario
            from simulator.run import resolve_deployment

            data: dict[str, Any] = {"model": {"name": model or "Llama-3.1-8B"},
                                    "fleet": {"gpu": gpu or "H100-SXM", "tp": tp}}
            if dtype:
                data["model"]["weight_dtype"] = dtype
            if max_model_len:
                data["engine"] = {"max_model_len": max_model_len}
            from simulator.config import scenario_from_dict

            sc: Scenario = scenario_from_dict(data, "--model/--gpu")
            dep = resolve_deployment(sc)
            m = dep.memory
            con.print(f"{dep.model.name} {dep.weight_dtype} on {dep.gpu.name} tp={tp}: fits. "
                      f"Per GPU: {m.usable_gib:.1f} GiB usable − {m.weights_gib:.1f} weights − "
                      f"{m.activation_gib:.1f} activations − {m.reserve_gib:.1f} reserve = "
                      f"{m.kv_cache_gib:.1f} GiB KV cache = {m.num_blocks:,} blocks = "
                      f"{m.max_tokens:,} tokens (max_model_len {dep.max_model_len:,})")
            return
        g = Table(title="GPUs", show_edge=False)
        for c in ("name", "memory GB", "HBM GB/s", "BF16 TF", "FP8 TF", "link GB/s", "$/h"):
            g.add_column(c, justify="left" if c == "name" else "right")
        for p in pf.list_gpus():
            price = p.default_price()
            g.add_row(p.name, f"{p.memory_gb:g}", f"{p.mem_bandwidth_gbps:,.0f}",
                      f"{p.bf16_tflops:,.0f}", f"{p.fp8_tflops:,.0f}" if p.fp8_tflops else "—",
                      f"{p.link_bandwidth_gbps:,.0f}",
                      f"{price.usd_per_gpu_hour:.2f} ({price.provider} {price.date})")
        con.print(g)
        t = Table(title="models", show_edge=False)
        for c in ("name", "params B", "active B", "layers", "hidden", "heads/kv", "experts",
                  "KV KiB/token", "dtypes"):
            t.add_column(c, justify="left" if c in ("name", "dtypes") else "right")
        for mp in pf.list_models():
            t.add_row(mp.name, f"{mp.total_params_b:g}", f"{mp.active_params_b:g}",
                      str(mp.num_layers), str(mp.hidden_size),
                      f"{mp.num_attention_heads}/{mp.num_kv_heads}",
                      f"{mp.num_experts_per_token}/{mp.num_experts}" if mp.is_moe else "—",
                      f"{mp.kv_bytes_per_token('bf16') / 1024:g}", ",".join(mp.weight_dtypes))
        con.print(t)
        ct = Table(title="step-time calibrations (step_time.calibration)", show_edge=False)
        ct.add_column("GPU")
        ct.add_column("vLLM families (newest is auto)")
        for gname in sorted({cp.gpu for cp in pf.list_calibrations()}):
            ct.add_row(gname, ", ".join(f"vllm-{f}" for f in pf.calibration_families(gname)))
        con.print(ct)
        if pf.user_calibrations():
            con.print(f"user fits in {pf.user_calibration_dir()}: " + ", ".join(
                f"{cp.gpu} vllm-{cp.vllm_family}" for cp in pf.user_calibrations()))
    except ConfigError as e:
        _fail(str(e))


@app.command()
def scenarios() -> None:
    """List the shipped scenarios (run one by name: `servesim run chat-h100`)."""
    from simulator.config import shipped_scenarios

    con = _console()
    from rich.table import Table

    shipped = shipped_scenarios()
    t = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    t.add_column("name", style="bold", no_wrap=True, min_width=max(map(len, shipped), default=4))
    t.add_column("what", overflow="ellipsis", no_wrap=True)
    for name, what in shipped.items():
        t.add_row(name, what)
    con.print(t)


@app.command()
def version(
    require_compiled: Annotated[bool, typer.Option(
        "--require-compiled", help="Exit with 1 unless the compiled engine is installed and used "
        "(CI checks the install with it).")] = False,
) -> None:
    """Print servesim's version and which engine runs: compiled (mypyc) or pure Python, and why."""
    import importlib
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    import simulator
    from simulator import _native

    for m in _native.MODULES:  # import them: the compiled ones must load, not just be there
        importlib.import_module(m)
    st = _native.status()
    try:
        v = dist_version("servesim")
    except PackageNotFoundError:
        v = "(not installed)"
    typer.echo(f"servesim {v} from {Path(simulator.__file__).parent}")
    typer.echo(f"python   {sys.version.split()[0]} ({sys.executable})")
    typer.echo(f"engine   {st['reason']}; {st['loaded_compiled']} of {len(_native.MODULES)} "
               "engine modules compiled")
    if require_compiled and not (st["compiled"] and st["loaded_compiled"] == len(_native.MODULES)):
        typer.echo("error: the engine is not compiled (--require-compiled)", err=True)
        raise typer.Exit(1)


# ---- commands implemented in other modules, registered here ------------------------------------
# (each module keeps its heavy imports inside the command function so `servesim --help` stays fast)
from simulator.calibrate.fit import calibrate_command  # noqa: E402
from simulator.calibrate.gpu_kernels import gpu_kernels_command  # noqa: E402
from simulator.calibrate.validate import validate_command  # noqa: E402
from simulator.deploy.cli import export_app, import_app  # noqa: E402
from simulator.mitigations import mitigations_command  # noqa: E402
from simulator.plan import plan_command  # noqa: E402
from simulator.report.html import report_command  # noqa: E402
from simulator.sweep import sweep_command  # noqa: E402
from simulator.workload.cli import workload_app  # noqa: E402

app.command("calibrate")(calibrate_command)
app.command("validate")(validate_command)
app.command("gpu-kernels")(gpu_kernels_command)
app.command("plan")(plan_command)
app.command("sweep")(sweep_command)
app.command("mitigations")(mitigations_command)
app.command("report")(report_command)
app.add_typer(workload_app, name="workload")
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")


def main() -> None:
    try:
        app()
    except ConfigError as e:  # pragma: no cover - commands catch their own
        from simulator.errors import clip_line

        typer.echo(f"error: {clip_line(str(e))}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
