"""The memory hierarchy of one machine: tiers (GPU VRAM, host RAM, unified pool, NVMe) and links.

Everything here is derived from catalog data -- a `DeviceSpec` (the accelerator or machine), a
`HostSpec` (RAM and CPU around it), the `DeviceClass` efficiencies of both, the `EngineProfile`
that runs the model, and the sourced constants in `catalog/data/tiers.toml`.  No value is
specific to one measurement.  All rates are stored in bytes/s and operations/s (not GB/s) so
the timing model can divide without unit juggling.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from moesim.errors import MoesimError
from moesim.timing_layout import ALL_KINDS_MASK, KIND_CODES, R_BACKEND, R_ENGINE


@lru_cache(maxsize=1)
def tier_constants() -> dict:
    """The sourced constants of `catalog/data/tiers.toml`."""
    text = resources.files("moesim.catalog").joinpath("data/tiers.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def isa_int8_ops_per_cycle(isa: str | None) -> float:
    """Peak int8 operations per cycle per core for a CPU instruction set (AVX2 when unknown)."""
    table = tier_constants()["isa_int8_ops_per_cycle"]
    if not isa:
        return float(table["avx2"])
    key = isa.lower()
    if key not in table:
        # unknown spellings fall back to the longest family prefix ("avx512-vnni" -> "avx512")
        keys = sorted((k for k in table if k != "source_isa" and key.startswith(k)), key=len, reverse=True)
        key = keys[0] if keys else "avx2"
    return float(table[key])


def gpu_layer_floor_s(device_class: str) -> float:
    """Fixed GPU time per block per decode step for a device class (tiers.toml)."""
    table = tier_constants()["gpu_layer_floor_us"]
    return float(table.get(device_class, table["default"])) * 1e-6


def gpu_quant_kernel_efficiency(bytes_by_storage_type: dict) -> float:
    """Bandwidth efficiency of the GPU mat-vec kernels for a mix of weight formats, relative to F16:
    the byte-weighted harmonic mean over formats (time adds up per byte read)."""
    table = {k: v for k, v in tier_constants()["gpu_quant_kernel_efficiency"].items() if k != "source"}
    keys = sorted(table, key=len, reverse=True)
    total = 0.0
    weighted = 0.0
    for name, nbytes in bytes_by_storage_type.items():
        if nbytes <= 0:
            continue
        eff = next((table[k] for k in keys if name.upper().startswith(k)), 1.0)
        total += nbytes
        weighted += nbytes / eff
    return total / weighted if weighted > 0 else 1.0


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """Tiers and links of one machine, with the efficiencies already applied.

    `gpu_*` fields describe ONE GPU; `gpu_count` says how many.  On a unified-memory machine
    the "GPU" and the host share `pool_capacity_bytes` and one bandwidth.  CPU-only machines
    have `gpu_count == 0`.
    """

    device: str
    gpu_count: int
    unified: bool
    gpu_capacity_bytes: float  # usable VRAM per GPU (unified: GPU-usable share of the pool)
    gpu_bandwidth_bps: float  # achievable per GPU
    gpu_flops: float  # achievable dense fp16 tensor throughput per GPU
    host_capacity_bytes: float  # RAM available for weights (installed minus OS reserve)
    pool_capacity_bytes: float  # unified: the whole pool; discrete: inf (VRAM and RAM are separate)
    host_bandwidth_bps: float  # achievable by the CPU when it streams weights (NUMA applied)
    cpu_ops: float  # achievable int8 operations/s of all cores the engine uses
    link_bandwidth_bps: float  # host -> GPU, pinned (0 when there is no host link)
    link_pageable_bandwidth_bps: float
    link_latency_s: float
    interconnect_bandwidth_bps: float  # GPU <-> GPU per direction (0 for one GPU)
    collective_latency_s: float
    nvme_bandwidth_bps: float
    sync_latency_s: float  # one CPU<->GPU hand-off inside a layer
    launch_overhead_s: float  # per layer, per token, engine kernel launches
    token_overhead_s: float  # per decode step: graph build, sampling, host sync (engine)
    overlaps_cpu_gpu: bool
    numa_duplicates: bool  # CPU weights copied per NUMA node (ktransformers dual socket)
    host_sockets: int
    assumptions: dict = field(default_factory=dict, compare=False, hash=False)
    gpu_layer_floor_s: float = 0.0  # fixed GPU time per block per step (device class)
    # placement kinds as bitmasks over moesim.timing_layout.KIND_CODES (see `engine_support`)
    auto_kinds_mask: int = ALL_KINDS_MASK
    runnable_kinds_mask: int = ALL_KINDS_MASK
    engine_drives_device: bool = True  # one of the engine's backends runs on this machine (else R_BACKEND)
    engine_notes: tuple[str, str] = ("", "")  # refusal text: (strategy the engine lacks, device it cannot drive)

    def runs(self, kind: str) -> bool:
        """Whether an explicit strategy of this kind can run here with the hierarchy's engine."""
        return bool(self.runnable_kinds_mask >> KIND_CODES[kind] & 1)

    @property
    def engine_refusal_code(self) -> int:
        """Why `runs` refuses: R_ENGINE (the engine lacks the placement) or R_BACKEND (it cannot drive the device)."""
        return R_ENGINE if self.engine_drives_device else R_BACKEND

    @property
    def has_gpu(self) -> bool:
        return self.gpu_count > 0


def _gbps(value: float | None) -> float:
    return float(value or 0.0) * 1e9


def _mask(kinds) -> int:
    mask = 0
    for kind in kinds:
        mask |= 1 << KIND_CODES[kind]
    return mask


def engine_support(engine, device) -> dict:
    """What `engine` can run on `device`, as Hierarchy fields.

    - engine kinds: the placements the engine implements (engines.toml `strategies`), plus the what-if
      placements no catalog engine implements (`expert-cache`, `cpu-or-fetch`: research systems that
      moesim models), which stay open to every engine as explicit strategies;
    - runnable: those, if one of the engine's backends drives the device (backends.toml); else only
      `cpu` when the engine has a CPU backend (it then runs on the host), else nothing;
    - auto: runnable kinds the engine implements -- `auto` recommends only what the engine can do."""
    from moesim.catalog.engines import machine_backends, what_if_kinds

    implemented = _mask(engine.strategies)
    what_if = _mask(what_if_kinds())
    engine_kinds = implemented | what_if
    offered = machine_backends(device.kind, device.vendor)
    accelerated = any(backend in offered and backend != "cpu" for backend in engine.backends)
    has_cpu_backend = "cpu" in engine.backends
    drives = accelerated or (device.kind == "cpu" and has_cpu_backend)
    if drives:
        runnable = engine_kinds  # placements this machine cannot hold are refused by `place` with their reason
    elif has_cpu_backend:
        runnable = engine_kinds & _mask(["cpu"])
    else:
        runnable = 0
    backends = ", ".join(engine.backends)
    on_host = "; it runs only cpu here, on the host" if runnable else ""
    what_if_names = ", ".join(what_if_kinds())
    notes = (f"{engine.name} runs only {', '.join(engine.strategies)} (and the what-if {what_if_names})",
             f"{engine.name} has no backend for {device.vendor} {device.kind} devices "
             f"(its backends: {backends}){on_host}")
    return dict(auto_kinds_mask=runnable & implemented, runnable_kinds_mask=runnable, engine_drives_device=drives,
                engine_notes=notes)


def build_hierarchy(device, count: int, system, host, device_class, host_class, engine) -> Hierarchy:
    """Resolve the tiers and links of `count` x `device` (+ `system` interconnect) around `host`.

    `device_class` / `host_class` are `DeviceClass` entries, `engine` an `EngineProfile`.
    """
    if count < 1:
        raise MoesimError(f"device count must be >= 1, got {count}")
    consts = tier_constants()
    reserved = consts["host"]["reserved_ram_gb"] * 1e9
    nvme_bps = consts["host"]["nvme_read_gbps"] * 1e9
    link_latency = consts["link"]["pcie_transfer_latency_us"] * 1e-6
    sync = consts["link"]["cpu_gpu_sync_us"] * 1e-6

    support = engine_support(engine, device)
    gpu_scale = getattr(engine, "gpu_bandwidth_efficiency_scale", 1.0)
    cpu_scale = getattr(engine, "cpu_bandwidth_efficiency_scale", 1.0)
    numa_dup = bool(getattr(engine, "numa_duplicates_weights", False))
    cross_socket = float(getattr(engine, "dual_socket_bandwidth_fraction", 0.5))

    # host RAM and CPU
    sockets = max(1, int(host.sockets))
    host_peak = host.theoretical_bandwidth_gbps * 1e9
    host_eff = host_class.memory_bandwidth_efficiency * cpu_scale
    numa_factor = 1.0 if (sockets == 1 or numa_dup) else cross_socket
    host_bw = host_peak * host_eff * numa_factor
    ops_per_cycle = isa_int8_ops_per_cycle(host.cpu_isa)
    cpu_peak_ops = host.cores * sockets * host.cpu_clock_ghz * 1e9 * ops_per_cycle
    cpu_ops = (cpu_peak_ops * host_class.compute_efficiency * getattr(engine, "cpu_compute_efficiency_scale", 1.0)
               * consts["cpu_quant_gemm"]["fraction"])
    token_overhead = getattr(engine, "per_token_overhead_us", 0.0) * 1e-6
    host_capacity = max(0.0, host.ram_gb * 1e9 - reserved)

    kind = device.kind
    assumptions: dict[str, object] = {
        "host": host.slug,
        "host_ram_gb": host.ram_gb,
        "host_theoretical_bandwidth_gbps": round(host_peak / 1e9, 1),
        "host_bandwidth_efficiency": round(host_eff, 3),
        "numa_factor": numa_factor,
        "host_effective_bandwidth_gbps": round(host_bw / 1e9, 1),
        "cpu_effective_tops_int8": round(cpu_ops / 1e12, 2),
        "host_class": host_class.name,
        "host_class_source": host_class.source,
        "engine": engine.name,
        "per_token_overhead_us": round(token_overhead * 1e6, 1),
    }

    if kind == "cpu":
        h = Hierarchy(
            device=device.slug, gpu_count=0, unified=False,
            gpu_capacity_bytes=0.0, gpu_bandwidth_bps=0.0, gpu_flops=0.0,
            host_capacity_bytes=host_capacity, pool_capacity_bytes=float("inf"),
            host_bandwidth_bps=host_bw, cpu_ops=cpu_ops,
            link_bandwidth_bps=0.0, link_pageable_bandwidth_bps=0.0, link_latency_s=0.0,
            interconnect_bandwidth_bps=0.0, collective_latency_s=0.0,
            nvme_bandwidth_bps=nvme_bps, sync_latency_s=0.0,
            launch_overhead_s=0.0, token_overhead_s=token_overhead, overlaps_cpu_gpu=False,
            numa_duplicates=numa_dup, host_sockets=sockets, assumptions=assumptions, **support,
        )
        return h

    gpu_eff = device_class.memory_bandwidth_efficiency * gpu_scale
    gpu_bw = _gbps(device.bandwidth_gbps) * gpu_eff
    gpu_flops = (float(device.fp16_tflops or 0.0) * 1e12 * device_class.compute_efficiency
                 * getattr(engine, "gpu_compute_efficiency_scale", 1.0))
    # the engine may reserve part of the memory for itself (vLLM --gpu-memory-utilization)
    usable = float(device.usable_memory_fraction or 1.0) * float(getattr(engine, "usable_vram_fraction", 1.0) or 1.0)
    assumptions.update(
        device_class=device_class.name,
        device_class_source=device_class.source,
        gpu_peak_bandwidth_gbps=device.bandwidth_gbps,
        gpu_bandwidth_efficiency=round(gpu_eff, 3),
        gpu_effective_bandwidth_gbps=round(gpu_bw / 1e9, 1),
        gpu_effective_tflops=round(gpu_flops / 1e12, 1),
        launch_overhead_us_per_layer=engine.launch_overhead_us_per_layer,
        gpu_layer_floor_us=round(gpu_layer_floor_s(device_class.name) * 1e6, 1),
        overlaps_cpu_gpu=engine.overlaps_cpu_gpu,
    )

    if kind == "unified":
        pool = device.memory_gb * 1e9
        gpu_capacity = pool * usable
        # the CPU of a unified machine streams from the same pool but reaches less of it
        cpu_bw = min(host_bw, gpu_bw)
        assumptions.update(pool_gb=device.memory_gb, gpu_usable_fraction=usable,
                           cpu_effective_bandwidth_gbps=round(cpu_bw / 1e9, 1))
        return Hierarchy(
            device=device.slug, gpu_count=count, unified=True,
            gpu_capacity_bytes=gpu_capacity, gpu_bandwidth_bps=gpu_bw, gpu_flops=gpu_flops,
            host_capacity_bytes=max(0.0, pool - reserved), pool_capacity_bytes=max(0.0, pool - reserved),
            host_bandwidth_bps=cpu_bw, cpu_ops=cpu_ops,
            link_bandwidth_bps=0.0, link_pageable_bandwidth_bps=0.0, link_latency_s=0.0,
            interconnect_bandwidth_bps=0.0, collective_latency_s=0.0,
            nvme_bandwidth_bps=nvme_bps, sync_latency_s=0.0,
            launch_overhead_s=engine.launch_overhead_us_per_layer * 1e-6, token_overhead_s=token_overhead,
            gpu_layer_floor_s=gpu_layer_floor_s(device_class.name),
            overlaps_cpu_gpu=engine.overlaps_cpu_gpu,
            numa_duplicates=numa_dup, host_sockets=sockets, assumptions=assumptions, **support,
        )

    # discrete GPU(s) behind a host link
    link_eff = device_class.link_efficiency
    host_link = system.host_link_gbps if (system is not None and getattr(system, "host_link_gbps", None)) else device.link_gbps
    link_bw = _gbps(host_link) * link_eff
    pageable = link_bw * consts["host"]["pageable_copy_fraction"]
    if count > 1:
        if system is not None and system.interconnect_gbps:
            ic_bw = system.interconnect_gbps * 1e9 * link_eff
            ic_kind = system.interconnect
        else:
            ic_bw, ic_kind = link_bw, "pcie"
        lat_key = "nvlink_collective_latency_us" if ic_kind in ("nvlink", "xgmi") else "pcie_collective_latency_us"
        collective = consts["link"][lat_key] * 1e-6
        assumptions.update(interconnect=ic_kind, interconnect_effective_gbps=round(ic_bw / 1e9, 1))
    else:
        ic_bw, collective = 0.0, 0.0
    assumptions.update(
        vram_gb=device.memory_gb,
        link=f"{device.host_link} gen{device.pcie_gen} x{device.pcie_lanes}" if device.pcie_gen else device.host_link,
        link_efficiency=link_eff,
        link_effective_gbps=round(link_bw / 1e9, 1),
    )
    return Hierarchy(
        device=device.slug, gpu_count=count, unified=False,
        gpu_capacity_bytes=device.memory_gb * 1e9 * usable, gpu_bandwidth_bps=gpu_bw, gpu_flops=gpu_flops,
        host_capacity_bytes=host_capacity, pool_capacity_bytes=float("inf"),
        host_bandwidth_bps=host_bw, cpu_ops=cpu_ops,
        link_bandwidth_bps=link_bw, link_pageable_bandwidth_bps=pageable, link_latency_s=link_latency,
        interconnect_bandwidth_bps=ic_bw, collective_latency_s=collective,
        nvme_bandwidth_bps=nvme_bps, sync_latency_s=sync,
        launch_overhead_s=engine.launch_overhead_us_per_layer * 1e-6, token_overhead_s=token_overhead,
        gpu_layer_floor_s=gpu_layer_floor_s(device_class.name),
        overlaps_cpu_gpu=engine.overlaps_cpu_gpu,
        numa_duplicates=numa_dup, host_sockets=sockets, assumptions=assumptions, **support,
    )
