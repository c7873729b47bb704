"""`moesim trace replay` / `moesim trace curve`: a routing trace through an expert cache, at one capacity or
at many from one pass."""

from __future__ import annotations

import time

import click

from moesim.output import emit_data, output_options

_POLICY_NAMES = ("lru", "lfu", "fifo", "static", "belady", "s3fifo", "belady-demand")  # == moesim.cache.POLICIES
_POLICY_ALIASES = ("opt", "min")  # moesim.cache.PolicyKind.from_str maps both to belady
_CURVE_POLICIES = ("lru", "belady", "belady-demand")
_DEFAULT_CURVE_CAPACITIES = ("5%", "10%", "25%", "50%", "75%", "100%")


_scope_option = click.option("--scope", type=click.Choice(["global", "per-layer"]), default="global",
                             show_default=True, help="One pool for all layers, or the budget split evenly over layers.")


def _expert_size_options(command):
    """--model / --quant: where the bytes of one routed expert per layer come from (see `_expert_bytes`)."""
    command = click.option("--quant", "quant_id", default=None,
                           help="Quantization for expert sizes (needed for a --capacity in bytes); without it every expert "
                                "counts as 1 byte.")(command)
    return click.option("--model", "model_id", default=None,
                        help="Model for expert sizes (default: the trace's model).")(command)


def _expert_bytes(trace, model_id, quant_id, capacities):
    """Bytes of one routed expert per MoE layer of the trace: from --model/--quant, else 1 each -- which a
    capacity in bytes (`capacities` as typed, parsed) cannot be measured against, so that is an error."""
    import numpy as np

    from moesim.errors import MoesimError

    in_bytes = [text for text, spec in capacities if spec.kind == "bytes"]
    if in_bytes and quant_id is None:
        raise MoesimError(f"--capacity {in_bytes[0]} is a size in bytes: give --quant (the trace's model "
                          "is the default --model) so experts have sizes, or give N experts or P%")
    meta = trace.meta
    if quant_id is not None:
        from moesim.catalog.models import get_model
        from moesim.catalog.quants import get_quant
        from moesim.footprint import footprint

        model = get_model(model_id or meta.model_id)
        per_block = footprint(model, get_quant(quant_id)).routed_expert_bytes_by_layer
        if max(meta.moe_layers, default=-1) >= len(per_block):
            raise MoesimError(f"model {model.id} has {len(per_block)} layers but the trace routes layer {max(meta.moe_layers)}")
        expert_bytes = np.array([per_block[layer] for layer in meta.moe_layers], np.int64)
        if (expert_bytes <= 0).any() or int(model.n_routed_experts) != int(meta.n_routed_experts):
            raise MoesimError(f"model {model.id} does not match the trace's MoE shape ({meta.model_id})")
        return expert_bytes
    if model_id is not None:
        raise MoesimError("--model sets expert sizes together with --quant; give --quant too")
    return np.ones(trace.n_moe_layers, np.int64)


def _emit(summary, rows, as_json, output_format):
    """One JSON object (summary + rows), CSV (one line per row, or the summary), or aligned text."""
    from moesim.output import print_table

    if emit_data({**summary, "points": rows} if rows is not None else summary, as_json, output_format):
        return
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        shown = f"{value:.6f}" if isinstance(value, float) else str(value)
        click.echo(f"{key.ljust(width)}  {shown}")
    if rows:
        click.echo("")
        print_table([tuple(f"{v:.4f}" if isinstance(v, float) else v for v in row.values()) for row in rows], tuple(rows[0]))


@click.command("replay")
@click.argument("trace_path", metavar="TRACE", type=click.Path(dir_okay=False))
@click.option("--policy", "policy", type=click.Choice(_POLICY_NAMES + _POLICY_ALIASES, case_sensitive=False), default="lru",
              show_default=True, help="Replacement policy (belady, alias opt/min = offline optimum with bypass).")
@click.option("--capacity", required=True,
              help="Cache size: N experts, a size such as 24GB or 512MiB, or P% of all routed experts.")
@_scope_option
@click.option("--warmup", "warmup_tokens", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leading tokens that warm the cache and are not counted (static pinning learns on them).")
@_expert_size_options
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
    from moesim.cache import PrefetchSpec
    from moesim.cache import replay as run_replay
    from moesim.errors import MoesimError
    from moesim.trace.format import read_trace
    from moesim.units import parse_capacity

    spec = parse_capacity(capacity)
    trace = read_trace(trace_path)
    n_experts = int(trace.meta.n_routed_experts)
    expert_bytes = _expert_bytes(trace, model_id, quant_id, [(capacity, spec)])
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
    _emit(summary, None, as_json, output_format)


@click.command("curve")
@click.argument("trace_path", metavar="TRACE", type=click.Path(dir_okay=False))
@click.option("--policy", "policy", type=click.Choice(_CURVE_POLICIES + _POLICY_ALIASES, case_sensitive=False),
              default="lru", show_default=True,
              help="lru, or Belady's MIN (belady, alias opt/min: with bypass; belady-demand: every miss kept).")
@click.option("--capacity", "capacities", multiple=True,
              help="A capacity to read off the curve (repeat it): N experts, a size such as 24GB, or P%. "
                   f"Default: {', '.join(_DEFAULT_CURVE_CAPACITIES)}.")
@_scope_option
@click.option("--warmup", "warmup_tokens", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leading tokens that warm the cache and are not counted.")
@_expert_size_options
@output_options
def curve(trace_path, policy, capacities, scope, warmup_tokens, model_id, quant_id, as_json, output_format):
    """Hits and misses of TRACE at many cache sizes from one pass (a miss-ratio curve).

    Exact: each point equals `moesim trace replay` with the same policy and capacity. Belady needs one
    expert size per pool (with --quant, per-layer pools); its one pass costs more than LRU's, growing with
    the pool's size. curve_seconds times the pass alone (after loading and compiling).

    Example:

        moesim trace curve trace.arrow --capacity 10% --capacity 25% --capacity 24GB --json
    """
    from moesim.cache import PolicyKind, lru_curve, opt_curve
    from moesim.errors import MoesimError
    from moesim.trace.format import read_trace
    from moesim.units import parse_capacity

    kind = str(PolicyKind.from_str(policy))
    specs = [(text, parse_capacity(text)) for text in (capacities or _DEFAULT_CURVE_CAPACITIES)]
    trace = read_trace(trace_path)
    n_experts = int(trace.meta.n_routed_experts)
    expert_bytes = _expert_bytes(trace, model_id, quant_id, specs)
    if warmup_tokens > trace.n_tokens:
        raise MoesimError(f"--warmup {warmup_tokens} exceeds the trace's {trace.n_tokens} tokens")

    def one_pass(experts, warmup):
        if kind == "lru":
            return lru_curve(experts, expert_bytes, scope=scope, warmup_tokens=warmup, n_experts=n_experts)
        return opt_curve(experts, expert_bytes, scope=scope, warmup_tokens=warmup, bypass=kind == "belady",
                         n_experts=n_experts)

    one_pass(trace.experts[: min(3, trace.n_tokens)], min(warmup_tokens, 2))  # compile before the clock starts
    started = time.perf_counter()
    result = one_pass(trace.experts, warmup_tokens)
    elapsed = time.perf_counter() - started
    rows = []
    for text, spec in specs:
        capacity_bytes = spec.to_bytes(expert_bytes, n_experts)
        hits = result.hit_count_at(capacity_bytes)
        rows.append({"capacity": text, "capacity_bytes": int(capacity_bytes), "hits": hits,
                     "misses": result.lookups - hits, "hit_rate": hits / result.lookups if result.lookups else float("nan")})
    summary = {"trace": str(trace_path), "policy": kind, "scope": scope, "warmup_tokens": warmup_tokens,
               "lookups": result.lookups, "curve_seconds": elapsed}
    _emit(summary, rows, as_json, output_format)
