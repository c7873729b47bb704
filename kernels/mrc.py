"""One-pass LRU miss-ratio curve via byte stack distances.

With a byte capacity C, the LRU cache always holds the longest prefix of the recency stack (distinct
experts, most recent first) whose sizes sum to at most C. A look-up of expert x therefore hits at C exactly
when ``need(x) = (bytes of distinct experts used since x's previous use) + size(x) <= C``. `_lru_needs`
writes ``need`` for every look-up (``NEVER`` for a first use); misses at any capacity are then a
vectorised comparison in the wrapper.

Every use of an expert takes its pool's next *slot*; a slot is live while it is its expert's latest use, so
``need(x)`` is the bytes of the pool's live slots from x's slot on: the pool's live bytes minus the live
bytes before that slot, counted per expert size of the pool (one size in the per-layer scope):

- inside the slot's 64-slot word, from the `popcnt` of a live bitset;
- before the word, from prefix counts over a 16-ary hierarchy of the words: level 0 has one node per
  word, each level above one node per 16 nodes below, and every node holds the live slots of the nodes
  left of it in its group of 16 (an exclusive prefix). Live slots before a word are then one load per
  level and no branch. Removing a slot subtracts one from the nodes right of its node, at each level: a
  16-lane vector read-modify-write (`add_to_lanes_after`), as cheap as one scalar update. Three levels
  cover the 1024 words of a DeepSeek-sized global pool; the 4-ary tree of sums this replaced needed
  five levels of three loads and one update each, which was half of the curve's time.
- Only finished words (those before the word being filled) are counted in the levels, so a new use sets
  a bit and leaves them alone; a word is added once, when it fills, and removing a slot of the word being
  filled subtracts zero (the step is done anyway: a branch on it is mispredicted in per-layer pools).

Slots are renumbered in order (compacted) when a pool runs out of its ``4 x experts`` (rounded up to a power
of two) slots, about once per ``3 x experts`` uses. Hot indices are unsigned, which skips Numba's
negative-index fix-up: the loads, stores and instructions per look-up set the kernel's speed.

`_opt_needs` does the same for Belady's MIN when every expert of a pool has one size (with mixed sizes
optimal caching has no inclusion property, so no one-pass curve): Mattson et al.'s priority stack (1970),
with the next use as priority. The top ``c`` entries of the stack are what MIN holds at capacity ``c``,
so a look-up hits at ``c`` exactly when its expert's depth is at most ``c``. A look-up moves its expert
to the top (without bypass) or lets it enter at the top (with bypass) and sinks the entry with the
latest next use, position by position, down to the expert's old place. That is O(depth) per look-up: the
scan for the next entry that sinks compares ``LANES`` next uses at once (`lanes_greater`), but a
DeepSeek-sized global pool has depths of ~2500 and ~50 sinking entries per look-up (Bilardi et al.'s
O(log V) Critical Stack Algorithm, CF 2017, is not implemented).
"""

from __future__ import annotations

import numpy as np

from moesim.kernels._jit import jit, jit_helper
from moesim.kernels.core import LANES, NEVER, add_to_lanes_after, lanes_greater, largest_pool_items, popcount, trailing_zeros

LANE_BITS = LANES.bit_length() - 1


@jit_helper
def _finish_word(bits, prefix, level_start, n_levels, pool, n_classes, n_words, span, word):
    """Count the live slots of a full ``word``, per size class, in the prefix counts of the nodes after it."""
    for c in range(n_classes):
        filled = np.int64(popcount(bits[(pool * n_classes + c) * n_words + word]))
        node = np.uint64(word)
        for level in range(n_levels):
            group = np.uint64((pool * n_classes + c) * span + level_start[level]) + (node & ~np.uint64(LANES - 1))
            add_to_lanes_after(prefix, group, np.int64(node & np.uint64(LANES - 1)), filled)
            node >>= np.uint64(LANE_BITS)


@jit_helper
def _compact(pool, n_experts, pool_of_layer, class_of_layer, n_classes, n_words, bits, item_slot, live, rank_base):
    """Renumber the pool's live slots to ``0 .. n_live - 1`` in order (an expert's new slot is its slot's rank
    among the live ones) and rebuild its bitsets. Returns ``n_live``; the caller rebuilds the tree."""
    one = np.uint64(1)
    pool_bits = pool * n_classes * n_words
    n_live = np.int64(0)
    for word in range(n_words):
        live[word] = 0
        for c in range(n_classes):
            live[word] |= bits[pool_bits + c * n_words + word]
            bits[pool_bits + c * n_words + word] = 0
        rank_base[word] = n_live
        n_live += np.int64(popcount(live[word]))
    for layer in range(pool_of_layer.shape[0]):
        if pool_of_layer[layer] == pool:
            own_bits = pool_bits + class_of_layer[layer] * n_words
            for item in range(layer * n_experts, (layer + 1) * n_experts):
                old = np.int64(item_slot[item])
                if old >= 0:
                    below = (one << np.uint64(old & 63)) - one
                    slot = rank_base[old >> 6] + np.int64(popcount(live[old >> 6] & below))
                    item_slot[item] = slot
                    bits[own_bits + (slot >> 6)] |= one << np.uint64(slot & 63)
    return n_live


@jit
def _lru_needs(experts, n_experts, pool_of_layer, class_of_layer, class_bytes, n_classes, count_dtype_like, needs_out):
    """Write to ``needs_out`` (every look-up, warm-up included, in ``(token, layer, k)`` order) the bytes of
    the distinct experts of its pool used since and including its previous use; first uses get ``NEVER``.

    ``class_of_layer``: index of the layer's expert size among its pool's sizes; ``class_bytes``: the bytes
    of each size class, ``n_classes`` per pool (0 where a pool has fewer sizes). ``count_dtype_like``: an
    empty array whose dtype holds the prefix counts -- int16 when no pool has more than 32767 experts
    (every catalog model; a 16-lane update is then one 256-bit vector: the curve ran 1.1-1.25x faster than
    with int32 in alternating runs)."""
    n_tokens, n_layers, top_k = experts.shape
    n_items = n_layers * n_experts
    n_pools = class_bytes.shape[0] // n_classes
    largest_pool = largest_pool_items(pool_of_layer, n_pools, n_experts)
    n_words = np.int64(LANES)
    while n_words * 64 < 4 * largest_pool or n_words * 64 < 2 * top_k:
        n_words *= 2
    width = n_words * 64  # slots per pool
    n_levels = np.int64(1)
    while (n_words - 1) >> (LANE_BITS * n_levels) > 0:
        n_levels += 1
    level_start = np.empty(n_levels, np.int64)
    span = np.int64(0)  # prefix counts per size class, every level padded to whole groups
    for level in range(n_levels):
        level_start[level] = span
        span += (((n_words - 1) >> (LANE_BITS * level)) | (LANES - 1)) + 1
    bits = np.empty(n_pools * n_classes * n_words, np.uint64)
    for word in range(n_pools * n_classes * n_words):
        bits[word] = 0
    prefix = np.empty(n_pools * n_classes * span, count_dtype_like.dtype)
    for node in range(n_pools * n_classes * span):
        prefix[node] = 0
    live = np.empty(n_words, np.uint64)
    rank_base = np.empty(n_words, np.int64)
    item_slot = np.empty(n_items, np.int32)
    for item in range(n_items):
        item_slot[item] = -1
    tails = np.empty(n_pools, np.int64)
    totals = np.empty(n_pools, np.int64)  # live bytes
    for pool in range(n_pools):
        tails[pool] = 0
        totals[pool] = 0
    one = np.uint64(1)
    lane_mask = np.uint64(LANES - 1)
    lane_bits = np.uint64(LANE_BITS)
    out = np.uint64(0)
    for t in range(n_tokens):
        row = experts[t]
        for layer in range(n_layers):
            base = layer * n_experts
            pool = pool_of_layer[layer]
            cls = class_of_layer[layer]
            size = class_bytes[pool * n_classes + cls]
            pool_bits = pool * n_classes * n_words
            own_bits = np.uint64(pool_bits + cls * n_words)
            own_prefix = (pool * n_classes + cls) * span
            # the pool's state lives in locals for the group so it stays in registers
            tail = tails[pool]
            total = totals[pool]
            if tail + top_k > width:
                tail = _compact(pool, n_experts, pool_of_layer, class_of_layer, n_classes, n_words, bits, item_slot,
                                live, rank_base)
                for node in range(pool * n_classes * span, (pool + 1) * n_classes * span):
                    prefix[node] = 0
                for word in range(tail >> 6):
                    _finish_word(bits, prefix, level_start, n_levels, pool, n_classes, n_words, span, word)
            for k in range(top_k):
                item = np.uint64(base + np.int64(row[layer, k]))
                slot = np.int64(item_slot[item])
                need = NEVER
                if slot >= 0:
                    word = np.uint64(slot >> 6)
                    below = (one << np.uint64(slot & 63)) - one
                    removed = -np.int64(np.int64(word) < (tail >> 6))  # the word being filled is not counted yet
                    before_own = np.int64(popcount(bits[own_bits + word] & below))
                    node = word
                    for level in range(n_levels):  # read the prefix, then take the slot out of the nodes after
                        group = np.uint64(own_prefix + level_start[level])
                        before_own += np.int64(prefix[group + node])
                        add_to_lanes_after(prefix, group + (node & ~lane_mask), np.int64(node & lane_mask), removed)
                        node >>= lane_bits
                    before = before_own * size
                    for c in range(1, n_classes):  # the pool's other sizes: no loop when it has one size
                        other = cls + c - n_classes * np.int64(cls + c >= n_classes)
                        other_prefix = np.uint64((pool * n_classes + other) * span)
                        before_other = np.int64(popcount(bits[np.uint64(pool_bits + other * n_words) + word] & below))
                        node = word
                        for level in range(n_levels):
                            before_other += np.int64(prefix[other_prefix + np.uint64(level_start[level]) + node])
                            node >>= lane_bits
                        before += before_other * class_bytes[pool * n_classes + other]
                    bits[own_bits + word] &= ~(one << np.uint64(slot & 63))
                    need = total - before
                    total -= size
                bits[own_bits + np.uint64(tail >> 6)] |= one << np.uint64(tail & 63)
                total += size
                item_slot[item] = tail
                tail += 1
                if tail & 63 == 0:
                    _finish_word(bits, prefix, level_start, n_levels, pool, n_classes, n_words, span, (tail >> 6) - 1)
                needs_out[out] = need
                out += one
            tails[pool] = tail
            totals[pool] = total


@jit_helper
def _sink(stack, stack_next, depth_of, base, start, end, carry, carry_next):
    """Carry an entry down positions ``start .. end - 1`` of a priority stack: wherever the entry there has a
    later next use than the carried one, they swap; the last carried entry lands at ``end``."""
    one = np.uint64(1)
    position = start
    while position < end:
        later = lanes_greater(stack_next, np.uint64(base + position), carry_next)
        if end - position < LANES:
            later &= (one << np.uint64(end - position)) - one
        if later == 0:
            position += LANES
            continue
        position += np.int64(trailing_zeros(later))
        sunk = np.int64(stack[base + position])
        sunk_next = stack_next[base + position]
        stack[base + position] = carry
        stack_next[base + position] = carry_next
        depth_of[carry] = position
        carry = sunk
        carry_next = sunk_next
        position += 1
    stack[base + end] = carry
    stack_next[base + end] = carry_next
    depth_of[carry] = end


@jit
def _opt_needs(experts, n_experts, pool_of_layer, n_pools, layer_bytes, next_use, bypass, needs_out):
    """Write to ``needs_out`` (every look-up, warm-up included, in ``(token, layer, k)`` order) the smallest
    capacity at which Belady's MIN hits it: the number of experts its pool must hold times the layer's expert
    bytes (every expert of a pool has one size) -- with bypass (a miss is not kept when its next use is the
    latest) or without (every miss is kept); ``NEVER`` for a first use. ``next_use``: flat index of each
    look-up's next use of the same expert (`next_use_times`)."""
    n_tokens, n_layers, top_k = experts.shape
    n_items = n_layers * n_experts
    region = largest_pool_items(pool_of_layer, n_pools, n_experts) + LANES  # a vector step may read past the end
    stack = np.empty(n_pools * region, np.int32)
    stack_next = np.empty(n_pools * region, np.int64)
    for position in range(n_pools * region):
        stack[position] = 0
        stack_next[position] = 0
    depth_of = np.empty(n_items, np.int64)
    for item in range(n_items):
        depth_of[item] = -1
    entries = np.empty(n_pools, np.int64)
    for pool in range(n_pools):
        entries[pool] = 0
    lookup = np.int64(0)
    for t in range(n_tokens):
        row = experts[t]
        for layer in range(n_layers):
            pool = pool_of_layer[layer]
            base = pool * region
            for k in range(top_k):
                item = layer * n_experts + np.int64(row[layer, k])
                upcoming = next_use[lookup]
                depth = depth_of[item]
                if depth < 0:  # first use: the stack grows by one entry
                    needs_out[lookup] = NEVER
                    depth = entries[pool]
                    entries[pool] += 1
                else:
                    needs_out[lookup] = (depth + 1) * layer_bytes[layer]
                if bypass or depth > 0:  # one call site: the helper is compiled into this kernel once
                    first = np.int64(0) if bypass else np.int64(1)
                    carried = item if bypass else np.int64(stack[base])
                    carried_next = upcoming if bypass else stack_next[base]
                    _sink(stack, stack_next, depth_of, base, first, depth, carried, carried_next)
                if not bypass:
                    stack[base] = item
                    stack_next[base] = upcoming
                    depth_of[item] = 0
                lookup += 1
