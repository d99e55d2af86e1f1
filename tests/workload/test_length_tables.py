"""Checks on the shipped request-length tables in ``workloads/lengths/``.

(a) every shipped table is well formed; (b) when the shared data is present, re-running
``scripts/derive_length_tables.py`` reproduces the committed tables exactly.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE_DIR = REPO_ROOT / "workloads" / "lengths"
SCRIPT = REPO_ROOT / "scripts" / "derive_length_tables.py"

EXPECTED = {
    "sharegpt",
    "arxiv-summarization",
    "bwb",
    "azure-code-2023",
    "azure-conv-2023",
    "mooncake-conversation",
    "sharegpt-vllm-bench",
}
TOP_KEYS = [
    "name",
    "description",
    "source",
    "tokenizer",
    "derived_by",
    "input_tokens",
    "output_tokens",
    "joint",
]
SOURCE_KEYS = {"folder", "file", "repository", "commit", "license", "rows", "dropped"}
MARGINAL_KEYS = ["count", "mean", "std", "min", "max", "p50", "p90", "p99", "quantiles"]

TABLE_PATHS = sorted(TABLE_DIR.glob("*.yaml"))


def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def test_expected_tables_are_shipped() -> None:
    assert {p.stem for p in TABLE_PATHS} == EXPECTED


@pytest.mark.parametrize("path", TABLE_PATHS, ids=lambda p: p.stem)
def test_table_is_well_formed(path: Path) -> None:
    assert path.stat().st_size < 20_000, "keep shipped tables small"
    t = _load(path)
    assert list(t) == TOP_KEYS
    assert t["name"] == path.stem
    assert isinstance(t["description"], str) and t["description"].strip()
    assert "\n" not in t["description"]
    assert t["derived_by"] == "scripts/derive_length_tables.py"
    assert isinstance(t["tokenizer"], str) and t["tokenizer"]

    src = t["source"]
    assert set(src) == SOURCE_KEYS
    assert src["folder"].startswith(("traces/", "benchmarks/")), src["folder"]
    assert re.fullmatch(r"[0-9a-f]{40}", src["commit"]), src["commit"]
    assert src["repository"].startswith("github.com/")
    assert src["license"]
    assert isinstance(src["rows"], int) and src["rows"] > 0
    assert isinstance(src["dropped"], int) and src["dropped"] >= 0

    for side in ("input_tokens", "output_tokens"):
        m = t[side]
        assert list(m) == MARGINAL_KEYS, side
        assert m["count"] == src["rows"]
        q = m["quantiles"]
        assert len(q) == 201
        assert all(a <= b for a, b in itertools.pairwise(q)), f"{side} not monotone"
        assert q[0] == m["min"] and q[-1] == m["max"]
        assert m["min"] > 0, "non-positive lengths must have been dropped"
        assert m["p50"] == q[100]
        assert m["p90"] == q[180]
        assert m["p99"] == q[198]
        assert m["min"] <= m["mean"] <= m["max"]
        assert m["std"] >= 0

    j = t["joint"]
    assert list(j) == ["spearman", "bins", "counts"]
    assert -1.0 <= j["spearman"] <= 1.0
    n_bins = j["bins"]
    assert n_bins == 20
    counts = j["counts"]
    assert len(counts) == n_bins and all(len(row) == n_bins for row in counts)
    assert all(isinstance(c, int) and c >= 0 for row in counts for c in row)
    assert sum(map(sum, counts)) == t["input_tokens"]["count"]
    # equal-probability bins: every row and column marginal holds n/bins rows (+-1)
    n = t["input_tokens"]["count"]
    lo, hi = n // n_bins, -(-n // n_bins)
    assert all(lo <= sum(row) <= hi for row in counts)
    assert all(lo <= sum(col) <= hi for col in zip(*counts, strict=True))


def _data_dir() -> Path:
    env = os.environ.get("SERVESIM_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def test_derivation_reproduces_shipped_tables(tmp_path: Path) -> None:
    data_dir = _data_dir()
    needed = [_load(p)["source"] for p in TABLE_PATHS]
    missing = [
        f"{s['folder']}/{s['file']}"
        for s in needed
        if not (data_dir / s["folder"] / s["file"]).is_file()
    ]
    if not data_dir.is_dir() or missing:
        pytest.skip(
            f"shared trace data not available under {data_dir} "
            f"(set SERVESIM_DATA_DIR); missing: {', '.join(missing) or 'data dir'}"
        )
    subprocess.run(
        [sys.executable, str(SCRIPT), "--data-dir", str(data_dir), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    regenerated = {p.name for p in tmp_path.glob("*.yaml")}
    assert regenerated == {p.name for p in TABLE_PATHS}
    for shipped in TABLE_PATHS:
        fresh = tmp_path / shipped.name
        assert _load(fresh) == _load(shipped), f"{shipped.name} is stale: re-run {SCRIPT.name}"


def test_script_drops_non_positive_rows(tmp_path: Path) -> None:
    """Synthetic stand-in for one source folder: bad rows are dropped and counted."""
    folder = tmp_path / "data" / "traces" / "azure_llm_2023"
    folder.mkdir(parents=True)
    (folder / "SOURCE.txt").write_text("github.com/example/repo @ " + "ab" * 20 + " 2024-01-01\n")
    (folder / "LICENSE").write_text("Attribution 4.0 International\n")
    rows = [f"2023-11-16 18:00:{i % 60:02d}.0,{10 + i},{1 + (i * 7) % 50}" for i in range(100)]
    rows += [
        "2023-11-16 18:01:00.0,0,5",
        "2023-11-16 18:01:01.0,12,0",
        "2023-11-16 18:01:02.0,-3,4",
    ]
    (folder / "AzureLLMInferenceTrace_code.csv").write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n"
    )
    out = tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--only",
            "azure-code-2023",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    t = _load(out / "azure-code-2023.yaml")
    assert t["source"]["rows"] == 100 and t["source"]["dropped"] == 3
    assert t["source"]["commit"] == "ab" * 20 and t["source"]["license"] == "CC-BY-4.0"
    assert t["input_tokens"]["min"] == 10 and t["input_tokens"]["max"] == 109
    assert t["input_tokens"]["p50"] == 59.5 and t["input_tokens"]["quantiles"][100] == 59.5
    assert sum(map(sum, t["joint"]["counts"])) == 100
    assert all(sum(row) == 5 for row in t["joint"]["counts"])
