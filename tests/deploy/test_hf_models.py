"""Hugging Face ids and local paths → model profiles (simulator.deploy.hf_models)."""

from __future__ import annotations

import pytest

from simulator.deploy.hf_models import normalise, profile_for
from simulator.errors import ConfigError


@pytest.mark.parametrize(("model_id", "profile"), [
    ("meta-llama/Llama-3.1-70B-Instruct", "Llama-3.1-70B"),
    ("RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8", "Llama-3.1-8B"),
    ("neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8-dynamic", "Llama-3.1-70B"),
    ("/models/llama-3.1-8b", "Llama-3.1-8B"),
    ("Qwen/Qwen3-32B-AWQ", "Qwen3-32B"),
    ("Qwen/Qwen3-235B-A22B-GPTQ-Int4", "Qwen3-235B-A22B"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "Mixtral-8x7B"),
    ("meta-llama/Llama-2-70b-chat-hf", "Llama-2-70B"),
    ("openai/gpt-oss-120b", "gpt-oss-120b"),
    ("Llama-3.1-8B", "Llama-3.1-8B"),
])
def test_profile_for(model_id: str, profile: str) -> None:
    assert profile_for(model_id) == profile


def test_unknown_model_lists_the_profiles() -> None:
    with pytest.raises(ConfigError) as e:
        profile_for("meta-llama/Meta-Llama-3-8B-Instruct")  # Llama 3, not 3.1
    msg = str(e.value)
    assert msg.startswith("model 'meta-llama/Meta-Llama-3-8B-Instruct': no model profile matches")
    assert "Llama-3.1-8B (meta-llama/Llama-3.1-8B-Instruct)" in msg and "--model-profile" in msg


def test_normalise() -> None:
    assert normalise("RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8") == "llama-3.1-8b"
