"""Regenerate `golden.arrow`, the small fixed trace behind the golden cache counts.

    python traces/golden/make_golden.py

Deterministic (seeded numpy): 240 tokens in 2 sequences, 4 MoE layers x 16 experts, top-2, skewed
popularity per layer plus reuse of the previous token's experts, so every policy behaves differently.
Changing this script changes the golden numbers in `tests/test_kernels_golden.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moesim.trace.format import TraceMeta, make_trace, write_trace

N_TOKENS_PER_SEQ = 120
N_SEQS = 2
N_LAYERS = 4
N_EXPERTS = 16
TOP_K = 2
SEED = 20250101
P_REUSE = 0.4


def golden_experts() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    popularity = 1.0 / np.arange(1, N_EXPERTS + 1) ** 1.1
    per_layer = np.stack([rng.permutation(popularity) for _ in range(N_LAYERS)])
    per_layer /= per_layer.sum(axis=1, keepdims=True)
    n_tokens = N_TOKENS_PER_SEQ * N_SEQS
    experts = np.zeros((n_tokens, N_LAYERS, TOP_K), np.uint8)
    for t in range(n_tokens):
        for layer in range(N_LAYERS):
            chosen: list[int] = []
            for k in range(TOP_K):
                if t % N_TOKENS_PER_SEQ and rng.random() < P_REUSE and experts[t - 1, layer, k] not in chosen:
                    chosen.append(int(experts[t - 1, layer, k]))
                    continue
                while True:
                    e = int(rng.choice(N_EXPERTS, p=per_layer[layer]))
                    if e not in chosen:
                        chosen.append(e)
                        break
            experts[t, layer] = chosen
    return experts


def main() -> None:
    meta = TraceMeta(
        model_id="golden-synthetic",
        n_layers=N_LAYERS,
        moe_layers=tuple(range(N_LAYERS)),
        n_routed_experts=N_EXPERTS,
        top_k=TOP_K,
        source={"kind": "synthetic", "generator": "traces/golden/make_golden.py", "seed": SEED},
        licence="CC0-1.0",
    )
    n_tokens = N_TOKENS_PER_SEQ * N_SEQS
    trace = make_trace(
        meta,
        golden_experts(),
        seq=np.repeat(np.arange(N_SEQS, dtype=np.int32), N_TOKENS_PER_SEQ),
        token=np.tile(np.arange(N_TOKENS_PER_SEQ, dtype=np.int32), N_SEQS),
        is_prefill=np.zeros(n_tokens, bool),
    )
    write_trace(trace, Path(__file__).with_name("golden.arrow"))


if __name__ == "__main__":
    main()
