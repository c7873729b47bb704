"""Expert-cache replay: which routed-expert look-ups hit a cache of a given byte budget.

Thin public wrappers over the Numba kernels in `moesim.kernels` (STUMPY style): validate, normalise
dtypes, allocate outputs, call one private kernel, wrap the result in a frozen dataclass.

Model of the cache
- An *item* is one routed expert of one MoE layer; its size is that layer's expert bytes (layers may
  differ, e.g. Q4_K_M keeps ffn_down in Q6_K in half the layers).
- ``scope="global"``: one pool of ``capacity_bytes`` shared by all layers. ``scope="per-layer"``: one pool
  per layer; a scalar ``capacity_bytes`` is the *total* budget, split so that every layer can hold the
  same share of its own experts (``capacity * layer_bytes // sum(layer_bytes)``); pass an array of
  ``n_layers`` budgets to set each layer's pool explicitly.
- Look-ups are replayed in trace order (token, layer, k). The first ``warmup_tokens`` tokens warm the
  cache and are excluded from every count; per-token outputs cover the counted tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from moesim.errors import MoesimError


class PolicyKind(IntEnum):
    """Closed registry of replacement policies (`str(kind)` is the CLI name)."""

    LRU = 1
    LFU = 2
    FIFO = 3
    STATIC = 4
    BELADY = 5
    S3FIFO = 6
    BELADY_DEMAND = 7  # Belady without bypass (libCacheSim's `Belady`): every miss is inserted

    def __str__(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_str(cls, name: "str | PolicyKind") -> "PolicyKind":
        """Parse a policy name (case-insensitive; `opt` is an alias of `belady`)."""
        if isinstance(name, PolicyKind):
            return name
        key = str(name).strip().lower().replace("-", "").replace("_", "")
        aliases = {"opt": "belady", "min": "belady", "pin": "static", "pinned": "static"}
        key = aliases.get(key, key)
        for kind in cls:
            if str(kind).replace("-", "") == key:
                return kind
        from moesim.errors import unknown_id_error

        raise unknown_id_error("policy", str(name), [str(k) for k in cls])


def _kernel(kind: PolicyKind):
    """The kernel of a policy other than LRU (`run_lru_replay`) and its arguments after the common ones
    (see `kernels/policies.py`)."""
    from moesim.kernels import policies

    if kind is PolicyKind.STATIC:
        return policies._replay_static, ()
    if kind is PolicyKind.S3FIFO:
        return policies._replay_queues, (policies.QUEUE_S3FIFO,)
    if kind is PolicyKind.FIFO:
        return policies._replay_queues, (policies.QUEUE_FIFO,)
    if kind is PolicyKind.LFU:
        return policies._replay_queues, (policies.QUEUE_LFU,)
    rule = {PolicyKind.BELADY: policies.HEAP_BELADY, PolicyKind.BELADY_DEMAND: policies.HEAP_BELADY_DEMAND}[kind]
    return policies._replay_heap, (rule,)


POLICIES: tuple[str, ...] = tuple(str(k) for k in PolicyKind)
SCOPES: tuple[str, ...] = ("global", "per-layer")


@dataclass(frozen=True, eq=False)
class PrefetchResult:
    """Prefetch traffic of one replay (bytes per counted token; the totals are their sums)."""

    predictor: str
    prefetch_bytes: np.ndarray  # (n_counted_tokens,) int64: bytes speculatively loaded while on this token
    useful_bytes: np.ndarray  # (n_counted_tokens,) int64: prefetched bytes first used on this token

    @property
    def prefetch_bytes_total(self) -> int:
        return int(self.prefetch_bytes.sum())

    @property
    def useful_bytes_total(self) -> int:
        return int(self.useful_bytes.sum())

    @property
    def wasted_bytes_total(self) -> int:
        """Prefetched but evicted before use or never used by the end of the trace: every counted
        prefetch is either used once as a hit or wasted."""
        return self.prefetch_bytes_total - self.useful_bytes_total


@dataclass(frozen=True, eq=False)
class ReplayResult:
    """Outcome of one replay. Per-token arrays cover the counted tokens (after warm-up) only."""

    policy: str
    scope: str
    capacity_bytes: int  # total budget over all pools
    pool_capacity_bytes: tuple[int, ...]
    warmup_tokens: int
    hits: np.ndarray  # (n_counted_tokens, n_layers) int32
    misses: np.ndarray  # (n_counted_tokens, n_layers) int32
    demand_bytes: np.ndarray  # (n_counted_tokens,) int64: bytes loaded on demand misses
    bytes_fetched: np.ndarray  # (n_counted_tokens,) int64: demand + prefetch bytes over the link
    lookups: int
    hit_count: int
    miss_count: int
    hit_rate: float
    prefetch: PrefetchResult | None = None
    extras: dict = field(default_factory=dict)


def _as_experts(experts) -> np.ndarray:
    arr = np.asarray(experts)
    if arr.ndim != 3:
        raise MoesimError(f"experts must have shape (n_tokens, n_layers, top_k), got {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16):
        if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() > 65535):
            raise MoesimError("expert ids must be integers in 0..65535")
        arr = arr.astype(np.uint16)
    return np.ascontiguousarray(arr)


def _layer_bytes(expert_bytes_by_layer, n_layers: int) -> np.ndarray:
    """Bytes per MoE layer; accepts per-MoE-layer values or all-layer values with 0 for dense layers."""
    sizes = np.asarray(expert_bytes_by_layer, dtype=np.int64).reshape(-1)
    if sizes.shape[0] != n_layers:
        moe_only = sizes[sizes > 0]
        if moe_only.shape[0] != n_layers:
            raise MoesimError(
                f"expert_bytes_by_layer has {sizes.shape[0]} entries ({moe_only.shape[0]} non-zero) "
                f"but the trace has {n_layers} MoE layers"
            )
        sizes = moe_only
    if (sizes <= 0).any():
        raise MoesimError("every MoE layer's expert size must be a positive number of bytes")
    return np.ascontiguousarray(sizes)


def _n_experts(experts: np.ndarray, n_experts: int | None) -> int:
    observed = int(experts.max()) + 1 if experts.size else 1
    if n_experts is None:
        return observed
    if n_experts < observed:
        raise MoesimError(f"expert id {observed - 1} is out of range for {n_experts} experts")
    return int(n_experts)


def pool_layout(scope: str, capacity_bytes, layer_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pool_of_layer, pool_capacity)`` for a scope and a budget (see the module docstring)."""
    n_layers = layer_bytes.shape[0]
    cap = np.asarray(capacity_bytes)
    if scope == "global":
        if cap.ndim != 0:
            raise MoesimError("the global scope takes one capacity, not one per layer")
        capacity = int(cap)
        if capacity < 0:
            raise MoesimError(f"capacity must not be negative, got {capacity}")
        return np.zeros(n_layers, np.int64), np.array([capacity], np.int64)
    if scope == "per-layer":
        if cap.ndim == 0:
            capacity = int(cap)
            if capacity < 0:
                raise MoesimError(f"capacity must not be negative, got {capacity}")
            # Python ints: capacity * bytes can exceed int64 for TB budgets of large experts
            total = int(layer_bytes.sum())
            caps = np.array([capacity * int(b) // total for b in layer_bytes], np.int64)
        else:
            caps = cap.astype(np.int64).reshape(-1)
            if caps.shape[0] != n_layers:
                raise MoesimError(f"per-layer capacities need {n_layers} values, got {caps.shape[0]}")
            if (caps < 0).any():
                raise MoesimError("capacity must not be negative")
        return np.arange(n_layers, dtype=np.int64), caps
    raise MoesimError(f"unknown scope '{scope}' (choose from {', '.join(SCOPES)})")


def _check_warmup(warmup_tokens: int, n_tokens: int) -> int:
    warmup_tokens = int(warmup_tokens)
    if warmup_tokens < 0 or warmup_tokens > n_tokens:
        raise MoesimError(f"warmup_tokens must be in 0..{n_tokens}, got {warmup_tokens}")
    return warmup_tokens


def next_use_times(experts, n_experts: int | None = None) -> np.ndarray:
    """Flat index of the next look-up of the same expert for every look-up (``n_lookups`` = never).

    Belady's oracle input; compute it once per trace and pass it to `replay(..., next_use=...)`."""
    from moesim.kernels.core import next_use_times as kernel

    experts = _as_experts(experts)
    return kernel(experts, _n_experts(experts, n_experts))


def _checked_next_use(experts: np.ndarray, n_experts: int, next_use) -> np.ndarray:
    """Next-use times for Belady: the given ones as int64 (one per look-up), else computed."""
    if next_use is None:
        return next_use_times(experts, n_experts)
    next_use = np.asarray(next_use, np.int64)
    if next_use.shape != (experts.size,):
        raise MoesimError(f"next_use must hold one entry per look-up ({experts.size}), got shape {next_use.shape}")
    return next_use


def static_pins(experts, layer_bytes, pool_of_layer, pool_capacity, n_experts: int, warmup_tokens: int) -> np.ndarray:
    """1 for the experts static pinning keeps: per pool, the most used experts (counted on the warm-up
    prefix; on the whole trace when there is none -- an oracle placement), greedily while they fit.
    Ties go to the lower layer, then the lower expert id, so the choice is deterministic."""
    n_tokens, n_layers, _ = experts.shape
    prefix = experts[: warmup_tokens if warmup_tokens > 0 else n_tokens]
    counts = np.concatenate([np.bincount(prefix[:, layer].ravel(), minlength=n_experts) for layer in range(n_layers)])
    pins = np.zeros(n_layers * n_experts, np.int64)
    order = np.lexsort((np.arange(counts.shape[0]), -counts))  # most used first, then item id
    # the greedy fill is sequential (a big expert that does not fit leaves room for smaller ones);
    # Python ints make its loop several times faster than NumPy scalars
    uses, free = counts.tolist(), pool_capacity.tolist()
    pool_of_item = np.repeat(pool_of_layer, n_experts).tolist()
    bytes_of_item = np.repeat(layer_bytes, n_experts).tolist()
    for item in order.tolist():
        if uses[item] == 0:
            break
        pool = pool_of_item[item]
        if bytes_of_item[item] <= free[pool]:
            pins[item] = 1
            free[pool] -= bytes_of_item[item]
    return pins


def replay(
    experts,
    policy: "str | PolicyKind",
    capacity_bytes,
    expert_bytes_by_layer,
    scope: str = "global",
    warmup_tokens: int = 0,
    prefetch=None,
    *,
    n_experts: int | None = None,
    next_use: np.ndarray | None = None,
) -> ReplayResult:
    """Replay a routing trace through an expert cache.

    Parameters
    ----------
    experts : (n_tokens, n_layers, top_k) uint8/uint16 array of routed expert ids (``Trace.experts``).
    policy : one of `POLICIES` (`lru`, `lfu`, `fifo`, `static`, `belady`, `s3fifo`) or a `PolicyKind`.
    capacity_bytes : total budget in bytes (or, per-layer scope, an array of per-layer budgets).
    expert_bytes_by_layer : bytes of one routed expert in each MoE layer.
    scope : ``"global"`` (one pool) or ``"per-layer"`` (one pool per layer).
    warmup_tokens : leading tokens that warm the cache and are not counted.
    prefetch : ``None`` or a `PrefetchSpec` (LRU only): speculative loads of the next
        layer's experts; prefetched experts that are then used count as hits.
    n_experts : routed experts per layer (default: largest id + 1).
    next_use : `next_use_times(experts)` when already computed (Belady policies only).

    Returns
    -------
    ReplayResult
    """
    kind = PolicyKind.from_str(policy)
    experts = _as_experts(experts)
    n_tokens, n_layers, top_k = experts.shape
    n_experts = _n_experts(experts, n_experts)
    layer_bytes = _layer_bytes(expert_bytes_by_layer, n_layers)
    warmup_tokens = _check_warmup(warmup_tokens, n_tokens)
    pool_of_layer, pool_capacity = pool_layout(scope, capacity_bytes, layer_bytes)
    misses = np.zeros((n_tokens - warmup_tokens, n_layers), np.int32)
    prefetch_result = None
    if prefetch is not None and kind is not PolicyKind.LRU:
        raise MoesimError(f"prefetch is modelled with the lru policy only, not {kind}")
    if kind is PolicyKind.LRU:
        prefetch_result = run_lru_replay(
            experts, n_experts, layer_bytes, pool_of_layer, pool_capacity, warmup_tokens, prefetch, misses
        )
    else:
        if kind in (PolicyKind.BELADY, PolicyKind.BELADY_DEMAND):
            aux = _checked_next_use(experts, n_experts, next_use)
        elif kind is PolicyKind.STATIC:
            aux = static_pins(experts, layer_bytes, pool_of_layer, pool_capacity, n_experts, warmup_tokens)
        else:
            aux = np.zeros(0, np.int64)
        kernel, extra = _kernel(kind)
        kernel(experts, n_experts, layer_bytes, pool_of_layer, pool_capacity, warmup_tokens, aux, misses, *extra)
    return _result(kind, scope, pool_capacity, warmup_tokens, top_k, layer_bytes, misses, prefetch_result)


PREDICTORS: tuple[str, ...] = ("oracle", "previous-token", "cooccurrence")


@dataclass(frozen=True)
class PrefetchSpec:
    """How the next layer's experts are predicted and prefetched.

    After the demand look-ups of a position, the experts predicted for the *next* position -- layer + 1 of
    the same token, or layer 0 of the next token after the last layer -- are loaded into that layer's pool
    unless already resident, as most recently used, evicting LRU residents (the LRU kernel,
    `moesim.kernels.policies._replay_lru`). A demand look-up that finds a prefetched expert is a hit.
    Prefetch and demand loads share the link, so the replay reports bytes (the timing model turns them
    into time): prefetched bytes per issuing token, useful bytes (a prefetched expert's first demand hit)
    per token of use, and totals of prefetched, useful and wasted (evicted unused, or unused at the end)
    bytes. The predictors are NumPy, not kernels: given the trace (and, for co-occurrence, the learned
    tables) every position is independent, so they vectorise over positions.

    - ``oracle``: each routed expert is predicted with probability ``accuracy`` (seeded); a missed slot
      names a uniformly random wrong expert instead.
    - ``previous-token``: the experts the previous token routed to in the same layer.
    - ``cooccurrence``: a table of which experts follow which (layer l -> layer l + 1), learned on the
      warm-up prefix; the best-scoring successors of the experts just routed.
    ``width``: experts prefetched per layer (default: top_k).
    """

    predictor: str = "oracle"
    accuracy: float = 1.0
    seed: int = 0
    width: int | None = None

    def __post_init__(self):
        if self.predictor not in PREDICTORS:
            from moesim.errors import unknown_id_error

            raise unknown_id_error("predictor", self.predictor, PREDICTORS)
        if not 0.0 <= self.accuracy <= 1.0:
            raise MoesimError(f"prefetch accuracy must be in [0, 1], got {self.accuracy}")
        if self.width is not None and self.width < 1:
            raise MoesimError(f"prefetch width must be at least 1, got {self.width}")


def predict_experts(experts, spec: PrefetchSpec, n_experts: int | None = None, warmup_tokens: int = 0) -> np.ndarray:
    """(n_tokens, n_layers, width) int32 experts predicted for every position (-1 = no prediction)."""
    experts = _as_experts(experts)
    n_tokens, n_layers, top_k = experts.shape
    n_experts = _n_experts(experts, n_experts)
    width = top_k if spec.width is None else int(spec.width)
    out = np.full((n_tokens, n_layers, width), -1, np.int32)
    if spec.predictor == "oracle":
        rng = np.random.default_rng(spec.seed)
        keep = rng.random((n_tokens, n_layers, top_k)) < spec.accuracy
        wrong = rng.integers(0, max(n_experts - top_k, 1), size=(n_tokens, n_layers, top_k))
        guessed = np.empty((n_tokens, n_layers, top_k), np.int32)
        _predict_oracle(experts, n_experts, keep, wrong, guessed)
        out[:, :, : min(width, top_k)] = guessed[:, :, : min(width, top_k)]
    elif spec.predictor == "previous-token":
        shared = min(width, top_k)
        out[1:, :, :shared] = experts[:-1, :, :shared]
    else:
        if warmup_tokens < 2:
            raise MoesimError("the cooccurrence predictor learns on the warm-up prefix: give at least 2 warm-up tokens")
        counts = _cooccurrence_counts(experts, n_experts, warmup_tokens)
        _predict_cooccurrence(experts, counts, _best_successors(counts, width), out)
    return out


def _cooccurrence_counts(experts, n_experts: int, n_train_tokens: int) -> np.ndarray:
    """``counts[l, a, b]`` (int32: half the memory the predictor reads at random): how often expert b was
    routed at the position after one routing expert a at layer l (layer l + 1, or layer 0 of the next token after the last layer), both positions
    within the first ``n_train_tokens`` tokens. NumPy rather than a kernel: one bincount over the
    training prefix is fast and saves a compile."""
    n_tokens, n_layers, top_k = experts.shape
    routed = experts[: min(n_train_tokens, n_tokens)].reshape(-1, top_k).astype(np.int64)  # positions in order
    layer = np.arange(max(routed.shape[0] - 1, 0)) % n_layers
    pair = (layer[:, None, None] * n_experts + routed[:-1, :, None]) * n_experts + routed[1:, None, :]
    counts = np.bincount(pair.ravel(), minlength=n_layers * n_experts * n_experts)
    return counts.astype(np.int32).reshape(n_layers, n_experts, n_experts)


def _best_successors(counts: np.ndarray, width: int) -> np.ndarray:
    """``successors[l, a, :]`` (int64): a's ``width`` best successors after layer l -- positive counts
    only, higher count first, then lower id; -1 padded."""
    n_experts = counts.shape[2]
    width = min(width, n_experts)
    rank = -counts * n_experts + np.arange(n_experts)  # unique per row: smaller is better
    if width < n_experts:
        order = np.argpartition(rank, width - 1, axis=2)[:, :, :width]
    else:
        order = np.broadcast_to(np.arange(n_experts), rank.shape).copy()
    order = np.take_along_axis(order, np.argsort(np.take_along_axis(rank, order, axis=2), axis=2), axis=2)
    best = np.take_along_axis(counts, order, axis=2)
    return np.where(best > 0, order, -1).astype(np.int64)


ORACLE_CHUNK_POSITIONS = 1 << 16  # positions per NumPy pass: bounds the temporaries to a few MB
NO_EXPERT = np.int64(1) << 40  # above every expert id and every rank


def _predict_oracle(experts, n_experts, keep, wrong_draws, out):
    """Oracle with a given accuracy: slot k keeps the true expert where ``keep``; otherwise it names
    a wrong expert, ``wrong_draws[t, l, k]`` in [0, n_experts - top_k) indexing the experts not routed
    at (t, l) in id order (-1 when there are fewer). A wrong guess that repeats an earlier wrong guess
    of the same position is dropped (-1).

    NumPy, not a kernel: every position is independent, so the work vectorises over positions (about
    1.7x the time of a loop kernel, well under the replay it feeds) and there is one compile less. The
    rank-th expert missing from a sorted set is found by walking the set once: every routed id at or
    below the running guess pushes it up by one."""
    top_k = experts.shape[2]
    routed_all = experts.reshape(-1, top_k)
    keep_all = keep.reshape(-1, top_k)
    draws_all = wrong_draws.reshape(-1, top_k)
    out_all = out.reshape(-1, top_k)
    for begin in range(0, routed_all.shape[0], ORACLE_CHUNK_POSITIONS):
        chunk = slice(begin, begin + ORACLE_CHUNK_POSITIONS)
        routed = routed_all[chunk].astype(np.int64)
        ascending = np.sort(routed, axis=1)
        ascending[:, 1:][ascending[:, 1:] == ascending[:, :-1]] = NO_EXPERT  # a repeated id counts once
        guess = draws_all[chunk].astype(np.int64)
        for j in range(top_k):
            guess += ascending[:, j : j + 1] <= guess
        guess[guess >= n_experts] = -1
        wrong = np.where(keep_all[chunk], -2, guess)
        for k in range(1, top_k):
            guess[(wrong[:, :k] == wrong[:, k : k + 1]).any(axis=1), k] = -1
        out_all[chunk] = np.where(keep_all[chunk], routed, guess)


COOCCURRENCE_CHUNK_POSITIONS = 1 << 13
NO_CANDIDATE = np.int64(1) << 62  # sorts after every real candidate's key


def _predict_cooccurrence(experts, counts, successors, out):
    """For each position, score the candidate experts (the best learned successors of the experts
    routed at the previous position) by their summed co-occurrence counts; keep the best ``width``
    with a positive score, higher score first, then lower id. ``counts[l, a, b]``: how often b followed
    a after layer l on the training prefix; ``successors[l, a]``: a's best successors after layer l
    (-1 padded). Both are learned by the wrapper with NumPy (one bincount, one partition).

    NumPy, not a kernel: positions are independent given the learned tables, so the work vectorises over
    chunks of positions; the score gathers (top_k x candidates per position, at random in the table)
    set the time either way, and there is one compile less. One key per candidate,
    ``-score x n_experts + id``, orders by score then id and repeats for a candidate named twice."""
    top_k = experts.shape[2]
    n_layers = counts.shape[0]
    n_experts = counts.shape[2]
    n_successors = successors.shape[2]
    routed_all = experts.reshape(-1, top_k)
    out_all = out.reshape(-1, out.shape[2])
    out_all[:] = -1
    picked = min(out.shape[2], top_k * n_successors)
    flat_counts = counts.reshape(-1)
    flat_successors = successors.reshape(-1)
    for begin in range(1, routed_all.shape[0], COOCCURRENCE_CHUNK_POSITIONS):  # position 0 has no predecessor
        end = min(begin + COOCCURRENCE_CHUNK_POSITIONS, routed_all.shape[0])
        layer = (np.arange(begin - 1, end - 1, dtype=np.int64) % n_layers)[:, None]
        rows = layer * n_experts + routed_all[begin - 1 : end - 1]  # (positions, top_k): the routing experts
        candidates = np.take(flat_successors, (rows * n_successors)[:, :, None] + np.arange(n_successors))
        candidates = candidates.reshape(end - begin, top_k * n_successors)
        valid = candidates >= 0
        candidates[~valid] = 0
        score = np.zeros(candidates.shape, np.int64)
        for i in range(top_k):
            score += np.take(flat_counts, rows[:, i : i + 1] * n_experts + candidates)
        key = np.where(valid & (score > 0), -score * n_experts + candidates, NO_CANDIDATE)
        key.sort(axis=1)
        key[:, 1:][key[:, 1:] == key[:, :-1]] = NO_CANDIDATE
        key.sort(axis=1)
        best = key[:, :picked]
        out_all[begin:end, :picked] = np.where(best < NO_CANDIDATE, best % n_experts, -1)


def no_prefetch(experts) -> tuple:
    """The LRU kernel's prefetch arguments for a replay without prefetch (no predicted columns)."""
    n_tokens, n_layers, _ = experts.shape
    return np.empty((n_tokens, n_layers, 0), np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64)


def run_lru_replay(experts, n_experts, layer_bytes, pool_of_layer, pool_capacity, warmup_tokens, spec, misses):
    """LRU replay, with prefetch when ``spec`` is a `PrefetchSpec` (see `PrefetchSpec`); fills
    ``misses`` and returns the prefetch traffic (``None`` without prefetch)."""
    from moesim.kernels.policies import _replay_lru

    if spec is None:
        predicted, prefetch_bytes, useful = no_prefetch(experts)
    elif isinstance(spec, PrefetchSpec):
        predicted = predict_experts(experts, spec, n_experts, warmup_tokens)
        prefetch_bytes = np.zeros(experts.shape[0] - warmup_tokens, np.int64)
        useful = np.zeros(experts.shape[0] - warmup_tokens, np.int64)
    else:
        raise MoesimError("prefetch must be a PrefetchSpec")
    _replay_lru(experts, n_experts, layer_bytes, pool_of_layer, pool_capacity, warmup_tokens, np.zeros(0, np.int64),
                misses, predicted, prefetch_bytes, useful)
    return None if spec is None else PrefetchResult(spec.predictor, prefetch_bytes, useful)


def _result(kind, scope, pool_capacity, warmup_tokens, top_k, layer_bytes, misses, prefetch_result) -> ReplayResult:
    hits = np.subtract(top_k, misses, dtype=np.int32)
    # einsum sums int32 x int64 into int64 without an int64 copy of `misses` (matmul on integers is
    # NumPy's slow generic loop): a few ms of an LRU replay of 9 M look-ups
    demand = np.einsum("tl,l->t", misses, layer_bytes)
    fetched = demand + prefetch_result.prefetch_bytes if prefetch_result is not None else demand.copy()
    lookups = int(misses.size) * top_k
    miss_count = int(misses.sum(dtype=np.int64))
    return ReplayResult(
        policy=str(kind),
        scope=scope,
        capacity_bytes=int(pool_capacity.sum()),
        pool_capacity_bytes=tuple(int(c) for c in pool_capacity),
        warmup_tokens=warmup_tokens,
        hits=hits,
        misses=misses,
        demand_bytes=demand,
        bytes_fetched=fetched,
        lookups=lookups,
        hit_count=lookups - miss_count,
        miss_count=miss_count,
        hit_rate=(lookups - miss_count) / lookups if lookups else float("nan"),
        prefetch=prefetch_result,
    )


@dataclass(frozen=True, eq=False)
class MissRatioCurve:
    """A stack policy's behaviour at every capacity from one pass (see `lru_curve`, `opt_curve`)."""

    policy: str  # "lru", "belady" or "belady-demand": the `replay` policy the curve reproduces
    scope: str
    layer_bytes: np.ndarray  # (n_layers,) int64
    top_k: int
    warmup_tokens: int
    needs: np.ndarray  # (n_counted_tokens, n_layers, top_k) int64: smallest pool capacity that hits

    @property
    def lookups(self) -> int:
        return int(self.needs.size)

    def _pool_caps_by_layer(self, capacity_bytes) -> np.ndarray:
        pool_of_layer, pool_capacity = pool_layout(self.scope, capacity_bytes, self.layer_bytes)
        return pool_capacity[pool_of_layer]

    def misses_at(self, capacity_bytes) -> np.ndarray:
        """(n_counted_tokens, n_layers) int32 misses at this capacity (same split as `replay`)."""
        caps = self._pool_caps_by_layer(capacity_bytes)
        return (self.needs > caps[None, :, None]).sum(axis=2, dtype=np.int32)

    def _sorted_needs(self) -> list[np.ndarray]:
        cached = self.__dict__.get("_sorted")
        if cached is None:
            if self.scope == "global":
                cached = [np.sort(self.needs, axis=None)]
            else:
                cached = [np.sort(self.needs[:, layer, :], axis=None) for layer in range(self.needs.shape[1])]
            object.__setattr__(self, "_sorted", cached)
        return cached

    def hit_count_at(self, capacity_bytes) -> int:
        """Total hits at this capacity: a binary search, not a replay."""
        caps = self._pool_caps_by_layer(capacity_bytes)
        sorted_needs = self._sorted_needs()
        if self.scope == "global":
            return int(np.searchsorted(sorted_needs[0], caps[0], side="right"))
        return int(sum(np.searchsorted(s, c, side="right") for s, c in zip(sorted_needs, caps)))

    def hit_rate_at(self, capacity_bytes) -> float:
        """Hit rate of the counted look-ups at this capacity."""
        return self.hit_count_at(capacity_bytes) / self.lookups if self.lookups else float("nan")


def _curve_inputs(experts, expert_bytes_by_layer, scope, warmup_tokens, n_experts):
    """Checked inputs of a one-pass curve: ``(experts, n_experts, layer_bytes, warmup_tokens, pool_of_layer,
    n_pools)``."""
    experts = _as_experts(experts)
    n_tokens, n_layers, _ = experts.shape
    if scope not in SCOPES:
        raise MoesimError(f"unknown scope '{scope}' (choose from {', '.join(SCOPES)})")
    pool_of_layer = np.zeros(n_layers, np.int64) if scope == "global" else np.arange(n_layers, dtype=np.int64)
    return (experts, _n_experts(experts, n_experts), _layer_bytes(expert_bytes_by_layer, n_layers),
            _check_warmup(warmup_tokens, n_tokens), pool_of_layer, int(pool_of_layer[-1]) + 1)


def lru_curve(experts, expert_bytes_by_layer, scope: str = "global", warmup_tokens: int = 0, *, n_experts: int | None = None) -> MissRatioCurve:
    """LRU hits at every capacity in one pass over the trace (byte stack distances).

    Exact: ``curve.misses_at(c)`` equals ``replay(experts, "lru", c, ...).misses`` for every ``c``.

    Parameters
    ----------
    experts, expert_bytes_by_layer, scope, warmup_tokens, n_experts : as for `lru_curve`.

    Returns
    -------
    MissRatioCurve
    """
    from moesim.kernels import mrc

    experts, n_experts, layer_bytes, warmup_tokens, pool_of_layer, n_pools = _curve_inputs(
        experts, expert_bytes_by_layer, scope, warmup_tokens, n_experts)
    n_tokens, n_layers, top_k = experts.shape
    # each pool's distinct expert sizes (one in the per-layer scope): the kernel keeps a live bitset per size
    sizes_of_pool = [np.unique(layer_bytes[pool_of_layer == pool]) for pool in range(n_pools)]
    n_classes = max([len(sizes) for sizes in sizes_of_pool] + [1])
    class_bytes = np.zeros((n_pools, n_classes), np.int64)
    for pool, sizes in enumerate(sizes_of_pool):
        class_bytes[pool, :len(sizes)] = sizes
    class_of_layer = np.array([np.searchsorted(sizes_of_pool[pool], size) for pool, size in zip(pool_of_layer, layer_bytes)],
                              np.int64)
    # the kernel writes every look-up (no counted/warm-up branch in its loop); the warm-up rows are sliced off
    needs = np.empty((n_tokens, n_layers, top_k), np.int64)
    largest_pool = n_experts * n_layers // n_pools
    count_dtype = np.int16 if largest_pool <= np.iinfo(np.int16).max else np.int32  # counts never exceed a pool's experts
    mrc._lru_needs(experts, n_experts, pool_of_layer, class_of_layer, class_bytes.reshape(-1), n_classes,
                   np.empty(0, count_dtype), needs.reshape(-1))
    needs = needs[warmup_tokens:]
    return MissRatioCurve("lru", scope, layer_bytes, top_k, warmup_tokens, needs)


def opt_curve(experts, expert_bytes_by_layer, scope: str = "global", warmup_tokens: int = 0, *, bypass: bool = True,
              n_experts: int | None = None, next_use=None) -> MissRatioCurve:
    """Belady's MIN at every capacity in one pass over the trace (OPT stack distances).

    Exact: ``curve.misses_at(c)`` equals ``replay(experts, "belady", c, ...).misses`` (``bypass=False``:
    ``"belady-demand"``) for every ``c``. Only where every expert of a pool has one size: with mixed sizes
    optimal caching keeps no inclusion between capacities, so no one-pass curve exists; replay ``belady``
    at the capacities you need. Cost grows with the stack depth (see `moesim.kernels.mrc`): a few times
    one replay for per-layer pools, tens of times for one pool of a large model.

    Parameters
    ----------
    experts, expert_bytes_by_layer, scope, warmup_tokens, n_experts : as for `lru_curve`.
    bypass : MIN with bypass (`belady`), else every miss is kept (`belady-demand`).
    next_use : `next_use_times` of ``experts``, if already computed.

    Returns
    -------
    MissRatioCurve
    """
    from moesim.kernels import mrc

    experts, n_experts, layer_bytes, warmup_tokens, pool_of_layer, n_pools = _curve_inputs(
        experts, expert_bytes_by_layer, scope, warmup_tokens, n_experts)
    n_tokens, n_layers, top_k = experts.shape
    n_sizes = np.unique(layer_bytes).size
    if scope == "global" and n_sizes > 1:
        raise MoesimError(f"an OPT curve needs one expert size per pool, and the global pool mixes {n_sizes} sizes; "
                          "use the per-layer scope, or replay 'belady' at each capacity")
    next_use = _checked_next_use(experts, n_experts, next_use)
    needs = np.empty((n_tokens, n_layers, top_k), np.int64)
    mrc._opt_needs(experts, n_experts, pool_of_layer, n_pools, layer_bytes, next_use, bool(bypass), needs.reshape(-1))
    needs = needs[warmup_tokens:]
    return MissRatioCurve("belady" if bypass else "belady-demand", scope, layer_bytes, top_k, warmup_tokens, needs)
