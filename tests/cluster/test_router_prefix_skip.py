"""prefix_affinity's default key skip (``prefix_skip_blocks: auto``): the leading blocks every
request shares are left out of the key, so a system prompt common to all (Mooncake's first
512-token block) does not send every request to one home."""

from __future__ import annotations

import pytest

from simulator import load_scenario, simulate
from simulator.cluster.router import PrefixAffinity
from simulator.config import Scenario
from simulator.errors import ConfigError
from tests.cluster.test_router import req, states

SYSTEM = (7, 8, 9)


def test_auto_learns_the_shared_system_prompt():
    s = states([0] * 4)
    auto = PrefixAffinity(s, prefix_blocks=2, prefix_skip_blocks=-1)
    fixed0 = PrefixAffinity(s, prefix_blocks=2, prefix_skip_blocks=0)
    auto.choose(req((*SYSTEM, 1, 2)), s)  # one request alone: no skip yet
    assert auto.skip == 0
    got = {auto.choose(req((*SYSTEM, p, p + 1)), s).id for p in range(0, 4000, 100)}
    assert auto.skip == len(SYSTEM) and len(got) == 4  # conversations spread over replicas
    # with no skip every request has the system prompt's key: one home for all
    assert len({fixed0.choose(req((*SYSTEM, p, p + 1)), s).id for p in range(0, 4000, 100)}) == 1
    # a later turn of a conversation goes home again
    home = auto.choose(req((*SYSTEM, 100, 101)), s).id
    assert auto.choose(req((*SYSTEM, 100, 101, 555, 556)), s).id == home


def test_auto_skips_nothing_without_a_common_prefix():
    s = states([0] * 4)
    auto = PrefixAffinity(s, prefix_blocks=2, prefix_skip_blocks=-1)
    for p in range(0, 4000, 100):
        auto.choose(req((p, p + 1, p + 2)), s)
    assert auto.skip == 0


def test_config_default_is_auto_and_refuses_negative():
    assert Scenario().fleet.router.prefix_skip_blocks == "auto"
    with pytest.raises(ConfigError, match="prefix_skip_blocks"):
        load_scenario(None, ["fleet.router.prefix_skip_blocks=-2"])


def test_auto_helps_on_the_mooncake_trace():
    def hit(skip: str) -> float:
        try:
            sc = load_scenario("mooncake-sessions", [
                "workload.name=mooncake-conversation-replay", "workload.duration_s=240",
                "fleet.router.kind=prefix_affinity", f"fleet.router.prefix_skip_blocks={skip}"])
            return float(simulate(sc).summary["prefix_cache_hit_rate"])
        except ConfigError as e:
            pytest.skip(f"Mooncake trace not available: {e}")

    none, auto, exact = hit("0"), hit("auto"), hit("32")  # 512 tokens / 16-token blocks
    assert auto == exact > none * 1.2
