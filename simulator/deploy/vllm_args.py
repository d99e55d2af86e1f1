"""``vllm serve`` flags ↔ the scenario's ``model``, ``fleet`` and ``engine`` sections.

What this mirrors: vLLM's own argument parser (``EngineArgs.add_cli_args`` plus the OpenAI server's
frontend flags) and the defaults vLLM fills in when a flag is absent, per version family, so an
imported scenario simulates the server that command line really starts. Flag names are vLLM's
(``--tensor-parallel-size`` / ``-tp``, ``--no-enable-prefix-caching`` …); values accept vLLM's
forms (``--max-model-len 32k``, ``--flag=value``, ``--enable-x`` / ``--no-enable-x`` /
``--enable-x=False``).

Sources (read for this module; vLLM is Apache-2.0, nothing copied but names and numbers):

- family ``0.11`` (vLLM ≥ 0.11, the V1 engine only): ``vllm/engine/arg_utils.py`` at commit
  99d7eb5d6a512cfcc5a2b104f24ebf2d6cda772b (``EngineArgs`` fields and ``add_cli_args``; aliases
  ``-tp``, ``-pp``, ``-dp``, ``-q``; ``human_readable_int`` for ``--max-model-len`` and
  ``--max-num-batched-tokens``; ``_set_default_args``: chunked prefill forced on for generative
  models, prefix caching on, and for the OpenAI server ``max_num_batched_tokens`` 8192 /
  ``max_num_seqs`` 1024 on a GPU with ≥ 70 GiB that is not an A100, else 2048 / 256, with
  ``max_num_seqs`` capped at ``max_num_batched_tokens``); ``vllm/config/scheduler.py`` at commit
  01230b40128e570a58e54e75f7e55c4d5cd9246d (``long_prefill_token_threshold`` 0, ``policy`` fcfs);
  ``vllm/config/cache.py`` (``DEFAULT_BLOCK_SIZE`` 16; the ``CacheDType`` names). The
  ``gpu_memory_utilization`` default of 0.90 is that of the 0.7 file (0.11's ``CacheConfig`` was
  not read at its commit); vLLM main at commit 002f10e0cfa1373a19a0d2756598a34b700d20e5 has 0.92
  (family ``main``).
- family ``0.8`` (vLLM 0.8–0.10, V1 by default): ``_set_default_args_v1`` of that era forces
  chunked prefill on and uses 8192 tokens for the OpenAI server on an H100/H200 (a device-name
  check, quoted in vllm-project/vllm issue #13056), 2048 elsewhere, and ``max_num_seqs`` 256 (read
  in a downstream fork's copy of that function; the upstream 0.8 file was not in the store).
- family ``v0`` (vLLM ≤ 0.7, the V0 engine): ``vllm/engine/arg_utils.py`` at commit
  001999d2f360c2c5da23a916510c273b1a73d06c (``max_num_seqs`` 256 on V0, prefix caching off on
  V0, ``gpu_memory_utilization`` 0.90, ``swap_space`` 4 GiB, ``--kv-cache-dtype`` auto / fp8 /
  fp8_e5m2 / fp8_e4m3) and ``vllm/config.py`` (``_DEFAULT_MAX_NUM_BATCHED_TOKENS`` 2048: the
  budget with chunked prefill, else max(max_model_len, 2048)); chunked prefill is turned on by
  default only for contexts over 32K.

Later families (0.14, 0.19, 0.24 …) take the newest definitions read here (``0.11``); the flags
this module maps have kept their names and meaning through them as far as read.

Leaves out: flags that do not change what the simulator predicts are recognised and listed (never
dropped); flags the simulator does not model are listed in the scenario's header comment; an unknown
flag is refused unless ``allow_unknown``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Literal

from simulator.errors import ConfigError

Role = Literal["modelled", "no_effect", "not_modelled"]
Arity = Literal["value", "bool", "optional"]


# --------------------------------------------------------------------------------------------
# Version families
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One vLLM version family: its engine and the defaults it fills in."""

    name: str
    engine: Literal["v0", "v1"]
    image_tag: str
    """The ``vllm/vllm-openai`` image tag written by the export."""
    gpu_memory_utilization: float
    kv_cache_dtypes: tuple[str, ...]
    """What ``--kv-cache-dtype`` accepts."""
    source: str

    def batch_defaults(self, gpu_name: str, gpu_memory_gb: float, chunked: bool,
                       max_model_len: int) -> tuple[int, int]:
        """(max_num_batched_tokens, max_num_seqs) vLLM picks for ``vllm serve`` when neither is
        given (see the module docstring for the rule of each family)."""
        name = gpu_name.lower()
        if self.engine == "v0":
            tokens = 2048 if chunked else max(max_model_len, 2048)
            return tokens, 256
        if self.name == "0.8":
            return (8192 if ("h100" in name or "h200" in name) else 2048), 256
        # NOTE: vLLM reads the device's total memory in bytes and compares with 70 GiB; the GPU
        # profiles give decimal GB (an 80 GB H100 is 74.5 GiB).
        big = gpu_memory_gb * 1e9 >= 70 * 2**30 and "a100" not in name
        tokens, seqs = (8192, 1024) if big else (2048, 256)
        return tokens, min(seqs, tokens)


_V1_KV = ("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2")
FAMILIES: dict[str, Family] = {
    "v0": Family("v0", "v0", "v0.7.3", 0.90, ("auto", "fp8", "fp8_e5m2", "fp8_e4m3"),
                 "vllm/engine/arg_utils.py @001999d2, vllm/config.py"),
    "0.8": Family("0.8", "v1", "v0.8.5", 0.90, ("auto", "fp8", "fp8_e5m2", "fp8_e4m3"),
                  "vllm/engine/arg_utils.py _set_default_args_v1 (0.8.x, vllm-project/vllm#13056)"),
    "0.11": Family("0.11", "v1", "v0.11.0", 0.90, _V1_KV,
                   "vllm/engine/arg_utils.py @99d7eb5d, vllm/config/scheduler.py @01230b40"),
    "main": Family("main", "v1", "latest", 0.92, _V1_KV,
                   "vllm/engine/arg_utils.py @99d7eb5d, vllm/config/cache.py @002f10e0"),
}
DEFAULT_FAMILY = "0.11"


def family_for(version: str | None) -> Family:
    """``0.11`` / ``v0.11.0`` / ``0.19`` / ``0.7.3`` / ``v0`` / ``main`` → its family."""
    if version is None or version == "":
        return FAMILIES[DEFAULT_FAMILY]
    v = str(version).strip().lower()
    if v in FAMILIES:
        return FAMILIES[v]
    if v in ("latest", "nightly"):
        return FAMILIES["main"]
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?(?:[.+-].*)?", v)
    if not m:
        raise ConfigError(f"--vllm-version {version!r}: expected a vLLM version such as 0.11, "
                          f"v0.8.5, v0 (the V0 engine) or main")
    major, minor = int(m.group(1)), int(m.group(2))
    if major == 0 and minor < 8:
        return FAMILIES["v0"]
    if major == 0 and minor < 11:
        return FAMILIES["0.8"]
    return FAMILIES["0.11"]


def family_from_image(image: str) -> Family | None:
    """The family of a container image's tag (``vllm/vllm-openai:v0.11.0``,
    ``rocm/vllm:rocm6.3.1_vllm_0.8.3_20250410``); None when the tag says nothing (``latest``)."""
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    m = re.search(r"vllm[_-]v?(\d+\.\d+(?:\.\d+)?)", tag) or re.fullmatch(
        r"v?(\d+\.\d+(?:\.\d+)?)(?:[.+-].*)?", tag)
    if m:
        return family_for(m.group(1))
    return FAMILIES["main"] if tag in ("latest", "nightly") else None


# --------------------------------------------------------------------------------------------
# The flag table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    name: str
    arity: Arity
    role: Role
    aliases: tuple[str, ...] = ()
    families: tuple[str, ...] | None = None
    """Families that have the flag (None: all)."""


def _flags(role: Role, arity: Arity, names: str, families: tuple[str, ...] | None = None
           ) -> list[Flag]:
    return [Flag(n, arity, role, families=families) for n in names.split()]


_V0ISH = ("v0", "0.8")
FLAGS_LIST: list[Flag] = [
    # ---- modelled ------------------------------------------------------------------------
    Flag("model", "value", "modelled"),
    Flag("tensor-parallel-size", "value", "modelled", ("-tp",)),
    Flag("pipeline-parallel-size", "value", "modelled", ("-pp",)),
    Flag("data-parallel-size", "value", "modelled", ("-dp",)),
    Flag("quantization", "value", "modelled", ("-q",)),
    *_flags("modelled", "value", "max-num-seqs max-num-batched-tokens max-model-len "
            "gpu-memory-utilization block-size long-prefill-token-threshold scheduling-policy "
            "kv-cache-dtype dtype"),
    *_flags("modelled", "bool", "enable-prefix-caching enable-chunked-prefill"),
    Flag("num-scheduler-steps", "value", "modelled", families=_V0ISH),
    Flag("api-server-count", "value", "modelled"),
    Flag("swap-space", "value", "modelled"),
    Flag("cpu-offload-gb", "value", "modelled"),
    # ---- no effect on what the simulator predicts (server, logging, loading, sampling) ---
    *_flags("no_effect", "value", "host port served-model-name api-key tokenizer tokenizer-mode "
            "revision code-revision tokenizer-revision download-dir load-format config-format "
            "seed uvicorn-log-level allowed-origins allowed-methods allowed-headers root-path "
            "middleware chat-template chat-template-content-format response-role ssl-keyfile "
            "ssl-certfile ssl-ca-certs ssl-cert-reqs tool-call-parser tool-parser-plugin "
            "reasoning-parser max-logprobs logprobs-mode max-log-len generation-config "
            "override-generation-config prefix-caching-hash-algo otlp-traces-endpoint "
            "collect-detailed-traces show-hidden-metrics-for-version distributed-executor-backend "
            "worker-cls worker-extension-cls guided-decoding-backend structured-outputs-config "
            "lora-modules prompt-adapters allowed-local-media-path safetensors-load-strategy "
            "model-loader-extra-config ignore-patterns pt-load-map-location uds "
            "disable-log-requests-ratio model-impl hf-config-path runner convert task "
            "data-parallel-address data-parallel-rpc-port data-parallel-rank "
            "data-parallel-start-rank data-parallel-size-local data-parallel-backend"),
    Flag("hf-token", "optional", "no_effect"),
    *_flags("no_effect", "bool", "trust-remote-code disable-log-requests enable-log-requests "
            "disable-log-stats enable-log-outputs enable-auto-tool-choice allow-credentials "
            "disable-fastapi-docs return-tokens-as-token-ids enable-prompt-tokens-details "
            "enable-server-load-tracking enable-force-include-usage disable-uvicorn-access-log "
            "enable-request-id-headers skip-tokenizer-init use-tqdm-on-load enable-sleep-mode "
            "disable-frontend-multiprocessing headless enable-prompt-embeds "
            "aggregate-engine-logging"),
    # ---- change performance, not modelled ------------------------------------------------
    *_flags("not_modelled", "value", "speculative-config compilation-config cuda-graph-sizes "
            "cudagraph-capture-sizes max-cudagraph-capture-size max-seq-len-to-capture "
            "kv-transfer-config kv-events-config max-loras max-lora-rank max-cpu-loras "
            "lora-dtype limit-mm-per-prompt mm-processor-kwargs mm-processor-cache-gb "
            "rope-scaling rope-theta hf-overrides decode-context-parallel-size "
            "num-gpu-blocks-override kv-cache-memory-bytes num-lookahead-slots scheduler-cls "
            "stream-interval max-num-partial-prefills max-long-partial-prefills "
            "override-attention-dtype mamba-cache-dtype kv-offloading-size kv-offloading-backend "
            "max-parallel-loading-workers all2all-backend eplb-config num-redundant-experts "
            "expert-placement-strategy additional-config logits-processors "
            "dbo-decode-token-threshold dbo-prefill-token-threshold"),
    *_flags("not_modelled", "value", "speculative-model num-speculative-tokens preemption-mode "
            "scheduler-delay-factor speculative-draft-tensor-parallel-size", families=_V0ISH),
    *_flags("not_modelled", "bool", "enforce-eager enable-expert-parallel enable-lora "
            "fully-sharded-loras disable-custom-all-reduce disable-sliding-window "
            "disable-cascade-attn calculate-kv-scales disable-hybrid-kv-cache-manager "
            "async-scheduling enable-dbo enable-eplb disable-chunked-mm-input "
            "kv-sharing-fast-prefill enable-mm-embeds"),
    *_flags("not_modelled", "bool", "use-v2-block-manager", families=("v0",)),
]
FLAGS: dict[str, Flag] = {f.name: f for f in FLAGS_LIST}
ALIASES: dict[str, str] = {a: f.name for f in FLAGS_LIST for a in f.aliases}


# --------------------------------------------------------------------------------------------
# Parsing a command line
# --------------------------------------------------------------------------------------------


@dataclass
class ServeArgs:
    """A parsed ``vllm serve`` command line."""

    model: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    """Modelled flags given (canonical name → raw text, or True/False for booleans)."""
    not_modelled: list[str] = field(default_factory=list)
    """Flags (with their values) that change performance but are not modelled."""
    no_effect: list[str] = field(default_factory=list)
    """Flags (with their values) recognised as not changing the prediction."""
    unknown: list[str] = field(default_factory=list)
    """Flags not recognised (only with ``allow_unknown``)."""


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_PREFIXES = (("vllm", "serve"), ("python", "-m", "vllm.entrypoints.openai.api_server"),
             ("python3", "-m", "vllm.entrypoints.openai.api_server"))


def strip_launcher(argv: list[str]) -> list[str]:
    """Drop ``vllm serve`` / ``python -m vllm.entrypoints.openai.api_server`` (with a path before
    the program name) from the front of ``argv``."""
    for i in range(len(argv)):
        tail = [argv[i].rsplit("/", 1)[-1], *argv[i + 1:]]
        for pre in _PREFIXES:
            if tuple(tail[: len(pre)]) == pre:
                return argv[i + len(pre):]
    return argv


def parse_serve(argv: list[str] | str, fam: Family, allow_unknown: bool = False) -> ServeArgs:
    """Parse the flags of a ``vllm serve`` command line (a list of words or a shell string) the
    way vLLM's argparse does; a flag unknown to the family is a ConfigError naming it."""
    words = shlex.split(argv) if isinstance(argv, str) else list(argv)
    if len(words) == 1 and any(c.isspace() for c in words[0]):
        words = shlex.split(words[0])  # the whole command line quoted as one argument
    words = strip_launcher(words)
    out = ServeArgs()
    i = 0
    while i < len(words):
        w = words[i]
        i += 1
        if not w.startswith("-") or w == "-":
            if out.model is None and "model" not in out.values:
                out.model = w
                continue
            raise ConfigError(f"vllm serve: unexpected argument {w!r} (the model is already "
                              f"{out.model or out.values.get('model')!r}); quote values with spaces")
        text, has_eq, inline = w.partition("=")
        if re.fullmatch(r"-O\d*", text):  # -O3 / -O 3: the compilation level shorthand
            if text == "-O" and not has_eq and i < len(words) and words[i].isdigit():
                w = f"{w} {words[i]}"
                i += 1
            out.not_modelled.append(w)
            continue
        name = ALIASES.get(text) or (text[2:] if text.startswith("--") else None)
        negated = False
        flag = FLAGS.get(name) if name else None
        if flag is None and name and name.startswith("no-") and name[3:] in FLAGS \
                and FLAGS[name[3:]].arity == "bool":
            flag, negated = FLAGS[name[3:]], True
        if flag is not None and flag.families is not None and fam.name not in flag.families:
            raise ConfigError(f"vllm serve {text}: vLLM {fam.name} has no such flag ({fam.source}); "
                              f"remove it or give --vllm-version of the server it came from")
        if flag is None:
            if not allow_unknown:
                raise ConfigError(f"vllm serve {text}: not a flag of vLLM {fam.name} ({fam.source}); "
                                  f"check the spelling, or pass --allow-unknown to list it as not "
                                  f"modelled")
            # an unknown flag takes the next word as its value unless that is a flag
            if not has_eq and i < len(words) and not words[i].startswith("-"):
                out.unknown.append(f"{w} {words[i]}")
                i += 1
            else:
                out.unknown.append(w)
            continue
        value: Any
        start = i
        if flag.arity == "bool":
            if has_eq:
                value = _bool(text, inline)
            elif i < len(words) and words[i].lower() in _TRUE | _FALSE:
                value = _bool(text, words[i])
                i += 1
            else:
                value = True
            if negated:
                value = not value
        elif flag.arity == "optional":
            if has_eq:
                value = inline
            elif i < len(words) and not words[i].startswith("-"):
                value = words[i]
                i += 1
            else:
                value = True
        else:
            if has_eq:
                value = inline
            elif i < len(words):
                value = words[i]
                i += 1
            else:
                raise ConfigError(f"vllm serve {text}: expects a value")
        shown = shlex.join([w, *words[start:i]])
        if flag.role == "modelled":
            if flag.name == "model":
                out.model = str(value)
            else:
                out.values[flag.name] = value
        elif flag.role == "no_effect":
            out.no_effect.append(shown)
        else:
            out.not_modelled.append(shown)
    if out.model is None:
        raise ConfigError("vllm serve: no model given (vllm serve MODEL … or --model MODEL)")
    return out


def _bool(flag: str, text: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ConfigError(f"vllm serve {flag}={text}: expected true or false")


def human_readable_int(flag: str, text: Any) -> int:
    """vLLM's ``human_readable_int``: ``32k`` = 32,000, ``32K`` = 32,768, ``1.5m`` = 1,500,000."""
    s = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgG])", s)
    try:
        if m:
            num, suf = m.groups()
            if suf in "kmg":
                return int(float(num) * {"k": 10**3, "m": 10**6, "g": 10**9}[suf])
            if "." in num:
                raise ValueError
            return int(num) * {"K": 2**10, "M": 2**20, "G": 2**30}[suf]
        return int(s)
    except ValueError:
        raise ConfigError(f"vllm serve --{flag} {text}: expected an integer (32768, 32k or 32K)"
                          ) from None


def as_int(flag: str, text: Any) -> int:
    try:
        return int(str(text))
    except ValueError:
        raise ConfigError(f"vllm serve --{flag} {text}: expected an integer") from None


def as_float(flag: str, text: Any) -> float:
    try:
        return float(str(text))
    except ValueError:
        raise ConfigError(f"vllm serve --{flag} {text}: expected a number") from None


# --------------------------------------------------------------------------------------------
# Values ↔ scenario fields
# --------------------------------------------------------------------------------------------

QUANTIZATION_DTYPE: dict[str, str] = {
    "fp8": "fp8", "fbgemm_fp8": "fp8", "modelopt": "fp8", "ptpc_fp8": "fp8",
    "awq": "int4", "awq_marlin": "int4", "gptq": "int4", "gptq_marlin": "int4",
    "gptq_marlin_24": "int4", "marlin": "int4", "bitsandbytes": "int4",
    "experts_int8": "int8", "modelopt_fp4": "fp4", "mxfp4": "fp4",
}
"""``--quantization`` method → the weight format the simulator sizes memory and FLOPs with."""
WEIGHT_DTYPE_FLAG: dict[str, str] = {"auto": "", "bfloat16": "bf16", "float16": "fp16",
                                     "half": "fp16"}
"""``--dtype`` → weight format of an unquantised checkpoint (``auto``: the checkpoint's own)."""
KV_DTYPE: dict[str, str] = {"auto": "auto", "bfloat16": "bf16", "float16": "fp16", "fp8": "fp8",
                            "fp8_e4m3": "fp8", "fp8_e5m2": "fp8"}
"""``--kv-cache-dtype`` → the scenario's ``model.kv_cache_dtype``."""
BLOCK_SIZES = (1, 8, 16, 32, 64, 128)
"""``--block-size`` choices (``BlockSize`` in vllm/config/cache.py)."""


def weight_dtype_of(args: ServeArgs, model_id: str) -> str | None:
    """The weight format from ``--quantization``, ``--dtype`` and the checkpoint's name."""
    q = args.values.get("quantization")
    if q is not None and str(q) not in ("None", ""):
        qs = str(q).lower()
        if qs == "compressed-tensors":
            guess = dtype_from_name(model_id)
            if guess is None:
                raise ConfigError(f"vllm serve --quantization compressed-tensors: cannot tell the "
                                  f"weight format of {model_id!r} from its name (FP8, W8A8, W4A16 "
                                  f"…); set --weight-dtype")
            return guess
        if qs not in QUANTIZATION_DTYPE:
            raise ConfigError(f"vllm serve --quantization {q}: not modelled; known: "
                              f"{', '.join(sorted(QUANTIZATION_DTYPE))}, compressed-tensors")
        return QUANTIZATION_DTYPE[qs]
    guess = dtype_from_name(model_id)
    if guess is not None:
        return guess
    d = str(args.values.get("dtype", "auto")).lower()
    if d in ("float32", "float"):
        raise ConfigError(f"vllm serve --dtype {d}: FP32 weights are not modelled; use bfloat16 "
                          f"or float16")
    if d not in WEIGHT_DTYPE_FLAG:
        raise ConfigError(f"vllm serve --dtype {d}: expected auto, bfloat16, float16 or half")
    return WEIGHT_DTYPE_FLAG[d] or None


def dtype_from_name(model_id: str) -> str | None:
    """A pre-quantised checkpoint's format from its name (vLLM reads it from the checkpoint's
    ``quantization_config``; the name is what the command line shows)."""
    n = model_id.lower().rsplit("/", 1)[-1]
    if re.search(r"nvfp4|mxfp4|[-_]fp4", n):
        return "fp4"
    if re.search(r"fp8", n):
        return "fp8"
    if re.search(r"awq|gptq|int4|w4a16|[-_]4bit", n):
        return "int4"
    if re.search(r"w8a8|int8", n):
        return "int8"
    return None
