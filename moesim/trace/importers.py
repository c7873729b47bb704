"""Import routing traces recorded elsewhere into the moesim trace format.

Formats (detected from the file's content; `fmt=` forces one):

- ``vllm-jsonl``: processed per-layer JSONL, one object per (problem, layer, generated token) with
  ``problem_id, layer, experts, gating_probs, token_idx`` where ``token_idx`` counts separately per
  layer (the layout of the Mixtral traces recorded with a vLLM ``select_experts`` hook).
- ``vllm-raw``: the raw hook output, one object per token of each forward pass per layer with
  ``problem_id, layer, token_pos, experts, gating_probs``; a new pass starts whenever ``layer``
  decreases.
- ``npy`` / ``npz``: an integer array (tokens, MoE layers, k); an ``.npz`` may add ``weights``,
  ``seq``, ``token`` and ``is_prefill`` arrays.
- ``csv``: a header with ``seq, token, layer`` and ``expert_0..expert_{k-1}`` (or ``e0..``), optional
  ``weight_0..`` (or ``w0..``) and ``phase``.

Alignment (see `traces/README.md`): the moesim format needs every MoE layer of every token.
``gaps="fill"`` fills a missing (token, layer) with the nearest earlier token's experts in that layer
(the next token's if there is no earlier one); ``gaps="drop"`` drops tokens that lack a layer. For the
processed per-layer JSONL the i-th record of each layer is token i (the only information the file
has), so tokens past the shortest layer are incomplete: the default drops them.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moesim.errors import MoesimError
from moesim.trace.format import ARROW_MAGIC, Trace, TraceMeta, make_trace, read_trace

FORMATS = ("vllm-jsonl", "vllm-raw", "npy", "npz", "csv", "arrow")
GAP_POLICIES = ("auto", "fill", "drop")


@dataclass
class ImportReport:
    """What the importer did: records read, and how many (token, layer) records it dropped or filled."""

    format: str
    records_read: int = 0
    tokens: int = 0
    sequences: int = 0
    prefill_tokens: int = 0
    gaps: str = "fill"
    filled_records: int = 0
    dropped_records: int = 0
    dropped_tokens: int = 0
    duplicate_records: int = 0
    notes: list[str] = field(default_factory=list)


def detect_format(path: str | os.PathLike) -> str:
    """The import format of a file, from its first bytes."""
    path = Path(path)
    if not path.is_file():
        raise MoesimError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(ARROW_MAGIC):
        return "arrow"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    text = head.decode("utf-8", errors="replace").lstrip()
    if text.startswith("{"):
        first = text.splitlines()[0]
        try:
            record = json.loads(first)
        except json.JSONDecodeError:
            raise MoesimError(f"{path}: looks like JSONL but the first line is not valid JSON") from None
        if "token_pos" in record:
            return "vllm-raw"
        if "token_idx" in record:
            return "vllm-jsonl"
        raise MoesimError(f"{path}: JSONL records need 'token_idx' (processed) or 'token_pos' (raw hook output)")
    first_line = text.splitlines()[0] if text else ""
    if "," in first_line and "layer" in first_line.lower():
        return "csv"
    raise MoesimError(f"{path}: unrecognised trace format (expected Arrow, .npy/.npz, JSONL or CSV); use --format")


# ------------------------------------------------------------------------------------------ shape


def _meta_for(model, layers_seen, n_experts_seen: int, k: int, source: dict, licence: str) -> TraceMeta:
    if model is not None:
        if not model.moe_layers or model.n_routed_experts <= 0:
            raise MoesimError(f"model {model.id} has no routed experts")
        if k != model.top_k:
            raise MoesimError(f"the file has top-{k} routing but {model.id} routes top-{model.top_k}")
        if n_experts_seen > model.n_routed_experts:
            raise MoesimError(f"the file uses expert id {n_experts_seen - 1} but {model.id} has "
                              f"{model.n_routed_experts} routed experts")
        return TraceMeta(model_id=model.id, n_layers=int(model.n_layers), moe_layers=tuple(model.moe_layers),
                         n_routed_experts=int(model.n_routed_experts), top_k=int(model.top_k), source=source,
                         licence=licence)
    layers = sorted(int(x) for x in layers_seen)
    return TraceMeta(model_id="unknown", n_layers=layers[-1] + 1, moe_layers=tuple(layers),
                     n_routed_experts=int(n_experts_seen), top_k=int(k), source=source, licence=licence)


def _layer_ordinals(layers: np.ndarray, meta_layers: tuple[int, ...], where: str) -> np.ndarray:
    """Map file layer numbers to MoE-layer ordinals: model layer indices if they all are MoE layers,
    else MoE ordinals (some hooks count MoE layers only)."""
    lookup = {layer: i for i, layer in enumerate(meta_layers)}
    unique = np.unique(layers)
    if all(int(x) in lookup for x in unique):
        table = np.full(int(unique.max()) + 1, -1, dtype=np.int64)
        for x in unique:
            table[int(x)] = lookup[int(x)]
        return table[layers]
    if unique.min() >= 0 and unique.max() < len(meta_layers):
        return layers.astype(np.int64)
    bad = [int(x) for x in unique if int(x) not in lookup][0]
    raise MoesimError(f"{where}: layer {bad} is not a MoE layer of the model (MoE layers: "
                      f"{meta_layers[0]}..{meta_layers[-1]}, {len(meta_layers)} of them)")


def _assemble(meta: TraceMeta, seq, token, layer_ord, experts, weights, is_prefill, gaps: str,
              report: ImportReport, tail_only: bool = False) -> Trace:
    """Build a compact trace from per-record arrays, filling or dropping missing (token, layer) cells."""
    n_layers, k = meta.n_moe_layers, meta.top_k
    if seq.size == 0:
        raise MoesimError("the file holds no routing records")
    keys = np.stack([seq.astype(np.int64), token.astype(np.int64)], axis=1)
    uniq, tok_index = np.unique(keys, axis=0, return_inverse=True)
    tok_index = tok_index.reshape(-1)
    n_tokens = uniq.shape[0]
    cell = tok_index * n_layers + layer_ord
    order = np.argsort(cell, kind="stable")
    cell_sorted = cell[order]
    first = np.ones(cell_sorted.size, dtype=bool)
    first[1:] = cell_sorted[1:] != cell_sorted[:-1]
    report.duplicate_records += int((~first).sum())
    keep = order[first]
    present = np.zeros(n_tokens * n_layers, dtype=bool)
    present[cell[keep]] = True
    out_exp = np.zeros((n_tokens * n_layers, k), dtype=np.int64)
    out_exp[cell[keep]] = experts[keep]
    out_w = None
    if weights is not None:
        out_w = np.full((n_tokens * n_layers, k), 1.0 / k, dtype=np.float32)
        out_w[cell[keep]] = weights[keep]
    phase = np.zeros(n_tokens, dtype=bool)
    phase[tok_index] = is_prefill.astype(bool)
    present = present.reshape(n_tokens, n_layers)
    out_exp = out_exp.reshape(n_tokens, n_layers, k)
    if out_w is not None:
        out_w = out_w.reshape(n_tokens, n_layers, k)
    tok_seq = uniq[:, 0]
    complete = present.all(axis=1)
    if gaps == "drop":
        report.dropped_records += int(present[~complete].sum())
        report.dropped_tokens += int((~complete).sum())
        out_exp, present, tok_seq, uniq, phase = out_exp[complete], present[complete], tok_seq[complete], \
            uniq[complete], phase[complete]
        if out_w is not None:
            out_w = out_w[complete]
    else:
        missing = ~present
        report.filled_records += int(missing.sum())
        for layer in np.flatnonzero(missing.any(axis=0)):
            _fill_layer(out_exp, out_w, present[:, layer], tok_seq, layer)
    if out_exp.shape[0] == 0:
        raise MoesimError("no token has a record for every MoE layer; nothing to import")
    report.tokens = int(out_exp.shape[0])
    report.sequences = int(np.unique(uniq[:, 0]).size)
    report.prefill_tokens = int(phase.sum())
    return make_trace(meta, out_exp, weights=out_w, seq=uniq[:, 0], token=uniq[:, 1], is_prefill=phase)


def _fill_layer(out_exp, out_w, present, tok_seq, layer) -> None:
    """Fill missing cells of one layer from the nearest earlier token of the same sequence, else the next."""
    n = present.size
    idx = np.arange(n)
    last = np.where(present, idx, -1)
    np.maximum.accumulate(last, out=last)
    nxt = np.where(present, idx, n)
    nxt = np.minimum.accumulate(nxt[::-1])[::-1]
    for t in np.flatnonzero(~present):
        src = last[t]
        if src < 0 or tok_seq[src] != tok_seq[t]:
            src = nxt[t]
            if src >= n or tok_seq[src] != tok_seq[t]:
                raise MoesimError(f"layer ordinal {layer} has no record at all in sequence {tok_seq[t]}; cannot fill")
        out_exp[t, layer] = out_exp[src, layer]
        if out_w is not None:
            out_w[t, layer] = out_w[src, layer]


# ------------------------------------------------------------------------------------------ JSONL


def _read_jsonl(path: Path, required: tuple[str, ...]):
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MoesimError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise MoesimError(f"{path}:{lineno}: expected a JSON object per line")
            missing = [key for key in required if key not in rec]
            if missing:
                raise MoesimError(f"{path}:{lineno}: record lacks {', '.join(missing)}")
            records.append((lineno, rec))
    if not records:
        raise MoesimError(f"{path}: no records")
    return records


def _record_arrays(path: Path, records, index_key: str):
    k = len(records[0][1]["experts"])
    n = len(records)
    experts = np.empty((n, k), dtype=np.int64)
    weights = np.empty((n, k), dtype=np.float32)
    has_weights = all("gating_probs" in rec for _, rec in records)
    problem = np.empty(n, dtype=np.int64)
    layer = np.empty(n, dtype=np.int64)
    index = np.empty(n, dtype=np.int64)
    for i, (lineno, rec) in enumerate(records):
        ids = rec["experts"]
        if not isinstance(ids, list) or len(ids) != k:
            raise MoesimError(f"{path}:{lineno}: expected {k} expert ids, got {ids!r}")
        if any(not isinstance(e, int) or isinstance(e, bool) or e < 0 for e in ids):
            raise MoesimError(f"{path}:{lineno}: expert ids must be non-negative integers, got {ids!r}")
        if len(set(ids)) != k:
            raise MoesimError(f"{path}:{lineno}: duplicate expert in {ids!r}")
        experts[i] = ids
        if has_weights:
            probs = rec["gating_probs"]
            if not isinstance(probs, list) or len(probs) != k:
                raise MoesimError(f"{path}:{lineno}: expected {k} gating_probs, got {probs!r}")
            weights[i] = probs
        for name, arr in (("problem_id", problem), ("layer", layer), (index_key, index)):
            value = rec.get(name, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise MoesimError(f"{path}:{lineno}: '{name}' must be a non-negative integer, got {value!r}")
            arr[i] = value
    return problem, layer, index, experts, (weights if has_weights else None), k


def _jsonl_source(path: Path, records, fmt: str) -> dict:
    datasets = sorted({str(rec.get("dataset", "")) for _, rec in records} - {""})
    return {"kind": "recorded", "format": fmt, "file": path.name, "datasets": datasets}


def import_vllm_jsonl(path: Path, model, gaps: str, licence: str, report: ImportReport) -> Trace:
    """Processed per-layer JSONL: the i-th record of a (problem, layer) in token_idx order is token i."""
    records = _read_jsonl(path, ("layer", "experts", "token_idx"))
    report.records_read = len(records)
    problem, layer, index, experts, weights, k = _record_arrays(path, records, "token_idx")
    meta = _meta_for(model, np.unique(layer), int(experts.max()) + 1, k,
                     _jsonl_source(path, records, "vllm-jsonl"), licence)
    layer_ord = _layer_ordinals(layer, meta.moe_layers, str(path))
    # position within (problem, layer) by token_idx order: the per-layer sequence is what the file preserves
    order = np.lexsort((index, layer_ord, problem))
    group = problem[order] * (meta.n_moe_layers + 1) + layer_ord[order]
    starts = np.ones(order.size, dtype=bool)
    starts[1:] = group[1:] != group[:-1]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(order.size), 0))
    position = np.empty(order.size, dtype=np.int64)
    position[order] = np.arange(order.size) - group_start
    missing_layers = sorted(set(range(meta.n_moe_layers)) - set(np.unique(layer_ord).tolist()))
    if missing_layers:
        raise MoesimError(f"{path}: no records for MoE layer(s) {[meta.moe_layers[i] for i in missing_layers]}")
    policy = "drop" if gaps == "auto" else gaps
    report.gaps = policy
    report.notes.append("token i of a sequence = the i-th record of each layer in token_idx order; "
                        "cross-layer alignment after a dropped 0.5/0.5 record may be off by one or more tokens")
    return _assemble(meta, problem, position, layer_ord, experts, weights, np.zeros(order.size, dtype=bool),
                     policy, report)


def import_vllm_raw(path: Path, model, gaps: str, licence: str, report: ImportReport) -> Trace:
    """Raw hook output: passes split where `layer` decreases; a multi-token pass is a prefill."""
    records = _read_jsonl(path, ("layer", "experts", "token_pos"))
    report.records_read = len(records)
    problem, layer, token_pos, experts, weights, k = _record_arrays(path, records, "token_pos")
    meta = _meta_for(model, np.unique(layer), int(experts.max()) + 1, k,
                     _jsonl_source(path, records, "vllm-raw"), licence)
    layer_ord = _layer_ordinals(layer, meta.moe_layers, str(path))
    new_pass = np.ones(layer.size, dtype=bool)
    new_pass[1:] = (layer[1:] < layer[:-1]) | (problem[1:] != problem[:-1])
    pass_id = np.cumsum(new_pass) - 1
    n_passes = int(pass_id[-1]) + 1
    pass_tokens = np.zeros(n_passes, dtype=np.int64)
    np.maximum.at(pass_tokens, pass_id, token_pos + 1)
    pass_problem = problem[new_pass]
    # a prefill pass (several tokens) starts a new sequence; decode passes continue it
    seq_of_pass = np.empty(n_passes, dtype=np.int64)
    first_token_of_pass = np.empty(n_passes, dtype=np.int64)
    is_prefill_pass = pass_tokens > 1
    seq_id, next_token = -1, 0
    for p in range(n_passes):
        if p == 0 or is_prefill_pass[p] or pass_problem[p] != pass_problem[p - 1]:
            seq_id += 1
            next_token = 0
        seq_of_pass[p] = seq_id
        first_token_of_pass[p] = next_token
        next_token += pass_tokens[p]
    seq = seq_of_pass[pass_id]
    token = first_token_of_pass[pass_id] + token_pos
    policy = "fill" if gaps == "auto" else gaps
    report.gaps = policy
    report.notes.append(f"{n_passes} forward passes ({int(is_prefill_pass.sum())} prefill); missing (token, layer) "
                        "records are tokens the hook dropped for 0.5/0.5 weights")
    return _assemble(meta, seq, token, layer_ord, experts, weights, is_prefill_pass[pass_id], policy, report)


# ------------------------------------------------------------------------------------------ numpy, CSV


def _from_dense(path: Path, arrays: dict, model, licence: str, report: ImportReport, fmt: str) -> Trace:
    experts = np.asarray(arrays["experts"])
    if experts.ndim != 3 or not np.issubdtype(experts.dtype, np.integer):
        raise MoesimError(f"{path}: expected an integer array (tokens, layers, k), got {experts.dtype} {experts.shape}")
    if experts.size and experts.min() < 0:
        raise MoesimError(f"{path}: negative expert id")
    n, n_layers, k = experts.shape
    source = {"kind": "recorded", "format": fmt, "file": path.name}
    if model is not None:
        meta = _meta_for(model, model.moe_layers, int(experts.max(initial=0)) + 1, k, source, licence)
        if n_layers != meta.n_moe_layers:
            raise MoesimError(f"{path}: array has {n_layers} layers but {model.id} has {meta.n_moe_layers} MoE layers")
    else:
        meta = _meta_for(None, range(n_layers), int(experts.max(initial=0)) + 1, k, source, licence)
    report.records_read = n * n_layers
    report.tokens = n
    trace = make_trace(meta, experts, weights=arrays.get("weights"), seq=arrays.get("seq"), token=arrays.get("token"),
                       is_prefill=arrays.get("is_prefill"))
    report.sequences = trace.n_seqs
    report.prefill_tokens = int(trace.is_prefill.sum())
    return trace


def import_npy(path: Path, model, licence: str, report: ImportReport) -> Trace:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MoesimError(f"{path}: unreadable .npy ({' '.join(str(exc).split())})") from None
    return _from_dense(path, {"experts": arr}, model, licence, report, "npy")


def import_npz(path: Path, model, licence: str, report: ImportReport) -> Trace:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise MoesimError(f"{path}: unreadable .npz ({' '.join(str(exc).split())})") from None
    if "experts" not in arrays:
        raise MoesimError(f"{path}: .npz needs an 'experts' array (has {', '.join(arrays) or 'nothing'})")
    unknown = sorted(set(arrays) - {"experts", "weights", "seq", "token", "is_prefill"})
    if unknown:
        raise MoesimError(f"{path}: unexpected array(s) {', '.join(unknown)} in .npz")
    return _from_dense(path, arrays, model, licence, report, "npz")


def _numbered(header: list[str], prefixes: tuple[str, ...]) -> list[int]:
    found = {}
    for i, name in enumerate(header):
        low = name.strip().lower()
        for prefix in prefixes:
            if low.startswith(prefix) and low[len(prefix):].isdigit():
                found[int(low[len(prefix):])] = i
    return [found[j] for j in sorted(found)] if found and sorted(found) == list(range(len(found))) else []


def import_csv(path: Path, model, gaps: str, licence: str, report: ImportReport) -> Trace:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise MoesimError(f"{path}: empty CSV")
    header = [h.strip().lower() for h in rows[0]]
    for name in ("seq", "token", "layer"):
        if name not in header:
            raise MoesimError(f"{path}: CSV header needs a '{name}' column (has {', '.join(header)})")
    exp_cols = _numbered(header, ("expert_", "e"))
    w_cols = _numbered(header, ("weight_", "w"))
    if not exp_cols:
        raise MoesimError(f"{path}: CSV header needs expert_0..expert_{{k-1}} columns")
    k = len(exp_cols)
    if w_cols and len(w_cols) != k:
        raise MoesimError(f"{path}: {len(w_cols)} weight columns for {k} expert columns")
    i_seq, i_tok, i_layer = header.index("seq"), header.index("token"), header.index("layer")
    i_phase = header.index("phase") if "phase" in header else None
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    n = len(body)
    ints = np.empty((n, 3 + k), dtype=np.int64)
    weights = np.empty((n, k), dtype=np.float32) if w_cols else None
    prefill = np.zeros(n, dtype=bool)
    for i, row in enumerate(body):
        line = i + 2
        try:
            ints[i, :3] = [int(row[i_seq]), int(row[i_tok]), int(row[i_layer])]
            ints[i, 3:] = [int(row[c]) for c in exp_cols]
            if w_cols:
                weights[i] = [float(row[c]) for c in w_cols]
        except (ValueError, IndexError):
            raise MoesimError(f"{path}:{line}: malformed row {row!r}") from None
        if (ints[i] < 0).any():
            raise MoesimError(f"{path}:{line}: negative value in {row!r}")
        if len(set(ints[i, 3:].tolist())) != k:
            raise MoesimError(f"{path}:{line}: duplicate expert in {row!r}")
        if i_phase is not None:
            value = row[i_phase].strip().lower()
            if value not in ("prefill", "decode"):
                raise MoesimError(f"{path}:{line}: phase must be prefill or decode, got {row[i_phase]!r}")
            prefill[i] = value == "prefill"
    if n == 0:
        raise MoesimError(f"{path}: CSV has a header but no rows")
    report.records_read = n
    source = {"kind": "recorded", "format": "csv", "file": path.name}
    meta = _meta_for(model, np.unique(ints[:, 2]), int(ints[:, 3:].max()) + 1, k, source, licence)
    layer_ord = _layer_ordinals(ints[:, 2], meta.moe_layers, str(path))
    policy = "fill" if gaps == "auto" else gaps
    report.gaps = policy
    return _assemble(meta, ints[:, 0], ints[:, 1], layer_ord, ints[:, 3:], weights, prefill, policy, report)


# ------------------------------------------------------------------------------------------ entry


def import_trace(path: str | os.PathLike, model=None, fmt: str | None = None, gaps: str = "auto",
                 licence: str = "unspecified") -> tuple[Trace, ImportReport]:
    """Read a recorded trace in any supported format; returns the trace and an `ImportReport`.

    `model` (a ModelSpec) fixes the MoE shape and model id; without it the shape is inferred from
    the data (layers seen, largest expert id + 1).
    """
    path = Path(path)
    if gaps not in GAP_POLICIES:
        raise MoesimError(f"unknown gap policy '{gaps}' (choose from {', '.join(GAP_POLICIES)})")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise MoesimError(f"unknown import format '{fmt}' (choose from {', '.join(FORMATS)})")
    if not path.is_file():
        raise MoesimError(f"{path}: no such file")
    report = ImportReport(format=fmt)
    if fmt == "vllm-jsonl":
        trace = import_vllm_jsonl(path, model, gaps, licence, report)
    elif fmt == "vllm-raw":
        trace = import_vllm_raw(path, model, gaps, licence, report)
    elif fmt == "npy":
        trace = import_npy(path, model, licence, report)
    elif fmt == "npz":
        trace = import_npz(path, model, licence, report)
    elif fmt == "csv":
        trace = import_csv(path, model, gaps, licence, report)
    else:
        trace = read_trace(path)
        report.records_read = trace.n_tokens * trace.n_moe_layers
        report.tokens, report.sequences = trace.n_tokens, trace.n_seqs
        report.prefill_tokens = int(trace.is_prefill.sum())
    return trace, report
