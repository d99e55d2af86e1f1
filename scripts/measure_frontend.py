"""Measure the API server's tokenizer and incremental detokenizer costs on this CPU.

What this measures: the two per-token CPU costs of vLLM's front end that a real tokenizer library
can isolate without a GPU or a model download (simulator/cluster/spec.py keeps them as the
priors ``TOKENIZE_S_PER_TOKEN`` and ``DETOKENIZE_S_PER_TOKEN``):

* encoding a prompt with HF ``tokenizers`` (what ``transformers``' fast tokenizers, and so vLLM's
  API server, call), single-threaded, per token, for 128- to 16k-token prompts;
* one step of ``tokenizers.decoders.DecodeStream`` per generated token (vLLM v1's fast incremental
  detokenizer for fast tokenizers).

No hub model can be fetched here, so the tokenizer is a byte-level BPE trained on this Python's
standard-library sources (vocabulary ~100k, the size class of Llama-3's 128k) and timed on
held-out files of the same kind. Code tokenises at ~3.4 characters per token, a little shorter than
English prose, so the cost per token is comparable. Needs ``pip install tokenizers`` (not a
servesim dependency). Run: ``python scripts/measure_frontend.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import sysconfig
import time
from pathlib import Path


def corpus_files() -> list[str]:
    """UTF-8 standard-library sources, sorted (deterministic split)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for p in sorted(root.rglob("*.py")):
        try:
            p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        out.append(str(p))
    return out


def main() -> int:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread, as one tokenizer call runs
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from tokenizers.decoders import DecodeStream
    except ImportError:
        print("needs the tokenizers package: pip install tokenizers", file=sys.stderr)
        return 2
    files = corpus_files()
    train, held = files[: len(files) // 2], files[len(files) // 2:]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train(train, trainers.BpeTrainer(vocab_size=128_000, show_progress=False,
                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    text = "".join(Path(f).read_text(encoding="utf-8") for f in held[:600])
    ids = tok.encode(text).ids
    print(f"tokenizer: byte-level BPE, vocabulary {tok.get_vocab_size()}, held-out "
          f"{len(ids)} tokens, {len(text) / len(ids):.2f} characters per token")
    per_token = []
    for n in (128, 1024, 4096, 8192, 16384):
        times = []
        for k in range(20):
            s = (k * 9973) % (len(ids) - n)
            prompt = tok.decode(ids[s:s + n])
            t = time.perf_counter()
            m = len(tok.encode(prompt).ids)
            times.append((time.perf_counter() - t) / m)
        med = statistics.median(times)
        per_token.append(med)
        print(f"encode {n:>6}-token prompts: {med * 1e6:.2f} µs per token (median of 20)")
    stream = DecodeStream(skip_special_tokens=False)
    n = min(20_000, len(ids))
    t = time.perf_counter()
    for i in ids[:n]:
        stream.step(tok, i)
    detok = (time.perf_counter() - t) / n
    print(f"encode, median over prompt sizes: {statistics.median(per_token) * 1e6:.2f} µs/token")
    print(f"DecodeStream.step: {detok * 1e6:.2f} µs per token")
    return 0


if __name__ == "__main__":
    sys.exit(main())
