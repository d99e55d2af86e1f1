"""Trace replay: schema check with line numbers, order/count/gaps kept, time and rate scaling,
Mooncake hash_ids as shared KV blocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.calibrate.datasets import shared_data_root
from simulator.config import TraceArrivals
from simulator.errors import ConfigError
from simulator.workload.sessions import trace_hashes
from simulator.workload.traces import (
    BUILTIN_TRACES,
    TraceError,
    load_trace,
    load_trace_file,
    replay,
    spread_ties,
)


def _have(name: str) -> bool:
    return (shared_data_root() / BUILTIN_TRACES[name][0]).is_file()


def needs(name: str):
    return pytest.mark.skipif(not _have(name), reason=f"shared trace data absent: "
                              f"{shared_data_root() / BUILTIN_TRACES[name][0]} (set SERVESIM_DATA_DIR)")


def gaps_cv(t: np.ndarray) -> float:
    g = np.diff(t)
    return float(g.std() / g.mean())


def dispersion(t: np.ndarray, w: float) -> float:
    c = np.bincount((t // w).astype(int))[: int(t[-1] // w)]
    return float(c.var() / c.mean())


@pytest.fixture
def bursty_csv(tmp_path: Path) -> Path:
    """A synthetic generic trace: Gamma gaps (CV 2), lognormal lengths, 50k requests."""
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.gamma(0.25, 0.4, 50_000))
    inp = np.maximum(1, rng.lognormal(6, 1, len(t)).astype(int))
    out = np.maximum(1, rng.lognormal(5, 1, len(t)).astype(int))
    p = tmp_path / "log.csv"
    lines = ["timestamp,input_tokens,output_tokens,extra"]
    lines += [f"{a:.6f},{b},{c},x" for a, b, c in zip(t, inp, out, strict=True)]
    p.write_text("\n".join(lines) + "\n")
    return p


def test_generic_csv_and_jsonl(tmp_path: Path):
    csv = tmp_path / "a.csv"
    csv.write_text("timestamp,input_tokens,output_tokens,hash_ids,tenant,priority\n"
                   "100.5,10,2,1 2,alice,1\n101.0,20,3,,bob,\n101.0,30,4,1 2 3,,\n")
    tr = load_trace_file(csv)
    assert tr.format == "generic" and tr.times.tolist() == [0.0, 0.5, 0.5]
    assert tr.input.tolist() == [10, 20, 30] and tr.output.tolist() == [2, 3, 4]
    assert tr.hash_ids == [(1, 2), (), (1, 2, 3)]
    assert tr.tenant == ["alice", "bob", "default"]
    assert tr.priority is not None and tr.priority.tolist() == [1, 0, 0]
    js = tmp_path / "b.jsonl"
    js.write_text('{"timestamp": "2024-05-01T12:00:00", "input_tokens": 5, "output_tokens": 1}\n\n'
                  '{"timestamp": "2024-05-01T12:00:01.5", "input_tokens": 6, "output_tokens": 2,'
                  ' "hash_ids": [7]}\n')
    tr = load_trace_file(js)
    assert tr.times.tolist() == [0.0, 1.5] and tr.hash_ids == [(), (7,)]


@pytest.mark.parametrize(("name", "text", "where"), [
    ("a.csv", "timestamp,input_tokens,output_tokens\n1,10,5\n2,ten,5\n", r"a.csv:3: input_tokens: "),
    ("a.csv", "timestamp,input_tokens,output_tokens\n1,10,5\n2,10,0\n", r"a.csv:3: output_tokens: "),
    ("a.csv", "timestamp,input_tokens,output_tokens\n1,10,5\n2,10,5\n1.5,10,5\n",
     r"a.csv:4: timestamp: .*arrival order"),
    ("a.csv", "timestamp,input_tokens\n1,10\n", r"a.csv:1: header: missing column\(s\) output_tokens"),
    ("a.csv", "timestamp,input_tokens,output_tokens\n1,10,5\n2,10\n", r"a.csv:3: \(row\): has 2 fields"),
    ("a.csv", "timestamp,input_tokens,output_tokens\nyesterday,10,5\n", r"a.csv:2: timestamp: "),
    ("a.csv", "timestamp,input_tokens,output_tokens,hash_ids\n1,10,5,1 -2\n", r"a.csv:2: hash_ids: "),
    ("a.jsonl", '{"timestamp": 1, "input_tokens": 3, "output_tokens": 1}\n{"timestamp": 2,\n',
     r"a.jsonl:2: not valid JSON"),
    ("a.jsonl", '{"timestamp": 1, "input_tokens": 3, "output_tokens": 1}\n\n[1, 2]\n',
     r"a.jsonl:3: \(line\): must be a JSON object"),
    ("a.jsonl", '{"timestamp": 1, "input_tokens": 3}\n', r"a.jsonl:1: output_tokens: required"),
    ("a.jsonl", '{"timestamp": 1, "input_tokens": 3.5, "output_tokens": 1}\n',
     r"a.jsonl:1: input_tokens: must be an integer"),
    ("m.jsonl", '{"timestamp": 0, "input_length": 3, "output_length": 1, "hash_ids": [0]}\n'
                '{"timestamp": 5, "input_length": 3, "output_length": 1, "hash_ids": "x"}\n',
     r"m.jsonl:2: hash_ids: must be a list"),
])
def test_bad_line_gives_one_line_error_with_its_number(tmp_path: Path, name, text, where):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(TraceError, match=where) as e:
        load_trace_file(p)
    assert "\n" not in str(e.value)


def test_replay_keeps_count_order_and_gaps(bursty_csv: Path):
    tr = load_trace_file(bursty_csv)
    rep = replay(tr, TraceArrivals(file=str(bursty_csv)), np.random.default_rng(0))
    assert len(rep) == len(tr) == 50_000
    assert (rep.rows == np.arange(len(tr))).all()
    assert np.array_equal(rep.times, tr.times)
    sub = replay(tr, TraceArrivals(file=str(bursty_csv), start_s=1000, end_s=2000),
                 np.random.default_rng(0))
    inside = (tr.times >= 1000) & (tr.times <= 2000)
    assert len(sub) == inside.sum() and np.allclose(sub.times, tr.times[inside] - 1000)


def test_time_scale_divides_every_gap(bursty_csv: Path):
    tr = load_trace_file(bursty_csv)
    rep = replay(tr, TraceArrivals(file=str(bursty_csv), time_scale=6), np.random.default_rng(0))
    assert np.allclose(np.diff(rep.times), np.diff(tr.times) / 6)
    assert gaps_cv(rep.times) == pytest.approx(gaps_cv(tr.times), rel=1e-9)


def test_rate_scale_doubles_the_rate(bursty_csv: Path):
    tr = load_trace_file(bursty_csv)
    base_rate, base_cv = len(tr) / tr.times[-1], gaps_cv(tr.times)
    base_disp = dispersion(tr.times, 60)
    sup = replay(tr, TraceArrivals(file=str(bursty_csv), rate_scale=2), np.random.default_rng(1))
    assert len(sup) == 2 * len(tr) and (np.diff(sup.times) >= 0).all()
    assert len(sup) / sup.times[-1] == pytest.approx(2 * base_rate, rel=0.02)
    # superposition keeps the count dispersion; the gap CV moves towards 1 (2.0 → ~1.85)
    assert dispersion(sup.times, 60) == pytest.approx(base_disp, rel=0.15)
    assert 1.0 < gaps_cv(sup.times) < base_cv
    tile = replay(tr, TraceArrivals(file=str(bursty_csv), rate_scale=2, rate_method="tile"),
                  np.random.default_rng(1))
    assert len(tile) == 2 * len(tr)
    assert len(tile) / tile.times[-1] == pytest.approx(2 * base_rate, rel=0.02)
    assert gaps_cv(tile.times) == pytest.approx(base_cv, rel=0.02)
    half = replay(tr, TraceArrivals(file=str(bursty_csv), rate_scale=0.5), np.random.default_rng(1))
    assert len(half) / half.times[-1] == pytest.approx(base_rate / 2, rel=0.02)
    frac = replay(tr, TraceArrivals(file=str(bursty_csv), rate_scale=2.5), np.random.default_rng(1))
    assert len(frac) == pytest.approx(2.5 * len(tr), rel=0.01)
    a = replay(tr, TraceArrivals(file=str(bursty_csv), rate_scale=2), np.random.default_rng(5))
    b = replay(tr, TraceArrivals(file=str(bursty_csv), rate_scale=2), np.random.default_rng(5))
    assert np.array_equal(a.times, b.times) and np.array_equal(a.rows, b.rows)


def test_spread_ties():
    t = np.array([0.0, 0, 0, 3, 3, 6])
    assert spread_ties(t).tolist() == [0, 1, 2, 3, 4.5, 6]


def test_trace_hashes_share_exactly_the_common_full_blocks():
    a = trace_hashes([0, 1, 2], 1100, 16, 512, (), 0, 0)
    b = trace_hashes([0, 1, 9], 1536, 16, 512, (), 0, 0)
    assert len(a) == 64  # 1100 tokens: two full 512-blocks; the partial third is never shared
    assert len(b) == 96 and a == b[:64] and set(b[64:]).isdisjoint(a)
    c = trace_hashes([0, 5], 1024, 16, 512, (), 0, 0)
    assert c[:32] == a[:32] and c[32] != a[32]
    # Block size 48 does not divide 512: blocks straddle hash blocks, chains still decide.
    d = trace_hashes([0, 1, 2], 1536, 48, 512, (), 0, 0)
    e = trace_hashes([0, 1, 3], 1536, 48, 512, (), 0, 0)
    assert len(d) == 32 and sum(x == y for x, y in zip(d, e, strict=True)) == 1024 // 48
    # A system prompt in front shifts the trace blocks; prefix never exceeds the prompt.
    sysh = tuple(range(100, 132))
    f = trace_hashes([0, 1], 1000, 16, 512, sysh, 520, 1)
    assert f[:32] == sysh and len(f) * 16 <= 520 + 1000
    assert trace_hashes([0, 1], 1000, 16, 512, sysh, 520, 2)[32:] != f[32:]


@needs("azure-conv-2023")
def test_azure_conv_replay_matches_the_recorded_trace():
    tr = load_trace(TraceArrivals(name="azure-conv-2023"))
    assert len(tr) == 19_366 and (np.diff(tr.times) >= 0).all()
    rep = replay(tr, TraceArrivals(name="azure-conv-2023"), np.random.default_rng(0))
    assert len(rep) == len(tr) and np.array_equal(rep.times, tr.times)
    cv = gaps_cv(tr.times)
    assert cv == pytest.approx(1.094, abs=0.001)
    sup = replay(tr, TraceArrivals(name="azure-conv-2023", rate_scale=2), np.random.default_rng(0))
    assert len(sup) / sup.times[-1] == pytest.approx(2 * len(tr) / tr.times[-1], rel=0.02)
    # NOTE: superposing independent copies is not CV-invariant: the gap CV drifts towards 1
    # (1.094 → 1.02–1.06 depending on the shifts) while the count dispersion is kept on average
    # over the shifts (one shift may align or oppose the copies' slow profiles); tile keeps the CV.
    assert gaps_cv(sup.times) == pytest.approx(cv, rel=0.07)
    disp = [dispersion(replay(tr, TraceArrivals(name="azure-conv-2023", rate_scale=2),
                              np.random.default_rng(s)).times, 60) for s in range(10)]
    assert np.mean(disp) == pytest.approx(dispersion(tr.times, 60), rel=0.2)
    tile = replay(tr, TraceArrivals(name="azure-conv-2023", rate_scale=2, rate_method="tile"),
                  np.random.default_rng(0))
    assert gaps_cv(tile.times) == pytest.approx(cv, rel=0.01)


@needs("mooncake-conversation")
def test_mooncake_hash_ids_become_shared_blocks():
    from simulator.config import WorkloadConfig
    from simulator.workload.generator import build_traffic

    cfg = WorkloadConfig(arrival=TraceArrivals(name="mooncake-conversation"), num_requests=3000)
    traffic = build_traffic(cfg, np.random.SeedSequence(0), 16, None, 131_072)
    assert traffic.expected_requests == 3000
    s = traffic.open_loop[0]
    specs = [spec for _, spec in zip(s.times, s.specs, strict=False)]
    assert len(specs) == 3000
    assert all(len(x.prefix_hashes) * 16 <= x.prompt_len for x in specs)
    first = {x.prefix_hashes[:32] for x in specs}  # the 512-token block every request shares
    assert len(first) == 1
    seen: set[int] = set()
    hit = tot = 0
    for x in specs:
        k = 0
        while k < len(x.prefix_hashes) and x.prefix_hashes[k] in seen:
            k += 1
        hit += min(16 * k, x.prompt_len - 1)
        tot += x.prompt_len
        seen.update(x.prefix_hashes)
    assert 0.25 < hit / tot < 0.45


def test_missing_builtin_trace_says_what_to_do(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("SERVESIM_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"SERVESIM_DATA_DIR.*named workload 'azure-code-2023'"):
        load_trace(TraceArrivals(name="azure-code-2023"))


def test_user_trace_relative_to_scenario(tmp_path: Path):
    (tmp_path / "t.jsonl").write_text(json.dumps({"timestamp": 0, "input_tokens": 4,
                                                  "output_tokens": 2}) + "\n")
    tr = load_trace(TraceArrivals(file="t.jsonl"), base_dir=str(tmp_path))
    assert len(tr) == 1
