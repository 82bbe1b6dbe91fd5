"""What the benchmarks share: generate() arguments that force exactly N greedy tokens."""

from typing import Any


def fixed_length(tokens: int) -> dict[str, Any]:
    """generate() kwargs for exactly ``tokens`` greedy tokens, whatever EOS the random model emits."""
    return {
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "pad_token_id": 0,
    }
