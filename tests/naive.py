"""Slow, obviously correct references for every cache kernel (STUMPY's `naive.py`).

Plain Python containers, one look-up at a time, written from the policy definitions in
`kernels/policies.py`, `kernels/mrc.py` and the prefetch predictors in `moesim/cache.py` -- not from the kernels' code.
Every function returns misses per (counted token, layer) as a list of lists.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


def pools(scope, capacity, layer_bytes):
    n_layers = len(layer_bytes)
    if scope == "global":
        return [0] * n_layers, [int(capacity)]
    if np.ndim(capacity) == 0:
        total = sum(int(b) for b in layer_bytes)
        return list(range(n_layers)), [int(capacity) * int(b) // total for b in layer_bytes]
    return list(range(n_layers)), [int(c) for c in capacity]


def lookups(experts):
    """(t, layer, expert) in trace order."""
    n_tokens, n_layers, top_k = experts.shape
    for t in range(n_tokens):
        for layer in range(n_layers):
            for k in range(top_k):
                yield t, layer, int(experts[t, layer, k])


def _tally(experts, warmup, events):
    """events: iterable of (t, layer, hit) -> misses per counted (token, layer)."""
    n_tokens, n_layers, _ = experts.shape
    misses = [[0] * n_layers for _ in range(n_tokens - warmup)]
    for t, layer, hit in events:
        if t >= warmup and not hit:
            misses[t - warmup][layer] += 1
    return misses


def lru(experts, capacity, layer_bytes, scope="global", warmup=0):
    pool_of, caps = pools(scope, capacity, layer_bytes)
    caches = [OrderedDict() for _ in caps]  # key -> size, last = most recent

    def events():
        for t, layer, e in lookups(experts):
            cache, cap, size = caches[pool_of[layer]], caps[pool_of[layer]], int(layer_bytes[layer])
            key = (layer, e)
            if key in cache:
                cache.move_to_end(key)
                yield t, layer, True
                continue
            while cache and sum(cache.values()) + size > cap:
                cache.popitem(last=False)
            if sum(cache.values()) + size <= cap:
                cache[key] = size
            yield t, layer, False

    return _tally(experts, warmup, events())


def fifo(experts, capacity, layer_bytes, scope="global", warmup=0):
    pool_of, caps = pools(scope, capacity, layer_bytes)
    caches = [OrderedDict() for _ in caps]

    def events():
        for t, layer, e in lookups(experts):
            cache, cap, size = caches[pool_of[layer]], caps[pool_of[layer]], int(layer_bytes[layer])
            key = (layer, e)
            if key in cache:
                yield t, layer, True
                continue
            while cache and sum(cache.values()) + size > cap:
                cache.popitem(last=False)
            if sum(cache.values()) + size <= cap:
                cache[key] = size
            yield t, layer, False

    return _tally(experts, warmup, events())


def lfu(experts, capacity, layer_bytes, scope="global", warmup=0):
    """Uses counted since insertion; victim = fewest uses, then least recent use."""
    pool_of, caps = pools(scope, capacity, layer_bytes)
    caches = [dict() for _ in caps]  # key -> [uses, last_clock, size]

    def events():
        clock = 0
        for t, layer, e in lookups(experts):
            clock += 1
            cache, cap, size = caches[pool_of[layer]], caps[pool_of[layer]], int(layer_bytes[layer])
            key = (layer, e)
            if key in cache:
                cache[key][0] += 1
                cache[key][1] = clock
                yield t, layer, True
                continue
            while cache and sum(v[2] for v in cache.values()) + size > cap:
                victim = min(cache, key=lambda k: (cache[k][0], cache[k][1]))
                del cache[victim]
            if sum(v[2] for v in cache.values()) + size <= cap:
                cache[key] = [1, clock, size]
            yield t, layer, False

    return _tally(experts, warmup, events())


def static(experts, capacity, layer_bytes, scope="global", warmup=0):
    """Pin the most used experts of the warm-up prefix (whole trace without one), greedily per pool."""
    pool_of, caps = pools(scope, capacity, layer_bytes)
    n_tokens, n_layers, _ = experts.shape
    n_experts = int(experts.max()) + 1
    measured = warmup if warmup > 0 else n_tokens
    counts = {}
    for t, layer, e in lookups(experts):
        if t < measured:
            counts[(layer, e)] = counts.get((layer, e), 0) + 1
    free = list(caps)
    pinned = set()
    for key in sorted(counts, key=lambda k: (-counts[k], k[0] * n_experts + k[1])):
        pool = pool_of[key[0]]
        if int(layer_bytes[key[0]]) <= free[pool]:
            pinned.add(key)
            free[pool] -= int(layer_bytes[key[0]])
    return _tally(experts, warmup, ((t, layer, (layer, e) in pinned) for t, layer, e in lookups(experts)))


def belady(experts, capacity, layer_bytes, scope="global", warmup=0, bypass=True):
    """MIN with bypass: evict residents whose next use is later than the newcomer's, furthest first.
    Without bypass every miss is inserted, evicting the furthest next uses."""
    pool_of, caps = pools(scope, capacity, layer_bytes)
    seq = list(lookups(experts))
    n = len(seq)
    next_use = [n] * n
    seen = {}
    for i in range(n - 1, -1, -1):
        key = (seq[i][1], seq[i][2])
        next_use[i] = seen.get(key, n)
        seen[key] = i
    caches = [dict() for _ in caps]  # key -> next use

    def events():
        for i, (t, layer, e) in enumerate(seq):
            cache, cap, size = caches[pool_of[layer]], caps[pool_of[layer]], int(layer_bytes[layer])
            key = (layer, e)
            if key in cache:
                cache[key] = next_use[i]
                yield t, layer, True
                continue
            while cache and sum(int(layer_bytes[k[0]]) for k in cache) + size > cap:
                victim = max(cache, key=lambda k: cache[k])
                if bypass and cache[victim] <= next_use[i]:
                    break
                del cache[victim]
            if sum(int(layer_bytes[k[0]]) for k in cache) + size <= cap:
                cache[key] = next_use[i]
            yield t, layer, False

    return _tally(experts, warmup, events())


def s3fifo(experts, capacity, layer_bytes, scope="global", warmup=0):
    """S3-FIFO as specified in `kernels/policies.py`: small 10% FIFO, main FIFO, byte-window ghost."""
    pool_of, caps = pools(scope, capacity, layer_bytes)
    small = [OrderedDict() for _ in caps]  # key -> size, first = oldest
    main = [OrderedDict() for _ in caps]
    freq = {}
    ghost = [dict() for _ in caps]  # key -> ghost clock after its insertion
    clock = [0 for _ in caps]

    def used(p):
        return sum(small[p].values()) + sum(main[p].values())

    def evict(p):
        if sum(small[p].values()) >= caps[p] * 10 // 100 or not main[p]:
            while small[p]:
                key, size = small[p].popitem(last=False)
                if freq[key] >= 1:
                    freq[key] = 0
                    main[p][key] = size
                else:
                    clock[p] += size
                    ghost[p][key] = clock[p]
                    return
        while True:
            key, size = main[p].popitem(last=False)
            if freq[key] > 0:
                freq[key] -= 1
                main[p][key] = size
            else:
                return

    def events():
        for t, layer, e in lookups(experts):
            p, size, key = pool_of[layer], int(layer_bytes[layer]), (layer, e)
            if key in small[p] or key in main[p]:
                freq[key] = min(freq[key] + 1, 3)
                yield t, layer, True
                continue
            while used(p) > 0 and used(p) + size > caps[p]:
                evict(p)
            if used(p) + size <= caps[p]:
                freq[key] = 0
                window = caps[p] - caps[p] * 10 // 100
                if key in ghost[p] and clock[p] - ghost[p][key] < window:
                    del ghost[p][key]
                    main[p][key] = size
                else:
                    small[p][key] = size
            yield t, layer, False

    return _tally(experts, warmup, events())


def belady_demand(experts, capacity, layer_bytes, scope="global", warmup=0):
    return belady(experts, capacity, layer_bytes, scope, warmup, bypass=False)


POLICIES = {
    "lru": lru,
    "lfu": lfu,
    "fifo": fifo,
    "static": static,
    "belady": belady,
    "s3fifo": s3fifo,
    "belady-demand": belady_demand,
}


def lru_needs(experts, layer_bytes, scope="global", warmup=0):
    """Smallest capacity at which LRU hits each counted look-up, from an explicit recency stack."""
    pool_of, _ = pools(scope, 0, layer_bytes)
    stacks = {}
    needs = []
    for t, layer, e in lookups(experts):
        stack = stacks.setdefault(pool_of[layer], [])  # most recent first
        key = (layer, e)
        if key in stack:
            depth = stack.index(key)
            need = sum(int(layer_bytes[k[0]]) for k in stack[: depth + 1])
            stack.pop(depth)
        else:
            need = None
        stack.insert(0, key)
        if t >= warmup:
            needs.append(need)
    return needs


def lru_prefetch(experts, capacity, layer_bytes, predicted, scope="global", warmup=0):
    """LRU where, after each position's look-ups, the next position's predicted experts are loaded.
    Returns (misses, prefetch bytes per counted token, useful bytes per counted token,
    (prefetched, useful, wasted) totals)."""
    pool_of, caps = pools(scope, capacity, layer_bytes)
    n_tokens, n_layers, top_k = experts.shape
    caches = [OrderedDict() for _ in caps]
    pending = {}  # key -> counted?
    misses = [[0] * n_layers for _ in range(n_tokens - warmup)]
    fetched = [0] * (n_tokens - warmup)
    useful = [0] * (n_tokens - warmup)
    totals = [0, 0, 0]

    def load(key, size, pool):
        cache = caches[pool]
        while cache and sum(cache.values()) + size > caps[pool]:
            victim, victim_size = cache.popitem(last=False)
            if pending.pop(victim, False):
                totals[2] += victim_size
        if sum(cache.values()) + size <= caps[pool]:
            cache[key] = size
            return True
        return False

    for t in range(n_tokens):
        for layer in range(n_layers):
            pool, size = pool_of[layer], int(layer_bytes[layer])
            for k in range(top_k):
                key = (layer, int(experts[t, layer, k]))
                if key in caches[pool]:
                    caches[pool].move_to_end(key)
                    if key in pending and pending.pop(key):
                        totals[1] += size
                        if t >= warmup:
                            useful[t - warmup] += size
                else:
                    if t >= warmup:
                        misses[t - warmup][layer] += 1
                    load(key, size, pool)
            nt, nl = (t, layer + 1) if layer + 1 < n_layers else (t + 1, 0)
            if nt >= n_tokens:
                continue
            npool, nsize = pool_of[nl], int(layer_bytes[nl])
            for guess in predicted[nt, nl]:
                key = (nl, int(guess))
                if guess < 0 or key in caches[npool]:
                    continue
                if load(key, nsize, npool):
                    pending[key] = t >= warmup
                    if t >= warmup:
                        totals[0] += nsize
                        fetched[t - warmup] += nsize
    totals[2] += sum(int(layer_bytes[k[0]]) for k, counted in pending.items() if counted)
    return misses, fetched, useful, tuple(totals)


def cooccurrence_predictions(experts, train_tokens, width):
    """Score = summed counts of (previous-position expert -> candidate) learned on the first tokens,
    over candidates among each previous expert's `width` best successors; keep the best `width`."""
    n_tokens, n_layers, top_k = experts.shape

    def following(t, layer):
        return (t, layer + 1) if layer + 1 < n_layers else (t + 1, 0)

    counts = {}
    for t in range(min(train_tokens, n_tokens)):
        for layer in range(n_layers):
            nt, nl = following(t, layer)
            if nt >= min(train_tokens, n_tokens):
                continue
            for a in experts[t, layer]:
                for b in experts[nt, nl]:
                    counts[(layer, int(a), int(b))] = counts.get((layer, int(a), int(b)), 0) + 1
    out = np.full((n_tokens, n_layers, width), -1, np.int32)
    for t in range(n_tokens):
        for layer in range(n_layers):
            pt, pl = (t, layer - 1) if layer > 0 else (t - 1, n_layers - 1)
            if pt < 0:
                continue
            sources = [int(a) for a in experts[pt, pl]]
            candidates = set()
            for a in sources:
                ranked = sorted(((-c, b) for (l2, a2, b), c in counts.items() if l2 == pl and a2 == a))
                candidates.update(b for _, b in ranked[:width])
            scored = sorted((-sum(counts.get((pl, a, b), 0) for a in sources), b) for b in candidates)
            chosen = [b for s, b in scored if s < 0][:width]
            out[t, layer, : len(chosen)] = chosen
    return out


def oracle_predictions(experts, n_experts, keep, wrong_draws):
    """Slot k names the routed expert where `keep`, else the `wrong_draws`-th expert (0-based, id order)
    that is not routed at that position, or -1 when there is none or an earlier slot already named it."""
    n_tokens, n_layers, top_k = experts.shape
    out = np.full((n_tokens, n_layers, top_k), -1, np.int32)
    for t in range(n_tokens):
        for layer in range(n_layers):
            routed = {int(e) for e in experts[t, layer]}
            not_routed = [e for e in range(n_experts) if e not in routed]
            named = []
            for k in range(top_k):
                if keep[t, layer, k]:
                    out[t, layer, k] = experts[t, layer, k]
                    continue
                rank = int(wrong_draws[t, layer, k])
                guess = not_routed[rank] if rank < len(not_routed) else -1
                if guess >= 0 and guess not in named:
                    named.append(guess)
                    out[t, layer, k] = guess
    return out
