"""Routing statistics of a trace: popularity skew, temporal reuse, reuse distances, LRU hit rates,
inter-layer predictability and working sets -- per MoE layer and as means over layers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.trace.format import Trace, meta_to_dict

REUSE_DISTANCE_BINS = 8  # first use, d=1, 2-3, 4-7, 8-15, 16-31, 32-63, >=64
WORKING_SET_WINDOWS = (8, 32, 128)
LRU_CAPACITIES = (1, 2, 4, 8)
# Inter-layer predictability is evaluated on at most this many held-out tokens (cost ~ tokens x E x k).
_PREDICT_MAX_TOKENS = 2000


def reuse_bin_labels() -> list[str]:
    labels = ["first"]
    for b in range(1, REUSE_DISTANCE_BINS):
        lo, hi = 1 << (b - 1), (1 << b) - 1
        if b == REUSE_DISTANCE_BINS - 1:
            labels.append(f">={lo}")
        else:
            labels.append(str(lo) if lo == hi else f"{lo}-{hi}")
    return labels


def expert_counts(trace: Trace) -> np.ndarray:
    """(n_moe_layers, n_routed_experts) int64: how often each expert was picked in each layer."""
    n_layers, n_experts = trace.n_moe_layers, trace.meta.n_routed_experts
    flat = trace.experts.astype(np.int64) + (np.arange(n_layers, dtype=np.int64) * n_experts)[None, :, None]
    return np.bincount(flat.reshape(-1), minlength=n_layers * n_experts).reshape(n_layers, n_experts)


def popularity_stats(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per layer top-1 share, share of the top 10% of experts, entropy (bits) and normalised entropy."""
    counts = np.asarray(counts, dtype=np.float64)
    n_experts = counts.shape[1]
    total = counts.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    shares = counts / safe[:, None]
    ordered = -np.sort(-shares, axis=1)
    top10 = max(1, int(np.ceil(0.1 * n_experts)))
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(shares > 0, shares * np.log2(shares), 0.0).sum(axis=1)
    return {
        "top1_share": ordered[:, 0],
        "top10pct_share": ordered[:, :top10].sum(axis=1),
        "entropy_bits": entropy,
        "entropy_norm": entropy / np.log2(n_experts) if n_experts > 1 else np.zeros_like(entropy),
    }


def temporal_reuse(trace: Trace) -> np.ndarray:
    """Per layer P(an expert of token t was also used by token t-1 of the same sequence)."""
    from moesim.kernels.trace_stats import reuse_counts

    reused, lookups = reuse_counts(trace.experts, trace.first_of_seq())
    return np.where(lookups > 0, reused / np.maximum(lookups, 1), np.nan)


def lru_hit_rates(trace: Trace, capacities=LRU_CAPACITIES) -> dict[int, np.ndarray]:
    """Per layer hit rate of an LRU cache holding c experts of that layer (cold start counted)."""
    from moesim.cache import lru_curve

    n_layers = trace.n_moe_layers
    if trace.n_tokens == 0:
        return {int(c): np.full(n_layers, np.nan) for c in capacities}
    curve = lru_curve(trace.experts, np.ones(n_layers, dtype=np.int64), scope="per-layer",
                      n_experts=trace.meta.n_routed_experts)
    needs = curve.needs
    lookups = needs.shape[0] * needs.shape[2]
    return {int(c): (needs <= c).sum(axis=(0, 2)) / lookups for c in capacities}


def interlayer_predictability(trace: Trace, max_tokens: int = _PREDICT_MAX_TOKENS) -> dict[str, np.ndarray]:
    """How well layer l's experts predict layer l+1's, per layer pair.

    A co-occurrence table is built on the first half of the tokens; on (up to `max_tokens` of) the
    second half, the k experts of l+1 with the highest summed co-occurrence with the token's layer-l
    experts are the prediction. Reports the hit fraction, and the same for a baseline that always
    predicts the k most popular experts of l+1 (from the first half).
    """
    from moesim.kernels.trace_stats import cooccurrence, predicted_hits

    n = trace.n_tokens
    n_pairs = max(trace.n_moe_layers - 1, 0)
    if n < 2 or n_pairs == 0:
        nan = np.full(n_pairs, np.nan)
        return {"table": nan, "baseline": nan.copy()}
    half = n // 2
    train = np.arange(half, dtype=np.int64)
    test = np.arange(half, n, dtype=np.int64)
    if test.size > max_tokens:
        test = test[np.linspace(0, test.size - 1, max_tokens).astype(np.int64)]
    n_experts = trace.meta.n_routed_experts
    counts = cooccurrence(trace.experts, train, n_experts)
    train_pop = expert_counts(trace.select(np.arange(n) < half)).astype(np.float64)
    table_hits, baseline_hits, lookups = predicted_hits(trace.experts, test, counts, np.ascontiguousarray(train_pop[1:]))
    safe = np.maximum(lookups, 1)
    return {"table": table_hits / safe, "baseline": baseline_hits / safe}


def working_sets(trace: Trace, windows=WORKING_SET_WINDOWS) -> dict[int, np.ndarray]:
    """Per layer mean number of distinct experts touched in windows of w consecutive tokens."""
    from moesim.kernels.trace_stats import mean_working_set

    return {int(w): mean_working_set(trace.experts, trace.meta.n_routed_experts, int(w)) for w in windows}


def reuse_distances(trace: Trace) -> np.ndarray:
    """(n_moe_layers, REUSE_DISTANCE_BINS) histogram of token distances since an expert's last use."""
    from moesim.kernels.trace_stats import reuse_distance_histogram

    return reuse_distance_histogram(trace.experts, trace.first_of_seq(), trace.meta.n_routed_experts,
                                    REUSE_DISTANCE_BINS)


@dataclass(frozen=True, eq=False)
class TraceStats:
    """Statistics of one trace; arrays are per MoE layer (inter-layer arrays per layer pair)."""

    n_tokens: int
    n_seqs: int
    n_prefill_tokens: int
    top1_share: np.ndarray
    top10pct_share: np.ndarray
    entropy_bits: np.ndarray
    entropy_norm: np.ndarray
    temporal_reuse: np.ndarray
    reuse_distance_hist: np.ndarray
    lru_hit_rate: dict
    interlayer_table: np.ndarray
    interlayer_baseline: np.ndarray
    working_set: dict

    def summary(self) -> dict[str, float]:
        """Means over layers of the headline numbers."""

        def mean(a):
            a = np.asarray(a, dtype=np.float64)
            return float(np.nanmean(a)) if a.size and not np.isnan(a).all() else float("nan")

        out = {
            "top1_share": mean(self.top1_share),
            "top10pct_share": mean(self.top10pct_share),
            "entropy_norm": mean(self.entropy_norm),
            "temporal_reuse": mean(self.temporal_reuse),
            "interlayer_table": mean(self.interlayer_table),
            "interlayer_baseline": mean(self.interlayer_baseline),
        }
        for c, rates in self.lru_hit_rate.items():
            out[f"lru_hit_rate_c{c}"] = mean(rates)
        for w, ws in self.working_set.items():
            out[f"working_set_w{w}"] = mean(ws)
        return out


def trace_stats(trace: Trace, decode_only: bool = False, lru_capacities=LRU_CAPACITIES,
                windows=WORKING_SET_WINDOWS) -> TraceStats:
    """All statistics of `trace` (optionally of its decode tokens only)."""
    if decode_only:
        trace = trace.decode_only()
    pop = popularity_stats(expert_counts(trace))
    inter = interlayer_predictability(trace)
    return TraceStats(
        n_tokens=trace.n_tokens,
        n_seqs=trace.n_seqs,
        n_prefill_tokens=int(trace.is_prefill.sum()),
        top1_share=pop["top1_share"],
        top10pct_share=pop["top10pct_share"],
        entropy_bits=pop["entropy_bits"],
        entropy_norm=pop["entropy_norm"],
        temporal_reuse=temporal_reuse(trace),
        reuse_distance_hist=reuse_distances(trace),
        lru_hit_rate=lru_hit_rates(trace, lru_capacities),
        interlayer_table=inter["table"],
        interlayer_baseline=inter["baseline"],
        working_set=working_sets(trace, windows),
    )


def stats_to_dict(trace: Trace, stats: TraceStats) -> dict:
    """JSON-ready form: metadata, means over layers, and per-layer arrays."""
    hist = stats.reuse_distance_hist
    return {
        "meta": meta_to_dict(trace.meta),
        "n_tokens": stats.n_tokens,
        "n_seqs": stats.n_seqs,
        "n_prefill_tokens": stats.n_prefill_tokens,
        "summary": stats.summary(),
        "reuse_distance_bins": reuse_bin_labels(),
        "reuse_distance_total": hist.sum(axis=0),
        "per_layer": {
            "layer": list(trace.meta.moe_layers),
            "top1_share": stats.top1_share,
            "top10pct_share": stats.top10pct_share,
            "entropy_bits": stats.entropy_bits,
            "entropy_norm": stats.entropy_norm,
            "temporal_reuse": stats.temporal_reuse,
            "reuse_distance_hist": hist,
            "lru_hit_rate": {str(c): v for c, v in stats.lru_hit_rate.items()},
            "interlayer_table": stats.interlayer_table,
            "interlayer_baseline": stats.interlayer_baseline,
            "working_set": {str(w): v for w, v in stats.working_set.items()},
        },
    }
