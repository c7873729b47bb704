"""One-pass LRU miss-ratio curve via byte stack distances.

With a byte capacity C, the LRU cache always holds the longest prefix of the recency stack (distinct
experts, most recent first) whose sizes sum to at most C. A look-up of expert x therefore hits at C exactly
when ``need(x) = (bytes of distinct experts used since x's previous use) + size(x) <= C``. The kernel
records ``need`` for every counted look-up (``NEVER`` for a first use); then misses at any capacity are a
vectorised comparison.

The bytes of the experts used since the previous use are a suffix sum over *recency slots*: each expert
occupies the slot of its latest use and a Fenwick tree sums sizes over slots. Slots are renumbered
(compacted) when they run out, so each pool's tree has only ~2 x its number of experts slots: it stays in
cache and every operation costs O(log n_experts), amortised.

When every expert of a pool has the same size (the per-layer scope always; the global scope when all
layers' experts are equal), the bytes are ``size x (number of distinct experts)`` and `_lru_stack_counts`
counts them instead: a bitset of live recency slots with a count per 512-slot block, so a look-up costs a
few `popcnt`s and a short sum of block counts rather than three Fenwick walks.
"""

from __future__ import annotations

import numpy as np

from moesim.kernels._jit import jit
from moesim.kernels.core import NEVER, item_sizes, popcount


@jit
def _fenwick_prefix(tree, start, index):
    total = 0
    while index > 0:
        total += tree[start + index]
        index -= index & -index
    return total


@jit
def _fenwick_add(tree, start, width, index, delta):
    while index <= width:
        tree[start + index] += delta
        index += index & -index


@jit
def _compact(tree, slot_item, item_slot, sizes, start, width, next_slot):
    """Renumber the live slots of one pool to 1..n_live (keeping their order) and rebuild its tree.
    Returns the next free slot."""
    live = 0
    for slot in range(1, next_slot):
        item = slot_item[start + slot]
        if item >= 0:
            live += 1
            slot_item[start + live] = item
            item_slot[item] = live
    for slot in range(live + 1, width + 1):
        slot_item[start + slot] = -1
    for slot in range(1, width + 1):
        tree[start + slot] = 0
    for slot in range(1, live + 1):
        tree[start + slot] = sizes[slot_item[start + slot]]
    for slot in range(1, width + 1):
        parent = slot + (slot & -slot)
        if parent <= width:
            tree[start + parent] += tree[start + slot]
    return live + 1


@jit
def _lru_stack_needs(experts, n_experts, item_bytes_by_layer, pool_of_layer, n_pools, warmup_tokens, needs_out):
    """Write, for every counted look-up in ``(token, layer, k)`` order, the smallest pool capacity in bytes
    at which LRU hits it (``NEVER`` for first uses)."""
    n_tokens, n_layers, top_k = experts.shape
    n_items = n_layers * n_experts
    sizes = item_sizes(item_bytes_by_layer, n_experts)
    widths = np.zeros(n_pools, np.int64)
    for layer in range(n_layers):
        widths[pool_of_layer[layer]] += 2 * n_experts
    starts = np.zeros(n_pools, np.int64)
    running = 0
    for p in range(n_pools):
        starts[p] = running
        running += widths[p] + 1  # Fenwick trees are 1-indexed
    tree = np.zeros(running, np.int64)
    slot_item = np.full(running, -1, np.int64)
    item_slot = np.zeros(n_items, np.int64)  # 0: never used
    next_slot = np.ones(n_pools, np.int64)
    total = np.zeros(n_pools, np.int64)
    out = 0
    for t in range(n_tokens):
        counted = t >= warmup_tokens
        for layer in range(n_layers):
            base = layer * n_experts
            size = item_bytes_by_layer[layer]
            pool = pool_of_layer[layer]
            start = starts[pool]
            width = widths[pool]
            for k in range(top_k):
                item = base + np.int64(experts[t, layer, k])
                slot = item_slot[item]
                if slot > 0:
                    need = total[pool] - _fenwick_prefix(tree, start, slot) + size
                    _fenwick_add(tree, start, width, slot, -size)
                    slot_item[start + slot] = -1
                else:
                    need = NEVER
                    total[pool] += size
                if next_slot[pool] > width:
                    next_slot[pool] = _compact(tree, slot_item, item_slot, sizes, start, width, next_slot[pool])
                slot = next_slot[pool]
                next_slot[pool] = slot + 1
                _fenwick_add(tree, start, width, slot, size)
                slot_item[start + slot] = item
                item_slot[item] = slot
                if counted:
                    needs_out[out] = need
                    out += 1


SLOTS_PER_BLOCK_LOG2 = 9  # 8 words of 64 slots: the partial block is 8 popcounts, whole blocks one add each


@jit
def _lru_stack_counts(experts, n_experts, pool_of_layer, n_pools, warmup_tokens, counts_out):
    """Like `_lru_stack_needs` for pools whose experts all have one size: write the number of distinct
    experts of the pool used since (and including) each counted look-up's previous use, ``NEVER`` for
    first uses. The pool's recency slots hold a bitset of live slots (each expert's latest use) and a
    live count per block; the slots are renumbered when they run out, as in `_compact`."""
    n_tokens, n_layers, top_k = experts.shape
    n_items = n_layers * n_experts
    items_in_pool = np.zeros(n_pools, np.int64)
    for layer in range(n_layers):
        items_in_pool[pool_of_layer[layer]] += n_experts
    width = 1 << SLOTS_PER_BLOCK_LOG2
    while width < 4 * items_in_pool.max() or width < 2 * top_k:
        width *= 2
    n_words = width >> 6
    n_blocks = width >> SLOTS_PER_BLOCK_LOG2
    block_words = 1 << (SLOTS_PER_BLOCK_LOG2 - 6)
    live = np.zeros(n_pools * n_words, np.uint64)
    block_live = np.zeros(n_pools * n_blocks, np.int64)
    slot_item = np.full(n_pools * width, -1, np.int32)
    item_slot = np.full(n_items, -1, np.int64)
    tails = np.zeros(n_pools, np.int64)
    one = np.uint64(1)
    every_bit = ~np.uint64(0)
    out = 0
    for t in range(n_tokens):
        row = experts[t]
        for layer in range(n_layers):
            base = layer * n_experts
            pool = pool_of_layer[layer]
            words = pool * n_words
            blocks = pool * n_blocks
            slots = pool * width
            tail = tails[pool]
            if tail + top_k > width:
                n_live = 0
                for slot in range(tail):
                    item = slot_item[slots + slot]
                    if item >= 0:
                        slot_item[slots + n_live] = item
                        item_slot[item] = n_live
                        n_live += 1
                slot_item[slots + n_live:slots + width] = -1
                live[words:words + n_words] = 0
                block_live[blocks:blocks + n_blocks] = 0
                for slot in range(n_live):
                    live[words + (slot >> 6)] |= one << np.uint64(slot & 63)
                    block_live[blocks + (slot >> SLOTS_PER_BLOCK_LOG2)] += 1
                tail = n_live
            for k in range(top_k):
                item = base + np.int64(row[layer, k])
                slot = item_slot[item]
                if slot >= 0:
                    word = slot >> 6
                    block = slot >> SLOTS_PER_BLOCK_LOG2
                    count = np.int64(popcount(live[words + word] & (every_bit << np.uint64(slot & 63))))
                    for other in range(word + 1, (block + 1) * block_words):
                        count += np.int64(popcount(live[words + other]))
                    for other in range(block + 1, ((tail - 1) >> SLOTS_PER_BLOCK_LOG2) + 1):
                        count += block_live[blocks + other]
                    live[words + word] &= ~(one << np.uint64(slot & 63))
                    block_live[blocks + block] -= 1
                    slot_item[slots + slot] = -1
                else:
                    count = NEVER
                live[words + (tail >> 6)] |= one << np.uint64(tail & 63)
                block_live[blocks + (tail >> SLOTS_PER_BLOCK_LOG2)] += 1
                slot_item[slots + tail] = item
                item_slot[item] = tail
                tail += 1
                if t >= warmup_tokens:
                    counts_out[out] = count
                    out += 1
            tails[pool] = tail
