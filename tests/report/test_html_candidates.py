"""The plan report's "All candidates" table in a real headless Chromium at 1280 px: it keeps to
the page (no horizontal overflow, nothing cut off), the "why" column wraps to three lines at most
and carries its full text in a tooltip."""

from __future__ import annotations

import html as html_mod
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from simulator.plan import PlanSpec, plan, save_plan
from simulator.report.html import write_report
from tests.report.test_html import chromium, console_messages, needs_chromium

LONG_WHY = ("pruned: the analytic bound says TTFT p90 ≥ 812.4 ms > 150 ms target at 20 req/s on "
            "1 × MI300X tp=1 (prefill of the mean prompt alone takes 4.1 ms per request, the queue "
            "grows); see sweeps/very-long-folder-name/with/a/path/that/has/no/spaces/in/it/at/all"
            "/candidate_0000000000000000000000000000000000000001.json ") * 2

MEASURE = """<script>
window.addEventListener('load', () => {
  const box = document.querySelector('#candidates .scroll');
  const t = box.querySelector('table');
  const whys = [...t.querySelectorAll('td.why .clamp')];
  const lh = parseFloat(getComputedStyle(whys[0]).lineHeight);
  const out = {viewport: window.innerWidth, page: document.documentElement.scrollWidth,
    box: box.clientWidth, table: t.getBoundingClientRect().width, scroll: box.scrollWidth,
    why_heights: whys.map(w => w.getBoundingClientRect().height), line: lh,
    titles: whys.map(w => w.title)};
  const pre = document.createElement('pre'); pre.id = 'measure';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("plan-cands")
    spec = PlanSpec.model_validate({
        "overrides": {"workload.num_requests": 100, "workload.arrival.rate": 20},
        "slo": {"ttft_p90_ms": 150}, "search": {"gpus": ["H100-SXM", "MI300X"],
                                                "replicas": {"max": 3}}})
    save_plan(plan(spec, d, name="cands", progress=False), d / "out")
    # the longest reasons a planner meets (analytic-bound prunes, paths): one per candidate
    f = d / "out" / "candidates.csv"
    c = pd.read_csv(f)
    c["reason"] = [LONG_WHY if i % 2 == 0 else str(r) for i, r in enumerate(c["reason"])]
    c.to_csv(f, index=False)
    return d / "out"


@needs_chromium
def test_candidates_table_fits_1280px(plan_dir: Path, tmp_path: Path):
    page = write_report(plan_dir, tmp_path / "report.html")
    html = page.read_text()
    assert html.count('class="clamp" title="') >= 2
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", MEASURE + "</body>"))
    r = chromium(probe.as_uri(), tmp_path, "--dump-dom", "--window-size=1280,1000",
                 "--virtual-time-budget=3000")
    assert r.returncode == 0, r.stderr[-2000:]
    assert console_messages(r.stderr) == []
    m = json.loads(html_mod.unescape(re.search(r'<pre id="measure">(.*?)</pre>', r.stdout,
                                               re.S).group(1)))
    assert m["viewport"] == 1280
    assert m["page"] <= m["viewport"]  # no horizontal page scroll
    assert m["scroll"] <= m["box"] + 1  # the table is not wider than its box: nothing cut off
    # long reasons wrap and stop at three lines; the tooltip holds the full text
    assert max(m["why_heights"]) <= 3 * m["line"] + 1
    assert LONG_WHY.strip() in [t.strip() for t in m["titles"]]
    shot = tmp_path / "candidates.png"
    r = chromium(page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,2400")
    assert r.returncode == 0 and shot.stat().st_size > 30_000
