"""Re-run every shipped scenario and write the key numbers the example tests check.

Usage: python scripts/update_goldens.py [SCENARIO ...]   (after an intended change of the model or
calibration; naming scenarios, e.g. ``mixed-fleet``, regenerates only their entries)
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
        # Fleets of several pools: what each pool completed (every pool should serve).
        **({f"completed.{pool}": v["completed"] for pool, v in by_pool.items()}
           if len(by_pool := summary.get("fleet", {}).get("by_pool", {})) > 1 else {}),
    }


def main(only: list[str] | None = None) -> None:
    """Regenerate every entry (or only the scenario files named in ``only``, keeping the rest)."""
    out = json.loads(GOLDEN.read_text()) if only and GOLDEN.is_file() else {}
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        if only and path.name not in only and path.stem not in only:
            continue
        res = simulate(load_scenario(path))
        out[path.name] = key_numbers(res.summary)
        print(path.name, out[path.name])
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:] or None)
