"""Speculative prefetch of the next layer's experts into an LRU expert cache.

Positions are visited in trace order (token, layer). After the demand look-ups of a position, the experts
predicted for the *next* position -- layer + 1 of the same token, or layer 0 of the next token after the
last layer -- are loaded into that layer's pool unless already resident, as most recently used, evicting
LRU residents. ``predicted[t, layer]`` holds the experts predicted for position (t, layer) (-1 = none).

Prefetch and demand loads share the link, so the kernel reports bytes (the timing model turns them into
time): prefetched bytes per issuing token, useful bytes (a prefetched expert's first demand hit) per
token of use, and totals of prefetched, useful and wasted (evicted unused, or unused at the end) bytes.
A demand look-up that finds a prefetched expert is a hit.
"""

from __future__ import annotations

import numpy as np

from moesim.kernels._jit import jit, jit_helper
from moesim.kernels.core import item_sizes, pool_starts

NOT_PREFETCHED = 0
PREFETCHED_UNCOUNTED = 1  # loaded during warm-up: its use or waste is not counted either
PREFETCHED_COUNTED = 2
# Queue entries per expert of a pool. Compaction keeps at most one live entry per expert, so it runs at
# most once per 15 x n_experts pushes; 16 makes its cost negligible while the queue still fits in L2 for
# DeepSeek-sized pools (~1 MB of int32).
QUEUE_ENTRIES_PER_EXPERT = 16


@jit_helper
def _admit(queue, where, pending, sizes, heads, used, pool, size, capacity):
    """Evict the oldest residents of ``pool`` until ``size`` more bytes fit or the pool is empty, and
    reserve the bytes if they fit. Returns (admitted, wasted bytes of counted prefetches evicted unused)."""
    head = heads[pool]
    in_use = used[pool]
    wasted = 0
    while in_use + size > capacity and in_use > 0:
        victim = queue[head]
        while where[victim] != head:  # stale: the expert was pushed again later
            head += 1
            victim = queue[head]
        head += 1
        where[victim] = -1
        in_use -= sizes[victim]
        if pending[victim] == PREFETCHED_COUNTED:
            wasted += sizes[victim]
        pending[victim] = NOT_PREFETCHED
    heads[pool] = head
    if in_use + size > capacity:
        used[pool] = in_use
        return False, wasted
    used[pool] = in_use + size
    return True, wasted


@jit_helper
def _compact(queue, where, start, head, tail):
    """Drop stale entries from one pool's full queue region, keeping the order of the live ones and
    moving them to the front of the region. Returns the new tail (the new head is ``start``)."""
    kept = start
    for index in range(head, tail):
        item = queue[index]
        if where[item] == index:
            queue[kept] = item
            where[item] = kept
            kept += 1
    return kept


@jit
def _replay_lru_prefetch(experts, n_experts, item_bytes_by_layer, pool_of_layer, pool_capacity, warmup_tokens,
                         predicted, misses_out, prefetch_bytes_out, useful_bytes_out, totals_out):
    """LRU replay with prefetch, as a queue of uses per pool: a use appends the expert and leaves its
    older entry stale, eviction pops the oldest live entry. ``totals_out`` receives (prefetched, useful,
    wasted) bytes."""
    n_tokens, n_layers, top_k = experts.shape
    width = predicted.shape[2]
    n_items = n_layers * n_experts
    n_pools = pool_capacity.shape[0]
    sizes = np.empty(n_items, np.int64)
    item_sizes(item_bytes_by_layer, n_experts, sizes)
    starts = np.empty(n_pools + 1, np.int64)
    pool_starts(pool_of_layer, QUEUE_ENTRIES_PER_EXPERT * n_experts, starts)
    queue = np.empty(starts[n_pools], np.int32)
    heads = np.empty(n_pools, np.int64)
    tails = np.empty(n_pools, np.int64)
    used = np.empty(n_pools, np.int64)
    for p in range(n_pools):
        heads[p] = starts[p]
        tails[p] = starts[p]
        used[p] = 0
    where = np.empty(n_items, np.int32)  # index of the expert's live queue entry, -1: not resident
    pending = np.empty(n_items, np.int8)
    for item in range(n_items):
        where[item] = -1
        pending[item] = NOT_PREFETCHED
    prefetched_total = 0
    useful_total = 0
    wasted_total = 0
    for t in range(n_tokens):
        counted = t >= warmup_tokens
        for layer in range(n_layers):
            # demand look-ups of (t, layer)
            base = layer * n_experts
            size = item_bytes_by_layer[layer]
            pool = pool_of_layer[layer]
            misses = 0
            for k in range(top_k):
                item = base + np.int64(experts[t, layer, k])
                if where[item] < 0:
                    misses += 1
                    admitted, wasted = _admit(queue, where, pending, sizes, heads, used, pool, size, pool_capacity[pool])
                    wasted_total += wasted
                    if not admitted:
                        continue
                elif pending[item] != NOT_PREFETCHED:
                    if pending[item] == PREFETCHED_COUNTED:
                        useful_total += size
                        if counted:
                            useful_bytes_out[t - warmup_tokens] += size
                    pending[item] = NOT_PREFETCHED
                # appended at the back here and below rather than through a helper: LLVM does not inline
                # one that takes five arrays, and the call made this replay ~2x slower
                tail = tails[pool]
                if tail == starts[pool + 1]:
                    tail = _compact(queue, where, starts[pool], heads[pool], tail)
                    heads[pool] = starts[pool]
                where[item] = tail
                queue[tail] = item
                tails[pool] = tail + 1
            if counted:
                misses_out[t - warmup_tokens, layer] = misses
            # prefetch for the next position
            next_t = t
            next_layer = layer + 1
            if next_layer == n_layers:
                next_t = t + 1
                next_layer = 0
            if next_t >= n_tokens:
                continue
            base = next_layer * n_experts
            size = item_bytes_by_layer[next_layer]
            pool = pool_of_layer[next_layer]
            for j in range(width):
                guess = predicted[next_t, next_layer, j]
                if guess < 0:
                    continue
                item = base + np.int64(guess)
                if where[item] >= 0:
                    continue
                admitted, wasted = _admit(queue, where, pending, sizes, heads, used, pool, size, pool_capacity[pool])
                wasted_total += wasted
                if not admitted:
                    continue
                if counted:
                    pending[item] = PREFETCHED_COUNTED
                    prefetched_total += size
                    prefetch_bytes_out[t - warmup_tokens] += size
                else:
                    pending[item] = PREFETCHED_UNCOUNTED
                tail = tails[pool]
                if tail == starts[pool + 1]:
                    tail = _compact(queue, where, starts[pool], heads[pool], tail)
                    heads[pool] = starts[pool]
                where[item] = tail
                queue[tail] = item
                tails[pool] = tail + 1
    for item in range(n_items):
        if pending[item] == PREFETCHED_COUNTED:
            wasted_total += sizes[item]
    totals_out[0] = prefetched_total
    totals_out[1] = useful_total
    totals_out[2] = wasted_total


@jit
def _predict_oracle(experts, n_experts, keep, wrong_draws, out):
    """Oracle with a given accuracy: slot k keeps the true expert where ``keep``; otherwise it names
    a wrong expert, ``wrong_draws[t, l, k]`` in [0, n_experts - top_k) indexing the experts not routed
    at (t, l) in id order. A wrong guess that repeats an earlier guess of the same position is dropped."""
    n_tokens, n_layers, top_k = experts.shape
    routed = np.empty(n_experts, np.int8)  # int8, not bool: one less np.empty to compile
    for e in range(n_experts):
        routed[e] = 0
    for t in range(n_tokens):
        for layer in range(n_layers):
            for k in range(top_k):
                routed[experts[t, layer, k]] = 1
            for k in range(top_k):
                if keep[t, layer, k]:
                    out[t, layer, k] = experts[t, layer, k]
                    continue
                rank = wrong_draws[t, layer, k]
                guess = -1
                for e in range(n_experts):
                    if routed[e] == 0:
                        if rank == 0:
                            guess = e
                            break
                        rank -= 1
                for j in range(k):
                    if out[t, layer, j] == guess:
                        guess = -1
                out[t, layer, k] = guess
            for k in range(top_k):
                routed[experts[t, layer, k]] = 0


@jit
def _predict_cooccurrence(experts, counts, successors, out):
    """For each position, score the candidate experts (the best learned successors of the experts
    routed at the previous position) by their summed co-occurrence counts; keep the best ``width``
    with a positive score, higher score first, then lower id. ``counts[l, a, b]``: how often b followed
    a after layer l on the training prefix; ``successors[l, a]``: a's best successors after layer l
    (-1 padded). Both are learned by the wrapper with NumPy (one bincount, one partition)."""
    n_tokens, n_layers, top_k = experts.shape
    width = out.shape[2]
    n_candidates = top_k * successors.shape[2]
    candidate = np.empty(n_candidates, np.int64)
    score = np.empty(n_candidates, np.int64)
    seen = np.empty(counts.shape[2], np.int64)  # position at which an expert last became a candidate
    for e in range(counts.shape[2]):
        seen[e] = -1
    for t in range(n_tokens):
        for layer in range(n_layers):
            for j in range(width):
                out[t, layer, j] = -1
            prev_t = t
            prev_layer = layer - 1
            if prev_layer < 0:
                prev_t = t - 1
                prev_layer = n_layers - 1
            if prev_t < 0:
                continue
            position = t * n_layers + layer
            n = 0
            for i in range(top_k):
                a = experts[prev_t, prev_layer, i]
                for j in range(successors.shape[2]):
                    b = successors[prev_layer, a, j]
                    if b < 0:
                        break
                    if seen[b] == position:
                        continue
                    seen[b] = position
                    total = 0
                    for i2 in range(top_k):
                        total += counts[prev_layer, experts[prev_t, prev_layer, i2], b]
                    candidate[n] = b
                    score[n] = total
                    n += 1
            for j in range(width if width < n else n):
                best = -1
                for c in range(n):
                    if score[c] > 0 and (best < 0 or score[c] > score[best]
                                         or (score[c] == score[best] and candidate[c] < candidate[best])):
                        best = c
                if best < 0:
                    break
                out[t, layer, j] = candidate[best]
                score[best] = 0
