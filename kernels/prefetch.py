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

from moesim.kernels._jit import jit
from moesim.kernels.core import item_sizes
from moesim.kernels.policies import _queue_compact, _queue_regions

NOT_PREFETCHED = 0
PREFETCHED_UNCOUNTED = 1  # loaded during warm-up: its use or waste is not counted either
PREFETCHED_COUNTED = 2


@jit
def _make_room(queue, where, pending, sizes, head, in_use, size, capacity):
    """Evict LRU residents until ``size`` more bytes fit or the pool is empty.
    Returns (head, in_use, wasted bytes of counted prefetches evicted unused)."""
    wasted = 0
    while in_use + size > capacity and in_use > 0:
        victim = queue[head]
        while where[victim] != head:
            head += 1
            victim = queue[head]
        head += 1
        where[victim] = -1
        in_use -= sizes[victim]
        if pending[victim] == PREFETCHED_COUNTED:
            wasted += sizes[victim]
        pending[victim] = NOT_PREFETCHED
    return head, in_use, wasted


@jit
def _admit(queue, where, pending, sizes, heads, used, pool, size, capacity):
    """Make room for ``size`` bytes in ``pool`` (updating its head and bytes in use) and reserve them if
    they fit. Returns (admitted, wasted bytes of counted prefetches evicted unused)."""
    head, in_use, wasted = _make_room(queue, where, pending, sizes, heads[pool], used[pool], size, capacity)
    heads[pool] = head
    used[pool] = in_use
    if in_use + size > capacity:
        return False, wasted
    used[pool] = in_use + size
    return True, wasted


@jit
def _push(queue, where, starts, heads, tails, pool, item):
    """Append ``item`` as the pool's most recent use, compacting the pool's queue region when it is full."""
    tail = tails[pool]
    if tail == starts[pool + 1]:
        tail = _queue_compact(queue, where, starts[pool], heads[pool], tail)
        heads[pool] = starts[pool]
    where[item] = tail
    queue[tail] = item
    tails[pool] = tail + 1


@jit
def _replay_lru_prefetch(experts, n_experts, item_bytes_by_layer, pool_of_layer, pool_capacity, warmup_tokens,
                         predicted, misses_out, prefetch_bytes_out, useful_bytes_out, totals_out):
    """LRU replay with prefetch. ``totals_out`` receives (prefetched, useful, wasted) bytes."""
    n_tokens, n_layers, top_k = experts.shape
    width = predicted.shape[2]
    n_items = n_layers * n_experts
    n_pools = pool_capacity.shape[0]
    sizes = item_sizes(item_bytes_by_layer, n_experts)
    starts = _queue_regions(pool_of_layer, n_pools, n_experts)
    queue = np.empty(starts[n_pools], np.int32)
    heads = np.empty(n_pools, np.int64)
    for p in range(n_pools):
        heads[p] = starts[p]
    tails = np.empty(n_pools, np.int64)
    for p in range(n_pools):
        tails[p] = starts[p]
    where = np.empty(n_items, np.int32)
    where[:] = -1
    pending = np.empty(n_items, np.int8)
    pending[:] = 0
    used = np.empty(n_pools, np.int64)
    used[:] = 0
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
                _push(queue, where, starts, heads, tails, pool, item)
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
                _push(queue, where, starts, heads, tails, pool, item)
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
    routed = np.empty(n_experts, np.bool_)
    routed[:] = False
    for t in range(n_tokens):
        for layer in range(n_layers):
            for k in range(top_k):
                routed[experts[t, layer, k]] = True
            for k in range(top_k):
                if keep[t, layer, k]:
                    out[t, layer, k] = experts[t, layer, k]
                    continue
                rank = wrong_draws[t, layer, k]
                guess = -1
                for e in range(n_experts):
                    if not routed[e]:
                        if rank == 0:
                            guess = e
                            break
                        rank -= 1
                for j in range(k):
                    if out[t, layer, j] == guess:
                        guess = -1
                out[t, layer, k] = guess
            for k in range(top_k):
                routed[experts[t, layer, k]] = False


@jit
def _cooccurrence_counts(experts, n_experts, n_train_tokens):
    """``counts[l, a, b]``: how often expert b was routed at the position after one routing expert a at
    layer l (layer l + 1, or layer 0 of the next token after the last layer), over the first tokens."""
    n_tokens, n_layers, top_k = experts.shape
    counts = np.empty((n_layers, n_experts, n_experts), np.int32)
    counts[:] = 0
    for t in range(min(n_train_tokens, n_tokens)):
        for layer in range(n_layers):
            next_t = t
            next_layer = layer + 1
            if next_layer == n_layers:
                next_t = t + 1
                next_layer = 0
            if next_t >= min(n_train_tokens, n_tokens):
                continue
            for i in range(top_k):
                a = experts[t, layer, i]
                for j in range(top_k):
                    counts[layer, a, experts[next_t, next_layer, j]] += 1
    return counts


@jit
def _predict_cooccurrence(experts, counts, successors, out):
    """For each position, score the candidate experts (the best learned successors of the experts
    routed at the previous position) by their summed co-occurrence counts; keep the best ``width``
    with a positive score, higher score first, then lower id. ``successors[l, a]``: a's best successors
    after layer l (-1 padded)."""
    n_tokens, n_layers, top_k = experts.shape
    width = out.shape[2]
    n_candidates = top_k * successors.shape[2]
    candidate = np.empty(n_candidates, np.int64)
    score = np.empty(n_candidates, np.int64)
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
            n = 0
            for i in range(top_k):
                a = experts[prev_t, prev_layer, i]
                for j in range(successors.shape[2]):
                    b = successors[prev_layer, a, j]
                    if b < 0:
                        break
                    duplicate = False
                    for c in range(n):
                        if candidate[c] == b:
                            duplicate = True
                            break
                    if duplicate:
                        continue
                    total = 0
                    for i2 in range(top_k):
                        total += counts[prev_layer, experts[prev_t, prev_layer, i2], b]
                    candidate[n] = b
                    score[n] = total
                    n += 1
            for j in range(min(width, n)):
                best = -1
                for c in range(n):
                    if score[c] > 0 and (best < 0 or score[c] > score[best]
                                         or (score[c] == score[best] and candidate[c] < candidate[best])):
                        best = c
                if best < 0:
                    break
                out[t, layer, j] = candidate[best]
                score[best] = 0
