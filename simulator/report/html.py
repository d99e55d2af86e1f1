"""One self-contained HTML report of a run, a sweep or a plan — the page taken to a budget meeting.

What this models: nothing physical — it lays out what a run folder (``servesim run --out``), a sweep
folder (``servesim sweep``) or a plan folder (``servesim plan``) holds: the headline answer (the
cheapest configuration meeting the SLO and its monthly cost, or the run's cost), the scenario,
latency CDFs, TTFT/TPOT against load (sweeps), GPUs and $/h over time, the cost breakdown, SLO
attainment per tenant, the calibration used and its published error, the version and the seed.

The page is one file: Jinja2 (autoescaped, so scenario text cannot inject markup), inline CSS,
plots embedded as base64 PNG, no script and no external resource, so it opens anywhere offline.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from simulator.errors import ConfigError, safe_load

TEMPLATE = "report.html.j2"


# --------------------------------------------------------------------------------------------
# Formatting (shared with the tests, which look for these strings in the rendered page)
# --------------------------------------------------------------------------------------------


def _bad(v: Any) -> bool:
    return v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v)))


def fmt_usd(v: Any, nd: int = 2) -> str:
    return "—" if _bad(v) else f"${float(v):,.{nd}f}"


def fmt_ms(v: Any) -> str:
    return "—" if _bad(v) else f"{float(v):,.1f} ms"


def fmt_num(v: Any, nd: int = 2) -> str:
    return "—" if _bad(v) else f"{float(v):,.{nd}f}"


def fmt_pct(v: Any) -> str:
    return "—" if _bad(v) else f"{float(v):.1%}"


def headline_numbers(summary: dict[str, Any]) -> list[str]:
    """Strings the headline of a run's report shows (tests check the page contains them)."""
    c = summary.get("cost") or {}
    out = [fmt_usd(c.get("usd_per_hour")) + "/h", fmt_usd(c.get("usd_per_month"), 0) + "/month",
           fmt_ms(summary["ttft_ms"]["p90"]), fmt_ms(summary["tpot_ms"]["p90"])]
    if c.get("usd_per_1m_output_tokens") is not None:
        out.append(fmt_usd(c["usd_per_1m_output_tokens"], 3))
    return out


# --------------------------------------------------------------------------------------------
# Gathering
# --------------------------------------------------------------------------------------------


def _img(fig: Any) -> str:
    from simulator.report.plots import to_png_base64

    return to_png_base64(fig)


def _read_json(p: Path) -> Any:
    return json.loads(p.read_text())


def calibration_info(summary: dict[str, Any]) -> dict[str, Any]:
    """The calibration a run used and the error published for it (the calibration file's
    provenance, and the lines of benchmarks/fidelity.md about the GPU)."""
    dep = summary.get("deployment", {})
    gpu = str(dep.get("gpu", ""))
    info: dict[str, Any] = {"source": dep.get("calibration", "—"), "gpu": gpu,
                            "validation": {}, "residuals": {}, "fidelity": []}
    try:
        from simulator.profiles import find_calibration

        cal = find_calibration(gpu) if gpu else None
    except ConfigError:
        cal = None
    if cal is not None:
        info["validation"] = dict(cal.provenance.validation)
        info["residuals"] = dict(cal.provenance.residuals)
        info["method"] = cal.provenance.method
    fid = Path(__file__).resolve().parents[2] / "benchmarks" / "fidelity.md"
    if fid.is_file():
        lines = fid.read_text().splitlines()
        hits = [ln for ln in lines if gpu and gpu.lower() in ln.lower()]
        info["fidelity"] = hits[:25]
        info["fidelity_file"] = "benchmarks/fidelity.md"
    return info


def _static_replicas(summary: dict[str, Any], scenario: dict[str, Any]) -> pd.DataFrame:
    """Replica lifetimes of a run folder without replicas.parquet: its fleet held for the whole
    run (every pool of ``fleet.pools``, or ``fleet.replicas`` of the deployment)."""
    from simulator.cost import static_replicas

    dep = summary.get("deployment", {})
    fleet = scenario.get("fleet", {}) or {}
    end = float(summary["sim"]["sim_time_s"])
    gpu = str(fleet.get("gpu") or dep.get("gpu"))
    tp = int(fleet.get("tp") or dep.get("tp") or 1)
    pools = fleet.get("pools") or []
    if not pools:
        return static_replicas(int(fleet.get("replicas", 1)), str(dep.get("gpu", gpu)),
                               int(dep.get("tp", tp)), end)
    frames = [static_replicas(int(p.get("replicas", 1)), str(p.get("gpu") or gpu),
                              int(p.get("tp") or tp), end, pool=str(p.get("name", i)))
              for i, p in enumerate(pools)]
    df = pd.concat(frames, ignore_index=True)
    df["replica"] = range(len(df))
    return df


def save_run(res: Any, out: str | Path) -> Path:
    """``Results.save`` plus the replica lifetimes (``replicas.parquet``) the cost plots read."""
    d = Path(res.save(out))
    reps = (res.extra or {}).get("replicas")
    if isinstance(reps, pd.DataFrame) and not (d / "replicas.parquet").is_file():
        reps.to_parquet(d / "replicas.parquet", index=False)
    return d


def _pool_pricing(scenario: dict[str, Any]) -> list[Any]:
    """The scenario's pools with their ``pricing`` (for :func:`simulator.cost.cost_timeseries`);
    none that cannot be read (a scenario written by another version)."""
    from types import SimpleNamespace

    from simulator.cluster.spec import PoolPricing

    out = []
    for p in ((scenario.get("fleet") or {}).get("pools") or []):
        if isinstance(p, dict) and p.get("name") and p.get("pricing"):
            try:
                out.append(SimpleNamespace(name=p["name"],
                                           pricing=PoolPricing.model_validate(p["pricing"])))
            except Exception:  # another version's pricing: priced by cost: instead
                continue
    return out


def run_context(d: Path) -> dict[str, Any]:
    """Everything the page shows about one run folder."""
    from simulator.cost import cost_timeseries
    from simulator.plan_spec import TARGETS, CostConfig
    from simulator.report import plots
    from simulator.store import verify_run

    verify_run(d)  # whole, as written (manifest sizes and hashes)
    summary = _read_json(d / "summary.json")
    scen_text = (d / "scenario.yaml").read_text() if (d / "scenario.yaml").is_file() else ""
    scenario = safe_load(scen_text) or {} if scen_text else {}
    ctx: dict[str, Any] = {"summary": summary, "scenario_yaml": scen_text,
                           "scenario": scenario, "plots": {}}
    slo = summary.get("slo")
    targets = {k: v["target_ms"] for k, v in (slo or {}).get("targets", {}).items()}
    req_path = d / "requests.parquet"
    if req_path.is_file():
        ctx["plots"]["cdf"] = _img(plots.latency_cdf(pd.read_parquet(req_path), targets))
    # Cost over time and breakdown.
    cost = summary.get("cost")
    if cost:
        try:
            cfg = CostConfig.model_validate(scenario.get("cost") or {})
        except Exception:  # a scenario written by another version: default pricing
            cfg = CostConfig()
        rp = d / "replicas.parquet"
        reps = pd.read_parquet(rp) if rp.is_file() else _static_replicas(summary, scenario)
        try:
            ts = cost_timeseries(reps, cfg, float(summary["sim"]["sim_time_s"]),
                                 pools=_pool_pricing(scenario))
            ctx["plots"]["cost_time"] = _img(plots.cost_over_time(ts))
        except ConfigError:
            pass
        busy = float(cost["utilisation"]["replica_busy_frac"])
        items = []
        for pool, b in cost.get("by_pool", {}).items():
            # Per pool: its own share of time in engine steps where the summary has it.
            frac = float(b.get("step_time_frac", busy))
            items.append({"item": f"{pool} ({b['gpu']}) busy", "usd": b["usd"] * frac})
            items.append({"item": f"{pool} ({b['gpu']}) idle", "usd": b["usd"] * (1 - frac)})
        ctx["cost_items"] = items
        if items:
            ctx["plots"]["cost_breakdown"] = _img(plots.cost_breakdown(pd.DataFrame(items)))
    # SLO attainment per tenant.
    if slo:
        pct = {n: p for n, _, p in TARGETS}
        rows = []
        for tenant, blk in sorted(slo.get("tenants", {}).items()):
            for name, chk in blk["targets"].items():
                rows.append({"tenant": tenant, "target": name, "target_ms": chk["target_ms"],
                             "value_ms": chk["value_ms"], "attainment": chk["attainment"],
                             "required": pct[name] / 100.0, "met": chk["met"]})
        ctx["slo_rows"] = rows
        if rows:
            ctx["plots"]["slo"] = _img(plots.slo_attainment(pd.DataFrame(rows)))
    rep = d / "replications.json"
    if rep.is_file():
        ctx["replications"] = _interval_rows(_read_json(rep))
    ctx["calibration"] = calibration_info(summary)
    return ctx


def _interval_rows(rep: dict[str, Any]) -> dict[str, Any]:
    iv = rep.get("intervals", {})
    rows = []
    for path, label in (("ttft_ms.p50", "TTFT p50 (ms)"), ("ttft_ms.p90", "TTFT p90 (ms)"),
                        ("ttft_ms.p99", "TTFT p99 (ms)"), ("tpot_ms.p90", "TPOT p90 (ms)"),
                        ("e2e_ms.p99", "E2E p99 (ms)"),
                        ("throughput.requests_per_s", "requests/s"),
                        ("throughput.output_tokens_per_s", "output tokens/s"),
                        ("slo.attainment", "SLO attainment"), ("slo.goodput_rps", "goodput (req/s)"),
                        ("cost.usd_per_1m_output_tokens", "$ per 1M output tokens")):
        node: Any = iv
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and "mean" in node:
            rows.append({"label": label, **node})
    return {"k": rep.get("replications"), "seeds": rep.get("seeds", []), "rows": rows}


def sweep_context(d: Path) -> dict[str, Any]:
    from simulator.report import plots
    from simulator.sweep import load_results

    meta = _read_json(d / "sweep.json") if (d / "sweep.json").is_file() else {}
    df = load_results(d)
    ctx: dict[str, Any] = {"meta": meta, "plots": {}, "runs": [], "params": []}
    if not len(df):
        return ctx
    params = [c for c in df.columns if c.startswith("param.")]
    ctx["params"] = params
    ok = df[df["status"] == "ok"] if "status" in df else df
    numeric = [p for p in params if pd.api.types.is_numeric_dtype(df[p]) and df[p].nunique() > 1]
    prefer = "param.workload.arrival.rate"
    x = prefer if prefer in numeric else (numeric[0] if numeric else None)
    if x is not None and len(ok) and "ttft_ms.p90" in ok:
        series = next((p for p in params if p != x and df[p].nunique() > 1), None)
        ctx["plots"]["vs_load"] = _img(plots.latency_vs_load(ok, x, series))
        ctx["x"] = x
    cols = ["key", *params, "seed", "status", "ttft_ms.p90", "tpot_ms.p90", "e2e_ms.p99",
            "throughput.requests_per_s", "cost.usd_per_hour", "cost.usd_per_1m_output_tokens",
            "slo.met", "error"]
    cols = [c for c in cols if c in df.columns]
    sort = [c for c in (*params, "seed") if c in df.columns]
    ctx["columns"] = cols
    ctx["runs"] = df.sort_values(sort)[cols].to_dict("records") if sort else \
        df[cols].to_dict("records")
    if "slo.met" in ok and "cost.usd_per_hour" in ok:
        good = ok[ok["slo.met"].fillna(False).astype(bool)]
        if len(good):
            best = good.sort_values("cost.usd_per_hour").iloc[0]
            ctx["best"] = best.to_dict()
    ctx["n_ok"] = len(ok)
    ctx["n"] = len(df)
    first = json.loads(ok.iloc[0]["summary_json"]) if len(ok) else None
    ctx["first_summary"] = first
    if first:
        ctx["calibration"] = calibration_info(first)
    return ctx


def plan_context(d: Path) -> dict[str, Any]:
    from simulator.report import plots

    p = _read_json(d / "plan.json")
    cand = pd.read_csv(d / "candidates.csv") if (d / "candidates.csv").is_file() else pd.DataFrame()
    metric = p.get("spec", {}).get("pareto_metric", "ttft_ms.p90")
    ctx: dict[str, Any] = {"plan": p, "metric": metric, "plots": {}}
    if len(cand):
        ctx["plots"]["pareto"] = _img(plots.pareto_figure(cand, metric))
        knob_cols = [c for c in cand.columns if c.startswith("knob.")]
        ctx["knob_cols"] = knob_cols
        ctx["candidates"] = cand.to_dict("records")
        if "pareto" in cand:
            ctx["frontier"] = cand[cand["pareto"].astype(str) == "True"].sort_values(
                "usd_per_hour").to_dict("records")
    if (d / "best" / "summary.json").is_file():
        ctx["best_run"] = run_context(d / "best")
    return ctx


def build_report(src: str | Path) -> str:
    """Render the report of a run, sweep or plan folder as one HTML string."""
    import jinja2

    from simulator import __version__

    d = Path(src)
    if (d / "plan.json").is_file():
        kind, ctx = "plan", plan_context(d)
    elif (d / "sweep.json").is_file() or (d / "results").is_dir():
        kind, ctx = "sweep", sweep_context(d)
    elif (d / "summary.json").is_file():
        kind, ctx = "run", run_context(d)
    else:
        raise ConfigError(f"{d}: not a run folder (summary.json), a sweep folder (sweep.json, "
                          f"results/) or a plan folder (plan.json); run servesim run --out, "
                          f"servesim sweep or servesim plan first")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(usd=fmt_usd, ms=fmt_ms, num=fmt_num, pct=fmt_pct)
    return env.get_template(TEMPLATE).render(
        kind=kind, ctx=ctx, src=str(d), version=__version__,
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_report(src: str | Path, out: str | Path) -> Path:
    html = build_report(src)
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(html, encoding="utf-8")
    return p


def report_command(
    src: Annotated[Path, typer.Argument(help="A run folder (servesim run --out), a sweep folder "
                                        "or a plan folder.")],
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
) -> None:
    """Write one self-contained HTML report (plots embedded) of a run, sweep or plan."""
    try:
        p = write_report(src, out)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {p} ({p.stat().st_size / 1024:,.0f} KiB)")
