"""A run's TTFT ends at the first *visible* token (simulator.metrics.recorder, model profiles'
``hidden_output_tokens``)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import simulate
from simulator.config import scenario_from_dict
from simulator.profiles import load_model


def _run(model: str, dtype: str, out: int = 32):
    return simulate(scenario_from_dict({
        "model": {"name": model, "weight_dtype": dtype},
        "fleet": {"gpu": "H100-SXM", "tp": 2},
        "engine": {"max_model_len": 4096},
        "workload": {"arrival": {"kind": "poisson", "rate": 4.0}, "num_requests": 40,
                     "input_len": {"kind": "fixed", "value": 512},
                     "output_len": {"kind": "fixed", "value": out}},
        "metrics": {"record_steps": False}}))


def test_harmony_header_moves_ttft_by_three_inter_token_times():
    assert load_model("gpt-oss-120b").hidden_output_tokens == 3
    req = _run("gpt-oss-120b", "fp4").requests
    delivered = req["first_token_s"] - req["arrival_s"]
    assert np.allclose(req["ttft_s"], delivered + 3 * req["itl_mean_s"])
    # TPOT and the first token delivered are the engine's stream, unchanged.
    assert np.allclose(req["tpot_s"], (req["finish_s"] - req["first_token_s"]) / 31)


def test_a_model_without_a_hidden_header_is_unchanged():
    assert load_model("Llama-3.1-8B").hidden_output_tokens == 0
    req = _run("Llama-3.1-8B", "bf16").requests
    assert np.allclose(req["ttft_s"], req["first_token_s"] - req["arrival_s"])


def test_an_answer_no_longer_than_the_header_shows_its_text_at_its_end():
    req = _run("gpt-oss-120b", "fp4", out=2).requests
    assert req["ttft_s"].to_numpy() == pytest.approx((req["finish_s"] - req["arrival_s"]).to_numpy())
