"""Primitives shared by the expert-cache kernels.

An *item* is one routed expert of one MoE layer: ``item = layer * n_experts + expert``. A *pool* is one
independently managed cache budget: one pool for the global scope, one per layer for the per-layer scope
(``pool_of_layer`` maps a layer to its pool). Look-ups are visited in trace order ``(token, layer, k)``.

Linked lists (S3-FIFO's queues) are circular and doubly linked over dense int32 arrays, with one
self-linked sentinel node per queue after the items, so linking and unlinking need no branches and no
dictionaries. Helpers here fill arrays their caller allocates (see `jit_helper`).

Kernels allocate with ``np.empty`` and initialise with one explicit loop per array length: every
``a[:] = x`` compiles a loop nest of its own (~10 ms each on a fresh cache, ~25 sites in these kernels).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from moesim.kernels._jit import jit, jit_helper

LANES = 16  # elements per vector step of `add_to_lanes_after` and `lanes_greater` (the curve kernels)

if numba.config.DISABLE_JIT:
    # plain-Python twins so the kernels still run (and are covered) with NUMBA_DISABLE_JIT=1

    def popcount(word):
        """Set bits of a uint64."""
        return bin(int(word)).count("1")

    def trailing_zeros(word):
        """Index of the lowest set bit of a non-zero uint64."""
        word = int(word)
        return (word & -word).bit_length() - 1

    def lanes_greater(values, group_start, threshold):
        """Bit ``i`` set where ``values[group_start + i] > threshold``, for ``i < LANES``."""
        mask = 0
        for i in range(LANES):
            if values[int(group_start) + i] > threshold:
                mask |= 1 << i
        return np.uint64(mask)

    def add_to_lanes_after(counts, group_start, lane, delta):
        """``counts[group_start + i] += delta`` for every ``lane < i < LANES``."""
        for i in range(int(lane) + 1, LANES):
            counts[int(group_start) + i] += delta

else:
    from numba.cpython.unsafe.numbers import trailing_zeros

    @intrinsic
    def popcount(typingctx, word):
        """Set bits of a uint64 (one `popcnt` instruction)."""

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return types.uint64(types.uint64), codegen

    @intrinsic
    def lanes_greater(typingctx, values, group_start, threshold):
        """Bit ``i`` set where ``values[group_start + i] > threshold`` (signed), for ``i < LANES``: one vector
        compare of the group and its sign mask, so a scan for the next larger value steps ``LANES`` at a time.
        The group must lie inside ``values``; nothing is checked."""

        def codegen(context, builder, signature, args):
            values_value, start_value, threshold_value = args
            data = context.make_array(signature.args[0])(context, builder, value=values_value).data
            element = context.get_value_type(signature.args[0].dtype)
            vector = ir.VectorType(element, LANES)
            group = builder.bitcast(builder.gep(data, [start_value], inbounds=True), vector.as_pointer())
            greater = builder.icmp_signed(">", builder.load(group, align=1), _splat(builder, vector, threshold_value))
            return builder.zext(builder.bitcast(greater, ir.IntType(LANES)), ir.IntType(64))

        return types.uint64(values, types.uint64, types.int64), codegen

    def _splat(builder, vector, scalar):
        """``scalar`` (an i64) in every lane of ``vector``."""
        element = vector.element
        lane = builder.trunc(scalar, element) if element.width < 64 else scalar
        undefined = ir.Constant(vector, ir.Undefined)
        one_lane = builder.insert_element(undefined, lane, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one_lane, undefined, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))

    @intrinsic
    def add_to_lanes_after(typingctx, counts, group_start, lane, delta):
        """``counts[group_start + i] += delta`` for every ``lane < i < LANES``, as one vector read-modify-write
        of the group (a select on ``iota > lane``). Written as IR because LLVM turns the same loop, masked
        with arithmetic or with an ``if``, into ``LANES`` compare-and-branch steps. The group must lie
        inside ``counts`` (``group_start + LANES <= counts.size``); nothing is checked."""

        def codegen(context, builder, signature, args):
            counts_value, start_value, lane_value, delta_value = args
            data = context.make_array(signature.args[0])(context, builder, value=counts_value).data
            element = context.get_value_type(signature.args[0].dtype)
            vector = ir.VectorType(element, LANES)
            group = builder.bitcast(builder.gep(data, [start_value], inbounds=True), vector.as_pointer())
            after = builder.icmp_signed(">", ir.Constant(vector, list(range(LANES))), _splat(builder, vector, lane_value))
            step = builder.select(after, _splat(builder, vector, delta_value), ir.Constant(vector, [0] * LANES))
            builder.store(builder.add(builder.load(group, align=1), step), group, align=1)
            return context.get_dummy_value()

        return types.none(counts, types.uint64, types.int64, types.int64), codegen

NEVER = np.int64(2**62)  # "no next use" / "cold miss" marker that compares greater than any real value


@jit_helper
def item_sizes(item_bytes_by_layer, n_experts, sizes):
    """Write the bytes of every item, laid out by item id, to ``sizes``."""
    for layer in range(item_bytes_by_layer.shape[0]):
        for e in range(n_experts):
            sizes[layer * n_experts + e] = item_bytes_by_layer[layer]


@jit_helper
def unlink(prev, nxt, node):
    before = prev[node]
    after = nxt[node]
    nxt[before] = after
    prev[after] = before


@jit_helper
def link_after(prev, nxt, anchor, node):
    """Insert ``node`` right after ``anchor`` (after the sentinel = at the head, most recent)."""
    after = nxt[anchor]
    nxt[node] = after
    prev[after] = node
    prev[node] = anchor
    nxt[anchor] = node


@jit
def next_use_times(experts, n_experts):
    """For every look-up (flattened in ``(token, layer, k)`` order) the flat index of the next look-up of
    the same item, or ``n_lookups`` when it is never used again (Belady's oracle input)."""
    n_tokens, n_layers, top_k = experts.shape
    n_lookups = n_tokens * n_layers * top_k
    last_seen = np.empty(n_layers * n_experts, np.int64)
    for item in range(n_layers * n_experts):
        last_seen[item] = n_lookups
    next_use = np.empty(n_lookups, np.int64)
    position = n_lookups
    for t in range(n_tokens - 1, -1, -1):
        for layer in range(n_layers - 1, -1, -1):
            base = layer * n_experts
            for k in range(top_k - 1, -1, -1):
                position -= 1
                item = base + np.int64(experts[t, layer, k])
                next_use[position] = last_seen[item]
                last_seen[item] = position
    return next_use


@jit_helper
def pool_starts(pool_of_layer, per_layer, starts):
    """Write to ``starts`` (n_pools + 1) the offset of each pool's region in an array with ``per_layer``
    entries for every layer of the pool; ``starts[n_pools]`` is the total."""
    for p in range(starts.shape[0]):
        starts[p] = 0
    for layer in range(pool_of_layer.shape[0]):
        starts[pool_of_layer[layer] + 1] += per_layer
    for p in range(starts.shape[0] - 1):
        starts[p + 1] += starts[p]


@jit_helper
def largest_pool_items(pool_of_layer, n_pools, n_experts):
    """Experts in the largest pool (a pool holds every expert of the layers mapped to it): kernels size
    their per-pool rings and bitsets from it. Counted without a scratch array (see `jit_helper`)."""
    largest = np.int64(0)
    for p in range(n_pools):
        n = np.int64(0)
        for layer in range(pool_of_layer.shape[0]):
            if pool_of_layer[layer] == p:
                n += n_experts
        if n > largest:
            largest = n
    return largest
