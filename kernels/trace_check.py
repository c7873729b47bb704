"""Validation kernels for routing traces (format checks that must scan every row)."""

from __future__ import annotations

import numpy as np

from moesim.kernels._jit import jit

# Error codes returned by `check_long_rows`; `moesim.trace.format` turns them into messages.
OK = 0
WRONG_LAYER = 1  # the row's layer is not the MoE layer expected at this position of its token
TOKEN_CHANGED = 2  # a token's rows end before every MoE layer was seen (a layer is missing)
UNSORTED = 3  # (seq, token) does not increase from one token to the next
EXPERT_RANGE = 4  # an expert id >= n_routed_experts
DUPLICATE = 5  # an expert id repeated within one row's top-k
NEGATIVE = 6  # seq or token < 0
PHASE_CHANGED = 7  # the phase differs between the layers of one token


@jit
def check_long_rows(seq, token, layer, phase, experts, moe_layers, n_experts, state):
    """Scan one record batch of the long format; return (code, row within batch, detail).

    `experts` is (rows, k); `phase` is uint8 (1 = prefill). `state` (int64[5]) carries the position
    across batches: [pos_in_group, group_seq, group_token, group_phase, have_previous_group].
    It is updated in place so the next batch continues where this one stopped.
    """
    n_rows = seq.shape[0]
    k = experts.shape[1]
    n_layers = moe_layers.shape[0]
    pos = state[0]
    group_seq = state[1]
    group_token = state[2]
    group_phase = state[3]
    have_prev = state[4]
    for r in range(n_rows):
        s = seq[r]
        t = token[r]
        if s < 0 or t < 0:
            return NEGATIVE, r, 0
        if pos == 0:
            if have_prev == 1:
                if s < group_seq or (s == group_seq and t <= group_token):
                    return UNSORTED, r, 0
            group_seq = s
            group_token = t
            group_phase = phase[r]
            have_prev = 1
        else:
            if s != group_seq or t != group_token:
                return TOKEN_CHANGED, r, moe_layers[pos]
            if phase[r] != group_phase:
                return PHASE_CHANGED, r, 0
        if layer[r] != moe_layers[pos]:
            return WRONG_LAYER, r, moe_layers[pos]
        for i in range(k):
            e = experts[r, i]
            if e >= n_experts:
                return EXPERT_RANGE, r, e
            for j in range(i):
                if experts[r, j] == e:
                    return DUPLICATE, r, e
        pos += 1
        if pos == n_layers:
            pos = 0
    state[0] = pos
    state[1] = group_seq
    state[2] = group_token
    state[3] = group_phase
    state[4] = have_prev
    return OK, -1, 0


@jit
def check_compact_experts(experts, n_experts):
    """First (token, layer) of a (tokens, layers, k) array with an id out of range or repeated.

    Returns (code, token, layer, expert); code OK when every row is valid.
    """
    n_tokens, n_layers, k = experts.shape
    for t in range(n_tokens):
        for layer in range(n_layers):
            for i in range(k):
                e = experts[t, layer, i]
                if e >= n_experts:
                    return EXPERT_RANGE, t, layer, np.int64(e)
                for j in range(i):
                    if experts[t, layer, j] == e:
                        return DUPLICATE, t, layer, np.int64(e)
    return OK, -1, -1, np.int64(0)
