#!/usr/bin/env python3
"""Derive the request-length tables shipped in ``workloads/lengths/``.

Reads real request-length data from the shared data directory (never copied into the repo) and
writes one small YAML summary per dataset:

* marginal statistics of input (prompt/prefill) and output (generated/decode) token counts:
  count, mean, sample std (ddof=1), min, max, p50, p90, p99 and 201 type-7 (linear) quantiles at
  ``numpy.linspace(0, 1, 201)``, rounded to 2 decimals; p50/p90/p99 are the quantiles at indices
  100/180/198 of that list, so they agree with it exactly;
* the Spearman rank correlation between input and output (average ranks for ties);
* a 20 x 20 empirical-copula histogram: each row gets an input rank bin and an output rank bin
  (equal-probability bins, ``bin = floor(rank * 20 / n)`` with 0-based ranks). Ties are broken by a
  fixed-seed random permutation, independently per axis, so every bin holds n/20 rows (+-1) and the
  discrete ties do not create spurious correlation. A sampler picks a cell with probability
  ``count / total``, draws ``u`` uniformly inside the cell's probability interval on each axis and
  maps it through that axis's quantile table.

Rows with a non-positive input or output length are dropped and counted (``source.dropped``).

Usage::

    python scripts/derive_length_tables.py [--data-dir DIR] [--out DIR] [--only NAME ...]

``--data-dir`` defaults to ``$SERVESIM_DATA_DIR`` or else ``<repo>/../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DERIVED_BY = "scripts/derive_length_tables.py"
N_QUANTILES = 201
N_BINS = 20
TIE_BREAK_SEED = 20240829


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str  # relative to the data dir
    file: str
    kind: str  # "etalon_csv" | "azure_csv" | "mooncake_jsonl" | "vllm_bench_json"
    tokenizer: str
    description: str


DATASETS: tuple[Dataset, ...] = (
    Dataset(
        name="sharegpt",
        folder="traces/length_distributions",
        file="sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
        kind="etalon_csv",
        tokenizer="llama2",
        description=(
            "ShareGPT chat conversations (filtered to <= 8k total tokens): prompt and reply "
            "token counts, Llama-2 tokenizer"
        ),
    ),
    Dataset(
        name="arxiv-summarization",
        folder="traces/length_distributions",
        file="arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
        kind="etalon_csv",
        tokenizer="llama2",
        description=(
            "arXiv paper summarisation: long document prompts with short summary outputs, "
            "Llama-2 tokenizer"
        ),
    ),
    Dataset(
        name="bwb",
        folder="traces/length_distributions",
        file="bwb_stats_llama2_tokenizer_filtered_v2.csv",
        kind="etalon_csv",
        tokenizer="llama2",
        description=(
            "BWB (Bilingual Web Book) document translation: long inputs with comparably long "
            "outputs, Llama-2 tokenizer"
        ),
    ),
    Dataset(
        name="azure-code-2023",
        folder="traces/azure_llm_2023",
        file="AzureLLMInferenceTrace_code.csv",
        kind="azure_csv",
        tokenizer="unspecified (the source gives token counts without naming the tokenizer)",
        description=(
            "Azure LLM inference trace 2023, code-completion service: about 1 h of production "
            "requests (context tokens in, generated tokens out)"
        ),
    ),
    Dataset(
        name="azure-conv-2023",
        folder="traces/azure_llm_2023",
        file="AzureLLMInferenceTrace_conv.csv",
        kind="azure_csv",
        tokenizer="unspecified (the source gives token counts without naming the tokenizer)",
        description=(
            "Azure LLM inference trace 2023, conversation service: about 1 h of production "
            "requests (context tokens in, generated tokens out)"
        ),
    ),
    Dataset(
        name="mooncake-conversation",
        folder="traces/mooncake",
        file="conversation_trace.jsonl",
        kind="mooncake_jsonl",
        tokenizer="unspecified (the source gives token counts without naming the tokenizer)",
        description=(
            "Mooncake (Kimi) FAST'25 conversation workload: about 1 h of sampled production "
            "requests with long multi-turn contexts"
        ),
    ),
    Dataset(
        name="sharegpt-vllm-bench",
        folder="benchmarks/dstack",
        file=(
            "comparison/h100sxm5_vs_mi300x/raw_data/8xH100SXM5-serving/"
            "nvidia-vllm-32.0qps-Llama-3.1-405B-FP8-20241109-150842.json"
        ),
        kind="vllm_bench_json",
        tokenizer="llama3.1 (meta-llama/Llama-3.1-405B-FP8, the run's tokenizer_id)",
        description=(
            "What vLLM benchmark_serving sent and got back replaying 1,000 ShareGPT prompts "
            "(greedy) against base Llama-3.1-405B-FP8 in dstack's 8xH100-SXM5 vs 8xMI300X study. "
            "input_lens are identical, in order, in all 6 serving runs (both GPUs at 16/32/1000 "
            "QPS); output_lens are the tokens actually generated (stopped at EOS or at the "
            "ShareGPT reply length) and differ in 93-113 of the 1,000 requests between this run "
            "and each other one. Every run completed 1,000/1,000; this file is the 8xH100 32-QPS "
            "run: most non-empty outputs (622, a 4-way tie), then most output tokens (122,819). "
            "The 378 requests that returned no tokens (immediate EOS, mostly long prompts) are "
            "dropped, which skews inputs short: all 1,000 prompts average 215.2 tokens (p50 83), "
            "the kept 622 average 112.5 (p50 25)."
        ),
    ),
)


# --------------------------------------------------------------------------- provenance


_SOURCE_RE = re.compile(r"^\s*(?P<repo>\S+)\s*@\s*(?P<commit>[0-9a-fA-F]{7,40})\b")


def read_source(folder: Path) -> tuple[str, str]:
    """Return ``(repository, commit)`` from ``folder/SOURCE.txt``."""
    text = (folder / "SOURCE.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        m = _SOURCE_RE.match(line)
        if m:
            return m.group("repo"), m.group("commit").lower()
    raise ValueError(f"cannot parse repository @ commit from {folder / 'SOURCE.txt'}")


_LICENSE_MARKERS: tuple[tuple[str, str], ...] = (
    ("Apache License", "Apache-2.0"),
    ("Attribution 4.0 International", "CC-BY-4.0"),
    ("MIT License", "MIT"),
)


def detect_license(folder: Path) -> str:
    """Name the data licence from the folder's LICENSE* files (first recognised wins).

    ``LICENSE`` (the data licence) is read before e.g. ``LICENSE-CODE``.
    """
    files = sorted(folder.glob("LICENSE*"), key=lambda p: (p.name != "LICENSE", p.name))
    for path in files:
        head = path.read_text(encoding="utf-8-sig", errors="replace")[:2000]
        for marker, spdx in _LICENSE_MARKERS:
            if marker in head:
                return spdx
    raise ValueError(f"no recognised LICENSE file in {folder}")


# --------------------------------------------------------------------------- loading


def load_lengths(path: Path, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (input_tokens, output_tokens) as int64 arrays, in file order."""
    if kind == "etalon_csv":
        df = pd.read_csv(path, usecols=["num_prefill_tokens", "num_decode_tokens"])
        inp, out = df["num_prefill_tokens"], df["num_decode_tokens"]
    elif kind == "azure_csv":
        df = pd.read_csv(path, usecols=["ContextTokens", "GeneratedTokens"])
        inp, out = df["ContextTokens"], df["GeneratedTokens"]
    elif kind == "mooncake_jsonl":
        ins: list[int] = []
        outs: list[int] = []
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                rec = json.loads(line)
                ins.append(int(rec["input_length"]))
                outs.append(int(rec["output_length"]))
        inp, out = pd.Series(ins), pd.Series(outs)
    elif kind == "vllm_bench_json":
        # vLLM benchmark_serving result: per-request prompt lengths and generated lengths
        # (0 for a request that produced no tokens), in request order.
        rec = json.loads(path.read_text(encoding="utf-8"))
        ins, outs = rec["input_lens"], rec["output_lens"]
        if len(ins) != len(outs):
            raise ValueError(f"{path}: {len(ins)} input_lens but {len(outs)} output_lens")
        inp, out = pd.Series(ins, dtype="Int64"), pd.Series(outs, dtype="Int64")
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown dataset kind {kind!r}")
    if inp.isna().any() or out.isna().any():
        raise ValueError(f"{path}: missing length values")
    return inp.to_numpy(dtype=np.int64), out.to_numpy(dtype=np.int64)


# --------------------------------------------------------------------------- statistics


def _r2(x: float) -> float:
    return round(float(x), 2)


def marginal_summary(x: np.ndarray) -> dict:
    probs = np.linspace(0.0, 1.0, N_QUANTILES)
    q = [_r2(v) for v in np.quantile(x.astype(np.float64), probs, method="linear")]
    return {
        "count": int(x.size),
        "mean": _r2(x.mean()),
        "std": _r2(x.std(ddof=1)) if x.size > 1 else 0.0,
        "min": int(x.min()),
        "max": int(x.max()),
        "p50": q[100],
        "p90": q[180],
        "p99": q[198],
        "quantiles": q,
    }


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx = pd.Series(x).rank(method="average").to_numpy()
    ry = pd.Series(y).rank(method="average").to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return round(float(np.corrcoef(rx, ry)[0, 1]), 4)


def _rank_bins(x: np.ndarray, perm: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-probability bin index of each element; ties broken by ``perm`` (a permutation)."""
    n = x.size
    order = np.lexsort((perm, x))  # sort by value, then by the random tie-break key
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n, dtype=np.int64)
    return (ranks * n_bins) // n


def copula_counts(x: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> list[list[int]]:
    rng = np.random.default_rng(TIE_BREAK_SEED)
    bx = _rank_bins(x, rng.permutation(x.size), n_bins)
    by = _rank_bins(y, rng.permutation(y.size), n_bins)
    counts = np.zeros((n_bins, n_bins), dtype=np.int64)
    np.add.at(counts, (bx, by), 1)
    return [[int(c) for c in row] for row in counts]


# --------------------------------------------------------------------------- tables


def build_table(ds: Dataset, data_dir: Path) -> dict:
    folder = data_dir / ds.folder
    path = folder / ds.file
    repository, commit = read_source(folder)
    licence = detect_license(folder)
    inp, out = load_lengths(path, ds.kind)
    keep = (inp > 0) & (out > 0)
    dropped = int((~keep).sum())
    inp, out = inp[keep], out[keep]
    if inp.size < N_BINS:
        raise ValueError(f"{path}: only {inp.size} usable rows")
    return {
        "name": ds.name,
        "description": ds.description,
        "source": {
            "folder": ds.folder,
            "file": ds.file,
            "repository": repository,
            "commit": commit,
            "license": licence,
            "rows": int(inp.size),
            "dropped": dropped,
        },
        "tokenizer": ds.tokenizer,
        "derived_by": DERIVED_BY,
        "input_tokens": marginal_summary(inp),
        "output_tokens": marginal_summary(out),
        "joint": {
            "spearman": spearman(inp, out),
            "bins": N_BINS,
            "counts": copula_counts(inp, out),
        },
    }


def dump_table(table: dict) -> str:
    # default_flow_style=None: leaf mappings/sequences (source, quantiles, each counts row) in
    # flow style, everything else in block style.
    return yaml.safe_dump(
        table, sort_keys=False, default_flow_style=None, width=100, allow_unicode=False
    )


def write_tables(data_dir: Path, out_dir: Path, only: list[str] | None = None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    selected = [ds for ds in DATASETS if not only or ds.name in only]
    if only:
        unknown = set(only) - {ds.name for ds in DATASETS}
        if unknown:
            raise SystemExit(f"unknown dataset(s): {', '.join(sorted(unknown))}")
    written = []
    for ds in selected:
        text = dump_table(build_table(ds, data_dir))
        dest = out_dir / f"{ds.name}.yaml"
        dest.write_text(text, encoding="utf-8")
        written.append(dest)
    return written


def default_data_dir() -> Path:
    env = os.environ.get("SERVESIM_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="shared data root (default: $SERVESIM_DATA_DIR or <repo>/../shared/data)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "workloads" / "lengths",
        help="output directory (default: <repo>/workloads/lengths)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="derive only these datasets (by name)"
    )
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        parser.error(f"data dir not found: {args.data_dir}")
    for path in write_tables(args.data_dir, args.out, args.only):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
