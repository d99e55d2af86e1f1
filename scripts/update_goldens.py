"""Re-run every shipped scenario and write the key numbers the example tests check.

Usage: python scripts/update_goldens.py   (after an intended change of the model or calibration)
"""

from __future__ import annotations

import json
from pathlib import Path

from simulator import load_scenario, simulate

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "scenarios.json"


def key_numbers(summary: dict) -> dict[str, float]:
    return {
        "completed": summary["requests"]["completed"],
        "ttft_mean_ms": summary["ttft_ms"]["mean"],
        "ttft_p99_ms": summary["ttft_ms"]["p99"],
        "tpot_mean_ms": summary["tpot_ms"]["mean"],
        "output_tokens_per_s": summary["throughput"]["output_tokens_per_s"],
        "preemptions": summary["preemptions"],
        "prefix_cache_hit_rate": summary["prefix_cache_hit_rate"],
    }


def main() -> None:
    out = {}
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        res = simulate(load_scenario(path))
        out[path.name] = key_numbers(res.summary)
        print(path.name, out[path.name])
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
