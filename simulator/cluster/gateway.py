"""The API front door: request validation before a request reaches any replica.

What this models: what vLLM's OpenAI-compatible server does before queuing a request — a prompt plus
``max_tokens`` longer than ``max_model_len`` is refused with HTTP 400 and never scheduled. (Auth,
tenants, rate limits and load shedding belong to the fleet issue and will live here too.)
"""

from __future__ import annotations

from simulator.engine.request import Request


def validate(req: Request, max_model_len: int) -> str | None:
    """Reason to reject the request (an HTTP status with a short reason), or None to accept."""
    if req.prompt_len + req.max_tokens > max_model_len:
        return "400 prompt + max_tokens exceeds max_model_len"
    return None
