"""`vllm serve` flag parsing and vLLM's defaults per version family (simulator.deploy.vllm_args)."""

from __future__ import annotations

import pytest

from simulator.deploy.vllm_args import (
    FAMILIES,
    family_for,
    family_from_image,
    human_readable_int,
    parse_serve,
)
from simulator.errors import ConfigError

F11 = FAMILIES["0.11"]


def test_flag_forms_as_vllm_parses_them() -> None:
    a = parse_serve("vllm serve meta-llama/Llama-3.1-8B-Instruct -tp 2 --max-num-seqs=128 "
                    "--no-enable-prefix-caching --enable-chunked-prefill=False -q fp8 -O3 "
                    "--port 8000 --trust-remote-code --hf-token --seed 3", F11)
    assert a.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert a.values == {"tensor-parallel-size": "2", "max-num-seqs": "128",
                        "enable-prefix-caching": False, "enable-chunked-prefill": False,
                        "quantization": "fp8"}
    assert a.not_modelled == ["-O3"]
    assert a.no_effect == ["--port 8000", "--trust-remote-code", "--hf-token", "--seed 3"]


def test_launchers_and_model_flag() -> None:
    assert parse_serve(["vllm serve X -tp 2"], F11).values == {"tensor-parallel-size": "2"}
    for cmd in ("/usr/local/bin/vllm serve --model X --max-model-len 4096",
                "python3 -m vllm.entrypoints.openai.api_server --model X --max-model-len 4096"):
        a = parse_serve(cmd, F11)
        assert a.model == "X" and a.values == {"max-model-len": "4096"}


def test_unknown_flag_is_refused_naming_it_and_the_source() -> None:
    with pytest.raises(ConfigError, match=r"--max-num-seq: not a flag of vLLM 0.11 "
                                          r"\(vllm/engine/arg_utils.py @99d7eb5d"):
        parse_serve(["vllm", "serve", "m", "--max-num-seq", "4"], F11)
    a = parse_serve(["vllm", "serve", "m", "--max-num-seq", "4", "--port", "1"], F11,
                    allow_unknown=True)
    assert a.unknown == ["--max-num-seq 4"] and a.no_effect == ["--port 1"]


def test_flags_of_other_families() -> None:
    with pytest.raises(ConfigError, match=r"vLLM 0\.11 has no such flag"):
        parse_serve("vllm serve m --num-scheduler-steps 8", F11)
    a = parse_serve("vllm serve m --num-scheduler-steps 8 --use-v2-block-manager", FAMILIES["v0"])
    assert a.values == {"num-scheduler-steps": "8"}
    assert a.not_modelled == ["--use-v2-block-manager"]


def test_missing_model_and_value() -> None:
    with pytest.raises(ConfigError, match="no model given"):
        parse_serve("vllm serve --port 8000", F11)
    with pytest.raises(ConfigError, match="--max-num-seqs: expects a value"):
        parse_serve("vllm serve m --max-num-seqs", F11)


def test_human_readable_int_like_vllm() -> None:
    assert human_readable_int("max-model-len", "32k") == 32_000
    assert human_readable_int("max-model-len", "32K") == 32_768
    assert human_readable_int("max-model-len", "1.5m") == 1_500_000
    with pytest.raises(ConfigError, match="expected an integer"):
        human_readable_int("max-model-len", "1.5K")


@pytest.mark.parametrize(("version", "family"), [
    ("0.11", "0.11"), ("v0.11.0", "0.11"), ("0.24", "0.11"), ("0.10.2", "0.8"), ("0.8.5", "0.8"),
    ("0.7.3", "v0"), ("v0", "v0"), ("main", "main"), (None, "0.11")])
def test_family_for(version: str | None, family: str) -> None:
    assert family_for(version).name == family


def test_family_from_image() -> None:
    assert family_from_image("vllm/vllm-openai:v0.8.5").name == "0.8"  # type: ignore[union-attr]
    assert family_from_image("rocm/vllm:rocm6.3.1_vllm_0.8.3_20250410").name == "0.8"  # type: ignore[union-attr]
    assert family_from_image("vllm/vllm-openai:latest").name == "main"  # type: ignore[union-attr]
    assert family_from_image("registry:5000/vllm") is None
    with pytest.raises(ConfigError, match="expected a vLLM version"):
        family_for("banana")


def test_batch_defaults_per_family_and_gpu() -> None:
    # 0.11: >= 70 GiB and not an A100 -> 8192 tokens / 1024 seqs, else 2048 / 256
    assert F11.batch_defaults("H100-SXM", 80, True, 8192) == (8192, 1024)
    assert F11.batch_defaults("MI300X", 192, True, 8192) == (8192, 1024)
    assert F11.batch_defaults("A100-80G", 80, True, 8192) == (2048, 256)
    assert F11.batch_defaults("L40S", 48, True, 8192) == (2048, 256)
    # 0.8: the H100/H200 name check, 256 sequences
    assert FAMILIES["0.8"].batch_defaults("H200-SXM", 141, True, 8192) == (8192, 256)
    assert FAMILIES["0.8"].batch_defaults("MI300X", 192, True, 8192) == (2048, 256)
    # V0: 2048 with chunked prefill, else max(max_model_len, 2048)
    assert FAMILIES["v0"].batch_defaults("H100-SXM", 80, False, 16384) == (16384, 256)
    assert FAMILIES["v0"].batch_defaults("H100-SXM", 80, True, 65536) == (2048, 256)
