"""One-pass LRU miss-ratio curve via byte stack distances.

With a byte capacity C, the LRU cache always holds the longest prefix of the recency stack (distinct
experts, most recent first) whose sizes sum to at most C. A look-up of expert x therefore hits at C exactly
when ``need(x) = (bytes of distinct experts used since x's previous use) + size(x) <= C``. `_lru_needs`
writes ``need`` for every look-up (``NEVER`` for a first use); misses at any capacity are then a
vectorised comparison in the wrapper.

Every use of an expert takes its pool's next *slot*; a slot is live while it is its expert's latest use, so
``need(x)`` is the bytes of the pool's live slots from x's slot on: the pool's live bytes minus the live
bytes before that slot. Those come from two parts:

- inside the slot's 64-slot word, from `popcnt`s of a live bitset per expert size of the pool (one bitset
  when the pool's experts share one size, as in the per-layer scope), so mixed sizes take one pass;
- before the word, from a 4-ary tree over the words whose nodes hold the live bytes of their range. Each
  group of four siblings is stored after four zero slots, so the bytes of the siblings left of a node are
  always the three slots just before it: a query is three loads per level and removing a slot one
  subtraction per level, with no mask and no branch (a masked form costs a table load per sibling, and
  LLVM turns an arithmetic mask into branches). The tree holds only finished words (those before the word
  being filled), so a new use sets a bit and leaves the tree alone; a word enters the tree once, when it
  fills, and a slot removed from the word being filled needs no tree update.

Slots are renumbered in order (compacted) when a pool runs out of its ``4 x experts`` (rounded up to a power
of four, so the tree is complete) slots, about once per ``3 x experts`` uses. Hot indices are unsigned, which
skips Numba's negative-index fix-up: the loads and stores per look-up (stack spills included), not the
arithmetic, set the kernel's speed, so every layout choice above counts memory operations.
"""

from __future__ import annotations

import numpy as np

from moesim.kernels._jit import jit, jit_helper
from moesim.kernels.core import NEVER, largest_pool_items, popcount


@jit_helper
def _finish_word(bits, sums, class_bytes, pool, n_classes, n_words, tree, bottom, word):
    """Add the live bytes of a full word to the tree nodes above it (node ``h`` is at slot
    ``tree + h + (h & -4) + 4``; the children of ``h`` are ``4h + 4 .. 4h + 7``)."""
    content = np.int64(0)
    for c in range(n_classes):
        content += np.int64(popcount(bits[(pool * n_classes + c) * n_words + word])) * class_bytes[pool * n_classes + c]
    here = bottom + word
    while here >= 0:
        sums[tree + here + (here & -4) + 4] += content
        here = (here - 4) >> 2


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
def _lru_needs(experts, n_experts, pool_of_layer, class_of_layer, class_bytes, n_classes, needs_out):
    """Write to ``needs_out`` (every look-up, warm-up included, in ``(token, layer, k)`` order) the bytes of
    the distinct experts of its pool used since and including its previous use; first uses get ``NEVER``.

    ``class_of_layer``: index of the layer's expert size among its pool's sizes; ``class_bytes``: the bytes
    of each size class, ``n_classes`` per pool (0 where a pool has fewer sizes)."""
    n_tokens, n_layers, top_k = experts.shape
    n_items = n_layers * n_experts
    n_pools = class_bytes.shape[0] // n_classes
    largest_pool = largest_pool_items(pool_of_layer, n_pools, n_experts)
    width = np.int64(256)  # slots per pool: 64 x a power of 4 words
    while width < 4 * largest_pool or width < 2 * top_k:
        width *= 4
    n_words = width >> 6
    bottom = (n_words - 4) // 3  # first node of the bottom level (one node per word)
    span = 2 * (bottom + n_words)  # tree slots per pool
    bits = np.empty(n_pools * n_classes * n_words, np.uint64)
    for word in range(n_pools * n_classes * n_words):
        bits[word] = 0
    sums = np.empty(n_pools * span, np.int64)
    for node in range(n_pools * span):
        sums[node] = 0
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
            tree = pool * span
            # the pool's state lives in locals for the group so it stays in registers
            tail = tails[pool]
            total = totals[pool]
            if tail + top_k > width:
                tail = _compact(pool, n_experts, pool_of_layer, class_of_layer, n_classes, n_words, bits, item_slot,
                                live, rank_base)
                for node in range(tree, tree + span):
                    sums[node] = 0
                for word in range(tail >> 6):
                    _finish_word(bits, sums, class_bytes, pool, n_classes, n_words, tree, bottom, word)
            for k in range(top_k):
                item = np.uint64(base + np.int64(row[layer, k]))
                slot = np.int64(item_slot[item])
                need = NEVER
                if slot >= 0:
                    word = slot >> 6
                    below = (one << np.uint64(slot & 63)) - one
                    before = np.int64(popcount(bits[own_bits + np.uint64(word)] & below)) * size
                    for c in range(1, n_classes):  # the pool's other sizes: no loop when it has one size
                        other = cls + c - n_classes * np.int64(cls + c >= n_classes)
                        before += (np.int64(popcount(bits[np.uint64(pool_bits + other * n_words + word)] & below))
                                   * class_bytes[pool * n_classes + other])
                    bits[own_bits + np.uint64(word)] &= ~(one << np.uint64(slot & 63))
                    removed = size * np.int64(word < (tail >> 6))  # the word being filled is not in the tree
                    here = bottom + word
                    while here >= 0:
                        node = np.uint64(tree + here + (here & -4) + 4)
                        before += sums[node - np.uint64(1)] + sums[node - np.uint64(2)] + sums[node - np.uint64(3)]
                        sums[node] -= removed
                        here = (here - 4) >> 2
                    need = total - before
                    total -= size
                bits[own_bits + np.uint64(tail >> 6)] |= one << np.uint64(tail & 63)
                total += size
                item_slot[item] = tail
                tail += 1
                if tail & 63 == 0:
                    _finish_word(bits, sums, class_bytes, pool, n_classes, n_words, tree, bottom, (tail >> 6) - 1)
                needs_out[out] = need
                out += one
            tails[pool] = tail
            totals[pool] = total
