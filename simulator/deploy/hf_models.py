"""Hugging Face model ids (what ``vllm serve MODEL`` names) ↔ the simulator's model profiles.

What this mirrors: the checkpoint a server loads — an upstream repository
(``meta-llama/Llama-3.1-70B-Instruct``), a quantised re-upload of it
(``RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8``, ``Qwen/Qwen3-32B-AWQ``) or a local copy
(``/models/llama-3.1-8b``) — and which profile's architecture it has. A name matches a profile when,
after dropping the organisation, the ``Meta-`` prefix and the suffixes that only say chat-tuning or
quantisation (``-Instruct``, ``-chat-hf``, ``-FP8``, ``-AWQ``, ``-v0.1`` …), it equals the profile's
name or its ``hf_id`` treated the same way. Leaves out: reading the checkpoint's ``config.json``
(no network at planning time); a model with no profile is an error that lists the known ones.
"""

from __future__ import annotations

import re

from simulator.errors import ConfigError

_SUFFIXES = re.compile(
    r"(-instruct|-chat|-hf|-base|-it|-fp8(-dynamic)?|-awq|-gptq(-int4|-int8)?|-int4|-int8|-w4a16"
    r"|-w8a8(-fp8)?|-nvfp4|-mxfp4|-fp4|-v\d+(\.\d+)*|-\d{4})$")


def normalise(name: str) -> str:
    """``RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8`` → ``llama-3.1-8b``."""
    n = name.strip().rstrip("/").rsplit("/", 1)[-1].lower().replace("_", "-")
    while True:
        m = _SUFFIXES.search(n)
        if not m or m.start() == 0:
            break
        n = n[: m.start()]
    return n[len("meta-"):] if n.startswith("meta-") else n


def profile_for(model_id: str) -> str:
    """The profile name for a model id or path, or a ConfigError listing the known profiles."""
    from simulator.profiles import list_models

    want = normalise(model_id)
    known = list_models()
    for mp in known:
        if model_id.strip().lower() in (mp.name.lower(), mp.hf_id.lower()):
            return mp.name
    for mp in known:
        if want in (normalise(mp.name), normalise(mp.hf_id)):
            return mp.name
    listing = ", ".join(f"{mp.name} ({mp.hf_id})" for mp in known)
    raise ConfigError(f"model {model_id!r}: no model profile matches; known: {listing}. Pass "
                      f"--model-profile NAME for a checkpoint of one of them, or add a profile "
                      f"under hardware_profiles/models/")


def hf_id_for(profile: str) -> str:
    from simulator.profiles import load_model

    return load_model(profile).hf_id
