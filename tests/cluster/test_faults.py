"""Faults and health: crashes fail in-flight requests (502) that then follow the retry policy;
health checks take interval × threshold to notice; circuit breaking ejects sooner; spot notice
drains; zone loss; MTBF; replica lifetimes for cost."""

from __future__ import annotations

import pytest

from simulator import simulate
from simulator.errors import ConfigError
from simulator.metrics import names
from tests.cluster.helpers import scenario

HOT = {"num_requests": None, "duration_s": 30, "arrival": {"kind": "poisson", "rate": 20}}


def _502(res, reason: str):
    a = res.extra["attempts"]
    return a[a["reason"] == reason]


def test_crash_fails_in_flight_requests_and_retries_save_them():
    crash = {"events": [{"kind": "crash", "at_s": 10, "replica": 0}]}
    base = dict(workload=HOT, fleet={"replicas": 2}, faults=crash)
    lost = simulate(scenario(**base))
    failed = _502(lost, names.R_CRASHED)
    assert len(failed) > 0 and (failed["end_s"] == 10).all() and (failed["replica"] == 0).all()
    r = lost.summary["requests"]
    assert r["failed"] >= len(failed)
    assert r["arrived"] == r["completed"] + r["rejected"] + r["timed_out"] + r["failed"] \
        + r["in_flight"]
    saved = simulate(scenario(**base, clients={"retry": {"max_attempts": 3}}))
    assert saved.summary["requests"]["failed"] == 0
    assert saved.summary["fleet"]["retries"] >= len(failed)
    lives = saved.extra["replicas"].set_index("replica")
    assert lives.loc[0, "end_reason"] == names.END_CRASH and lives.loc[0, "end_s"] == 10
    assert lives.loc[1, "end_reason"] == names.END_RUN


def test_health_checks_bound_the_detection_delay_and_the_breaker_cuts_it():
    def run(interval: float, threshold: int, eject: int | None):
        return simulate(scenario(
            workload=HOT, fleet={"replicas": 2, "router": {"eject_after_failures": eject}},
            faults={"events": [{"kind": "crash", "at_s": 10.2, "replica": 1}],
                    "health": {"interval_s": interval, "failure_threshold": threshold}}))

    slow = _502(run(4.0, 2, None), names.R_UNREACHABLE)
    fast = _502(run(1.0, 1, None), names.R_UNREACHABLE)
    # Probes at multiples of the interval: the 2nd failed probe after 10.2 s is at 16 s.
    assert slow["end_s"].min() >= 10.2 and slow["end_s"].max() <= 16.0 + 1e-9
    assert fast["end_s"].max() <= 11.0 + 1e-9
    assert len(slow) > 3 * len(fast) > 0
    broken = run(4.0, 2, 3)
    assert len(_502(broken, names.R_UNREACHABLE)) <= 3
    assert broken.summary["fleet"]["ejections"] >= 1


def test_recovered_replica_takes_traffic_again_after_a_good_probe():
    res = simulate(scenario(
        workload=HOT, fleet={"replicas": 2},
        faults={"events": [{"kind": "crash", "at_s": 5, "replica": 0, "recover_after_s": 10}],
                "health": {"interval_s": 2, "failure_threshold": 1}},
        clients={"retry": {"max_attempts": 3}}))
    df = res.requests
    on0 = df.loc[df["replica"] == 0, "arrival_s"]
    assert ((on0 > 6) & (on0 < 15)).sum() == 0 and (on0 > 16.5).sum() > 20
    lives = res.extra["replicas"]
    back = lives[(lives["replica"] == 0) & (lives["start_s"] == 15)]
    assert len(back) == 1 and res.summary["fleet"]["replicas"]["outages"] == {"crash": 1}


def test_no_healthy_replica_means_503_and_retries_outlast_a_short_outage():
    faults = {"events": [{"kind": "crash", "at_s": 5, "replica": 0, "recover_after_s": 4}],
              "health": {"interval_s": 1, "failure_threshold": 1}}
    wl = {"num_requests": None, "duration_s": 20, "arrival": {"kind": "poisson", "rate": 5}}
    res = simulate(scenario(workload=wl, faults=faults))
    assert res.summary["fleet"]["reasons"].get(names.R_NO_REPLICA, 0) > 5
    retried = simulate(scenario(workload=wl, faults=faults, clients={"retry": {
        "max_attempts": 6, "backoff": {"kind": "exponential", "base_s": 1, "jitter": "none"}}}))
    r = retried.summary["requests"]
    assert r["rejected"] == 0 and r["completed"] > 0.9 * r["arrived"]


def test_spot_notice_drains_new_traffic_and_in_flight_finish_if_the_notice_is_long_enough():
    def run(notice: float):
        return simulate(scenario(
            workload=HOT, fleet={"replicas": 2},
            faults={"events": [{"kind": "spot_preemption", "at_s": 10, "replica": 0,
                                "notice_s": notice}]}))

    long_notice = run(20.0)
    df = long_notice.requests
    assert (df.loc[df["replica"] == 0, "arrival_s"] <= 10).all()
    assert long_notice.summary["requests"]["failed"] == 0
    lives = long_notice.extra["replicas"].set_index("replica")
    assert lives.loc[0, "end_reason"] == names.END_PREEMPTED and lives.loc[0, "end_s"] == 30
    short = run(0.5)
    assert short.summary["requests"]["failed"] > 0


def test_zone_loss_takes_down_every_pool_in_the_zone():
    pools = [{"name": "a", "zone": "z1", "replicas": 2}, {"name": "b", "zone": "z2", "replicas": 1}]
    res = simulate(scenario(workload=HOT, fleet={"pools": pools},
                            faults={"events": [{"kind": "zone_loss", "at_s": 8, "zone": "z1"}],
                                    "health": {"interval_s": 1, "failure_threshold": 1}},
                            clients={"retry": {"max_attempts": 4}}))
    lives = res.extra["replicas"]
    assert (lives.loc[lives["pool"] == "a", "end_reason"] == names.END_ZONE).all()
    df = res.requests
    assert (df.loc[df["arrival_s"] > 10, "pool"] == "b").all()
    assert res.summary["requests"]["failed"] == 0


def test_mtbf_crashes_are_seeded_and_about_as_frequent_as_the_mean_says():
    def outages(seed: int):
        res = simulate(scenario(
            seed=seed, fleet={"replicas": 4},
            workload={"num_requests": None, "duration_s": 60,
                      "arrival": {"kind": "poisson", "rate": 4}},
            faults={"mtbf": {"mean_s": 20, "repair_s": 5}}, clients={"retry": {"max_attempts": 4}}))
        lives = res.extra["replicas"]
        return lives.loc[lives["end_reason"] == names.END_CRASH, ["replica", "end_s"]]

    a, b = outages(1), outages(1)
    assert a.equals(b)
    assert 4 <= len(a) <= 20  # 4 replicas × 60 s / 20 s ≈ 11 (minus repair time)
    assert not outages(2).equals(a)


def test_faults_naming_unknown_pools_or_replicas_are_config_errors():
    with pytest.raises(ConfigError, match="has 1 replicas"):
        simulate(scenario(faults={"events": [{"kind": "crash", "at_s": 1, "replica": 3}]}))
    with pytest.raises(ConfigError, match="no pool 'x'"):
        simulate(scenario(faults={"events": [{"kind": "crash", "at_s": 1, "pool": "x"}]}))
    with pytest.raises(ConfigError, match="no pool in zone"):
        simulate(scenario(faults={"events": [{"kind": "zone_loss", "at_s": 1, "zone": "q"}]}))
