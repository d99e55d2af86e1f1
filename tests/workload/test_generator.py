"""Traffic built from workload configs: seeds, tenants, sessions, prefix sharing, named specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.config import WorkloadConfig, load_scenario
from simulator.errors import ConfigError
from simulator.profiles import data_root
from simulator.workload.generator import RequestSpec, Session, Traffic, build_traffic
from simulator.workload.lengths import LengthPairs

N = 100_000


def build(cfg: dict | WorkloadConfig, seed: int = 0, mml: int | None = None) -> Traffic:
    c = cfg if isinstance(cfg, WorkloadConfig) else WorkloadConfig.model_validate(cfg)
    return build_traffic(c, np.random.SeedSequence(seed), 16, None, mml)


def open_items(tr: Traffic, n: int | None = None) -> list[tuple[float, RequestSpec]]:
    s = tr.open_loop[0]
    out = []
    for t, spec in zip(s.times, s.specs, strict=False):
        out.append((t, spec))
        if n is not None and len(out) >= n:
            break
    return out


def session_list(tr: Traffic, n: int | None = None) -> list[Session]:
    out = []
    for s in tr.sessions[0]:
        out.append(s)
        if n is not None and len(out) >= n:
            break
    return out


def test_single_stream_is_the_core_generator_bit_for_bit():
    """Shipped scenarios keep their numbers: same spawn layout, same draws as before issue 6."""
    cfg = WorkloadConfig(arrival={"kind": "poisson", "rate": 7}, system_prompt_tokens=100,
                         num_requests=5000)
    got = open_items(build(cfg, seed=3))
    seed = np.random.SeedSequence(3)
    s_arr, s_len = seed.spawn(2)
    rng_a, rng_l = np.random.default_rng(s_arr), np.random.default_rng(s_len)
    times = np.cumsum(rng_a.exponential(1 / 7, 4096))
    pairs = LengthPairs(cfg.input_len, cfg.output_len, None)
    inp, out = pairs.sample(rng_l, 4096)
    assert len(got) == 5000
    for k in range(4096):
        t, spec = got[k]
        assert t == times[k] and spec.prompt_len == 100 + inp[k] and spec.output_len == out[k]
        assert spec.prefix_hashes == tuple((1 << 40) + i for i in range(6))
        assert (spec.tenant, spec.priority, spec.api_key, spec.slo_class) == ("default", 0, None,
                                                                              "default")


def test_same_seed_same_stream_everywhere():
    cfg = WorkloadConfig(name="multi-tenant", duration_s=300)
    a, b, c = build(cfg, 4), build(cfg, 4), build(cfg, 5)

    def flat(tr: Traffic) -> list[tuple[float, RequestSpec]]:
        out = []
        for s in session_list(tr):
            out += [(s.start_s, s.make_turn(k)) for k in range(s.num_turns)]
        return out

    fa = flat(a)
    assert fa == flat(b) and fa != flat(c) and len(fa) > 100


def test_weighted_tenants_share_one_arrival_process():
    cfg = {"arrival": {"kind": "gamma", "rate": 20, "cv": 2},
           "tenants": [{"name": "a", "weight": 3, "api_key": "ka", "priority": 1,
                        "slo_class": "gold", "input_len": {"kind": "fixed", "value": 10}},
                       {"name": "b", "weight": 1, "input_len": {"kind": "fixed", "value": 20},
                        "system_prompt_tokens": 64}],
           "output_len": {"kind": "fixed", "value": 5}, "num_requests": N}
    items = open_items(build(cfg))
    t = np.array([x for x, _ in items])
    g = np.diff(t)
    assert len(items) == N and 1 / g.mean() == pytest.approx(20, rel=0.02)
    assert g.std() / g.mean() == pytest.approx(2, rel=0.02)
    a = [s for _, s in items if s.tenant == "a"]
    b = [s for _, s in items if s.tenant == "b"]
    assert len(a) / N == pytest.approx(0.75, rel=0.02)
    assert {(s.api_key, s.priority, s.slo_class, s.prompt_len) for s in a} == {("ka", 1, "gold", 10)}
    assert {(s.api_key, s.priority, s.slo_class, s.prompt_len) for s in b} == {(None, 0, "default", 84)}
    assert len(b[0].prefix_hashes) == 4 and a[0].prefix_hashes == ()


def test_tenants_with_their_own_arrivals_are_merged_in_time_order():
    cfg = {"tenants": [{"name": "fast", "arrival": {"kind": "poisson", "rate": 30}},
                       {"name": "slow", "arrival": {"kind": "poisson", "rate": 10},
                        "num_requests": 500}],
           "num_requests": 20_000}
    tr = build(cfg)
    assert tr.expected_requests == 20_000
    items = open_items(tr)
    t = [x for x, _ in items]
    assert len(items) == 20_000 and t == sorted(t)
    slow = [x for x, s in items if s.tenant == "slow"]
    assert len(slow) == 500 and len(slow) / slow[-1] == pytest.approx(10, rel=0.1)


def test_closed_loop_tenant_and_expected_requests():
    cfg = {"arrival": {"kind": "poisson", "rate": 5},
           "tenants": [{"name": "web", "weight": 1},
                       {"name": "bench", "arrival": {"kind": "closed_loop", "concurrency": 4},
                        "num_requests": 100}],
           "num_requests": 300}
    tr = build(cfg)
    assert tr.expected_requests == 400
    assert len(tr.closed_loop) == 1 and tr.closed_loop[0].limit == 100
    assert next(tr.closed_loop[0].specs).tenant == "bench"
    with pytest.raises(ValueError, match=r"tenants\[1\].num_requests or workload.duration_s"):
        WorkloadConfig.model_validate({"tenants": [
            {"name": "a"}, {"name": "b", "arrival": {"kind": "closed_loop", "concurrency": 2}}]})


def test_sessions_extend_the_conversation_and_hit_the_prefix():
    cfg = {"arrival": {"kind": "poisson", "rate": 2}, "system_prompt_tokens": 100,
           "input_len": {"kind": "lognormal", "mean": 200, "cv": 1},
           "output_len": {"kind": "lognormal", "mean": 150, "cv": 1},
           "sessions": {"turns_mean": 4, "think_time_s": 10,
                        "followup_input_len": {"kind": "fixed", "value": 30}},
           "num_requests": None, "duration_s": 20_000}
    sessions = session_list(build(cfg, mml=8192), 5000)
    turns = np.array([s.num_turns for s in sessions])
    assert turns.min() >= 1
    uncut = [s for s in sessions if s.make_turn(s.num_turns - 1).prompt_len < 6000]
    assert np.mean([s.num_turns for s in uncut]) == pytest.approx(4, rel=0.05)
    think = np.concatenate([s.think_time_s[1:] for s in sessions])
    assert think.mean() == pytest.approx(10, rel=0.03)
    for s in sessions[:300]:
        prev = None
        for k in range(s.num_turns):
            spec = s.make_turn(k)
            assert spec.turn == k and spec.session_id is not None
            assert len(spec.prefix_hashes) * 16 <= spec.prompt_len <= 8192
            assert spec.prefix_hashes[:6] == tuple((1 << 40) + i for i in range(6))
            if prev is not None:
                assert spec.prompt_len == prev.prompt_len + prev.output_len + 30
                n = len(prev.prefix_hashes)
                assert spec.prefix_hashes[:n] == prev.prefix_hashes
            prev = spec
        nxt = s.make_turn(s.num_turns - 1)
        assert nxt.prompt_len + nxt.output_len <= 8192 or s.num_turns == 1
    other = sessions[0].make_turn(0).prefix_hashes[6:]
    assert set(other).isdisjoint(sessions[1].make_turn(0).prefix_hashes)


def test_sessions_count_turns_against_num_requests():
    cfg = {"arrival": {"kind": "poisson", "rate": 5}, "sessions": {"turns_mean": 3},
           "num_requests": 1000}
    tr = build(cfg)
    assert tr.expected_requests == 1000
    assert sum(s.num_turns for s in session_list(tr)) == 1000


def test_offline_sessions_and_finite_steps_are_counted_exactly():
    tr = build({"arrival": {"kind": "steps", "steps": [{"at_s": 0, "rate": 20},
                                                       {"at_s": 30, "rate": 0}]},
                "num_requests": 100_000})
    assert tr.expected_requests == len(open_items(tr)) < 1000


def test_overlong_send_or_clip():
    base = {"input_len": {"kind": "fixed", "value": 900}, "output_len": {"kind": "fixed",
                                                                          "value": 300},
            "num_requests": 10}
    sent = open_items(build(base, mml=1000))[0][1]
    assert (sent.prompt_len, sent.output_len) == (900, 300)
    clipped = open_items(build({**base, "overlong": "clip"}, mml=1000))[0][1]
    assert (clipped.prompt_len, clipped.output_len) == (900, 100)


def test_every_named_workload_validates_and_fitted_ones_run_without_shared_data(monkeypatch,
                                                                                 tmp_path: Path):
    monkeypatch.setenv("SERVESIM_DATA_DIR", str(tmp_path / "no-shared-data"))
    names = sorted(p.stem for p in data_root("workloads").glob("*.yaml"))
    assert {"azure-conv-2023", "azure-code-2023", "mooncake-conversation", "multi-tenant",
            "chat-diurnal", "traffic-surge-x3"} <= set(names)
    for name in names:
        cfg = WorkloadConfig(name=name)
        assert cfg.description, name
        if cfg.arrival.kind == "trace":
            with pytest.raises(ConfigError, match="SERVESIM_DATA_DIR"):
                build(cfg)
            continue
        tr = build(cfg, mml=131_072)
        n = 0
        for s in tr.open_loop:
            n += sum(1 for _ in zip(range(200), s.times, s.specs, strict=False))
        for ss in tr.sessions:
            n += sum(1 for _ in zip(range(200), ss, strict=False))
        assert n > 0, name


def test_named_workload_fields_merge_with_overrides():
    cfg = WorkloadConfig.model_validate({"name": "azure-conv-2023",
                                         "arrival": {"time_scale": 6}, "num_requests": 50})
    assert cfg.arrival.kind == "fitted" and cfg.arrival.time_scale == 6  # type: ignore[union-attr]
    assert cfg.arrival.name == "azure-conv-2023"  # type: ignore[union-attr]
    assert cfg.num_requests == 50 and cfg.input_len.kind == "table"
    replaced = WorkloadConfig.model_validate({"name": "azure-conv-2023",
                                              "arrival": {"kind": "poisson", "rate": 3}})
    assert replaced.arrival.kind == "poisson"
    # re-validating the dumped config gives the same config
    again = WorkloadConfig.model_validate(cfg.model_dump())
    assert again == cfg


def test_scenario_names_a_workload_and_overrides_it(tmp_path: Path):
    p = tmp_path / "s.yaml"
    p.write_text("workload: {name: traffic-surge-x3, duration_s: 60}\n")
    sc = load_scenario(p, ["workload.arrival.cv=1.0"])
    assert sc.workload.arrival.kind == "steps" and sc.workload.arrival.cv == 1.0  # type: ignore
    spec = tmp_path / "mine.yaml"
    spec.write_text("description: mine\narrival: {kind: gamma, rate: 4, cv: 2}\nnum_requests: 9\n")
    p.write_text(f"workload: {{spec: {spec}}}\n")
    assert load_scenario(p).workload.arrival.kind == "gamma"


@pytest.mark.parametrize(("data", "match"), [
    ({"name": "nope"}, r"unknown named workload 'nope'; known: .*azure-conv-2023"),
    ({"arrival": {"kind": "closed_loop", "concurrency": 2}, "sessions": {}},
     r"sessions need an open-loop arrival"),
    ({"arrival": {"kind": "trace", "name": "azure-conv-2023"},
      "input_len": {"kind": "fixed", "value": 3}}, r"input_len would be ignored"),
    ({"arrival": {"kind": "trace"}}, r"exactly one of name"),
    ({"tenants": [{"name": "a"}, {"name": "a"}]}, r"tenant names must be unique"),
    ({"tenants": [{"name": "a", "weight": 1, "arrival": {"kind": "poisson", "rate": 1}}]},
     r"either weight"),
    ({"arrival": {"kind": "diurnal"}}, r"set rate"),
    ({"arrival": {"kind": "steps", "steps": [{"at_s": 5, "rate": 1}]}}, r"first step"),
    ({"arrival": {"kind": "mmpp", "states": [{"rate": 1, "mean_s": 1}, {"rate": 2, "mean_s": 1}],
                  "transitions": [[0, 1], [0.5, 0.4]]}}, r"transitions row 1"),
    ({"arrival": {"kind": "offline"}, "num_requests": None, "duration_s": 5}, r"offline"),
])
def test_config_errors_say_what_to_fix(data, match):
    with pytest.raises(ValueError, match=match):
        WorkloadConfig.model_validate(data)


def test_bad_spec_file_names_its_line(tmp_path: Path):
    spec = tmp_path / "w.yaml"
    spec.write_text("description: x\narrival: {kind: gamma, rate: 4, cv: -1}\n")
    with pytest.raises(ValueError, match=r"w.yaml:2: arrival.cv"):
        WorkloadConfig.model_validate({"spec": str(spec)})


def test_request_spec_constructor_sets_every_field_and_stays_a_value():
    from tests.engine.test_request import defaults_hold

    defaults_hold(RequestSpec(300, 50), {"prompt_len": 300, "output_len": 50})
    given = {"prompt_len": 10, "output_len": 2, "prefix_hashes": (5, 6), "priority": 1,
             "tenant": "acme", "api_key": "k", "session_id": 4, "turn": 2, "slo_class": "gold"}
    s = RequestSpec(*given.values())
    defaults_hold(s, given)
    t = RequestSpec(**given)
    assert s == t and hash(s) == hash(t) and len({s, t}) == 1
    assert s != RequestSpec(**{**given, "turn": 3})
