"""Bad input never gives a traceback, a silent nonsense result or a runaway run (issue 23).

Property-based (hypothesis): the shipped scenarios with one field mutated (types, signs, zero,
huge, non-finite, long text, mappings, deep nesting), the raw YAML mutated (non-UTF-8 bytes,
duplicate keys, alias bombs, deep nesting), ``--set`` values, and trace files (bad cells,
encodings, byte-order marks, deep JSON, overlong CSV fields). Every case runs ``servesim run``
in-process under a wall-clock limit and must end either

- with exit 0 and a summary.json that is strict JSON, finite, and conserved (arrived = completed +
  rejected + timed_out + failed + in_flight), or
- with exit 2 and exactly one line on stderr, ``error: …``.

The examples are derandomized and few by default (CI: about a minute on two cores); run
``pytest tests/test_fuzz_inputs.py --hypothesis-profile=long`` for a deep local search. Named
regressions (each input the issue listed) run as plain tests; the resource-exhaustion ones run in
a subprocess under a memory limit.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator.cli import app

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
LONG = settings.get_current_profile_name().startswith("long")
EXAMPLES = settings().max_examples if LONG else 60
CASE_S = 60
"""Wall-clock limit of one case."""
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
QUICK = ["default", "chat-h100", "retry-storm", "prefix-affinity", "replica-failure",
         "multi-tenant-fairness", "disagg-vs-agg", "kv-pressure-preemption", "mixed-fleet",
         "traffic-surge"]
SMALL = ["--set", "workload.num_requests=30", "--set", "metrics.max_sim_time_s=300"]


# --------------------------------------------------------------------------------------------
# Running one case and judging it
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def boom(*_: Any) -> None:
        raise TimeoutError(f"case ran past {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _refuse(name: str) -> None:
    raise ValueError(f"summary.json holds {name}, not strict JSON")


def _finite(obj: Any, where: str = "") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _finite(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _finite(v, f"{where}[{i}]")
    elif isinstance(obj, float):
        assert math.isfinite(obj), where


def run_case(args: list[str], limit_s: float = CASE_S) -> tuple[int, str, dict[str, Any] | None]:
    """``servesim run ARGS --out TMP -q``: (exit code, stderr, summary or None), judged."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        with time_limit(limit_s):
            r = CliRunner().invoke(app, ["run", *args, "--out", str(out), "-q"],
                                   catch_exceptions=True)
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            import traceback

            tb = "".join(traceback.format_exception(r.exception))
            raise AssertionError(f"traceback for {args!r}:\n{tb}")
        assert r.exit_code in (0, 2), (args, r.exit_code, r.output[-2000:])
        err = r.stderr
        if r.exit_code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1, (args, err[-3000:])
            assert lines[0].startswith("error: ") and len(lines[0]) <= 1010, (args, lines[0][:300])
            assert not out.exists(), "a refused run left an output folder"
            return 2, lines[0], None
        extra = [ln for ln in err.strip().splitlines() if ln and not ln.startswith("warning: ")]
        assert not extra, (args, err[-2000:])
        summary = json.loads((out / "summary.json").read_text(), parse_constant=_refuse)
        _finite(summary)
        req = summary["requests"]
        assert req["arrived"] == (req["completed"] + req["rejected"] + req["timed_out"]
                                  + req["failed"] + req["in_flight"]), req
        assert req["arrived"] > 0
        assert (out / "manifest.json").is_file()
        return 0, err, summary


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------


def deep(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return v


VALUES = st.one_of(
    st.integers(min_value=-3, max_value=100),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64, 10**30, 10**200]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e-300, 1e300, -0.0, 1e-9]),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["x" * 300, "", "../../etc/passwd", "auto", "fixed", "\x00"]),
    st.sampled_from([{"a": 1}, [1, 2], [], {}, deep(100), {"kind": "fixed"}]),
)


def leaves(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a scalar, list or mapping inside ``obj`` (the root excluded)."""
    out: list[tuple[Any, ...]] = [path] if path else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += leaves(v, (*path, i))
    return out


def set_at(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())


def _small_args(path: tuple[Any, ...]) -> list[str]:
    """The size caps, except a cap on the very field mutated (so its value is what runs)."""
    skip = {("workload", "num_requests"), ("metrics", "max_sim_time_s")}
    out: list[str] = []
    for flag, item in zip(SMALL[::2], SMALL[1::2], strict=True):
        key = tuple(item.split("=")[0].split("."))
        if key not in skip or tuple(path[:2]) != key:
            out += [flag, item]
    return out


LAUGHS = ("lol0: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"lol{i}: &{chr(97 + i)} [{', '.join(['*' + chr(96 + i)] * 9)}]\n" for i in range(1, 9)))

RAW_MUTATIONS = [
    lambda t: t.encode("utf-8") + b"\ndescription: caf\xe9\n",            # latin-1 byte
    lambda t: t.encode("utf-16"),                                          # UTF-16
    lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"),                         # BOM: accepted
    lambda t: (t + "\nseed: 4\nseed: 5\n").encode(),                       # duplicate key
    lambda t: (t + "\nx_deep: " + "[" * 5000 + "]" * 5000 + "\n").encode(),  # deep nesting
    lambda t: (t + "\n" + LAUGHS).encode(),                                # billion laughs
    lambda t: (t + "\nseed: " + "9" * 5000 + "\n").encode(),               # 5000 digits
    lambda t: bytes(range(256)) * 4,                                       # binary
    lambda t: b"",                                                         # empty file
    lambda t: (t + "\nself: &s [*s]\n").encode(),                          # recursive alias
]


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


@FUZZ
@given(name=st.sampled_from(QUICK), data=st.data(), value=VALUES)
def test_a_mutated_scenario_runs_or_is_refused_in_one_line(name: str, data: Any,
                                                           value: Any) -> None:
    raw = _raw(name)
    path = data.draw(st.sampled_from(leaves(raw)), label="path")
    set_at(raw, path, value)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / f"{name}.yaml"
        f.write_text(yaml.safe_dump(raw, sort_keys=False))
        run_case([str(f), *_small_args(path)])


@FUZZ
@given(name=st.sampled_from(QUICK), mutate=st.sampled_from(RAW_MUTATIONS))
def test_a_mutated_yaml_file_runs_or_is_refused_in_one_line(name: str, mutate: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / f"{name}.yaml"
        f.write_bytes(mutate((SCENARIOS / f"{name}.yaml").read_text()))
        run_case([str(f), *SMALL])


SET_FIELDS = ["seed", "fleet.replicas", "fleet.tp", "engine.max_num_seqs",
              "engine.max_num_batched_tokens", "engine.block_size", "engine.max_model_len",
              "engine.gpu_memory_utilization", "engine.memory_reserve_gib",
              "workload.arrival.rate", "workload.input_len", "workload.output_len.cv",
              "workload.output_len.mean", "workload.system_prompt_tokens", "workload.name",
              "workload.duration_s", "metrics.warmup_s", "metrics.sample_interval_s",
              "step_time.overrides.step_overhead_us", "step_time.calibration", "model.name",
              "workload.arrival"]


@FUZZ
@given(field=st.sampled_from(SET_FIELDS), value=VALUES)
def test_a_set_value_runs_or_is_refused_in_one_line(field: str, value: Any) -> None:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    run_case([*SMALL, "--set", f"{field}={text}"])


TRACE_ROWS = [(i * 0.5, 20 + i, 10 + i % 7) for i in range(30)]
CELLS = st.one_of(VALUES.map(lambda v: json.dumps(v) if not isinstance(v, str) else v),
                  st.sampled_from(["9223372036854775807", "1e400", "-5", "ten", "", "1.5",
                                   "x" * 200_000, "2024-05-01T12:00:00", "nan"]))


@FUZZ
@given(fmt=st.sampled_from(["csv", "jsonl"]), row=st.integers(0, len(TRACE_ROWS) - 1),
       col=st.sampled_from(["timestamp", "input_tokens", "output_tokens", "hash_ids",
                            "priority", "tenant", "note"]),
       cell=CELLS, encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
def test_a_mutated_trace_runs_or_is_refused_in_one_line(fmt: str, row: int, col: str, cell: str,
                                                        encoding: str) -> None:
    cols = ["timestamp", "input_tokens", "output_tokens", "hash_ids", "priority", "tenant",
            "note"]
    rows = [{"timestamp": t, "input_tokens": i, "output_tokens": o, "hash_ids": f"{k} {k + 1}",
             "priority": k % 3, "tenant": "a", "note": "é"} for k, (t, i, o) in
            enumerate(TRACE_ROWS)]
    rows[row][col] = cell
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
        text = buf.getvalue()
    else:
        for r in rows:
            r["hash_ids"] = [int(x) for x in str(r["hash_ids"]).split() if x.isdigit()] \
                if r is not rows[row] or col != "hash_ids" else r["hash_ids"]
        text = "".join(json.dumps(r) + "\n" for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / f"trace.{fmt}"
        try:
            f.write_bytes(text.encode(encoding))
        except UnicodeEncodeError:
            f.write_bytes(text.encode("utf-8"))
        run_case(trace_args(f, "metrics.max_sim_time_s=300"))


# --------------------------------------------------------------------------------------------
# The inputs the issue listed, one by one
# --------------------------------------------------------------------------------------------


def trace_args(trace: Path, *sets: str) -> list[str]:
    """A scenario that replays ``trace`` (its own lengths), written beside it, plus ``--set``s."""
    f = trace.parent / "trace-scenario.yaml"
    f.write_text(yaml.safe_dump({"workload": {"arrival": {"kind": "trace", "file": str(trace)},
                                              "num_requests": None}}))
    out = [str(f)]
    for item in sets:
        out += ["--set", item]
    return out


def _file(tmp: Path, text: str | bytes, name: str = "s.yaml") -> str:
    f = tmp / name
    f.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(f)


@pytest.mark.parametrize(("sets", "needle"), [
    (["workload.input_len={kind: lognormal, mean: 100, cv: .inf}"], "workload.input_len.cv"),
    (["workload.output_len.cv=.inf"], "output_len"),
    (["step_time.overrides.step_overhead_us=-1"], "step_overhead_us"),
    (["step_time.overrides.step_overhead_us=.nan"], "step_overhead_us"),
    (["step_time.overrides.step_overhead_us=.inf"], "step_overhead_us"),
    (["workload.name=" + "w" * 300], "workload.name"),
    (["workload.name={a: 1}"], "name"),
    (["workload.arrival.rate=.inf"], "rate"),
    (["workload.arrival.rate=1e-300"], "no request arrived"),
    (["workload.arrival.rate=true"], "rate"),
    (["metrics.max_sim_time_s=1e-9"], "no request arrived"),
    (["metrics.warmup_s=.inf"], "warmup_s"),
    (["metrics.sample_interval_s=1e-9"], "sample_interval_s"),
    (["seed=" + "9" * 5000], "seed"),
    (["seed=99999999999999999999"], "seed"),
    (["fleet.pools=[{name: ''}]"], "name"),
    (["workload.arrival={kind: trace, name: azure-conv-2023, time_scale: .inf}"], "time_scale"),
    (["workload.arrival={kind: trace, name: azure-conv-2023, rate_scale: 1e9}"], "rate_scale"),
])
def test_each_listed_input_is_one_line_exit_2(sets: list[str], needle: str) -> None:
    args = [*SMALL]
    for s in sets:
        args += ["--set", s]
    rc, line, _ = run_case(args)
    assert rc == 2 and needle in line, line


def test_listed_file_inputs_are_one_line_exit_2(tmp_path: Path) -> None:
    base = (SCENARIOS / "default.yaml").read_text()
    cases = {
        "latin-1": base.encode() + b"\nx_note: caf\xe9\n",
        "utf-16": base.encode("utf-16"),
        "seed digits": base + "\nseed: " + "7" * 5000 + "\n",
        "num_requests": base.replace("num_requests: 2000", "num_requests: 1.0e+20"),
        "duplicate": "seed: 1\nmodel: {name: Llama-3.1-8B}\nseed: 2\n",
    }
    for what, text in cases.items():
        rc, line, _ = run_case([_file(tmp_path, text)])
        assert rc == 2, what
    rc, line, _ = run_case([_file(tmp_path, "seed: 1\nmodel: {name: Llama-3.1-8B}\nseed: 2\n")])
    assert "3" in line and "line 1" in line and "duplicate" in line


def test_a_bom_in_a_csv_trace_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_bytes(b"\xef\xbb\xbftimestamp,input_tokens,output_tokens\n0,10,5\n0.5,12,6\n")
    rc, _, summary = run_case(trace_args(f))
    assert rc == 0 and summary is not None and summary["requests"]["arrived"] == 2


@pytest.mark.parametrize(("body", "needle"), [
    (b"timestamp,input_tokens,output_tokens\n0,9223372036854775807,5\n", "input_tokens"),
    (b"timestamp,input_tokens,output_tokens,priority\n0,5,5,9223372036854775807\n", "priority"),
    (b"timestamp,input_tokens,output_tokens,note\n0,5,5,\"" + b"x" * 200_000 + b"\"\n", "CSV"),
    (b"timestamp,input_tokens,output_tokens\n0,5,5\n".decode().encode("utf-16"), "UTF-8"),
], ids=["tokens", "priority", "csv-field", "utf-16"])
def test_listed_trace_inputs_are_one_line_exit_2(tmp_path: Path, body: bytes,
                                                 needle: str) -> None:
    f = tmp_path / "t.csv"
    f.write_bytes(body)
    rc, line, _ = run_case(trace_args(f))
    assert rc == 2 and needle in line, line


def test_deep_json_and_huge_hash_ids_in_a_jsonl_trace(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    row = '{"timestamp": 0, "input_tokens": 5, "output_tokens": 5, "x": '
    f.write_text(row + "[" * 100_000 + "]" * 100_000 + "}\n")
    rc, line, _ = run_case(trace_args(f))
    assert rc == 2 and "nested" in line
    f.write_text(json.dumps({"timestamp": 0, "input_tokens": 5, "output_tokens": 5,
                             "hash_ids": [2**70]}) + "\n")
    rc, line, _ = run_case(trace_args(f))
    assert rc == 2 and "hash_ids" in line


def test_trace_rows_past_the_time_limit_are_counted(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("timestamp,input_tokens,output_tokens\n"
                 + "".join(f"{i * 10},20,5\n" for i in range(20)))
    rc, err, summary = run_case(trace_args(f, "metrics.max_sim_time_s=95"))
    assert rc == 0 and summary is not None
    assert summary["requests"]["arrived"] == 10 and summary["requests"]["not_sent"] == 10
    assert any("not sent" in w for w in summary["warnings"]) and "not sent" in err


def test_nothing_completed_is_a_warning_in_console_and_summary() -> None:
    rc, err, summary = run_case([*SMALL, "--set", "step_time.overrides.step_overhead_us=1e12"])
    assert rc == 0 and summary is not None
    assert summary["requests"]["completed"] == 0
    assert any("no request completed" in w for w in summary["warnings"])
    assert "warning: no request completed" in err


def test_overrides_errors_with_replications_are_one_line() -> None:
    r = CliRunner().invoke(app, ["run", *SMALL, "--set", "step_time.overrides.step_overhead_us=-1",
                                 "--replications", "2", "-q"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.output


def test_unwritable_out_is_refused_before_simulating(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for out in ("/dev/null", str(a_file), str(a_file / "sub")):
        with time_limit(20):
            r = CliRunner().invoke(app, ["run", "--out", out, "-q"])
        assert r.exit_code == 2 and r.stderr.startswith("error: --out"), r.output
    # refused in well under a simulation's time: the default run is never started
    assert a_file.read_text() == "x"


def test_closed_loop_clients_are_sized_by_the_requests() -> None:
    rc, _, summary = run_case(["--set", "workload.arrival={kind: closed_loop, "
                               "concurrency: 100000000}", "--set", "workload.num_requests=50"],
                              limit_s=30)
    assert rc == 0 and summary is not None and summary["requests"]["completed"] == 50


# --- resource exhaustion, in a child process under a memory limit ---------------------------

CHILD_MEMORY = 3 * 2**30


def _child(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))

    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "simulator.cli", "run", *args, "-q"],
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                          env=env, cwd=ROOT)


def test_billion_laughs_is_refused_fast_and_small(tmp_path: Path) -> None:
    f = tmp_path / "laughs.yaml"
    f.write_text((SCENARIOS / "default.yaml").read_text() + "\n" + LAUGHS)
    p = _child([str(f)], timeout=60)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "aliases expand" in lines[0] and len(lines[0]) < 400


def test_a_deep_yaml_list_is_refused_not_a_crash(tmp_path: Path) -> None:
    f = tmp_path / "deep.yaml"
    f.write_text("description: " + "[" * 100_000 + "]" * 100_000 + "\n")
    p = _child([str(f)], timeout=60)
    # Our depth check, or (a libyaml with its own depth limit) the parser's error, one line.
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
    assert "nested more than" in p.stderr or "nesting depth" in p.stderr, p.stderr[-2000:]
