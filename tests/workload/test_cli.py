"""``servesim workload list|describe``: statistics, plots, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from simulator.workload.cli import workload_app

runner = CliRunner()


def test_list_shows_named_workloads():
    r = runner.invoke(workload_app, ["list"])
    assert r.exit_code == 0, r.output
    for name in ("azure-conv-2023", "mooncake-conversation", "multi-tenant", "chat-diurnal"):
        assert name in r.output


def test_describe_prints_statistics_and_plots(tmp_path: Path):
    png = tmp_path / "w.png"
    r = runner.invoke(workload_app, ["describe", "multi-tenant", "--requests", "3000",
                                     "--plot", str(png)])
    assert r.exit_code == 0, r.output
    for text in ("rate (req/s)", "CV of inter-arrival times", "p99", "Spearman",
                 "ideal prefix-cache hit rate", "sessions:", "chat", "batch", "interactive"):
        assert text in r.output, text
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_describe_shows_target_next_to_measured():
    r = runner.invoke(workload_app, ["describe", "traffic-surge-x3", "--set",
                                     "arrival={kind: gamma, rate: 5, cv: 2}", "--requests", "20000"])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if "CV of inter-arrival" in ln)
    measured, target = (float(x) for x in re.findall(r"\d+\.\d+", line)[-2:])
    assert target == 2.0 and abs(measured - 2.0) < 0.1


def test_describe_a_scenario_file_and_a_spec_file(tmp_path: Path):
    spec = tmp_path / "w.yaml"
    spec.write_text("description: mine\narrival: {kind: weibull, rate: 2, cv: 1.5}\n"
                    "input_len: {kind: fixed, value: 7}\noutput_len: {kind: fixed, value: 3}\n")
    r = runner.invoke(workload_app, ["describe", str(spec), "--requests", "500"])
    assert r.exit_code == 0 and "mine" in r.output and "1.500" in r.output, r.output
    sc = tmp_path / "s.yaml"
    sc.write_text("workload:\n  arrival: {kind: closed_loop, concurrency: 4}\n  num_requests: 50\n")
    r = runner.invoke(workload_app, ["describe", str(sc)])
    assert r.exit_code == 0 and "closed loop" in r.output, r.output


def test_describe_bad_name_is_one_line_exit_2():
    r = runner.invoke(workload_app, ["describe", "no-such-workload"])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "known:" in lines[0]


def test_registered_on_the_main_cli():
    from simulator.cli import app

    assert any(g.name == "workload" for g in app.registered_groups)
