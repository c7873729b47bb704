"""Expert-cache replacement policies, all with one signature.

``_replay_<kernel>(experts, n_experts, item_bytes_by_layer, pool_of_layer, pool_capacity, warmup_tokens,
aux, misses_out, ...)``: `_replay_lru` (LRU, and LRU with prefetch: three more arguments), `_replay_static`
(NumPy: it has no state), `_replay_queues` for FIFO, S3-FIFO and LFU and `_replay_heap` for both Belady
variants (these two take one more argument, ``rule``). Each kernel costs a compile, so policies that
share a data structure share a kernel.

- ``experts``: (n_tokens, n_layers, top_k) uint8/uint16 routed expert ids.
- ``item_bytes_by_layer``: int64 (n_layers,) bytes of one expert in each layer.
- ``pool_of_layer``: int64 (n_layers,) pool of each layer; ``pool_capacity``: int64 (n_pools,) bytes.
- ``warmup_tokens``: the first tokens warm the cache but are not counted.
- ``aux``: int64 policy input (Belady: next-use of every look-up; static: 1 for pinned items; else empty).
- ``misses_out``: int32 (n_tokens - warmup_tokens, n_layers), written with the misses of each counted
  (token, layer).

Shared rule: on a miss the policy evicts until the new expert fits or its pool is empty, then inserts it
only if it fits. An expert larger than its whole pool is therefore never cached (and, for LRU, empties the
pool: this keeps LRU a stack algorithm, so the one-pass curve in `mrc.py` is exact at every capacity).
"""

from __future__ import annotations

import numpy as np

from moesim.kernels._jit import jit, jit_helper
from moesim.kernels.core import item_sizes, largest_pool_items, link_after, pool_starts, trailing_zeros, unlink


LRU_RING_PER_EXPERT = 4  # ring slots per expert of a pool: renumbering runs at most once per 3 x n_experts uses


@jit
def _replay_lru(experts, n_experts, item_bytes_by_layer, pool_of_layer, pool_capacity, warmup_tokens, aux, misses_out,
                predicted, prefetch_bytes_out, useful_bytes_out):
    """Least recently used, as use times with a bitset of live times per pool; with prefetch when
    ``predicted`` has columns.

    Every use gets the pool's next time; ``last[expert]`` is the expert's latest one. The residents are
    exactly the experts whose latest use is at or after the pool's ``head`` (times before it are evicted),
    so the hit test is one comparison and eviction never writes to the evicted expert. A bitset marks the
    live times (each resident's latest use); the oldest resident is the first set bit at or after
    ``head`` (trailing-zero count). The first eviction of a look-up is computed whether or not it is
    needed and applied with arithmetic, not a branch: on this stream about half the look-ups miss, so
    a hit/miss branch is mispredicted often and costs more than the spare work. Times live in a ring of
    ``ring`` slots per pool; when the live window nears the ring's size (a cache that rarely evicts), the
    live times are renumbered to the newest ones, keeping their order. An expert larger than its pool
    needs no special case: it is recorded as the newest use, then evicted after every other resident.
    Indices on the hot path are unsigned (every one is non-negative: the masks see to it), which skips
    Numba's negative-index fix-up on each access: 1.2-1.3x look-ups per second.

    Prefetch (see `moesim.cache.PrefetchSpec`): after the look-ups of a position, each expert predicted for
    the next position (``predicted[t, l]``, -1 = none) that is not resident is loaded into its pool as the
    newest use, evicting like a miss. ``pending[expert]`` is 1 while the expert's latest use is a counted
    prefetch; a look-up that hits it makes those bytes useful. Every counted prefetch is either used that
    way or wasted (evicted unused, or unused at the end), so wasted = prefetched - useful, and every total
    is a sum of ``prefetch_bytes_out`` / ``useful_bytes_out`` (per counted token). One kernel for both: the
    loaded-expert bookkeeping is a few lines here, a kernel of its own was a second full compile."""
    n_tokens, n_layers, top_k = experts.shape
    width = predicted.shape[2]
    prefetching = width > 0
    n_items = n_layers * n_experts
    n_pools = pool_capacity.shape[0]
    largest_pool = largest_pool_items(pool_of_layer, n_pools, n_experts)
    ring = np.int64(64)
    while ring < LRU_RING_PER_EXPERT * largest_pool or ring < 2 * (top_k + width):
        ring *= 2
    slot_mask = ring - 1
    ring_words = ring // 64
    word_mask = ring_words - 1
    live = np.empty(n_pools * ring_words, np.uint64)
    for word in range(n_pools * ring_words):
        live[word] = 0
    queue = np.empty(n_pools * ring, np.int32)  # expert of each live time (only live times are read)
    renumbered = np.empty(largest_pool, np.int32)
    last = np.empty(n_items, np.int32)  # latest use; far below every head: never used
    pending = np.empty(n_items, np.int32)
    for item in range(n_items):
        last[item] = -(1 << 30)
        pending[item] = 0
    heads = np.empty(n_pools, np.int64)
    tails = np.empty(n_pools, np.int64)
    used = np.empty(n_pools, np.int64)
    pool_size = np.empty(n_pools, np.int64)  # bytes of every expert of the pool, or -1 for mixed sizes
    for p in range(n_pools):
        heads[p] = 0
        tails[p] = 0
        used[p] = 0
        pool_size[p] = 0
    for layer in range(n_layers):
        p = pool_of_layer[layer]
        if pool_size[p] == 0:
            pool_size[p] = item_bytes_by_layer[layer]
        elif pool_size[p] != item_bytes_by_layer[layer]:
            pool_size[p] = -1
    sizes = np.empty(n_items, np.int64)
    item_sizes(item_bytes_by_layer, n_experts, sizes)
    one = np.uint64(1)
    for t in range(n_tokens):
        row = experts[t]
        counted = t >= warmup_tokens
        for layer in range(n_layers):
            base = layer * n_experts
            size = item_bytes_by_layer[layer]
            pool = pool_of_layer[layer]
            capacity = pool_capacity[pool]
            uniform = pool_size[pool] > 0
            words = pool * ring_words
            slots = pool * ring
            # the pool's state lives in locals for the group so it stays in registers
            head = heads[pool]
            tail = tails[pool]
            in_use = used[pool]
            misses = np.int64(0)
            useful = np.int64(0)
            if tail - head > ring - top_k:
                head = _renumber(live, queue, last, renumbered, words, word_mask, slots, slot_mask, head, tail)
            uwords = np.uint64(words)
            umask = np.uint64(word_mask)
            for k in range(top_k):
                item = np.uint64(base + np.int64(row[layer, k]))
                previous = np.int64(last[item])
                hit = previous >= head
                if prefetching:
                    useful += size * (np.int64(hit) & np.int64(pending[item]))
                    pending[item] = 0
                last[item] = tail
                queue[np.uint64(slots + (tail & slot_mask))] = item
                live[uwords + (np.uint64(previous >> 6) & umask)] &= ~((one << np.uint64(previous & 63)) * np.uint64(hit))
                live[uwords + (np.uint64(tail >> 6) & umask)] |= one << np.uint64(tail & 63)
                tail += 1
                miss = 1 - np.int64(hit)
                misses += miss
                in_use += miss * size
                oldest = _first_live(live, words, word_mask, head)
                evict = np.int64(in_use > capacity)
                live[uwords + (np.uint64(oldest >> 6) & umask)] &= ~((one << np.uint64(oldest & 63)) * np.uint64(evict))
                head += evict * (oldest + 1 - head)
                # with one expert size the evicted bytes are known without two dependent loads
                freed = size if uniform else sizes[queue[slots + (oldest & slot_mask)]]
                in_use -= evict * freed
                if in_use > capacity:  # mixed sizes: a big expert can need several evictions
                    head, in_use = _evict_until_fits(live, queue, sizes, words, word_mask, slots, slot_mask, head,
                                                     in_use, capacity)
            heads[pool] = head
            tails[pool] = tail
            used[pool] = in_use
            if counted:
                misses_out[t - warmup_tokens, layer] = misses
            if not prefetching:
                continue
            if counted:
                useful_bytes_out[t - warmup_tokens] += useful
            next_t = t + (layer + 1) // n_layers  # the next position: layer + 1, or layer 0 of the next token
            next_layer = (layer + 1) % n_layers
            if next_t == n_tokens:
                continue
            base = next_layer * n_experts
            size = item_bytes_by_layer[next_layer]
            pool = pool_of_layer[next_layer]
            capacity = pool_capacity[pool]
            words = pool * ring_words
            slots = pool * ring
            head = heads[pool]
            tail = tails[pool]
            in_use = used[pool]
            if tail - head > ring - width:
                head = _renumber(live, queue, last, renumbered, words, word_mask, slots, slot_mask, head, tail)
            loaded = np.int64(0)
            for j in range(width):
                guess = np.int64(predicted[next_t, next_layer, j])
                if guess < 0 or last[base + guess] >= head:
                    continue
                item = base + guess
                last[item] = tail
                queue[slots + (tail & slot_mask)] = item
                live[words + ((tail >> 6) & word_mask)] |= one << np.uint64(tail & 63)
                tail += 1
                in_use += size
                head, in_use = _evict_until_fits(live, queue, sizes, words, word_mask, slots, slot_mask, head, in_use,
                                                 capacity)
                if counted and size <= capacity:  # a bigger expert emptied the pool and left with it
                    pending[item] = 1
                    loaded += size
            heads[pool] = head
            tails[pool] = tail
            used[pool] = in_use
            if counted:
                prefetch_bytes_out[t - warmup_tokens] += loaded


@jit_helper
def _evict_until_fits(live, queue, sizes, words, word_mask, slots, slot_mask, head, in_use, capacity):
    """Evict the pool's oldest residents while it holds more than ``capacity`` bytes; returns the new
    (head, bytes in use)."""
    one = np.uint64(1)
    while in_use > capacity:
        oldest = _first_live(live, words, word_mask, head)
        live[words + ((oldest >> 6) & word_mask)] &= ~(one << np.uint64(oldest & 63))
        head = oldest + 1
        in_use -= sizes[queue[slots + (oldest & slot_mask)]]
    return head, in_use


@jit_helper
def _renumber(live, queue, last, renumbered, words, word_mask, slots, slot_mask, head, tail):
    """Renumber one pool's live times to the newest ones before ``tail``, keeping their order, so the
    ring has room again; returns the new head."""
    one = np.uint64(1)
    n_live = np.int64(0)
    for time in range(head, tail):
        word = words + ((time >> 6) & word_mask)
        bit = one << np.uint64(time & 63)
        if live[word] & bit:
            renumbered[n_live] = queue[slots + (time & slot_mask)]
            n_live += 1
            live[word] &= ~bit
    head = tail - n_live
    for j in range(n_live):
        time = head + j
        queue[slots + (time & slot_mask)] = renumbered[j]
        last[renumbered[j]] = time
        live[words + ((time >> 6) & word_mask)] |= one << np.uint64(time & 63)
    return head


@jit_helper
def _first_live(live, words, word_mask, time):
    """First live time at or after ``time`` (one exists: the look-up just recorded)."""
    uwords = np.uint64(words)
    umask = np.uint64(word_mask)
    word = live[uwords + (np.uint64(time >> 6) & umask)] >> np.uint64(time & 63)
    while word == 0:
        time = (time | 63) + 1
        word = live[uwords + (np.uint64(time >> 6) & umask)]
    return time + np.int64(trailing_zeros(word))


def _replay_static(experts, n_experts, item_bytes_by_layer, pool_of_layer, pool_capacity, warmup_tokens, aux, misses_out):
    """Static pinning: ``aux[item] == 1`` marks pinned experts (chosen by the wrapper); nothing else is
    ever cached, so a look-up hits exactly when its expert is pinned.

    NumPy, not a kernel: without cache state every look-up is independent, one gather per layer is about
    as fast as a loop, and it saves a compile."""
    n_layers = item_bytes_by_layer.shape[0]
    unpinned = (aux == 0).astype(np.int32)
    counted = experts[warmup_tokens:]
    layer_base = np.arange(n_layers, dtype=np.intp) * n_experts
    misses_out[:] = 0
    for k in range(experts.shape[2]):  # one gather per rank k over every (token, layer): no short-axis sums
        misses_out += unpinned[counted[:, :, k] + layer_base]


# ---- Belady: one 8-ary min-heap of int64 keys per pool -------------------------------------------------

# 8 children per node: Belady's hits move an entry up (its next use grows), and a heap of 3712 experts is
# 4 levels deep instead of 12 -- 1.35-1.45x Belady look-ups per second than with 2.
HEAP_ARITY_BITS = 3
HEAP_BELADY = 0  # MIN with bypass (policy `belady`)
HEAP_BELADY_DEMAND = 1  # MIN inserting every miss (policy `belady-demand`)


@jit_helper
def _sift_up(heap, heap_key, heap_pos, start, pos):
    """Keys sit in an array of their own, so a level's children are compared on adjacent int64s."""
    item = heap[start + pos]
    key = heap_key[start + pos]
    while pos > 0:
        parent = (pos - 1) >> HEAP_ARITY_BITS
        if heap_key[start + parent] <= key:
            break
        other = heap[start + parent]
        heap[start + pos] = other
        heap_key[start + pos] = heap_key[start + parent]
        heap_pos[other] = pos
        pos = parent
    heap[start + pos] = item
    heap_key[start + pos] = key
    heap_pos[item] = pos


@jit_helper
def _sift_down(heap, heap_key, heap_pos, start, count, pos):
    item = heap[start + pos]
    key = heap_key[start + pos]
    while True:
        first = (pos << HEAP_ARITY_BITS) + 1
        if first >= count:
            break
        child = first
        best = heap_key[start + first]
        for other_child in range(first + 1, min(first + (1 << HEAP_ARITY_BITS), count)):
            other_key = heap_key[start + other_child]
            if other_key < best:
                best = other_key
                child = other_child
        if best >= key:
            break
        other = heap[start + child]
        heap[start + pos] = other
        heap_key[start + pos] = best
        heap_pos[other] = pos
        pos = child
    heap[start + pos] = item
    heap_key[start + pos] = key
    heap_pos[item] = pos


@jit
def _replay_heap(experts, n_experts, item_bytes_by_layer, pool_of_layer, pool_capacity, warmup_tokens, aux, misses_out,
                 rule):
    """Belady's policies: evict the resident with the smallest key, kept in an 8-ary min-heap per pool.
    ``rule``:

    - `HEAP_BELADY`: Belady's MIN; ``aux`` holds each look-up's next use (``next_use_times``), the key
      is its negation, so the furthest next use is evicted first. Only residents used later than the
      new expert are evicted; if it still does not fit it bypasses the cache. With one expert size
      this is the optimal offline policy; with mixed sizes the classic size-unaware heuristic.
    - `HEAP_BELADY_DEMAND`: MIN that inserts every miss (libCacheSim's `Belady`), optimal among
      policies that must insert every miss.
    One kernel for both: each kernel costs a compile. Negating the next uses turns MIN's max-heap into a
    min-heap with the same comparisons, so evictions (ties included) are unchanged."""
    n_tokens, n_layers, top_k = experts.shape
    n_items = n_layers * n_experts
    n_pools = pool_capacity.shape[0]
    bypass = rule == HEAP_BELADY
    sizes = np.empty(n_items, np.int64)
    item_sizes(item_bytes_by_layer, n_experts, sizes)
    starts = np.empty(n_pools + 1, np.int64)
    pool_starts(pool_of_layer, n_experts, starts)
    heap = np.empty(n_items, np.int64)
    heap_key = np.empty(n_items, np.int64)
    heap_pos = np.empty(n_items, np.int64)
    for item in range(n_items):
        heap_pos[item] = -1
    count = np.empty(n_pools, np.int64)
    used = np.empty(n_pools, np.int64)
    for p in range(n_pools):
        count[p] = 0
        used[p] = 0
    position = np.int64(0)
    for t in range(n_tokens):
        for layer in range(n_layers):
            base = layer * n_experts
            size = item_bytes_by_layer[layer]
            pool = pool_of_layer[layer]
            start = starts[pool]
            capacity = pool_capacity[pool]
            misses = np.int64(0)
            for k in range(top_k):
                item = base + np.int64(experts[t, layer, k])
                slot = heap_pos[item]
                if slot >= 0:
                    key = -aux[position]
                    previous = heap_key[start + slot]
                    heap_key[start + slot] = key
                    if key < previous:  # always, with true next uses: the next use moved later
                        _sift_up(heap, heap_key, heap_pos, start, slot)
                    else:
                        _sift_down(heap, heap_key, heap_pos, start, count[pool], slot)
                else:
                    misses += 1
                    key = -aux[position]
                    in_use = used[pool]
                    n = count[pool]
                    while in_use + size > capacity and n > 0:
                        if bypass and heap_key[start] >= key:
                            break
                        victim = heap[start]
                        heap_pos[victim] = -1
                        in_use -= sizes[victim]
                        n -= 1
                        if n > 0:
                            heap[start] = heap[start + n]
                            heap_key[start] = heap_key[start + n]
                            _sift_down(heap, heap_key, heap_pos, start, n, 0)
                    if in_use + size <= capacity:
                        heap[start + n] = item
                        heap_key[start + n] = key
                        _sift_up(heap, heap_key, heap_pos, start, n)
                        n += 1
                        in_use += size
                    used[pool] = in_use
                    count[pool] = n
                position += 1
            if t >= warmup_tokens:
                misses_out[t - warmup_tokens, layer] = misses


S3FIFO_SMALL_PERCENT = 10  # share of each pool given to the probationary FIFO (the paper's 10%)
S3FIFO_MAX_FREQ = 3


QUEUE_FIFO = 0
QUEUE_S3FIFO = 1
QUEUE_LFU = 2


@jit
def _replay_queues(experts, n_experts, item_bytes_by_layer, pool_of_layer, pool_capacity, warmup_tokens, aux,
                   misses_out, rule):
    """FIFO, S3-FIFO and LFU over linked queues. ``rule``:

    - `QUEUE_FIFO`: first in, first out -- hits change nothing, a miss evicts the oldest insertion (every
      expert enters the main queue and its counter never rises, so main's tail is always evicted).
    - `QUEUE_S3FIFO`: S3-FIFO (Yang et al., SOSP 2023): a small probationary FIFO (10% of the pool), a
      main FIFO with 2-bit reinsertion counters and a ghost history of experts evicted from the small queue.
    - `QUEUE_LFU`: least frequently used, counting uses since the expert entered the cache (reset on
      eviction), ties to the least recently used. One queue (bucket) per use count in use, the buckets of
      a pool in a list by count (Shah, Mitra and Matani's O(1) LFU): a hit moves the expert to the front of
      the bucket for one more use, creating it after its own if absent; the victim is the back of the
      pool's first bucket. An expert enters a bucket at a use and leaves it at its next one, so each bucket
      is ordered by last use, as the tie-break asks. (A heap keyed by (uses, last use) did this at a third
      of the speed.)
    One kernel for the three because each kernel costs a compile (FIFO had a ring-buffer kernel of its
    own, ~0.7 s of compile for a policy whose speed no one waits on).

    S3-FIFO's rules:

    - hit: the expert's counter += 1 (at most 3);
    - miss: insert into main if the expert is in the ghost history, else into small, counter 0;
    - evict: while small holds >= 10% of the pool, its tail moves to main when used (counter reset) or
      leaves to the ghost history when not; otherwise main's tail is reinserted with counter - 1 while
      its counter is positive, else evicted.
    The ghost history is a byte window: an expert is in it while less than the main queue's capacity of
    other ghost insertions has happened since its own (a FIFO of that many bytes, without a queue).
    """
    n_tokens, n_layers, top_k = experts.shape
    n_items = n_layers * n_experts
    n_pools = pool_capacity.shape[0]
    fifo = rule == QUEUE_FIFO
    lfu = rule == QUEUE_LFU
    max_freq = 0 if fifo else S3FIFO_MAX_FREQ
    small_percent = 0 if fifo else S3FIFO_SMALL_PERCENT
    sizes = np.empty(n_items, np.int64)
    item_sizes(item_bytes_by_layer, n_experts, sizes)
    # LFU buckets: ids 0..n_items (one more than can be non-empty, as a hit takes the next bucket before
    # it frees its own), then one sentinel bucket per pool heading its list of buckets (uses 0)
    n_spare = n_items + 1 if lfu else 0
    n_buckets = n_spare + n_pools if lfu else 0
    bucket_prev = np.empty(n_buckets, np.int32)
    bucket_next = np.empty(n_buckets, np.int32)
    bucket_uses = np.empty(n_buckets, np.int64)
    free_buckets = np.empty(n_buckets, np.int32)
    n_free = np.int64(0)
    for bucket in range(n_buckets):
        bucket_prev[bucket] = bucket
        bucket_next[bucket] = bucket
        bucket_uses[bucket] = 0
        if bucket < n_spare:
            free_buckets[n_free] = bucket
            n_free += 1
    # circular lists, one self-linked sentinel per queue: n_items + 2p: small, + 2p + 1: main; then the
    # sentinel of each LFU bucket's queue (bucket b: first_bucket_node + b)
    first_bucket_node = n_items + 2 * n_pools
    n_nodes = first_bucket_node + n_buckets
    prev = np.empty(n_nodes, np.int32)
    nxt = np.empty(n_nodes, np.int32)
    for node in range(n_nodes):
        prev[node] = node
        nxt[node] = node
    queue = np.empty(n_items, np.int32)  # 0: absent, 1: small, 2: main; LFU: bucket + 1 (int32: the np.empty LRU compiles)
    freq = np.empty(n_items, np.int32)
    ghost_stamp = np.empty(n_items, np.int64)
    for item in range(n_items):
        queue[item] = 0
        freq[item] = 0
        ghost_stamp[item] = -1
    ghost_clock = np.empty(n_pools, np.int64)
    small_bytes = np.empty(n_pools, np.int64)
    main_bytes = np.empty(n_pools, np.int64)
    small_cap = np.empty(n_pools, np.int64)
    for p in range(n_pools):
        ghost_clock[p] = 0
        small_bytes[p] = 0
        main_bytes[p] = 0
        small_cap[p] = pool_capacity[p] * small_percent // 100
    for t in range(n_tokens):
        for layer in range(n_layers):
            base = layer * n_experts
            size = item_bytes_by_layer[layer]
            pool = pool_of_layer[layer]
            small_head = n_items + 2 * pool
            main_head = small_head + 1
            capacity = pool_capacity[pool]
            small_share = small_cap[pool]
            # the pool's byte counts and ghost clock live in locals for the group
            small = small_bytes[pool]
            main = main_bytes[pool]
            clock = ghost_clock[pool]
            misses = np.int64(0)
            for k in range(top_k):
                item = base + np.int64(experts[t, layer, k])
                if lfu:
                    # `main` holds the pool's bytes; the pool's sentinel bucket heads its buckets by use count
                    head_bucket = n_spare + pool
                    if queue[item] != 0:
                        bucket = np.int64(queue[item]) - 1
                        uses = bucket_uses[bucket] + 1
                        after = np.int64(bucket_next[bucket])
                        if bucket_uses[after] != uses:  # the sentinel's 0 never equals a count >= 2
                            n_free -= 1
                            fresh = np.int64(free_buckets[n_free])
                            bucket_uses[fresh] = uses
                            bucket_prev[fresh] = bucket
                            bucket_next[fresh] = after
                            bucket_prev[after] = fresh
                            bucket_next[bucket] = fresh
                            after = fresh
                        unlink(prev, nxt, item)
                        link_after(prev, nxt, first_bucket_node + after, item)
                        queue[item] = after + 1
                        node = first_bucket_node + bucket
                        if nxt[node] == node:  # emptied: out of the list, back to the free stack
                            bucket_next[bucket_prev[bucket]] = bucket_next[bucket]
                            bucket_prev[bucket_next[bucket]] = bucket_prev[bucket]
                            free_buckets[n_free] = bucket
                            n_free += 1
                        continue
                    misses += 1
                    while main + size > capacity and bucket_next[head_bucket] != head_bucket:
                        bucket = np.int64(bucket_next[head_bucket])
                        node = first_bucket_node + bucket
                        victim = np.int64(prev[node])  # the least recently used of the fewest uses
                        unlink(prev, nxt, victim)
                        queue[victim] = 0
                        main -= sizes[victim]
                        if nxt[node] == node:
                            bucket_next[head_bucket] = bucket_next[bucket]
                            bucket_prev[bucket_next[bucket]] = head_bucket
                            free_buckets[n_free] = bucket
                            n_free += 1
                    if main + size <= capacity:
                        first = np.int64(bucket_next[head_bucket])
                        if bucket_uses[first] != 1:
                            n_free -= 1
                            fresh = np.int64(free_buckets[n_free])
                            bucket_uses[fresh] = 1
                            bucket_prev[fresh] = head_bucket
                            bucket_next[fresh] = first
                            bucket_prev[first] = fresh
                            bucket_next[head_bucket] = fresh
                            first = fresh
                        link_after(prev, nxt, first_bucket_node + first, item)
                        queue[item] = first + 1
                        main += size
                    continue
                if queue[item] != 0:
                    if freq[item] < max_freq:
                        freq[item] += 1
                    continue
                misses += 1
                while small + main + size > capacity and small + main > 0:
                    evicted = np.bool_(False)
                    if small >= small_share or main == 0:
                        while small > 0 and not evicted:
                            victim = np.int64(prev[small_head])
                            unlink(prev, nxt, victim)
                            small -= sizes[victim]
                            if freq[victim] >= 1:
                                freq[victim] = 0
                                queue[victim] = 2
                                link_after(prev, nxt, main_head, victim)
                                main += sizes[victim]
                            else:
                                queue[victim] = 0
                                clock += sizes[victim]
                                ghost_stamp[victim] = clock
                                evicted = True
                    while not evicted:
                        victim = np.int64(prev[main_head])
                        unlink(prev, nxt, victim)
                        if freq[victim] > 0:
                            freq[victim] -= 1
                            link_after(prev, nxt, main_head, victim)
                        else:
                            queue[victim] = 0
                            main -= sizes[victim]
                            evicted = True
                if small + main + size <= capacity:
                    freq[item] = 0
                    stamp = ghost_stamp[item]
                    if fifo or (stamp >= 0 and clock - stamp < capacity - small_share):
                        ghost_stamp[item] = -1
                        queue[item] = 2
                        anchor = main_head
                        main += size
                    else:
                        queue[item] = 1
                        anchor = small_head
                        small += size
                    link_after(prev, nxt, anchor, item)
            small_bytes[pool] = small
            main_bytes[pool] = main
            ghost_clock[pool] = clock
            if t >= warmup_tokens:
                misses_out[t - warmup_tokens, layer] = misses
