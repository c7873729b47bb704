"""`moesim trace replay`: replay a routing trace through an expert cache."""

from __future__ import annotations

import time

import click

from moesim.output import emit_json, output_options, wants_json

_POLICY_NAMES = ("lru", "lfu", "fifo", "static", "belady", "s3fifo", "belady-demand")  # == moesim.cache.POLICIES


@click.command("replay")
@click.argument("trace_path", metavar="TRACE", type=click.Path(dir_okay=False))
@click.option("--policy", "policy", type=click.Choice(_POLICY_NAMES, case_sensitive=False), default="lru",
              show_default=True, help="Replacement policy (belady = offline optimum with bypass).")
@click.option("--capacity", required=True,
              help="Cache size: N experts, a size such as 24GB or 512MiB, or P% of all routed experts.")
@click.option("--scope", type=click.Choice(["global", "per-layer"]), default="global", show_default=True,
              help="One pool for all layers, or the budget split evenly over layers.")
@click.option("--warmup", "warmup_tokens", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leading tokens that warm the cache and are not counted (static pinning learns on them).")
@click.option("--model", "model_id", default=None, help="Model for expert sizes (default: the trace's model).")
@click.option("--quant", "quant_id", default=None,
              help="Quantization for expert sizes; without it every expert counts as 1 byte.")
@click.option("--prefetch", "predictor", type=click.Choice(["oracle", "previous-token", "cooccurrence"]),
              default=None, help="Prefetch the next layer's experts with this predictor (lru only).")
@click.option("--prefetch-accuracy", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Accuracy of the oracle predictor.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the oracle predictor.")
@output_options
def replay(trace_path, policy, capacity, scope, warmup_tokens, model_id, quant_id, predictor, prefetch_accuracy, seed,
           as_json, output_format):
    """Replay TRACE through an expert cache and count hits and misses.

    replay_seconds times the replay alone: the trace is loaded and the kernel compiled (a tiny
    replay) before the clock starts.

    Example:

        moesim trace replay trace.arrow --policy lru --capacity 25% --json
    """
    import numpy as np

    from moesim.cache import PrefetchSpec
    from moesim.cache import replay as run_replay
    from moesim.errors import MoesimError
    from moesim.trace.format import read_trace
    from moesim.units import parse_capacity

    spec = parse_capacity(capacity)
    trace = read_trace(trace_path)
    meta = trace.meta
    n_experts = int(meta.n_routed_experts)
    if quant_id is not None:
        from moesim.catalog.models import get_model
        from moesim.catalog.quants import get_quant
        from moesim.footprint import footprint

        model = get_model(model_id or meta.model_id)
        per_block = footprint(model, get_quant(quant_id)).routed_expert_bytes_by_layer
        if max(meta.moe_layers, default=-1) >= len(per_block):
            raise MoesimError(f"model {model.id} has {len(per_block)} layers but the trace routes layer {max(meta.moe_layers)}")
        expert_bytes = np.array([per_block[layer] for layer in meta.moe_layers], np.int64)
        if (expert_bytes <= 0).any() or int(model.n_routed_experts) != n_experts:
            raise MoesimError(f"model {model.id} does not match the trace's MoE shape ({meta.model_id})")
    elif model_id is not None:
        raise MoesimError("--model sets expert sizes together with --quant; give --quant too")
    else:
        expert_bytes = np.ones(trace.n_moe_layers, np.int64)
    capacity_bytes = spec.to_bytes(expert_bytes, n_experts)
    prefetch = PrefetchSpec(predictor, prefetch_accuracy, seed) if predictor else None
    if warmup_tokens > trace.n_tokens:
        raise MoesimError(f"--warmup {warmup_tokens} exceeds the trace's {trace.n_tokens} tokens")

    # compile (or load the cached compilation of) the kernels on a tiny slice before timing
    small = trace.experts[: min(3, trace.n_tokens)]
    run_replay(small, policy, capacity_bytes, expert_bytes, scope=scope, warmup_tokens=min(warmup_tokens, 2),
               prefetch=prefetch, n_experts=n_experts)
    started = time.perf_counter()
    result = run_replay(trace.experts, policy, capacity_bytes, expert_bytes, scope=scope, warmup_tokens=warmup_tokens,
                        prefetch=prefetch, n_experts=n_experts)
    elapsed = time.perf_counter() - started

    summary = {
        "trace": str(trace_path),
        "policy": result.policy,
        "scope": scope,
        "capacity": capacity,
        "capacity_bytes": int(capacity_bytes),
        "warmup_tokens": warmup_tokens,
        "lookups": result.lookups,
        "hits": result.hit_count,
        "misses": result.miss_count,
        "hit_rate": result.hit_rate,
        "bytes_fetched": int(result.bytes_fetched.sum()),
        "replay_seconds": elapsed,
    }
    if result.prefetch is not None:
        summary.update(
            prefetch=result.prefetch.predictor,
            prefetch_bytes=result.prefetch.prefetch_bytes_total,
            prefetch_useful_bytes=result.prefetch.useful_bytes_total,
            prefetch_wasted_bytes=result.prefetch.wasted_bytes_total,
        )
    if wants_json(as_json, output_format):
        emit_json(summary)
        return
    if output_format == "csv":
        click.echo(",".join(summary))
        click.echo(",".join(str(v) for v in summary.values()))
        return
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        shown = f"{value:.6f}" if isinstance(value, float) else str(value)
        click.echo(f"{key.ljust(width)}  {shown}")
