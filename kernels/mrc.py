"""One-pass LRU miss-ratio curve via stack distances.

With a byte capacity C, the LRU cache always holds the longest prefix of the recency stack (distinct
experts, most recent first) whose sizes sum to at most C. A look-up of expert x therefore hits at C exactly
when ``need(x) = (bytes of distinct experts used since x's previous use) + size(x) <= C``. The wrapper
records ``need`` for every counted look-up (``NEVER`` for a first use); then misses at any capacity are a
vectorised comparison.

`_lru_stack_counts` counts the distinct experts of one *size class* (the layers whose ``in_class`` flag is
1) used since x's previous use, x included when it is in the class. Each pool's recency slots (one per use,
a slot stays live while it is its expert's latest use) carry a bitset of live in-class slots and a live
count per 512-slot block, so a look-up costs a few `popcnt`s and a short sum of block counts. Slots are
renumbered (compacted, keeping their order) when they run out, so each pool has ~4 x its experts slots and
the bitset stays in L1. ``need`` is the sum over size classes of ``size x count``: one pass when every
expert of a pool has one size (the per-layer scope always), one pass per distinct size otherwise.
"""

from __future__ import annotations

import numpy as np

from moesim.kernels._jit import jit
from moesim.kernels.core import NEVER, largest_pool_items, popcount

SLOTS_PER_BLOCK_LOG2 = 9  # 8 words of 64 slots: the partial block is 8 popcounts, whole blocks one add each


@jit
def _lru_stack_counts(experts, n_experts, pool_of_layer, class_bytes, in_class, warmup_tokens, needs_out, accumulate):
    """For every counted look-up in ``(token, layer, k)`` order, write (``accumulate``: add) to
    ``needs_out`` the bytes of the distinct in-class experts of its pool used since (and including) its
    previous use: their number times ``class_bytes[pool]``. First uses get ``NEVER``."""
    n_tokens, n_layers, top_k = experts.shape
    n_items = n_layers * n_experts
    n_pools = class_bytes.shape[0]
    largest_pool = largest_pool_items(pool_of_layer, n_pools, n_experts)
    width = 1 << SLOTS_PER_BLOCK_LOG2
    while width < 4 * largest_pool or width < 2 * top_k:
        width *= 2
    n_words = width >> 6
    n_blocks = width >> SLOTS_PER_BLOCK_LOG2
    block_words = 1 << (SLOTS_PER_BLOCK_LOG2 - 6)
    live = np.empty(n_pools * n_words, np.uint64)
    live[:] = 0
    block_live = np.empty(n_pools * n_blocks, np.int64)
    block_live[:] = 0
    slot_item = np.empty(n_pools * width, np.int32)
    slot_item[:] = -1
    item_slot = np.empty(n_items, np.int64)
    item_slot[:] = -1
    tails = np.empty(n_pools, np.int64)
    tails[:] = 0
    one = np.uint64(1)
    every_bit = ~np.uint64(0)
    out = 0
    for t in range(n_tokens):
        row = experts[t]
        for layer in range(n_layers):
            base = layer * n_experts
            pool = pool_of_layer[layer]
            member = np.int64(in_class[layer])
            size = class_bytes[pool]
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
                    slot_member = in_class[slot_item[slots + slot] // n_experts]
                    live[words + (slot >> 6)] |= (one << np.uint64(slot & 63)) * np.uint64(slot_member)
                    block_live[blocks + (slot >> SLOTS_PER_BLOCK_LOG2)] += slot_member
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
                    block_live[blocks + block] -= member
                    slot_item[slots + slot] = -1
                else:
                    count = -1
                live[words + (tail >> 6)] |= (one << np.uint64(tail & 63)) * np.uint64(member)
                block_live[blocks + (tail >> SLOTS_PER_BLOCK_LOG2)] += member
                slot_item[slots + tail] = item
                item_slot[item] = tail
                tail += 1
                if t >= warmup_tokens:
                    if count < 0:
                        needs_out[out] = NEVER
                    elif accumulate:
                        needs_out[out] += count * size
                    else:
                        needs_out[out] = count * size
                    out += 1
            tails[pool] = tail
