"""The routing-trace file format (Arrow IPC / Feather v2, long format) and its compact in-memory view.

On disk there is one row per (sequence, token, MoE layer); see `traces/README.md`. In memory a
`Trace` holds the same data as dense arrays, experts shaped (tokens, MoE layers, top_k), which is
what the replay kernels take. Reading validates every row and streams record batches, so a file
is never materialised as a whole or as wide int64 columns.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moesim.errors import MoesimError

FORMAT_VERSION = 1
ARROW_MAGIC = b"ARROW1"
PHASES = ("prefill", "decode")
META_PREFIX = "moesim."
# Rows per record batch when writing. Batches hold whole tokens, so this is rounded to a multiple
# of the MoE layer count; ~1M rows keeps a batch's columns around 30 MB.
TARGET_ROWS_PER_BATCH = 1 << 20


@dataclass(frozen=True)
class TraceMeta:
    """What a trace describes: the model's MoE shape and where the routing came from."""

    model_id: str
    n_layers: int
    moe_layers: tuple[int, ...]
    n_routed_experts: int
    top_k: int
    source: dict = field(default_factory=dict, hash=False, compare=True)
    licence: str = "unspecified"
    format_version: int = FORMAT_VERSION

    @property
    def n_moe_layers(self) -> int:
        return len(self.moe_layers)

    def expert_dtype(self) -> np.dtype:
        """uint8 when every expert id fits in a byte, else uint16."""
        return np.dtype(np.uint8) if self.n_routed_experts <= 256 else np.dtype(np.uint16)


@dataclass(frozen=True, eq=False)
class Trace:
    """Compact view of a trace: rows sorted by (seq, token).

    experts: (n_tokens, n_moe_layers, top_k), uint8 when n_routed_experts <= 256 else uint16,
    ordered as the router ranked them (highest weight first when the source says so).
    weights: float32 of the same shape, or None. seq, token: int32 (n_tokens,).
    is_prefill: bool (n_tokens,).
    """

    meta: TraceMeta
    experts: np.ndarray
    weights: np.ndarray | None
    seq: np.ndarray
    token: np.ndarray
    is_prefill: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.experts.shape[0])

    @property
    def n_moe_layers(self) -> int:
        return int(self.experts.shape[1])

    @property
    def top_k(self) -> int:
        return int(self.experts.shape[2])

    @property
    def n_seqs(self) -> int:
        return int(np.unique(self.seq).size)

    def seq_starts(self) -> np.ndarray:
        """Token indices where a new sequence begins (always starts with 0 for a non-empty trace)."""
        if self.n_tokens == 0:
            return np.zeros(0, dtype=np.int64)
        change = np.flatnonzero(self.seq[1:] != self.seq[:-1]) + 1
        return np.concatenate(([0], change)).astype(np.int64)

    def first_of_seq(self) -> np.ndarray:
        """Bool (n_tokens,): True where the token starts a sequence (no previous token to reuse)."""
        first = np.zeros(self.n_tokens, dtype=bool)
        first[self.seq_starts()] = True
        return first

    def select(self, mask: np.ndarray) -> Trace:
        """The tokens where `mask` is True (order kept)."""
        return Trace(
            meta=self.meta,
            experts=np.ascontiguousarray(self.experts[mask]),
            weights=None if self.weights is None else np.ascontiguousarray(self.weights[mask]),
            seq=self.seq[mask],
            token=self.token[mask],
            is_prefill=self.is_prefill[mask],
        )

    def decode_only(self) -> Trace:
        """The decode tokens only."""
        return self.select(~self.is_prefill)


# --------------------------------------------------------------------------------------------
# validation


def _row_error(path: str | os.PathLike | None, row: int, what: str) -> MoesimError:
    where = f"{path}: " if path is not None else ""
    return MoesimError(f"{where}invalid trace at row {row}: {what}")


def validate_trace(trace: Trace) -> None:
    """Raise MoesimError naming the first bad token if the in-memory trace breaks the format rules."""
    from moesim.kernels import trace_check as kc

    meta = trace.meta
    n_layers = meta.n_moe_layers
    if meta.top_k <= 0 or n_layers <= 0 or meta.n_routed_experts <= 0:
        raise MoesimError("trace metadata needs top_k, MoE layers and n_routed_experts > 0")
    if meta.top_k > meta.n_routed_experts:
        raise MoesimError(f"top_k {meta.top_k} exceeds n_routed_experts {meta.n_routed_experts}")
    if meta.n_routed_experts > 65536:
        raise MoesimError(f"n_routed_experts {meta.n_routed_experts} does not fit uint16 expert ids")
    if any(not 0 <= layer < meta.n_layers for layer in meta.moe_layers) or list(meta.moe_layers) != sorted(
        set(meta.moe_layers)
    ):
        raise MoesimError(f"moe_layers {list(meta.moe_layers)} must be increasing and within 0..{meta.n_layers - 1}")
    experts = trace.experts
    if experts.ndim != 3 or experts.shape[1:] != (n_layers, meta.top_k):
        raise MoesimError(
            f"experts has shape {experts.shape}, expected (tokens, {n_layers}, {meta.top_k}) from the metadata"
        )
    if experts.dtype not in (np.uint8, np.uint16):
        raise MoesimError(f"experts must be uint8 or uint16, got {experts.dtype}")
    n = experts.shape[0]
    for name in ("seq", "token", "is_prefill"):
        if getattr(trace, name).shape != (n,):
            raise MoesimError(f"{name} has shape {getattr(trace, name).shape}, expected ({n},)")
    if trace.weights is not None and trace.weights.shape != experts.shape:
        raise MoesimError(f"weights has shape {trace.weights.shape}, expected {experts.shape}")
    code, t, layer, e = kc.check_compact_experts(experts, meta.n_routed_experts)
    if code == kc.EXPERT_RANGE:
        raise _row_error(None, int(t) * n_layers + int(layer), f"expert id {e} >= n_routed_experts {meta.n_routed_experts}")
    if code == kc.DUPLICATE:
        raise _row_error(None, int(t) * n_layers + int(layer), f"expert {e} appears twice in one token's top-{meta.top_k}")
    if n:
        if trace.seq.min() < 0 or trace.token.min() < 0:
            bad = int(np.flatnonzero((trace.seq < 0) | (trace.token < 0))[0])
            raise _row_error(None, bad * n_layers, "negative seq or token")
        seq = trace.seq.astype(np.int64)
        tok = trace.token.astype(np.int64)
        ok = (seq[1:] > seq[:-1]) | ((seq[1:] == seq[:-1]) & (tok[1:] > tok[:-1]))
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0]) + 1
            raise _row_error(None, bad * n_layers, "rows are not sorted by (seq, token)")


# --------------------------------------------------------------------------------------------
# schema


def _schema(meta: TraceMeta, with_weights: bool):
    import pyarrow as pa

    fields = [
        pa.field("seq", pa.int32(), nullable=False),
        pa.field("token", pa.int32(), nullable=False),
        pa.field("layer", pa.int16(), nullable=False),
        pa.field("experts", pa.list_(pa.field("item", pa.uint16(), nullable=False), meta.top_k), nullable=False),
    ]
    if with_weights:
        fields.append(
            pa.field("weights", pa.list_(pa.field("item", pa.float32(), nullable=False), meta.top_k), nullable=False)
        )
    fields.append(pa.field("phase", pa.dictionary(pa.int8(), pa.string()), nullable=False))
    return pa.schema(fields, metadata=_meta_to_arrow(meta))


def _meta_to_arrow(meta: TraceMeta) -> dict[bytes, bytes]:
    values = {
        "format_version": str(meta.format_version),
        "model_id": meta.model_id,
        "n_layers": str(meta.n_layers),
        "moe_layers": json.dumps(list(meta.moe_layers)),
        "n_routed_experts": str(meta.n_routed_experts),
        "top_k": str(meta.top_k),
        "source": json.dumps(meta.source, sort_keys=True, separators=(",", ":")),
        "licence": meta.licence,
    }
    return {(META_PREFIX + k).encode(): v.encode() for k, v in values.items()}


def _meta_from_arrow(metadata: dict[bytes, bytes] | None, path) -> TraceMeta:
    metadata = metadata or {}
    got = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in metadata.items()}
    required = ("format_version", "model_id", "n_layers", "moe_layers", "n_routed_experts", "top_k", "source", "licence")
    missing = [k for k in required if META_PREFIX + k not in got]
    if missing:
        raise MoesimError(f"{path}: not a moesim trace (schema metadata lacks {', '.join(META_PREFIX + m for m in missing)})")
    try:
        version = int(got[META_PREFIX + "format_version"])
        n_layers = int(got[META_PREFIX + "n_layers"])
        moe_layers = tuple(int(x) for x in json.loads(got[META_PREFIX + "moe_layers"]))
        n_experts = int(got[META_PREFIX + "n_routed_experts"])
        top_k = int(got[META_PREFIX + "top_k"])
        source = json.loads(got[META_PREFIX + "source"])
    except (ValueError, TypeError) as exc:
        raise MoesimError(f"{path}: malformed trace metadata ({_one_line(exc)})") from None
    if version > FORMAT_VERSION:
        raise MoesimError(f"{path}: trace format version {version} is newer than this moesim reads ({FORMAT_VERSION})")
    if not isinstance(source, dict):
        raise MoesimError(f"{path}: trace metadata 'source' must be a JSON object")
    meta = TraceMeta(
        model_id=got[META_PREFIX + "model_id"],
        n_layers=n_layers,
        moe_layers=moe_layers,
        n_routed_experts=n_experts,
        top_k=top_k,
        source=source,
        licence=got[META_PREFIX + "licence"],
        format_version=version,
    )
    if top_k <= 0 or n_experts <= 0 or not moe_layers or top_k > n_experts or n_experts > 65536:
        raise MoesimError(f"{path}: trace metadata is inconsistent (top_k={top_k}, n_routed_experts={n_experts}, "
                          f"{len(moe_layers)} MoE layers)")
    if any(not 0 <= layer < n_layers for layer in moe_layers) or list(moe_layers) != sorted(set(moe_layers)):
        raise MoesimError(f"{path}: metadata moe_layers must be increasing and within 0..{n_layers - 1}")
    return meta


def _printable(text: str) -> str:
    """`text` with control characters escaped, so a hostile name cannot break the one-line message."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(text))


def _one_line(exc: BaseException) -> str:
    return _printable(" ".join(str(exc).split())) or type(exc).__name__


def _check_schema(schema, meta: TraceMeta, path) -> bool:
    """Check column names/types; return whether a weights column is present."""
    import pyarrow as pa

    names = schema.names
    expected = ["seq", "token", "layer", "experts"]
    want_types = {"seq": pa.int32(), "token": pa.int32(), "layer": pa.int16()}
    for name in expected + ["phase"]:
        if name not in names:
            raise MoesimError(f"{path}: wrong schema: no '{name}' column (has {', '.join(map(_printable, names))})")
    for name, typ in want_types.items():
        if schema.field(name).type != typ:
            raise MoesimError(f"{path}: wrong schema: column '{name}' is {_printable(schema.field(name).type)}, expected {typ}")
    for name, value_type in (("experts", pa.uint16()), ("weights", pa.float32())):
        if name not in names:
            continue
        typ = schema.field(name).type
        if not pa.types.is_fixed_size_list(typ) or typ.value_type != value_type:
            raise MoesimError(f"{path}: wrong schema: column '{name}' is {_printable(typ)}, expected fixed_size_list<{value_type}, top_k>")
        if typ.list_size != meta.top_k:
            raise MoesimError(
                f"{path}: wrong top_k: column '{name}' holds {typ.list_size} per row but metadata top_k is {meta.top_k}"
            )
    phase = schema.field("phase").type
    if not (pa.types.is_string(phase) or pa.types.is_large_string(phase)
            or (pa.types.is_dictionary(phase) and pa.types.is_string(phase.value_type))):
        raise MoesimError(f"{path}: wrong schema: column 'phase' is {_printable(phase)}, expected dictionary<string> or string")
    extra = [n for n in names if n not in expected + ["weights", "phase"]]
    if extra:
        raise MoesimError(f"{path}: wrong schema: unexpected column(s) {', '.join(map(_printable, extra))}")
    return "weights" in names


# --------------------------------------------------------------------------------------------
# writing


def _batches(trace: Trace, schema, with_weights: bool):
    import pyarrow as pa

    meta = trace.meta
    n_layers = meta.n_moe_layers
    k = meta.top_k
    layers = np.asarray(meta.moe_layers, dtype=np.int16)
    dictionary = pa.array(list(PHASES), type=pa.string())
    tokens_per_batch = max(1, TARGET_ROWS_PER_BATCH // n_layers)
    for start in range(0, trace.n_tokens, tokens_per_batch):
        stop = min(trace.n_tokens, start + tokens_per_batch)
        n = stop - start
        seq = np.repeat(trace.seq[start:stop].astype(np.int32), n_layers)
        tok = np.repeat(trace.token[start:stop].astype(np.int32), n_layers)
        lay = np.tile(layers, n)
        exp_values = pa.array(trace.experts[start:stop].reshape(-1).astype(np.uint16), type=pa.uint16())
        columns = [
            pa.array(seq, type=pa.int32()),
            pa.array(tok, type=pa.int32()),
            pa.array(lay, type=pa.int16()),
            pa.FixedSizeListArray.from_arrays(exp_values, k),
        ]
        if with_weights:
            w_values = pa.array(trace.weights[start:stop].reshape(-1).astype(np.float32), type=pa.float32())
            columns.append(pa.FixedSizeListArray.from_arrays(w_values, k))
        phase_idx = np.where(np.repeat(trace.is_prefill[start:stop], n_layers), 0, 1).astype(np.int8)
        columns.append(pa.DictionaryArray.from_arrays(pa.array(phase_idx, type=pa.int8()), dictionary))
        yield pa.RecordBatch.from_arrays(columns, schema=schema)


def write_trace(trace: Trace, path: str | os.PathLike) -> None:
    """Validate `trace` and write it as an Arrow IPC file; the same trace always gives the same bytes.

    The file appears atomically (written next to `path`, then renamed), so a failure never leaves a
    half-written trace in place of an earlier one.
    """
    import pyarrow as pa

    validate_trace(trace)
    path = Path(path)
    with_weights = trace.weights is not None
    schema = _schema(trace.meta, with_weights)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            if trace.n_tokens == 0:
                writer.write_batch(pa.RecordBatch.from_pylist([], schema=schema))
            for batch in _batches(trace, schema, with_weights):
                writer.write_batch(batch)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------
# reading


def read_trace_meta(path: str | os.PathLike) -> TraceMeta:
    """Only the metadata of a trace file (cheap: reads the footer and schema)."""
    reader, _ = _open(path)
    return _meta_from_arrow(reader.schema.metadata, path)


def _open(path):
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise MoesimError(f"{path}: no such trace file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head.startswith(ARROW_MAGIC):
        raise MoesimError(f"{path}: not an Arrow IPC trace file (no ARROW1 magic; import other formats with `moesim trace import`)")
    try:
        # a plain file, not a memory map: batches are read one at a time and freed, so resident
        # memory stays at the compact arrays rather than the whole long-format file
        source = pa.OSFile(str(path), "r")
        reader = pa.ipc.open_file(source)
        # touch every schema string now: damaged names surface as decode errors here, not later
        schema = reader.schema
        _ = (schema.names, schema.metadata, [str(f.type) for f in schema])
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise MoesimError(f"{path}: truncated or corrupt Arrow file ({_one_line(exc)})") from None
    return reader, source


def read_trace(path: str | os.PathLike) -> Trace:
    """Read and validate a trace file into the compact `Trace` view.

    Record batches are read and converted one at a time, so peak memory is about twice the compact
    arrays plus one batch (a 1M-token DeepSeek-V3 trace: ~1.2 GB). Any broken rule raises
    MoesimError naming the first bad row.
    """
    import pyarrow as pa

    from moesim.kernels import trace_check as kc

    reader, _source = _open(path)
    meta = _meta_from_arrow(reader.schema.metadata, path)
    with_weights = _check_schema(reader.schema, meta, path)
    n_layers = meta.n_moe_layers
    k = meta.top_k
    dtype = meta.expert_dtype()
    moe_layers = np.asarray(meta.moe_layers, dtype=np.int16)
    state = np.zeros(5, dtype=np.int64)
    # per-batch pieces in compact dtypes; concatenated once at the end (peak: 2x the compact view)
    exp_pieces, w_pieces, seq_pieces, tok_pieces, pre_pieces = [], [], [], [], []
    row0 = 0
    for i in range(reader.num_record_batches):
        try:
            batch = reader.get_batch(i)
            n = batch.num_rows
            if n == 0:
                continue
            # full validation first: a damaged file can hold offsets or dictionary indices that would
            # make later reads touch memory outside its buffers
            batch.validate(full=True)
            cols = _batch_arrays(batch, k, with_weights, path, row0)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise MoesimError(f"{path}: truncated or corrupt Arrow file ({_one_line(exc)})") from None
        b_seq, b_tok, b_layer, b_exp, b_w, b_phase = cols
        code, bad, detail = kc.check_long_rows(b_seq, b_tok, b_layer, b_phase, b_exp, moe_layers,
                                               meta.n_routed_experts, state)
        if code != kc.OK:
            raise _row_error(path, row0 + int(bad), _describe(code, int(detail), meta, b_seq, b_tok, b_layer, int(bad)))
        if b_w is not None:
            finite = np.isfinite(b_w).all(axis=1)
            if not finite.all():
                raise _row_error(path, row0 + int(np.flatnonzero(~finite)[0]), "non-finite routing weight")
            w_pieces.append(np.array(b_w, dtype=np.float32))
        exp_pieces.append(b_exp.astype(dtype))
        first = (-row0) % n_layers  # first row in this batch that starts a token
        seq_pieces.append(np.array(b_seq[first::n_layers], dtype=np.int32))
        tok_pieces.append(np.array(b_tok[first::n_layers], dtype=np.int32))
        pre_pieces.append(b_phase[first::n_layers] == 1)
        row0 += n
        del batch, cols, b_seq, b_tok, b_layer, b_exp, b_w, b_phase
    total_rows = row0
    if total_rows % n_layers:
        raise _row_error(path, total_rows, f"file ends before every MoE layer of the last token "
                                           f"(missing layer {meta.moe_layers[total_rows % n_layers]})")
    n_tokens = total_rows // n_layers

    def joined(pieces, dt, shape):
        out = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dt)
        return out.reshape(shape)

    experts = joined(exp_pieces, dtype, (n_tokens, n_layers, k))
    exp_pieces.clear()
    weights = joined(w_pieces, np.float32, (n_tokens, n_layers, k)) if with_weights else None
    seq = joined(seq_pieces, np.int32, (n_tokens,))
    token = joined(tok_pieces, np.int32, (n_tokens,))
    is_prefill = joined(pre_pieces, bool, (n_tokens,))
    return Trace(meta=meta, experts=experts, weights=weights, seq=seq, token=token, is_prefill=is_prefill)


def _batch_arrays(batch, k: int, with_weights: bool, path, row0: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    def column(name):
        col = batch.column(batch.schema.get_field_index(name))
        if col.null_count:
            bad = int(np.flatnonzero(np.asarray(col.is_null()))[0])
            raise _row_error(path, row0 + bad, f"null in column '{name}'")
        return col

    seq = column("seq").to_numpy(zero_copy_only=False)
    tok = column("token").to_numpy(zero_copy_only=False)
    layer = column("layer").to_numpy(zero_copy_only=False)
    exp_col = column("experts")
    exp_values = exp_col.flatten()  # respects the array offset
    if exp_values.null_count:
        bad = int(np.flatnonzero(np.asarray(exp_values.is_null()))[0]) // k
        raise _row_error(path, row0 + bad, "null expert id")
    experts = exp_values.to_numpy(zero_copy_only=False).reshape(-1, k)
    weights = None
    if with_weights:
        w_values = column("weights").flatten()
        if w_values.null_count:
            bad = int(np.flatnonzero(np.asarray(w_values.is_null()))[0]) // k
            raise _row_error(path, row0 + bad, "null routing weight")
        weights = w_values.to_numpy(zero_copy_only=False).reshape(-1, k)
    phase_col = column("phase")
    if pa.types.is_dictionary(phase_col.type):
        phase_col = phase_col.cast(pa.string())
    is_pre = np.asarray(pc.equal(phase_col, "prefill")).astype(np.uint8)
    is_dec = np.asarray(pc.equal(phase_col, "decode"))
    unknown = ~(is_pre.astype(bool) | is_dec)
    if unknown.any():
        bad = int(np.flatnonzero(unknown)[0])
        raise _row_error(path, row0 + bad, f"phase '{_printable(phase_col[bad].as_py())}' is neither prefill nor decode")
    return seq, tok, layer, experts, weights, is_pre


def _describe(code: int, detail: int, meta: TraceMeta, seq, tok, layer, r: int) -> str:
    from moesim.kernels import trace_check as kc

    where = f"(seq {int(seq[r])}, token {int(tok[r])}, layer {int(layer[r])})"
    if code == kc.WRONG_LAYER:
        return f"{where} expected MoE layer {detail} here: a layer is missing, repeated or out of order"
    if code == kc.TOKEN_CHANGED:
        return f"{where} starts before the previous token had all MoE layers (missing layer {detail})"
    if code == kc.UNSORTED:
        return f"{where} rows are not sorted by (seq, token, layer)"
    if code == kc.EXPERT_RANGE:
        return f"{where} expert id {detail} >= n_routed_experts {meta.n_routed_experts}"
    if code == kc.DUPLICATE:
        return f"{where} expert {detail} appears twice in one top-{meta.top_k}"
    if code == kc.NEGATIVE:
        return f"{where} negative seq or token"
    if code == kc.PHASE_CHANGED:
        return f"{where} phase differs between the layers of one token"
    return f"{where} invalid row (code {code})"


def make_trace(
    meta: TraceMeta,
    experts: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    seq: np.ndarray | None = None,
    token: np.ndarray | None = None,
    is_prefill: np.ndarray | None = None,
) -> Trace:
    """Build a validated `Trace` from arrays; missing seq/token/phase mean one decode sequence."""
    experts = np.asarray(experts)
    if experts.ndim != 3:
        raise MoesimError(f"experts must be (tokens, layers, k), got shape {experts.shape}")
    if experts.size and (experts.min() < 0):
        raise MoesimError("expert ids must be >= 0")
    n = experts.shape[0]
    seq = np.zeros(n, dtype=np.int32) if seq is None else np.asarray(seq, dtype=np.int32)
    token = np.arange(n, dtype=np.int32) if token is None else np.asarray(token, dtype=np.int32)
    is_prefill = np.zeros(n, dtype=bool) if is_prefill is None else np.asarray(is_prefill, dtype=bool)
    if experts.size and int(experts.max()) >= meta.n_routed_experts:
        bad = np.argwhere(experts >= meta.n_routed_experts)[0]
        raise _row_error(None, int(bad[0]) * meta.n_moe_layers + int(bad[1]),
                         f"expert id {int(experts[tuple(bad)])} >= n_routed_experts {meta.n_routed_experts}")
    trace = Trace(
        meta=meta,
        experts=np.ascontiguousarray(experts.astype(meta.expert_dtype())),
        weights=None if weights is None else np.ascontiguousarray(np.asarray(weights, dtype=np.float32)),
        seq=seq,
        token=token,
        is_prefill=is_prefill,
    )
    validate_trace(trace)
    return trace


def meta_to_dict(meta: TraceMeta) -> dict[str, Any]:
    """Plain-JSON form of the metadata."""
    return {
        "format_version": meta.format_version,
        "model_id": meta.model_id,
        "n_layers": meta.n_layers,
        "moe_layers": list(meta.moe_layers),
        "n_routed_experts": meta.n_routed_experts,
        "top_k": meta.top_k,
        "source": meta.source,
        "licence": meta.licence,
    }
