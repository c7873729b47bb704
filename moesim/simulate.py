"""Public entry points of the timing model: one point (`simulate`) or many (`simulate_many`).

CONTRACT between the timing model (issue 5) and the sweep (issue 6) -- extend, do not rename.

Pipeline per point: catalog -> footprint (bytes per layer, per expert) -> hierarchy (tiers and
links of the machine) -> placement (where every byte lives; refuses what does not fit) ->
routing trace (which experts each token picks; cache misses from the one-pass LRU curve) ->
timing (per-token decode seconds, prefill roofline).  `simulate_many` shares everything that
does not depend on the point: one footprint per (model, quant), one trace and one LRU curve per
model, one hierarchy per machine.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from moesim.errors import MoesimError
from moesim import timing_layout as kb


@dataclass(frozen=True, slots=True)
class SimRequest:
    model: str  # catalog id/alias or path to a config.json / .gguf
    quant: str
    device: str  # device slug or multi-GPU system slug
    device_count: int = 1
    host: str | None = None  # cpu-kind device slug; None = the typical host for the device's class
    host_overrides: tuple[tuple[str, object], ...] = ()  # (field, value) e.g. ("mem_channels", 4)
    strategy: str = "auto"
    context: int = 4096  # tokens already in the KV cache
    batch: int = 1
    engine: str = "llama.cpp"
    prompt_tokens: int = 512  # prefill length for prefill tok/s and TTFT
    kv_type: str = "f16"
    trace: str | None = None  # path to a trace file; None = synthetic from the model family preset
    seed: int = 0


@dataclass(frozen=True, slots=True)
class SimResult:
    request: SimRequest
    strategy: str  # resolved placement (auto -> the one chosen)
    fits: bool
    reason: str  # why it does not fit / what was assumed; "" when fine
    decode_tok_s: float
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    prefill_tok_s: float
    ttft_s: float
    hit_rate: float  # expert-cache / VRAM hit rate of routed-expert look-ups (nan when not applicable)
    weights_bytes: int
    kv_cache_bytes: int
    bytes_by_tier: dict[str, int] = field(default_factory=dict)  # "vram", "host", "nvme"
    bytes_per_token_by_link: dict[str, float] = field(default_factory=dict)  # "vram", "host_ram", "pcie", "nvme", "interconnect"
    time_breakdown_s: dict[str, float] = field(default_factory=dict)  # per-token seconds by component
    assumptions: dict[str, object] = field(default_factory=dict)  # bandwidths, efficiencies used
    decode_tok_s_low: float = float("nan")  # uncertainty band from calibration residuals of the group
    decode_tok_s_high: float = float("nan")
    llama_cpp_command: str = ""
    group: str = ""  # calibration group: dense-in-vram, moe-offload, unified, cpu-only, multi-gpu
    candidates: dict[str, float] = field(default_factory=dict)  # auto: decode tok/s of every fitting candidate


# Decode steps timed per point and the warm-up that fills caches before timing starts.
DECODE_STEPS = 256
WARMUP_STEPS = 128
# Sequences in the synthetic trace: batched decode takes the union of their experts per step.
TRACE_SEQS = 8

NAN = float("nan")


def simulate(request: SimRequest) -> SimResult:
    """Simulate one point (see `simulate_many`)."""
    return simulate_many([request])[0]


def simulate_columns(requests: list[SimRequest], strategies: list[tuple[str, ...]] | None = None) -> dict:
    """`simulate_many` as columns for large sweeps: numpy arrays (and lists of strings) keyed like the
    SimResult fields (`decode_tok_s`, `fits`, `strategy`, ...), flattened dicts as `bytes_<tier>`,
    `bytes_per_token_<link>` and `time_<component>_s`. Same values, no object per point.

    With `strategies` (one tuple per request), request r stands for one point per name in
    strategies[r] (its own `strategy` is ignored): the same columns as the expanded list of
    requests, in that order, without building a request per point."""
    requests = list(requests)
    if strategies is not None:
        strategies = [tuple(names) for names in strategies]
        if len(strategies) != len(requests):
            raise ValueError(f"{len(strategies)} strategy lists for {len(requests)} requests")
    return _SESSION.run_columns(requests, strategies)


def simulate_many(requests: list[SimRequest]) -> list[SimResult]:
    """Many points at once, sharing footprints, traces and miss-ratio curves between them.

    Raises MoesimError (one line) for input that cannot be simulated at all: unknown ids,
    negative sizes, impossible strategies (ngl:-1, tp:3 on one GPU).  Placements that merely do
    not fit come back as results with fits=False and the reason.
    """
    session = _SESSION
    return session.run_many(list(requests))


# ----------------------------------------------------------------------------- shared state


class _Session:
    """Caches shared by every point: cleared only when the process ends (catalogs are static)."""

    def __init__(self):
        self.models: dict = {}
        self.profiles: dict = {}
        self.routings: dict = {}
        self.machines: dict = {}
        self.machine_rows: dict = {}
        self.engines: dict = {}
        self.loadable: set = set()  # (engine, quant) pairs already checked
        self.overheads: dict = {}
        self.evals: dict = {}
        self.prefills: dict = {}
        self.tables: dict = {}
        self.bands = None

    # -- catalog lookups ----------------------------------------------------------------
    def model(self, name: str):
        got = self.models.get(name)
        if got is None:
            from moesim.catalog.models import get_model

            got = get_model(name)
            self.models[name] = got
        return got

    def engine(self, name: str):
        got = self.engines.get(name)
        if got is None:
            from moesim.catalog.engines import get_engine

            got = get_engine(name)
            self.engines[name] = got
        return got

    def profile(self, model, quant: str, kv_type: str, mla_layout: str):
        key = (model.id, quant, kv_type, mla_layout)
        got = self.profiles.get(key)
        if got is None:
            got = build_profile(model, quant, kv_type, mla_layout)
            self.profiles[key] = got
        return got

    def routing(self, model, trace_path: str | None, seed: int, batch: int = 1):
        from moesim.timing import dense_routing

        # one synthetic sequence serves batch 1 (sequence 0 is the same whatever the count), more only for batches
        n_seqs = 1 if (batch == 1 and trace_path is None) else TRACE_SEQS
        key = (model.id, trace_path, seed, n_seqs)
        got = self.routings.get(key)
        if got is None:
            if not model.is_moe:
                got = dense_routing(DECODE_STEPS)
            else:
                got = load_routing(model, trace_path, seed, n_seqs)
            self.routings[key] = got
        return got

    def check_loads(self, engine, quant_id: str) -> None:
        """One-line error where the engine cannot load the quantization's files (mlx and a GGUF)."""
        key = (engine.name, quant_id)
        if key not in self.loadable:
            from moesim.catalog.engines import check_engine_loads
            from moesim.catalog.quants import get_quant

            check_engine_loads(engine, get_quant(quant_id))
            self.loadable.add(key)

    def machine(self, req: SimRequest, engine):
        key = (req.device, req.device_count, req.host, req.host_overrides, engine.name)
        got = self.machines.get(key)
        if got is None:
            got = resolve_machine(req, engine)
            self.machines[key] = got
        return got

    def overhead(self, model, engine, context: int, batch: int) -> float:
        key = (model.id, engine.name, context, batch)
        got = self.overheads.get(key)
        if got is None:
            from moesim.footprint import runtime_overhead_bytes

            got = float(runtime_overhead_bytes(model, engine, context, batch))
            self.overheads[key] = got
        return got

    # -- many points: one batch-kernel call per (model, quant, context, batch, trace) group ----
    def run_many(self, requests: list) -> list:
        results: list = [None] * len(requests)
        for batch_out in self._evaluate_batches(requests, results):
            members, out, hiers, p_machine, profile, model, routing, kv_bytes, file_name = batch_out
            for j, (i, req, spec) in enumerate(members):
                o = out[j]
                results[i] = _result_from_row(req, spec, o, hiers[int(p_machine[j])], profile, model, routing,
                                              kv_bytes, file_name, self)
        return results

    def run_columns(self, requests: list, strategies: list | None = None) -> dict:
        """Like run_many, but the results as columns (no SimResult object per point)."""
        n = len(requests) if strategies is None else sum(len(names) for names in strategies)
        fallback: list = [None] * n
        cols = _empty_columns(n)
        for batch_out in self._evaluate_batches(requests, fallback, strategies):
            members, out, hiers, p_machine, profile, model, routing, kv_bytes, file_name = batch_out
            _fill_columns(cols, members, out, hiers, p_machine, profile, kv_bytes, file_name, self)
        for i, res in enumerate(fallback):
            if res is not None:
                _fill_from_result(cols, i, res)
        return cols

    def _evaluate_batches(self, requests: list, results: list, strategies: list | None = None):
        """Yield one batch-kernel output per group; points the batch path does not model (other cache
        policies, prefetch, `auto` with nothing fitting) are written to `results` by the per-point path.
        With `strategies`, each request stands for one point per strategy name (see simulate_columns);
        the members then carry that shared request and the point's parsed strategy."""
        groups: dict = {}
        prev = None
        for i, (req, name) in enumerate(_points(requests, strategies)):
            # a sweep sends the strategies of one machine back to back: when only the strategy differs
            # from the previous request, its checks, look-ups and group are the previous one's
            if not (req is prev) and not (prev is not None and req.model == prev.model and req.quant == prev.quant
                    and req.device == prev.device and req.device_count == prev.device_count
                    and req.host == prev.host and req.host_overrides == prev.host_overrides
                    and req.context == prev.context and req.batch == prev.batch and req.engine == prev.engine
                    and req.prompt_tokens == prev.prompt_tokens and req.kv_type == prev.kv_type
                    and req.trace == prev.trace and req.seed == prev.seed):
                _check_request(req)
                model = self.model(req.model)
                engine = self.engine(req.engine)
                self.check_loads(engine, req.quant)
                hier, _ = self.machine(req, engine)
                key = (model.id, req.quant, req.kv_type, engine.name, req.trace, req.seed, req.context, req.batch,
                       req.prompt_tokens)
                members = groups.get(key)
                if members is None:
                    members = groups[key] = []
                prev = req
            spec = _parse_strategy(name)
            if spec.kind == "expert-cache" and (spec.policy != "lru" or spec.prefetch):
                # other policies and prefetch replay the trace per point
                results[i] = self.run(req if req.strategy == name else dataclasses.replace(req, strategy=name))
                continue
            if spec.kind in ("tp", "ep"):
                _check_parallel(spec, hier.gpu_count)
            members.append((i, req, spec))
        for members in groups.values():
            if not members:  # every point of it went the per-point way
                continue
            got = self._run_group(members, results)
            if got is not None:
                yield got

    def _run_group(self, members: list, results: list):
        from moesim.kernels import timing_batch

        _, req0, _ = members[0]
        model = self.model(req0.model)
        engine = self.engine(req0.engine)
        profile = self.profile(model, req0.quant, req0.kv_type, engine.mla_kv_layout)
        routing = self.routing(model, req0.trace, req0.seed, req0.batch)
        overhead = self.overhead(model, engine, req0.context, req0.batch)
        context, batch = req0.context, req0.batch
        machine_index: dict = {}
        rows = []
        hiers = []
        n = len(members)
        p_machine = np.empty(n, np.int64)
        p_kind = np.empty(n, np.int64)
        p_n = np.empty(n, np.int64)
        p_cache = np.empty(n, np.float64)
        prev = None
        mi = -1
        spec_codes: dict = {}
        machine_of = []
        kind_of = []
        n_of = []
        cache_of = []
        for _, req, spec in members:
            if req is not prev and not (prev is not None and req.device == prev.device and req.device_count == prev.device_count
                    and req.host == prev.host and req.host_overrides == prev.host_overrides):
                mkey = (req.device, req.device_count, req.host, req.host_overrides)
                mi = machine_index.get(mkey)
                if mi is None:
                    # a machine's kernel row is the same in every group: build it once per session
                    row_key = (mkey, engine.name)
                    got = self.machine_rows.get(row_key)
                    if got is None:
                        hier, _ = self.machine(req, engine)
                        got = self.machine_rows[row_key] = (_machine_row(hier), hier)
                    mi = machine_index[mkey] = len(rows)
                    rows.append(got[0])
                    hiers.append(got[1])
                prev = req
            machine_of.append(mi)
            codes = spec_codes.get(id(spec))  # parsed specs are cached, one object per strategy name
            if codes is None:
                codes = spec_codes[id(spec)] = (
                    kb.KIND_CODES[spec.kind], profile.n_layers if spec.kind == "cpu-moe" else spec.n,
                    -1.0 if spec.cache_bytes is None else float(spec.cache_bytes))
            kind_of.append(codes[0])
            n_of.append(codes[1])
            cache_of.append(codes[2])
        p_machine[:] = machine_of
        p_kind[:] = kind_of
        p_n[:] = n_of
        p_cache[:] = cache_of
        machines = np.array(rows, dtype=np.float64).reshape(len(rows), kb.M_WIDTH)
        L = profile.n_layers
        M = len(profile.moe_layers)
        kv_eff = np.where(profile.kv_window > 0, np.minimum(context, profile.kv_window), context)
        kv_l = profile.kv_bytes_per_token_layer * kv_eff * batch
        kv_total = profile.kv_bytes(context, batch)
        per_layer = profile.layer_fixed_bytes.copy()
        per_layer[profile.moe_layers] += profile.expert_bytes * profile.n_experts
        per_layer += profile.kv_bytes_per_token_layer * kv_eff * batch
        rev_cum = np.concatenate([[0.0], np.cumsum(per_layer[::-1])])
        T = routing.n_steps
        if M:
            counts = routing.counts(batch)
            bscale = routing.scale_batch(batch)
            if bscale != 1.0:
                counts = np.minimum(counts * bscale, float(profile.n_experts))
            counts = np.ascontiguousarray(counts, dtype=np.float64)
            needs = routing.lru_needs()
            gpu_counts_needed = sorted({int(m[kb.M_NGPU]) for m in rows if m[kb.M_NGPU] > 1})
        else:
            counts = np.zeros((1, 0))
            needs = np.zeros((T, 0, 1), np.int16)
            gpu_counts_needed = []
        ep_index = np.full(max([1] + gpu_counts_needed) + 1, -1, np.int64)
        ep_rows = np.zeros((max(1, len(gpu_counts_needed)), T, M))
        for e, g in enumerate(gpu_counts_needed):
            ep_index[g] = e
            ep_rows[e] = routing.ep_max_counts(g, batch)
        if M:
            miss_bytes, miss_count = self.miss_tables(model, profile, req0.trace, req0.seed, routing)
        else:
            miss_bytes = miss_count = np.zeros((1, T))
        out = np.empty((n, kb.O_WIDTH))
        timing_batch._evaluate_points(
            p_machine, p_kind, p_n, p_cache, machines,
            profile.layer_fixed_bytes, profile.layer_fixed_params, profile.layer_ffn_bytes, profile.layer_ffn_params,
            profile.kv_bytes_per_token_layer, profile.kv_window, profile.attn_flops_per_ctx_token_layer,
            profile.moe_layers, profile.expert_bytes, profile.expert_params,
            float(profile.output_bytes), float(profile.output_params), float(profile.embedding_bytes),
            int(profile.n_experts), int(profile.top_k), float(profile.layer_fixed_bytes_total), float(profile.routed_bytes),
            kv_l, float(kv_total), float(profile.kv_bytes(context + (T - 1) / 2.0, batch)), rev_cum,
            float(profile.hidden_size), float(profile.gpu_kernel_efficiency), float(overhead),
            counts, batch == 1, needs, miss_bytes, miss_count, ep_rows, ep_index,
            float(batch), float(context), T, int(req0.prompt_tokens), int(getattr(engine, "prefill_ubatch", 512) or 512),
            bool(getattr(engine, "uploads_weights_for_prefill", False)), int(getattr(engine, "prefill_upload_min_batch", 32)),
            out,
        )
        kv_bytes = int(round(kv_total))
        file_name = f"{model.alias or model.id.split('/')[-1]}-{req0.quant}.gguf"
        keep = []
        for j, (i, req, spec) in enumerate(members):
            if out[j, kb.O_FITS] < 0.5 and spec.kind == "auto":
                # every candidate refused: the per-point path lists them all
                if _parse_strategy(req.strategy) is not spec:  # a request shared by several strategies
                    req = dataclasses.replace(req, strategy=spec.name)
                results[i] = self.run(req)
            else:
                keep.append(j)
        if len(keep) < len(members):
            members = [members[j] for j in keep]
            out = out[keep]
            p_machine = p_machine[keep]
        if not members:
            return None
        return members, out, hiers, p_machine, profile, model, routing, kv_bytes, file_name

    def miss_tables(self, model, profile, trace, seed, routing):
        """Per-capacity LRU miss bytes/counts per step for (model, quant, trace): one pass over the look-ups."""
        from moesim.kernels.timing_batch import _miss_tables

        key = (model.id, profile.quant, trace, seed)
        got = self.tables.get(key)
        if got is None:
            E = profile.n_experts
            miss_bytes = np.empty((E + 2, routing.n_steps))
            miss_count = np.empty((E + 2, routing.n_steps))
            _miss_tables(routing.lru_needs(), profile.expert_bytes, E, miss_bytes, miss_count)
            if len(self.tables) > 64:
                self.tables.clear()
            got = self.tables[key] = (miss_bytes, miss_count)
        return got

    # -- one point ----------------------------------------------------------------------
    def run(self, req: SimRequest) -> SimResult:
        _check_request(req)
        from moesim.placement import llama_cpp_command, parse_strategy
        from moesim.timing import prefill_timing

        spec = parse_strategy(req.strategy)
        model = self.model(req.model)
        engine = self.engine(req.engine)
        self.check_loads(engine, req.quant)
        profile = self.profile(model, req.quant, req.kv_type, engine.mla_kv_layout)
        hier, host = self.machine(req, engine)
        overhead = self.overhead(model, engine, req.context, req.batch)
        routing = self.routing(model, req.trace, req.seed, req.batch)

        memo_key = (model.id, req.quant, req.kv_type, engine.name, req.device, req.device_count, req.host,
                    req.host_overrides, req.trace, req.seed, req.context, req.batch)
        best, refused, tried = choose_placement(spec, profile, hier, routing, req.context, req.batch, overhead,
                                                self.evals, memo_key)
        if len(self.evals) > 200_000:  # a sweep's points share a cell at a time; keep memory bounded
            self.evals.clear()

        kv_bytes = int(round(profile.kv_bytes(req.context, req.batch)))
        file_name = f"{model.alias or model.id.split('/')[-1]}-{req.quant}.gguf"
        if best is None:
            pl = refused[0] if refused else None
            reason = pl.reason if pl is not None else "no placement fits"
            if spec.kind == "auto" and len(refused) > 1:
                reason = "no candidate fits: " + " | ".join(p.reason for p in refused)
            return SimResult(
                request=req, strategy=pl.strategy if (pl is not None and spec.kind != "auto") else spec.name,
                fits=False, reason=reason,
                decode_tok_s=NAN, latency_mean_s=NAN, latency_p50_s=NAN, latency_p95_s=NAN, latency_p99_s=NAN,
                prefill_tok_s=NAN, ttft_s=NAN, hit_rate=NAN,
                weights_bytes=int(profile.weights_bytes), kv_cache_bytes=kv_bytes,
                assumptions=dict(hier.assumptions), llama_cpp_command="",
                group=_group(hier, None, profile),
            )

        pl, dec, tok_s = best
        pkey = (memo_key, pl.strategy, req.prompt_tokens)
        pre = self.prefills.get(pkey)
        if pre is None:
            pre = prefill_timing(profile, pl, hier, engine, req.prompt_tokens, 0)
            if len(self.prefills) > 200_000:
                self.prefills.clear()
            self.prefills[pkey] = pre
        steps = dec.step_s
        srt = np.sort(steps)
        n_steps = len(srt)
        # nearest-rank percentiles of the per-step latency
        p50, p95, p99 = (float(srt[min(n_steps - 1, int(math.ceil(q * n_steps)) - 1)]) for q in (0.50, 0.95, 0.99))
        mean_step = dec.mean_step_s
        ttft = pre.seconds + float(steps[0]) if req.prompt_tokens > 0 else float(steps[0])
        group = _group(hier, pl, profile)
        low, high = self.band(group, tok_s)
        assumptions = dict(hier.assumptions)
        assumptions.update(
            hit_rate=None if math.isnan(dec.hit_rate) else round(dec.hit_rate, 4),
            cache_experts_per_layer=pl.cache_experts_per_layer if pl.cache_experts_per_layer else None,
            notes=list(pl.notes),
            trace=req.trace or "synthetic (model family preset)",
            decode_steps=int(len(steps)),
            prefill_breakdown_s=pre.breakdown_s,
        )
        return SimResult(
            request=req, strategy=pl.strategy, fits=True, reason=pl.reason,
            decode_tok_s=tok_s, latency_mean_s=mean_step,
            latency_p50_s=float(p50), latency_p95_s=float(p95), latency_p99_s=float(p99),
            prefill_tok_s=pre.tok_s, ttft_s=ttft, hit_rate=dec.hit_rate,
            weights_bytes=int(profile.weights_bytes), kv_cache_bytes=kv_bytes,
            bytes_by_tier=dict(pl.bytes_by_tier), bytes_per_token_by_link=dec.bytes_per_token_by_link,
            time_breakdown_s=dec.breakdown_s, assumptions=assumptions,
            decode_tok_s_low=low, decode_tok_s_high=high,
            llama_cpp_command=llama_cpp_command(pl.strategy, file_name, req.context, req.batch, pl.n_gpus,
                                                engine=engine.name),
            group=group, candidates=tried if spec.kind == "auto" else {},
        )

    def band_factors(self, group: str) -> tuple[float, float] | None:
        """(exp(low log ratio), exp(high log ratio)) of a calibration group; None without a band."""
        if self.bands is None:
            from moesim.validate import load_bands

            self.bands = load_bands()
        q = self.bands.get(group)
        if not q:
            return None
        return math.exp(q["log_ratio_low"]), math.exp(q["log_ratio_high"])

    def band(self, group: str, tok_s: float) -> tuple[float, float]:
        if self.bands is None:
            from moesim.validate import load_bands

            self.bands = load_bands()
        q = self.bands.get(group)
        if not q or not math.isfinite(tok_s):
            return NAN, NAN
        return tok_s * math.exp(q["log_ratio_low"]), tok_s * math.exp(q["log_ratio_high"])


_SESSION = _Session()


def choose_placement(spec, profile, hier, routing, context: int, batch: int, overhead_bytes: float,
                     memo: dict | None = None, memo_key=None):
    """Place and time `spec` (auto: every candidate) -> (best, refused placements, tok/s by name).

    `best` is (Placement, DecodeTiming, decode tok/s) of the fastest placement that fits, or None.
    `memo` (with a `memo_key` naming everything but the strategy) shares evaluations between an
    `auto` point and the explicit strategies of the same machine and model.
    """
    from moesim.placement import auto_candidates, place
    from moesim.timing import decode_timing

    candidates = auto_candidates(profile, hier, context, batch, overhead_bytes) if spec.kind == "auto" else [spec]
    best = None
    refused = []
    tried: dict[str, float] = {}
    all_in_vram_fits = False
    for cand in candidates:
        in_vram_tier = cand.kind in ("gpu", "unified", "tp", "ep")
        if all_in_vram_fits and spec.kind == "auto" and not in_vram_tier:
            break  # like llama.cpp --fit: everything in (V)RAM fits, so nothing is offloaded
        key = (memo_key, cand.name) if memo is not None else None
        got = memo.get(key) if key is not None else None
        if got is None:
            pl = place(cand, profile, hier, context, batch, overhead_bytes)
            if pl.fits:
                dec = decode_timing(profile, pl, hier, routing, context, batch)
                mean_step = dec.mean_step_s
                got = (pl, dec, batch / mean_step if mean_step > 0 else NAN)
            else:
                got = (pl, None, NAN)
            if key is not None:
                memo[key] = got
        pl, dec, tok_s = got
        if dec is None:
            refused.append(pl)
            continue
        all_in_vram_fits = all_in_vram_fits or in_vram_tier
        tried[pl.strategy] = tok_s
        if best is None or tok_s > best[2]:
            best = (pl, dec, tok_s)
    return best, refused, tried


def clear_caches() -> None:
    """Forget every cached footprint, trace and machine (tests that swap catalogs use this)."""
    global _SESSION
    _SESSION = _Session()


_BREAKDOWN_NAMES = ("attention_weights", "kv_cache", "dense_ffn", "experts_gpu", "experts_cpu", "expert_fetch_link",
                    "nvme_page_in", "overlap_hidden", "output_head", "launch_overhead", "cpu_gpu_sync", "collectives",
                    "token_overhead")
_LINK_NAMES = ("vram", "host_ram", "pcie", "nvme", "interconnect")
_PREFILL_NAMES = ("gpu_weights", "cpu_weights", "upload", "attention", "overhead", "output_head")


def _points(requests: list, strategies: list | None):
    """(request, strategy name) per point: the requests themselves, or each request once per name."""
    if strategies is None:
        for req in requests:
            yield req, req.strategy
    else:
        for req, names in zip(requests, strategies):
            for name in names:
                yield req, name


def _check_parallel(spec, n_gpus: int) -> None:
    """tp:N / ep:N must use every GPU of the machine (mirrors placement.place)."""
    name = spec.name
    if spec.n > max(n_gpus, 0) or n_gpus == 0:
        raise MoesimError(f"strategy {name} needs {spec.n} GPUs but the machine has {n_gpus}")
    if spec.n != n_gpus:
        raise MoesimError(f"strategy {name} on {n_gpus} GPUs: use {spec.kind}:{n_gpus} (all devices of the machine)")


def _machine_row(hier) -> list:
    """One row of the batch kernel's machine table (column order of kernels.timing_batch.M_*)."""
    return [
        hier.gpu_count, 1.0 if hier.unified else 0.0, hier.gpu_capacity_bytes, hier.gpu_bandwidth_bps, hier.gpu_flops,
        hier.host_capacity_bytes, hier.pool_capacity_bytes, hier.host_bandwidth_bps, hier.cpu_ops,
        hier.link_bandwidth_bps, hier.link_pageable_bandwidth_bps, hier.link_latency_s, hier.interconnect_bandwidth_bps,
        hier.collective_latency_s, hier.nvme_bandwidth_bps, hier.sync_latency_s, hier.launch_overhead_s,
        hier.token_overhead_s, hier.gpu_layer_floor_s, 1.0 if hier.overlaps_cpu_gpu else 0.0,
        1.0 if hier.numa_duplicates else 0.0, float(hier.host_sockets),
        float(hier.auto_kinds_mask), float(hier.runnable_kinds_mask), 1.0 if hier.engine_drives_device else 0.0,
    ]


def _resolved_name(kind_code: int, n: int, spec) -> str:
    """Strategy name of a batch-kernel row: the request's own name, or auto's choice."""
    if spec.kind != "auto":
        return spec.name
    kind = kb.KIND_NAMES[kind_code]
    if kind in ("ngl", "n-cpu-moe", "tp", "ep"):
        return f"{kind}:{n}"
    if kind == "expert-cache":
        return "expert-cache:lru"
    return kind


def _result_from_row(req, spec, o, hier, profile, model, routing, kv_bytes: int, file_name: str, session) -> SimResult:
    """A SimResult from one row of the batch kernel (same fields and values as the per-point path)."""
    from moesim.placement import R_VRAM, cache_note, fitting_alternative, numa_note, nvme_note, refusal_reason

    o = o.tolist()  # plain floats: indexing a numpy row element by element is slower
    kind_code = int(o[kb.O_KIND]) if math.isfinite(o[kb.O_KIND]) else 0
    n_arg = int(o[kb.O_N]) if math.isfinite(o[kb.O_N]) else 0
    if o[kb.O_FITS] < 0.5:
        name = spec.name
        code = int(o[kb.O_REASON])
        reason = refusal_reason(code, name, profile.model_id, float(o[kb.O_NEED]), float(o[kb.O_CAP]), hier.unified,
                                hier.engine_notes)
        if code == R_VRAM:
            overhead = session.overhead(model, session.engine(req.engine), req.context, req.batch)
            reason += fitting_alternative(spec, profile, hier, req.context, req.batch, overhead)
        return SimResult(
            request=req, strategy=name, fits=False, reason=reason,
            decode_tok_s=NAN, latency_mean_s=NAN, latency_p50_s=NAN, latency_p95_s=NAN, latency_p99_s=NAN,
            prefill_tok_s=NAN, ttft_s=NAN, hit_rate=NAN,
            weights_bytes=int(profile.weights_bytes), kv_cache_bytes=kv_bytes,
            assumptions=dict(hier.assumptions), llama_cpp_command="", group=_group(hier, None, profile),
        )
    name = _resolved_name(kind_code, n_arg, spec)
    n_gpus = int(o[kb.O_NG])
    cache = int(o[kb.O_CACHE])
    ram = int(o[kb.O_RAM])
    kind = kb.KIND_NAMES[kind_code]
    notes = []
    if kind == "ktransformers" and hier.numa_duplicates and hier.host_sockets > 1:
        notes.append(numa_note(hier.host_sockets))
    if kind in ("expert-cache", "cpu-or-fetch"):
        notes.append(cache_note(cache, cache * float(profile.expert_bytes.sum())))
    reason = ""
    if o[kb.O_T_NVME] > 0 or (ram < profile.n_experts and profile.is_moe):
        note = nvme_note(ram, profile.n_experts, float(o[kb.O_T_NVME]))
        notes.append(note)
        reason = note
    tiers = {"vram": int(round(o[kb.O_T_VRAM])), "host": int(round(o[kb.O_T_HOST])), "nvme": int(round(o[kb.O_T_NVME]))}
    if n_gpus > 1:
        tiers["vram_per_gpu"] = int(round(o[kb.O_T_VRAM] / n_gpus))
    tok_s = float(o[kb.O_TOKS])
    hit = float(o[kb.O_HIT])
    prefill_s = float(o[kb.O_PREFILL])
    prompt = req.prompt_tokens
    prefill_tok_s = prompt / prefill_s if (prompt > 0 and prefill_s > 0) else NAN
    first = float(o[kb.O_FIRST])
    group = _group_from(hier, n_gpus, kind, n_arg, profile)
    low, high = session.band(group, tok_s)
    assumptions = {
        **hier.assumptions,
        "hit_rate": None if hit != hit else round(hit, 4),
        "cache_experts_per_layer": cache if cache else None,
        "notes": notes,
        "trace": req.trace or "synthetic (model family preset)",
        "decode_steps": routing.n_steps,
        "prefill_breakdown_s": dict(zip(_PREFILL_NAMES, o[kb.O_P0:kb.O_P0 + 6])) if prompt > 0 else {},
    }
    candidates = {}
    if spec.kind == "auto":
        for c in range(kb.N_CAND):
            cand_tok = o[kb.O_C0 + 3 * c + 2]
            if math.isfinite(o[kb.O_C0 + 3 * c]) and math.isfinite(cand_tok):
                candidates[_resolved_name(int(o[kb.O_C0 + 3 * c]), int(o[kb.O_C0 + 3 * c + 1]), spec)] = float(cand_tok)
    return SimResult(
        request=req, strategy=name, fits=True, reason=reason,
        decode_tok_s=tok_s, latency_mean_s=float(o[kb.O_MEAN]),
        latency_p50_s=float(o[kb.O_P50]), latency_p95_s=float(o[kb.O_P95]), latency_p99_s=float(o[kb.O_P99]),
        prefill_tok_s=prefill_tok_s, ttft_s=(prefill_s + first) if prompt > 0 else first, hit_rate=hit,
        weights_bytes=int(profile.weights_bytes), kv_cache_bytes=kv_bytes,
        bytes_by_tier=tiers, bytes_per_token_by_link=dict(zip(_LINK_NAMES, o[kb.O_L0:kb.O_L0 + 5])),
        time_breakdown_s=dict(zip(_BREAKDOWN_NAMES, o[kb.O_B0:kb.O_B0 + 13])), assumptions=assumptions,
        decode_tok_s_low=low, decode_tok_s_high=high,
        llama_cpp_command=_llama_cpp_command(name, file_name, req.context, req.batch, n_gpus,
                                             session.engine(req.engine).name),
        group=group, candidates=candidates,
    )


@lru_cache(maxsize=65536)
def _llama_cpp_command(name: str, file_name: str, context: int, batch: int, n_gpus: int, engine: str) -> str:
    from moesim.placement import llama_cpp_command

    return llama_cpp_command(name, file_name, context, batch, n_gpus, engine=engine)


@lru_cache(maxsize=4096)
def _parse_strategy(text: str):
    from moesim.placement import parse_strategy

    return parse_strategy(text)


COLUMN_FLOATS = ("decode_tok_s", "decode_tok_s_low", "decode_tok_s_high", "latency_mean_s", "latency_p50_s",
                 "latency_p95_s", "latency_p99_s", "prefill_tok_s", "ttft_s", "hit_rate")
COLUMN_INTS = ("weights_bytes", "kv_cache_bytes")
COLUMN_STRINGS = ("strategy", "reason", "group", "llama_cpp_command")
TIER_NAMES = ("vram", "host", "nvme")


def _empty_columns(n: int) -> dict:
    cols: dict = {name: np.full(n, np.nan) for name in COLUMN_FLOATS}
    cols.update({name: np.zeros(n, np.int64) for name in COLUMN_INTS})
    cols.update({name: [""] * n for name in COLUMN_STRINGS})
    cols["fits"] = np.zeros(n, bool)
    for name in TIER_NAMES:
        cols[f"bytes_{name}"] = np.zeros(n, np.int64)
    for name in _LINK_NAMES:
        cols[f"bytes_per_token_{name}"] = np.full(n, np.nan)
    for name in _BREAKDOWN_NAMES:
        cols[f"time_{name}_s"] = np.full(n, np.nan)
    return cols


def _fill_from_result(cols: dict, i: int, res) -> None:
    for name in COLUMN_FLOATS + COLUMN_INTS + COLUMN_STRINGS + ("fits",):
        cols[name][i] = getattr(res, name)
    for name in TIER_NAMES:
        cols[f"bytes_{name}"][i] = int(res.bytes_by_tier.get(name, 0))
    for name in _LINK_NAMES:
        cols[f"bytes_per_token_{name}"][i] = res.bytes_per_token_by_link.get(name, np.nan)
    for name in _BREAKDOWN_NAMES:
        cols[f"time_{name}_s"][i] = res.time_breakdown_s.get(name, np.nan)


def _fill_columns(cols, members, out, hiers, p_machine, profile, kv_bytes, file_name, session) -> None:
    """Write one group's kernel rows into the columns, vectorised where the values are numbers."""
    from moesim.placement import R_VRAM, fitting_alternative, nvme_note, refusal_reason

    idx = np.fromiter((i for i, _, _ in members), np.int64, len(members))
    engine_name = session.engine(members[0][1].engine).name  # one engine per group (its key)
    fits = out[:, kb.O_FITS] > 0.5
    prompts = np.full(len(members), float(members[0][1].prompt_tokens))  # one prompt length per group (its key)
    cols["fits"][idx] = fits
    cols["weights_bytes"][idx] = int(profile.weights_bytes)
    cols["kv_cache_bytes"][idx] = kv_bytes
    nan = np.nan
    tok = np.where(fits, out[:, kb.O_TOKS], nan)
    cols["decode_tok_s"][idx] = tok
    cols["latency_mean_s"][idx] = np.where(fits, out[:, kb.O_MEAN], nan)
    cols["latency_p50_s"][idx] = np.where(fits, out[:, kb.O_P50], nan)
    cols["latency_p95_s"][idx] = np.where(fits, out[:, kb.O_P95], nan)
    cols["latency_p99_s"][idx] = np.where(fits, out[:, kb.O_P99], nan)
    pre = out[:, kb.O_PREFILL]
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["prefill_tok_s"][idx] = np.where(fits & (prompts > 0) & (pre > 0), prompts / pre, nan)
    cols["ttft_s"][idx] = np.where(fits, np.where(prompts > 0, pre + out[:, kb.O_FIRST], out[:, kb.O_FIRST]), nan)
    cols["hit_rate"][idx] = np.where(fits, out[:, kb.O_HIT], nan)
    for p, name in enumerate(TIER_NAMES):
        cols[f"bytes_{name}"][idx] = np.where(fits, np.rint(out[:, kb.O_T_VRAM + p]), 0).astype(np.int64)
    for p, name in enumerate(_LINK_NAMES):
        cols[f"bytes_per_token_{name}"][idx] = np.where(fits, out[:, kb.O_L0 + p], nan)
    for p, name in enumerate(_BREAKDOWN_NAMES):
        cols[f"time_{name}_s"][idx] = np.where(fits, out[:, kb.O_B0 + p], nan)
    strategy, reason, group, command = cols["strategy"], cols["reason"], cols["group"], cols["llama_cpp_command"]
    # the strings of a row depend on a few small integers (machine, chosen kind, its argument, GPUs
    # used) that repeat across the points of a group: build each distinct one once
    fields = out[:, [kb.O_KIND, kb.O_N, kb.O_NG, kb.O_RAM, kb.O_T_NVME, kb.O_REASON, kb.O_NEED, kb.O_CAP]]
    rows = fields.tolist()
    machines = p_machine.tolist()
    # _group_from reads only these two facts of a machine, so rows of different machines share strings
    machine_class = [(h.gpu_count, h.unified) for h in hiers]
    n_experts = profile.n_experts
    moe = profile.is_moe
    named: dict = {}
    spec_names: dict = {}
    refusals: dict = {}
    row_groups: dict = {}  # calibration group -> member positions (bands are per group)
    for j, (i, req, spec) in enumerate(members):
        kind_f, n_f, ng_f, ram_f, nvme_f, code_f, need, cap = rows[j]
        m = machines[j]
        spec_name = spec_names.get(id(spec))
        if spec_name is None:
            spec_name = spec_names[id(spec)] = spec.name  # a property that formats: once per strategy
        if not fits[j]:
            hier = hiers[m]
            hinted = int(code_f) == R_VRAM and spec.kind in ("n-cpu-moe", "ngl")
            key = (int(code_f), spec_name, need, cap, hier.unified, hier.engine_notes, m if hinted else -1)
            text = refusals.get(key)
            if text is None:
                text = refusal_reason(key[0], spec_name, profile.model_id, need, cap, hier.unified, hier.engine_notes)
                if hinted:
                    overhead = session.overhead(session.model(req.model), session.engine(req.engine), req.context,
                                                req.batch)
                    text += fitting_alternative(spec, profile, hier, req.context, req.batch, overhead)
                refusals[key] = text
            strategy[i] = spec_name
            reason[i] = text
            group[i] = _group(hier, None, profile)
            continue
        kind_code = int(kind_f) if kind_f == kind_f else 0
        n_arg = int(n_f) if n_f == n_f else 0
        n_gpus = int(ng_f)
        # context and batch are the group's own (part of its key), so they need no place here
        key = (machine_class[m], kind_code, n_arg, n_gpus, spec_name)
        got = named.get(key)
        if got is None:
            hier = hiers[m]
            name = _resolved_name(kind_code, n_arg, spec)
            got = named[key] = (name, _group_from(hier, n_gpus, kb.KIND_NAMES[kind_code], n_arg, profile),
                                _llama_cpp_command(name, file_name, req.context, req.batch, n_gpus, engine_name))
        strategy[i], g, command[i] = got
        group[i] = g
        ram = int(ram_f)
        if nvme_f > 0 or (ram < n_experts and moe):
            reason[i] = nvme_note(ram, n_experts, nvme_f)
        positions = row_groups.get(g)
        if positions is None:
            positions = row_groups[g] = []
        positions.append(j)
    low, high = cols["decode_tok_s_low"], cols["decode_tok_s_high"]
    toks = out[:, kb.O_TOKS]
    for g, positions in row_groups.items():
        factors = session.band_factors(g)
        if factors is None:
            continue
        at = np.asarray(positions, dtype=np.int64)
        tok = toks[at]
        finite = np.isfinite(tok)
        # same product as `band`: tok/s times the group's exp(log ratio)
        low[idx[at]] = np.where(finite, tok * factors[0], np.nan)
        high[idx[at]] = np.where(finite, tok * factors[1], np.nan)


def _group_from(hier, n_gpus: int, kind: str, n: int, profile) -> str:
    """`_group` for a batch-kernel row (same answer, from the strategy instead of the layout arrays)."""
    if hier.gpu_count == 0 or n_gpus == 0:
        return "cpu-only"
    if hier.unified:
        return "unified"
    if hier.gpu_count > 1:
        return "multi-gpu"
    first_moe = int(profile.moe_layers[0]) if len(profile.moe_layers) else profile.n_layers
    all_vram = (kind in ("gpu", "unified", "tp", "ep") or (kind == "ngl" and n > profile.n_layers)
                or (kind == "n-cpu-moe" and n <= first_moe))
    return "dense-in-vram" if all_vram else "moe-offload"


def _group(hier, pl, profile) -> str:
    """Calibration group of a point (bands and validation are reported per group)."""
    if hier.gpu_count == 0 or (pl is not None and pl.n_gpus == 0):
        return "cpu-only"
    if hier.unified:
        return "unified"
    if hier.gpu_count > 1:
        return "multi-gpu"
    if pl is None:
        return "moe-offload" if profile.is_moe else "dense-in-vram"
    from moesim.placement import GPU

    all_vram = bool(pl.fixed_on_gpu.all()) and pl.output_on_gpu and bool((pl.expert_home == GPU).all())
    return "dense-in-vram" if all_vram else "moe-offload"


def _check_request(req: SimRequest) -> None:
    if (type(req.context) is int and type(req.batch) is int and type(req.prompt_tokens) is int
            and type(req.device_count) is int and type(req.seed) is int and req.context >= 0 and req.batch >= 1
            and req.prompt_tokens >= 0 and req.device_count >= 1 and req.seed >= 0):
        return
    for name in ("context", "batch", "prompt_tokens", "device_count", "seed"):
        value = getattr(req, name)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise MoesimError(f"{name} must be an integer, got {value!r}")
        if value < 0:
            raise MoesimError(f"{name} must not be negative, got {value}")
    if req.batch < 1:
        raise MoesimError("batch must be at least 1")
    if req.device_count < 1:
        raise MoesimError("device count must be at least 1")


# ----------------------------------------------------------------------------- building blocks


def build_profile(model, quant: str, kv_type: str = "f16", mla_layout: str = "absorbed"):
    """Bytes and parameters per layer / per expert of (model, quant) from the footprint."""
    from moesim.catalog.quants import get_quant
    from moesim.footprint import footprint, kv_cache_bytes
    from moesim.hierarchy import gpu_quant_kernel_efficiency
    from moesim.placement import ModelProfile

    scheme = get_quant(quant) if isinstance(quant, str) else quant
    fp = footprint(model, scheme)
    L = int(model.n_layers)
    params = _layer_params(model)
    by_layer = np.zeros(L)
    raw = np.asarray(fp.bytes_by_layer, dtype=np.float64)
    by_layer[: min(L, raw.size)] = raw[:L]
    moe_layers = np.asarray(model.moe_layers, dtype=np.int64)
    per_expert_all = np.asarray(fp.routed_expert_bytes_by_layer, dtype=np.float64)
    if per_expert_all.size == L:
        expert_bytes = per_expert_all[moe_layers] if moe_layers.size else np.zeros(0)
    else:  # tolerate a per-MoE-layer tuple
        expert_bytes = per_expert_all[: moe_layers.size]
    E = int(model.n_routed_experts)
    fixed = by_layer.copy()
    if moe_layers.size:
        fixed[moe_layers] -= expert_bytes * E
    fixed = np.maximum(fixed, 0.0)
    # split a layer's always-on bytes into attention and FFN by parameter share (same layer, same
    # quantization rules: the bit widths differ by a few percent at most)
    fixed_params = params["fixed"]
    ffn_params = params["ffn"]
    share = np.divide(ffn_params, fixed_params, out=np.zeros(L), where=fixed_params > 0)
    ffn_bytes = fixed * share
    cat = fp.bytes_by_category
    output_bytes = float(cat.get("output", 0) or 0)
    embedding_bytes = float(cat.get("embedding", 0) or 0)
    if output_bytes == 0 and model.tie_word_embeddings:
        output_bytes = embedding_bytes  # tied head: the embedding matrix is read as the output layer
    kv_one = float(kv_cache_bytes(model, 1, kv_type=kv_type, mla_layout=mla_layout, batch=1))
    kv_layer = np.full(L, kv_one / L)
    window = np.zeros(L, np.int64)
    w = tuple(model.attention_window_by_layer or ())
    if len(w) == L:
        window[:] = w
    return ModelProfile(
        model_id=model.id, quant=scheme.id, n_layers=L, hidden_size=int(model.hidden_size),
        layer_fixed_bytes=fixed, layer_fixed_params=fixed_params, layer_ffn_bytes=ffn_bytes, layer_ffn_params=ffn_params,
        moe_layers=moe_layers, expert_bytes=expert_bytes.astype(np.float64), expert_params=params["expert"][moe_layers] if moe_layers.size else np.zeros(0),
        n_experts=E, top_k=int(model.top_k), output_bytes=output_bytes, output_params=params["output"],
        embedding_bytes=embedding_bytes, weights_bytes=float(fp.weights_bytes),
        kv_bytes_per_token_layer=kv_layer, kv_window=window,
        attn_flops_per_ctx_token_layer=np.full(L, _attn_flops_per_ctx(model)),
        gpu_kernel_efficiency=gpu_quant_kernel_efficiency(getattr(fp, "bytes_by_storage_type", {}) or {}),
    )


_PARAM_CACHE: dict = {}


def _layer_params(model) -> dict:
    """Parameters per layer by role (quantization independent; cached per model)."""
    got = _PARAM_CACHE.get(model.id)
    if got is not None:
        return got
    L = int(model.n_layers)
    fixed = np.zeros(L)
    ffn = np.zeros(L)
    routed = np.zeros(L)
    output = 0.0
    embedding = 0.0
    for t in model.tensors():
        n = float(t.n_params)
        if t.category == "routed_expert":
            if 0 <= t.layer < L:
                routed[t.layer] += n
        elif t.category == "output":
            output += n
        elif t.category == "embedding":
            embedding += n
        elif 0 <= t.layer < L:
            fixed[t.layer] += n
            if t.category in ("dense_ffn", "shared_expert"):
                ffn[t.layer] += n
    if output == 0 and model.tie_word_embeddings:
        output = embedding
    E = max(1, int(model.n_routed_experts))
    got = {"fixed": fixed, "ffn": ffn, "expert": routed / E, "output": output}
    _PARAM_CACHE[model.id] = got
    return got


def _attn_flops_per_ctx(model) -> float:
    """Flops per query token per cached token per layer (scores + weighted sum)."""
    if getattr(model, "attention", "") == "mla" and model.kv_lora_rank:
        # absorbed MLA: scores over kv_lora + rope dims, values over kv_lora dims, every head
        return 2.0 * model.n_heads * (model.kv_lora_rank + model.qk_rope_head_dim) + 2.0 * model.n_heads * model.kv_lora_rank
    return 4.0 * model.n_heads * model.head_dim


def load_routing(model, trace_path: str | None, seed: int, n_seqs: int = TRACE_SEQS):
    """RoutingStats for a model: from a trace file, or the model family's synthetic preset."""
    from moesim.timing import RoutingStats

    if trace_path is not None:
        from moesim.trace.format import read_trace

        if not os.path.exists(trace_path):
            raise MoesimError(f"trace file not found: {trace_path}")
        trace = read_trace(trace_path)
        meta = trace.meta
        if (meta.n_routed_experts != model.n_routed_experts or meta.top_k != model.top_k
                or len(meta.moe_layers) != len(model.moe_layers)):
            raise MoesimError(
                f"trace {os.path.basename(trace_path)} is for {meta.model_id} ({len(meta.moe_layers)} MoE layers x "
                f"{meta.n_routed_experts} experts, top-{meta.top_k}), not {model.id} ({len(model.moe_layers)} x "
                f"{model.n_routed_experts}, top-{model.top_k})")
        dec = trace.decode_only()
        starts = list(dec.seq_starts()) + [dec.n_tokens]
        seqs = [dec.experts[a:b] for a, b in zip(starts, starts[1:]) if b > a]
        if not seqs:
            raise MoesimError(f"trace {os.path.basename(trace_path)} has no decode tokens")
        n_tok = min(len(s) for s in seqs)
        # keep the longest sequence alone rather than cutting every stream to the shortest
        if n_tok < 8:
            seqs = [max(seqs, key=len)]
            n_tok = len(seqs[0])
        stacked = np.stack([s[:n_tok] for s in seqs]).astype(np.uint16)
        warm = min(WARMUP_STEPS, n_tok // 3)
        return RoutingStats(stacked, n_experts=model.n_routed_experts, warmup_tokens=warm)
    from moesim.trace.generate import generate_trace

    trace = generate_trace(model, n_tokens=WARMUP_STEPS + DECODE_STEPS, n_seqs=n_seqs, seed=seed)
    dec = trace.decode_only()
    per = WARMUP_STEPS + DECODE_STEPS
    # one id width for every model: the stack-distance kernels then compile once, not per width
    stacked = dec.experts.reshape(n_seqs, per, dec.n_moe_layers, dec.top_k).astype(np.uint16)
    return RoutingStats(stacked, n_experts=model.n_routed_experts, warmup_tokens=WARMUP_STEPS)


_HOST_FIELDS = ("mem_type", "mem_channels", "mem_mts", "sockets", "cores", "ram_gb", "cpu_isa", "cpu_clock_ghz")


def _host_fields(host) -> dict:
    """The settings of a resolved host, so overrides stack on top of a typical host's own."""
    return {k: getattr(host, k) for k in ("mem_type", "mem_channels", "mem_mts", "sockets", "cores", "ram_gb")}


def resolve_machine(req: SimRequest, engine):
    """(Hierarchy, HostSpec) of the request's device(s) and host."""
    from moesim.catalog.devices import get_device_class, get_host, resolve_target, typical_host
    from moesim.hierarchy import build_hierarchy

    device, count, system = resolve_target(req.device)
    if device.kind == "gpu" and req.device_count > 1 and system is None:
        device, count, system = resolve_target(req.device, req.device_count)
    elif system is not None and req.device_count not in (1, count):
        raise MoesimError(f"{req.device} is a system of {count} devices; a device count of {req.device_count} contradicts it")
    elif device.kind == "unified" and req.device_count > 1:
        raise MoesimError(f"{req.device} is a unified-memory machine; several of them are not modelled")
    overrides = {}
    for name, value in req.host_overrides:
        if name not in _HOST_FIELDS:
            raise MoesimError(f"unknown host setting '{name}' (known: {', '.join(_HOST_FIELDS)})")
        if name not in ("mem_type", "cpu_isa"):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise MoesimError(f"host {name} must be a positive number, got {value!r}")
        overrides[name] = value
    if device.kind == "cpu":
        # a CPU-only target is its own host; device_count counts its sockets
        if req.device_count > 1 and "sockets" not in overrides:
            overrides["sockets"] = req.device_count
        host = get_host(req.host or device.slug, **overrides)
    elif device.kind == "unified":
        # one pool: the machine is its own host (host options that change its memory are refused by the catalog)
        host = get_host(device.slug, **overrides)
    elif req.host is not None:
        host = get_host(req.host, **overrides)
    else:
        host = typical_host(system if system is not None else device)
        if overrides:
            host = get_host(host.slug, **{**_host_fields(host), **overrides})
    dclass = get_device_class(device.device_class)
    hclass = get_device_class(host.device_class)
    hier = build_hierarchy(device, count, system, host, dclass, hclass, engine)
    return hier, host
