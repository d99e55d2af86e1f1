"""Many scenarios at once: a parameter grid or a list of scenario files, run in parallel, resumable.

What this models: nothing physical — it is the experiment runner a planner uses to draw a curve
(latency vs load, cost vs replicas) or to compare setups. A sweep spec (YAML) names a base scenario
(or a list of scenario files), fixed overrides, a grid of ``path.to.field: [values …]`` and a number of
replications (seeds); every combination is one run. Runs go to a local process pool by default, or
to a Ray cluster (``--ray-address auto`` or ``ray://host:port``; Ray is the optional extra
``servesim[ray]``, and the cluster's workers must have servesim installed).

Each finished run is written at once, atomically (a temporary file renamed into place), as one
Parquet part file ``results/part-<key>.parquet`` of the output folder, where ``<key>`` is a stable
hash of the fully resolved scenario. A rerun lists the part files and skips every key already there,
so an interrupted sweep resumes where it stopped, losing nothing and recomputing nothing; changing
the spec adds only the new combinations. A run whose scenario cannot be built (a model that does not
fit) is recorded with ``status: error`` and its message; a run that raises anything else (or whose
worker dies) with ``status: failed`` and its one-line reason; the sweep goes on either way, and
neither is rerun unless ``--retry-failed`` is given. Local worker processes exit when the sweep's
process dies (they watch their parent), so a killed sweep leaves none behind.

Spec::

    base: ../scenarios/default.yaml      # optional; default: the embedded default scenario
    scenarios: [a.yaml, b.yaml]          # optional, instead of base: the grid applies to each
    overrides: {workload.num_requests: 500}
    grid:
      workload.arrival.rate: [5, 10, 20]
      fleet.gpu: [H100-SXM, H200-SXM]
    replications: 1                      # seeds seed, seed+1, …

Each row of the dataset: ``key``, ``source``, ``scenario``, ``seed``, ``status``, ``error``,
``param.<path>`` per grid field, the flattened summary (``ttft_ms.p90``, ``cost.usd_per_hour`` …),
``summary_json`` and ``scenario_json``. :func:`load_results` reads them into one DataFrame.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from pydantic import Field, ValidationError

from simulator.config import Scenario, set_path
from simulator.errors import ConfigError, format_validation_error, load_yaml_model, read_yaml
from simulator.profiles import Strict

RESULTS_DIR = "results"
PART_PREFIX = "part-"


class SweepSpec(Strict):
    """A sweep: which scenarios, with which fixed overrides, over which grid."""

    name: str | None = None
    """Label of the sweep (default: the spec file's name)."""
    base: str | None = None
    """Scenario file the grid varies (relative to the spec's folder); default: the embedded
    default scenario. Ignored when ``scenarios`` is given."""
    scenarios: list[str] = Field(default_factory=list)
    """Scenario files (relative to the spec's folder); the grid is applied to each."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Fixed ``path.to.field: value`` overrides applied to every run before the grid."""
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    """``path.to.field: [values …]``; every combination is one run."""
    replications: int = Field(default=1, ge=1, le=1000)
    """Runs per combination, with seeds seed, seed+1, …"""


@dataclass(frozen=True)
class RunPoint:
    """One run of a sweep: its resolved scenario and where it came from."""

    key: str
    source: str
    params: dict[str, Any]
    scenario: Scenario


# --------------------------------------------------------------------------------------------
# Expanding the spec
# --------------------------------------------------------------------------------------------


def scenario_key(sc: Scenario) -> str:
    """Stable hash of the fully resolved scenario (defaults filled in; the file's folder left out)."""
    blob = json.dumps(sc.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def load_spec(path: str | Path) -> SweepSpec:
    p = Path(path)
    spec = load_yaml_model(p, SweepSpec,
                           "a mapping (base, scenarios, overrides, grid, replications)")
    for k, v in spec.grid.items():
        if not v:
            raise ConfigError(f"{p}: grid.{k}: empty list of values; give at least one")
    return spec


def _raw_scenario(path: Path | None) -> tuple[dict[str, Any], str, str]:
    """(raw mapping, base_dir, label) of a scenario file, or of the embedded default."""
    from simulator.config import default_scenario_path

    p = path or default_scenario_path()
    data, _ = read_yaml(p)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of scenario fields at the top level")
    return data, str(p.resolve().parent), str(path) if path else "default"


def build_scenario(raw: dict[str, Any], base_dir: str, changes: dict[str, Any],
                   where: str) -> Scenario:
    """``raw`` with dotted ``changes`` applied, validated like a scenario file."""
    data = copy.deepcopy(raw)
    for k, v in changes.items():
        set_path(data, k, v)
    data["base_dir"] = base_dir
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, where, data=data)) from None


def expand(spec: SweepSpec, spec_dir: Path) -> list[RunPoint]:
    """Every run of the sweep, in a stable order (sources, then the grid, then seeds)."""
    sources: list[Path | None] = [spec_dir / s for s in spec.scenarios] or \
        [spec_dir / spec.base if spec.base else None]
    keys = list(spec.grid)
    points: list[RunPoint] = []
    seen: set[str] = set()
    for src in sources:
        raw, base_dir, label = _raw_scenario(src)
        for combo in itertools.product(*(spec.grid[k] for k in keys)):
            params = dict(zip(keys, combo, strict=True))
            desc = ", ".join(f"{k}={v}" for k, v in params.items()) or "(no grid)"
            sc0 = build_scenario(raw, base_dir, {**spec.overrides, **params},
                                 f"{label} with {desc}")
            for r in range(spec.replications):
                sc = sc0.model_copy(update={"seed": sc0.seed + r})
                key = scenario_key(sc)
                if key in seen:
                    continue
                seen.add(key)
                points.append(RunPoint(key, label, params, sc))
    return points


# --------------------------------------------------------------------------------------------
# One run (runs in a worker process or a Ray task)
# --------------------------------------------------------------------------------------------


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists and None kept as values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def run_point(key: str, source: str, params: dict[str, Any],
              scenario_json: dict[str, Any], base_dir: str | None) -> dict[str, Any]:
    """Simulate one point; return its dataset row (plain values only, so it pickles anywhere)."""
    from simulator.errors import clip_line
    from simulator.run import simulate
    from simulator.store import strict_json

    t0 = time.perf_counter()
    row: dict[str, Any] = {"key": key, "source": source,
                           "scenario": str(scenario_json.get("name", "")),
                           "seed": int(scenario_json.get("seed", 0) or 0),
                           "status": "ok", "error": ""}
    row.update({f"param.{k}": v for k, v in params.items()})
    try:
        sc = Scenario.model_validate({**scenario_json, "base_dir": base_dir})
        res = simulate(sc)
    except ConfigError as e:
        row.update(status="error", error=clip_line(str(e)), summary_json="{}")
    except Exception as e:  # any failure of one point is recorded, the sweep goes on
        row.update(status="failed", error=failure_reason(e), summary_json="{}")
    else:
        flat = flatten(res.summary)
        # NOTE: per-tenant and per-target subtrees stay in summary_json only: their keys vary
        # between runs and would make every part file's schema different.
        row.update({k: v for k, v in flat.items()
                    if not k.startswith(("tenants.", "slo.tenants.", "cost.by_pool."))
                    and not isinstance(v, list)})
        row["summary_json"] = strict_json(res.summary, indent=None)
    row["scenario_json"] = json.dumps(scenario_json, sort_keys=True)
    row["run_wall_s"] = time.perf_counter() - t0
    return row


def failure_reason(e: BaseException) -> str:
    """One line saying what went wrong in a point (the exception's type and first line)."""
    from simulator.errors import clip_line

    first = (str(e).splitlines() or [""])[0]
    return clip_line(f"{type(e).__name__}: {first}" if first else type(e).__name__, 300)


def failed_row(p: RunPoint, reason: str) -> dict[str, Any]:
    """The dataset row of a point whose worker failed before returning one."""
    row: dict[str, Any] = {"key": p.key, "source": p.source, "scenario": p.scenario.name,
                           "seed": p.scenario.seed, "status": "failed", "error": reason}
    row.update({f"param.{k}": v for k, v in p.params.items()})
    row.update(summary_json="{}", scenario_json=json.dumps(p.scenario.model_dump(mode="json"),
                                                           sort_keys=True), run_wall_s=0.0)
    return row


def _row_frame(row: dict[str, Any]) -> pd.DataFrame:
    cols = {}
    for k, v in row.items():
        # Mixed-type grid values (1 vs "auto") are stored as text so every part file has one type.
        if k.startswith("param.") and not isinstance(v, bool | int | float | str):
            v = json.dumps(v)
        cols[k] = [v]
    return pd.DataFrame(cols)


def write_part(out: Path, row: dict[str, Any]) -> Path:
    """Write one row atomically: a temporary file in the same folder, then a rename."""
    d = out / RESULTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    final = d / f"{PART_PREFIX}{row['key']}.parquet"
    tmp = d / f".tmp-{row['key']}-{os.getpid()}.parquet"
    _row_frame(row).to_parquet(tmp, index=False)
    os.replace(tmp, final)
    return final


def done_keys(out: Path, retry_failed: bool = False) -> set[str]:
    """Keys of the points with a part file (``retry_failed``: only those that ran ``ok``)."""
    d = out / RESULTS_DIR
    if not d.is_dir():
        return set()
    keys = {p.stem[len(PART_PREFIX):] for p in d.glob(f"{PART_PREFIX}*.parquet")}
    if retry_failed:
        keys -= failed_keys(out)
    return keys


def failed_keys(out: Path) -> set[str]:
    """Keys of the recorded points whose status is not ``ok`` (error or failed)."""
    d = out / RESULTS_DIR
    bad = set()
    for f in sorted(d.glob(f"{PART_PREFIX}*.parquet")) if d.is_dir() else []:
        try:
            status = pd.read_parquet(f, columns=["status"])["status"]
        except Exception:  # an unreadable part is rerun too
            bad.add(f.stem[len(PART_PREFIX):])
            continue
        if (status != "ok").any():
            bad.add(f.stem[len(PART_PREFIX):])
    return bad


def _read_part(f: Path) -> pd.DataFrame:
    """One part file, checked: readable, one row, its key the one its name says."""
    key = f.stem[len(PART_PREFIX):]
    try:
        df = pd.read_parquet(f)
    except Exception as e:  # a damaged file is reported, whatever pyarrow raises
        raise ConfigError(f"{f}: not a readable part file ({failure_reason(e)}); delete it and "
                          f"rerun the sweep (that point alone is recomputed)") from None
    if len(df) != 1 or "key" not in df or str(df["key"].iloc[0]) != key:
        raise ConfigError(f"{f}: not the part file of point {key} (expected one row with that "
                          f"key); delete it and rerun the sweep")
    return df


def load_results(out: str | Path) -> pd.DataFrame:
    """All finished runs of a sweep folder as one DataFrame (one row per run); every part file
    is checked (readable, one row, the key its name says) and a damaged one is a ConfigError
    naming it."""
    d = Path(out) / RESULTS_DIR
    files = sorted(d.glob(f"{PART_PREFIX}*.parquet")) if d.is_dir() else []
    if not files:
        return pd.DataFrame()
    return pd.concat([_read_part(f) for f in files], ignore_index=True)


# --------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------


def _args(p: RunPoint) -> tuple[str, str, dict[str, Any], dict[str, Any], str | None]:
    return p.key, p.source, p.params, p.scenario.model_dump(mode="json"), p.scenario.base_dir


PARENT_POLL_S = 0.5
"""How often a local worker checks that the sweep's process is still alive."""


def _watch_parent(parent: int) -> None:
    """Worker initializer: exit as soon as the sweep's process is gone (a ``kill -9`` of the
    sweep would otherwise leave its workers waiting for work that never comes)."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="servesim-parent-watch", daemon=True).start()


def _run_local(points: list[RunPoint], jobs: int) -> Iterator[dict[str, Any]]:
    if jobs <= 1 or len(points) <= 1:
        for p in points:
            yield run_point(*_args(p))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # NOTE: spawn, not fork: the parent may hold threads (progress bar, Ray) that fork would copy
    # in a broken state.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                             initializer=_watch_parent, initargs=(os.getpid(),)) as ex:
        futs = {ex.submit(run_point, *_args(p)): p for p in points}
        for f in as_completed(futs):
            try:
                yield f.result()
            except Exception as e:  # a dead worker fails its point, not the sweep
                yield failed_row(futs[f], failure_reason(e))


def _run_ray(points: list[RunPoint], address: str, jobs: int) -> Iterator[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray-address needs Ray: pip install 'servesim[ray]'") from None
    started = False
    if not ray.is_initialized():
        repo = str(Path(__file__).resolve().parents[1])
        env = {"env_vars": {"PYTHONPATH": repo}}
        if address == "local":
            # A private single-node cluster on this machine (tests, laptops).
            ray.init(num_cpus=max(jobs, 1), include_dashboard=False, log_to_driver=False,
                     runtime_env=env)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    try:
        task = ray.remote(run_point)
        by_ref = {task.remote(*_args(p)): p for p in points}
        pending = list(by_ref)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    row = ray.get(ref)
                except Exception as e:  # a lost worker or node fails its point, not the sweep
                    row = failed_row(by_ref[ref], failure_reason(e))
                yield row
    finally:
        if started:
            ray.shutdown()


@dataclass
class SweepStats:
    total: int
    skipped: int
    ran: int
    errors: int
    out: Path


def run_sweep(spec_path: str | Path, out: str | Path, *, jobs: int | None = None,
              ray_address: str | None = None, progress: bool = True,
              on_row: Callable[[dict[str, Any]], None] | None = None,
              retry_failed: bool = False) -> SweepStats:
    """Run every point of the sweep not already in ``out``; write each as it finishes."""
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    points = expand(spec, spec_path.resolve().parent)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"name": spec.name or spec_path.stem, "spec": spec.model_dump(mode="json"),
            "spec_file": str(spec_path), "params": list(spec.grid), "points": len(points)}
    tmp = out / f".sweep.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, out / "sweep.json")
    done = done_keys(out, retry_failed)
    todo = [p for p in points if p.key not in done]
    jobs = jobs or os.cpu_count() or 1
    rows = (_run_ray(todo, ray_address, jobs) if ray_address
            else _run_local(todo, jobs))
    errors = 0
    ran = 0
    with _progress(progress, len(points), len(points) - len(todo)) as advance:
        for row in rows:
            write_part(out, row)
            ran += 1
            errors += row["status"] != "ok"
            if on_row is not None:
                on_row(row)
            advance()
    return SweepStats(len(points), len(points) - len(todo), ran, errors, out)


class _progress:
    """A rich progress bar with ETA (or nothing)."""

    def __init__(self, enabled: bool, total: int, completed: int) -> None:
        self.enabled, self.total, self.completed = enabled, total, completed
        self._p: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._p = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        self._p.start()
        task = self._p.add_task("sweep", total=self.total, completed=self.completed)
        return lambda: self._p.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.stop()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def sweep_command(
    spec: Annotated[Path, typer.Argument(help="Sweep spec YAML (base/scenarios, overrides, grid).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: sweeps/<spec name>).")
                   ] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Local worker processes "
                                             "(default: CPU count).")] = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Run on Ray: 'auto', 'ray://host:port', or 'local' (a private "
        "single-node cluster).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs and exit.")] = False,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Rerun the points recorded as error or failed.")] = False,
) -> None:
    """Run a parameter grid / list of scenarios; resumable (finished runs are skipped)."""
    try:
        out_dir = out or Path("sweeps") / spec.stem
        if dry_run:
            s = load_spec(spec)
            points = expand(s, spec.resolve().parent)
            done = done_keys(out_dir, retry_failed)
            for p in points:
                mark = "done" if p.key in done else "todo"
                typer.echo(f"{p.key}  {mark}  {p.source}  seed={p.scenario.seed}  "
                           + " ".join(f"{k}={v}" for k, v in p.params.items()))
            typer.echo(f"{len(points)} runs, {sum(p.key in done for p in points)} done")
            return
        stats = run_sweep(spec, out_dir, jobs=jobs, ray_address=ray_address,
                          retry_failed=retry_failed)
    except OSError as e:
        typer.echo(f"error: {out or spec}: {e.strerror or e}", err=True)
        raise typer.Exit(2) from None
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{stats.total} runs: {stats.skipped} already done, {stats.ran} ran "
               f"({stats.errors} errors) → {stats.out / RESULTS_DIR}; "
               f"report: servesim report {stats.out} --out {stats.out / 'report.html'}")
