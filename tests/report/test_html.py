"""The HTML report of a run, a sweep and a plan: self-contained, autoescaped, with the headline
numbers of the summary — checked as text here and in a real headless Chromium below."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from simulator.errors import ConfigError
from simulator.plan import PlanSpec, plan, save_plan
from simulator.report.console import replication_report
from simulator.report.html import build_report, fmt_ms, fmt_usd, headline_numbers, write_report
from simulator.run import simulate_replications
from simulator.sweep import run_sweep
from tests.conftest import small_scenario

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run")
    sc = small_scenario(description=f"chat {EVIL}", slo={"ttft_p90_ms": 200, "tpot_p90_ms": 30},
                        workload={"num_requests": 150})
    runs = simulate_replications(sc, 2)
    runs[0].save(d)
    (d / "replications.json").write_text(json.dumps(replication_report([r.summary for r in runs])))
    return d


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sweep")
    spec = d / "grid.yaml"
    spec.write_text(yaml.safe_dump({
        "overrides": {"workload.num_requests": 100, "slo": {"ttft_p90_ms": 100}},
        "grid": {"workload.arrival.rate": [5, 20], "fleet.replicas": [1, 2]}}))
    run_sweep(spec, d / "out", jobs=1, progress=False)
    return d / "out"


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("plan")
    spec = PlanSpec.model_validate({
        "overrides": {"workload.num_requests": 100, "workload.arrival.rate": 20},
        "slo": {"ttft_p90_ms": 150}, "search": {"gpus": ["H100-SXM", "MI300X"],
                                                "replicas": {"max": 3}}})
    save_plan(plan(spec, d, name="tiny"), d / "out")
    return d / "out"


def test_run_report_has_headline_numbers_and_is_self_contained(run_dir: Path):
    html = build_report(run_dir)
    s = json.loads((run_dir / "summary.json").read_text())
    for text in headline_numbers(s):
        assert text in html, text
    assert fmt_usd(s["cost"]["usd_per_hour"]) == "$3.99"
    assert "SLO attainment per tenant" in html and "Prediction intervals (2 replications" in html
    assert "Latency CDFs" in html and "GPUs held and $ per hour over time" in html
    assert f"seed {s['sim']['seed']}" in html and f"servesim {s['sim']['version']}" in html
    assert "Step-time calibration used" in html
    assert "uncalibrated prior" in html or "fit residuals" in html or "held-out" in html
    # Autoescaped: the scenario's text cannot inject markup; nothing is fetched from outside.
    assert EVIL not in html and "&lt;script&gt;" in html
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)


def test_sweep_and_plan_reports(sweep_dir: Path, plan_dir: Path):
    html = build_report(sweep_dir)
    assert "TTFT and TPOT vs load" in html and "4 runs" in html
    p = json.loads((plan_dir / "plan.json").read_text())
    html = build_report(plan_dir)
    b = p["best"]
    assert f"{b['replicas']} × {b['gpu']}" in html
    assert fmt_usd(b["usd_per_month"], 0) + "/month" in html
    assert "Pareto frontier" in html and "Per GPU type" in html
    assert "The chosen configuration, in detail" in html


def test_report_command_and_bad_folder(run_dir: Path, tmp_path: Path):
    out = tmp_path / "r.html"
    r = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 20_000
    with pytest.raises(ConfigError, match="not a run folder"):
        build_report(tmp_path)


# --------------------------------------------------------------------------------------------
# A real browser
# --------------------------------------------------------------------------------------------


def chromium(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / "chromium-profile"
    cmd = [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    """Console output of the page (Chromium logs every console message, errors included, and
    uncaught exceptions as INFO:CONSOLE lines)."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (CI installs Debian's chromium; on a laptop: "
                             "apt-get install chromium)")


@needs_chromium
def test_console_check_catches_errors(tmp_path: Path):
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><p>x</p><script>console.error('boom'); nope();</script>")
    r = chromium(page.as_uri(), tmp_path, "--dump-dom")
    msgs = console_messages(r.stderr)
    assert any("boom" in m for m in msgs) and any("Uncaught" in m for m in msgs)


@needs_chromium
@pytest.mark.parametrize("kind", ["run", "plan"])
def test_report_renders_in_chromium(kind: str, run_dir: Path, plan_dir: Path, tmp_path: Path):
    src = run_dir if kind == "run" else plan_dir
    page = write_report(src, tmp_path / "report.html")
    r = chromium(page.as_uri(), tmp_path, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert console_messages(r.stderr) == []
    if kind == "run":
        s = json.loads((run_dir / "summary.json").read_text())
        for text in headline_numbers(s):
            assert text in dom, text
        assert fmt_ms(s["ttft_ms"]["p90"]) in dom
    else:
        p = json.loads((plan_dir / "plan.json").read_text())
        assert fmt_usd(p["best"]["usd_per_hour"]) + "/h" in dom
    # Every embedded image is a decodable PNG.
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', dom)
    assert len(imgs) >= 3
    for b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    shot = tmp_path / "shot.png"
    r = chromium(page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    assert r.returncode == 0 and shot.stat().st_size > 30_000
    assert console_messages(r.stderr) == []
