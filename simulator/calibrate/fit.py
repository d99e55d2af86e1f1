"""Fit the step-time model's coefficients on real measurements and write calibration files.

What this does: turns measured kernel and end-to-end latencies into the coefficients of
:class:`simulator.profiles.Calibration` for one GPU and one vLLM version family, and writes them with
their provenance and fit residuals to ``hardware_profiles/calibration/<gpu>__vllm-<family>.yaml``.
Every prediction made while fitting goes through the simulator's own physics — the kernel formulas
and :class:`~simulator.engine.step_time.RooflineStepTime` of :mod:`simulator.engine.step_time`, and
the real vLLM-v1 scheduler for whole runs — so a fitted coefficient means the same thing in the fit
and in a simulation.

Fits, per GPU (data root: :func:`simulator.calibrate.datasets.shared_data_root`):

- **H100-SXM, H200-SXM** — aiconfigurator's kernel tables, the CPU overheads on LLM-Inference-Bench
  static batches (then the V1 prior, :data:`V1_OVERHEADS`, for the V1 families and the fitted
  pre-V1 overheads as family :data:`V0_FAMILY`), families 0.24 and the older 0.14 and 0.19:
  :mod:`simulator.calibrate.fit_aic` (its docstring says what is fitted on which rows).
- **MI300X** — a maximum a-posteriori fit on ROCm's vLLM dev-docker latencies and throughputs;
  **MI325X** — a prior derived from it: :mod:`simulator.calibrate.fit_rocm`.
- **a user's benchmark_serving JSON** — ``--from-bench``: :mod:`simulator.calibrate.fit_bench`.

The optimiser, the static-batch replay through the real scheduler and the other shared pieces are
in :mod:`simulator.calibrate.fit_core`. This module puts the fits together (:func:`fit_all`,
the V1/V0 split of the NVIDIA overheads), writes and checks the files and holds the
``servesim calibrate`` command.

The validation data (``silicon_sample.csv``, the dstack serving runs, ROCm 0.9.x/0.10.0) is never
read here. ``fit_from_benchmark`` fits a user's own vLLM ``benchmark_serving`` JSON (family
``custom`` by default) by replaying its recorded requests, in order, at Poisson arrivals of its
request rate.

Reproducibility: the optimiser (bounded Nelder–Mead on log-ratio residuals, restarted to
convergence) is deterministic; coefficients are written with 8 significant digits. A rewrite keeps
the file's ``date`` (and part B's ``validation`` entries) when the coefficients, data and method are
unchanged, so rerunning ``servesim calibrate`` leaves the files byte-identical; pass ``date=`` to
stamp a new one. ``--check`` refits and fails when any coefficient moved by more than 1e-6 relative.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from simulator.calibrate import datasets as ds
from simulator.calibrate.fit_aic import KERNEL_VERSION, OLDER_KERNEL_VERSIONS, fit_nvidia
from simulator.calibrate.fit_bench import fit_from_benchmark
from simulator.calibrate.fit_core import GpuFit
from simulator.calibrate.fit_rocm import derive_mi325x, fit_mi300x
from simulator.errors import ConfigError
from simulator.profiles import Calibration, CalibrationProfile, data_root

#: Give the NVIDIA vLLM-0.24 files the V1 engine's CPU overheads (``V1_OVERHEADS``, a prior) and
#: write the LLM-Inference-Bench overhead fit (a pre-V1 vLLM) as family ``V0_FAMILY`` instead;
#: False keeps the LLM-Inference-Bench overheads in the 0.24 files.
V1_OVERHEAD_PRIOR = True
V0_FAMILY = "v0"
#: vLLM V1's per-step and per-sequence CPU cost outside the GPU kernels: a PRIOR, not a fit. V1
#: runs scheduling, input preparation and output processing in a busy engine-core process that
#: overlaps them with the GPU's execution of the previous step (async scheduling), so they add
#: ~nothing to the step time; NVIDIA's aiconfigurator prices a vLLM step as the sum of its measured
#: kernel times with no CPU term (sdk/backends/vllm_backend.py ``run_agg``). No V1-era end-to-end
#: source outside the validation suites exists in the shared data to fit them on.
V1_OVERHEADS = {"step_overhead_us": 0.0, "per_seq_overhead_us": 0.0, "per_token_overhead_us": 0.0}

GPUS = ("H100-SXM", "H200-SXM", "MI300X", "MI325X")
TOL = 1e-6
"""Relative tolerance of ``--check``."""

_HEADER = ("# Step-time calibration written by `servesim calibrate` (simulator/calibrate/fit.py).\n"
           "# Do not edit by hand: rerun the fit. provenance.validation is filled by\n"
           "# `servesim validate` (held-out error).\n")


def calibration_dir() -> Path:
    return data_root("hardware_profiles") / "calibration"


def calibration_path(gpu: str, family: str, out_dir: Path | None = None) -> Path:
    return (out_dir or calibration_dir()) / f"{gpu}__vllm-{family}.yaml"


def changed_coefficients(a: Calibration, b: Calibration, tol: float = TOL) -> list[str]:
    """Names of coefficients differing by more than ``tol`` relative (absolute near zero)."""
    da, db = a.model_dump(), b.model_dump()

    def differ(x: Any, y: Any) -> bool:
        if isinstance(x, dict) or isinstance(y, dict):
            return not (isinstance(x, dict) and isinstance(y, dict) and x.keys() == y.keys()
                        and not any(differ(x[k], y[k]) for k in x))
        if x is None or y is None or isinstance(x, bool) or isinstance(y, bool):
            return bool(x != y)
        return abs(x - y) > tol * max(abs(x), abs(y), 1e-9)

    return [k for k in da if differ(da[k], db[k])]


def _read(path: Path) -> CalibrationProfile | None:
    if not path.exists():
        return None
    from simulator.errors import load_yaml_model

    return load_yaml_model(path, CalibrationProfile)


def render(prof: CalibrationProfile) -> str:
    """The YAML text of a calibration file (stable key order, 8 significant digits)."""
    data = prof.model_dump(mode="json")
    coeffs = data["coefficients"]
    for k, v in coeffs.items():
        if isinstance(v, dict):  # group-size tables: integer keys, as written by hand
            coeffs[k] = {int(n): x for n, x in v.items()}
    return _HEADER + yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)


def write_profile(prof: CalibrationProfile, out_dir: Path | None = None,
                  date: str | None = None) -> Path:
    """Write ``prof`` to ``<out_dir>/<gpu>__vllm-<family>.yaml``.

    When the file exists with the same data and method and coefficients within :data:`TOL`, it is
    left exactly as it is (date, coefficients' last digits and part B's ``validation`` included),
    so a rerun is byte-identical; ``date`` then only restamps the date. Otherwise the file is
    replaced, dated ``date`` or today, with an empty ``validation`` (the held-out error of other
    coefficients no longer applies).
    """
    path = calibration_path(prof.gpu, prof.vllm_family, out_dir)
    old = _read(path)
    if old is not None and not changed_coefficients(old.coefficients, prof.coefficients) \
            and old.provenance.data == prof.provenance.data \
            and old.provenance.method == prof.provenance.method:
        prof = old
    if date is not None:
        prof = prof.model_copy(update={
            "provenance": prof.provenance.model_copy(update={"date": date})})
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render(CalibrationProfile.model_validate(prof.model_dump()))
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def split_v1_v0(f: GpuFit) -> list[GpuFit]:
    """An NVIDIA fit whose overheads come from the pre-V1 LLM-Inference-Bench engine → the same
    kernels as two files: the vLLM-0.24 family with ``V1_OVERHEADS`` (prior) and ``V0_FAMILY``
    with the fitted (or copied) pre-V1 overheads."""
    p = f.profile
    v0_method = (p.provenance.method + f" Family {V0_FAMILY}: these overheads describe a pre-V1 "
                 "vLLM engine (synchronous scheduling; LLM-Inference-Bench, 2024); choose it with "
                 f"step_time.calibration: {V0_FAMILY} for vLLM < 0.8 (the dstack-405b runs used "
                 "0.6.3).")
    v0 = p.model_copy(update={"vllm_family": V0_FAMILY, "provenance": p.provenance.model_copy(
        update={"method": v0_method})})
    return [v1_prior(f, f"the fitted pre-V1 values are kept in {p.gpu}__vllm-{V0_FAMILY}.yaml"),
            GpuFit(v0, [*f.notes, f"family {V0_FAMILY}: pre-V1 overheads"])]


def v1_prior(f: GpuFit, pre_v1_note: str) -> GpuFit:
    """``f`` with its CPU overheads replaced by the vLLM V1 prior :data:`V1_OVERHEADS`; the
    method says where the fitted pre-V1 values went (``pre_v1_note``)."""
    p = f.profile
    v1_method = (p.provenance.method + " step_overhead_us, per_seq_overhead_us and "
                 "per_token_overhead_us are then replaced by a vLLM V1 PRIOR (not a fit): "
                 f"{', '.join(f'{k} = {v:g}' for k, v in V1_OVERHEADS.items())}. V1 overlaps "
                 "scheduling, input preparation and output processing with the GPU's previous "
                 "step (async scheduling in the engine-core process), and NVIDIA's aiconfigurator "
                 "prices a vLLM step as the sum of its kernel times with no CPU term "
                 f"(sdk/backends/vllm_backend.py run_agg); {pre_v1_note}. layer_overhead_us (GPU "
                 "kernels) is kept.")
    v1 = p.model_copy(update={
        "coefficients": p.coefficients.model_copy(update=V1_OVERHEADS),
        "provenance": p.provenance.model_copy(update={"method": v1_method})})
    return GpuFit(v1, [*f.notes, "CPU overheads: vLLM V1 prior"])


def older_families(want: Sequence[str]) -> dict[str, list[GpuFit]]:
    """The :data:`OLDER_KERNEL_VERSIONS` families of the NVIDIA GPUs in ``want``: the same fit on
    an older kernel-table folder (H200 reusing that fit's H100 overheads), always with the V1 CPU
    prior (with :data:`V1_OVERHEAD_PRIOR`); their pre-V1 overheads are not written (family
    :data:`V0_FAMILY` keeps the newest kernels)."""
    out: dict[str, list[GpuFit]] = {g: [] for g in ("H100-SXM", "H200-SXM") if g in want}
    if not out:
        return out
    versions = sorted({v for g in out for v in OLDER_KERNEL_VERSIONS.get(g, ())},
                      key=ds._version_key)
    for version in versions:
        h100 = fit_nvidia("H100-SXM", version=version)
        nv = {"H100-SXM": h100}
        if "H200-SXM" in out and version in OLDER_KERNEL_VERSIONS.get("H200-SXM", ()):
            nv["H200-SXM"] = fit_nvidia("H200-SXM", overhead_from=h100.profile, version=version)
        for g, f in nv.items():
            if g not in out or version not in OLDER_KERNEL_VERSIONS.get(g, ()):
                continue
            out[g].append(v1_prior(f, f"the pre-V1 values fitted with these kernels are not "
                                      f"written (family {V0_FAMILY} keeps the vLLM "
                                      f"{KERNEL_VERSION[g]} kernels)")
                          if V1_OVERHEAD_PRIOR else f)
    return out


def fit_all(gpus: Sequence[str] | None = None) -> list[GpuFit]:
    """Refit every GPU (or ``gpus``) that has data; MI325X follows MI300X, H200 follows H100.
    Per NVIDIA GPU: the newest family, ``V0_FAMILY``, then the :data:`OLDER_KERNEL_VERSIONS`
    families, oldest first."""
    want = [g for g in GPUS if gpus is None or g in gpus]
    fits: dict[str, GpuFit] = {}
    extra: dict[str, GpuFit] = {}
    older = older_families(want)
    h100: GpuFit | None = None
    if "H100-SXM" in want or "H200-SXM" in want:
        h100 = fit_nvidia("H100-SXM")
        nv = {"H100-SXM": h100}
        if "H200-SXM" in want:
            nv["H200-SXM"] = fit_nvidia("H200-SXM", overhead_from=h100.profile)
        for g, f in nv.items():
            if g not in want:
                continue
            if V1_OVERHEAD_PRIOR:
                fits[g], extra[g] = split_v1_v0(f)
            else:
                fits[g] = f
    if "MI300X" in want or "MI325X" in want:
        # The MI300X GEMM shape prior comes from this run's H100 kernel fit when there is one.
        mi = fit_mi300x(h100.profile if h100 is not None else None)
        if "MI300X" in want:
            fits["MI300X"] = mi
        if "MI325X" in want:
            fits["MI325X"] = derive_mi325x(mi.profile)
    return [f for g in want for f in (fits.get(g), extra.get(g), *older.get(g, []))
            if f is not None]


def print_fits(profiles: Sequence[CalibrationProfile]) -> None:
    """Rich tables: coefficients per GPU, then residuals."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    if not con.is_terminal:
        con = Console(width=160)
    t = Table(title="fitted coefficients", show_edge=False)
    t.add_column("coefficient")
    for p in profiles:
        t.add_column(f"{p.gpu} ({p.vllm_family})", justify="right")
    def cell(v: Any) -> str:
        if isinstance(v, dict):
            return " ".join(f"{k}:{x:.3g}" for k, x in v.items()) or "-"
        return "-" if v is None else str(v).lower() if isinstance(v, bool) else f"{v:.4g}"

    for name in Calibration.model_fields:
        t.add_row(name, *(cell(getattr(p.coefficients, name)) for p in profiles))
    con.print(t)
    r = Table(title="fit residuals (|rel. error| on the fit set)", show_edge=False)
    r.add_column("gpu")
    r.add_column("fit set")
    r.add_column("median %", justify="right")
    r.add_column("p90 %", justify="right")
    r.add_column("points", justify="right")
    for p in profiles:
        res = p.provenance.residuals
        tags = [k.removesuffix("_median_abs_rel_err_pct") for k in res
                if k.endswith("_median_abs_rel_err_pct")]
        for tag in tags:
            r.add_row(p.gpu, tag, f"{res[f'{tag}_median_abs_rel_err_pct']:.2f}",
                      f"{res.get(f'{tag}_p90_abs_rel_err_pct', float('nan')):.2f}",
                      f"{res.get(f'{tag}_points', float('nan')):.0f}")
        for k, v in res.items():
            if k.endswith("_mean_abs_rel_err_pct"):
                r.add_row(p.gpu, k.removesuffix("_abs_rel_err_pct"), f"{v:.2f}", "", "")
    con.print(r)


def calibrate_command(
    gpu: Annotated[str | None, typer.Option(
        help="Refit only this GPU (H100-SXM, H200-SXM, MI300X, MI325X); default: every GPU with "
             "data. With --from-bench: the GPU the benchmark ran on.")] = None,
    from_bench: Annotated[Path | None, typer.Option(
        "--from-bench", help="Fit on a vLLM benchmark_serving result JSON (per-request details) "
                             "instead of the shared data.")] = None,
    model: Annotated[str | None, typer.Option(help="Model profile of --from-bench.")] = None,
    tp: Annotated[int, typer.Option(help="Tensor-parallel size of --from-bench.")] = 8,
    weight_dtype: Annotated[str | None, typer.Option(
        help="Weight dtype of --from-bench (default: the model's native dtype).")] = None,
    kv_dtype: Annotated[str, typer.Option(help="KV-cache dtype of --from-bench.")] = "auto",
    max_num_seqs: Annotated[int, typer.Option(help="Engine max_num_seqs of --from-bench.")] = 256,
    max_num_batched_tokens: Annotated[int, typer.Option(
        help="Engine max_num_batched_tokens of --from-bench.")] = 8192,
    family: Annotated[str, typer.Option(
        help="vLLM family name the --from-bench file is written under.")] = "custom",
    out: Annotated[Path | None, typer.Option(
        help="Directory to write calibration files to (default: hardware_profiles/calibration; "
             "with --from-bench: the user data folder, $XDG_DATA_HOME/servesim/calibration).")
    ] = None,
    date: Annotated[str | None, typer.Option(
        help="Date to stamp (default: keep the file's date when nothing changed, else today).")
    ] = None,
    check: Annotated[bool, typer.Option(
        help="Refit and exit 1 if any coefficient differs from the committed file by > 1e-6 "
             "relative; write nothing.")] = False,
) -> None:
    """Fit the step-time model on measurements and write hardware_profiles/calibration/*.yaml."""
    try:
        if from_bench is not None:
            if gpu is None or model is None:
                raise ConfigError("--from-bench needs --gpu and --model (and --tp, --weight-dtype)")
            prof, info = fit_from_benchmark(from_bench, gpu, model, tp, weight_dtype,
                                            kv_dtype=kv_dtype, max_num_seqs=max_num_seqs,
                                            max_num_batched_tokens=max_num_batched_tokens,
                                            family=family)
            profiles = [prof]
            typer.echo("  ".join(f"{k}={v:.1f}" for k, v in info.items()))
        else:
            if gpu is not None:
                known = {g.lower(): g for g in GPUS}
                if gpu.lower() not in known:
                    raise ConfigError(f"--gpu: no calibration data for '{gpu}'; known: "
                                      f"{', '.join(GPUS)}")
                gpu = known[gpu.lower()]
            try:
                fits = fit_all([gpu] if gpu else None)
            except ds.DataMissing as e:
                raise ConfigError(str(e)) from None
            profiles = [f.profile for f in fits]
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    print_fits(profiles)
    if from_bench is not None and out is None:
        # NOTE: a user's fit goes to their data folder, never into the installed package (lost on
        # reinstall, read-only in a system install); step_time.calibration finds it by family.
        from simulator.profiles import user_calibration_dir

        out = user_calibration_dir()
    if check:
        bad = []
        for p in profiles:
            old = _read(calibration_path(p.gpu, p.vllm_family, out))
            if old is None:
                bad.append(f"{p.gpu}__vllm-{p.vllm_family}: no committed file")
                continue
            diff = changed_coefficients(old.coefficients, p.coefficients)
            if diff:
                bad.append(f"{p.gpu}__vllm-{p.vllm_family}: {', '.join(diff)} changed")
        if bad:
            typer.echo("calibration drift: " + "; ".join(bad), err=True)
            raise typer.Exit(1)
        typer.echo("calibration files match the refit")
        return
    for p in profiles:
        path = write_profile(p, out, date)
        typer.echo(f"wrote {path}")
        if from_bench is not None:
            typer.echo(f"use it with --set step_time.calibration={p.vllm_family} (fleet.gpu "
                       f"{p.gpu}) or --set step_time.calibration={path}")
