"""Device catalog: GPUs, unified-memory machines, CPU host platforms and multi-GPU systems.

CONTRACT (used by footprint/fit, timing and sweep -- extend, do not rename).
Units: GB = 1e9 bytes; bandwidths in GB/s (`_gbps` = gigabytes per second); compute in TFLOP/s.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeviceClass:
    """Achievable fractions of peak, per class of device -- never per device or per row."""

    name: str  # "consumer-gpu", "datacenter-gpu", "apple-unified", "x86-unified", "cpu-desktop", ...
    memory_bandwidth_efficiency: float  # achievable / theoretical memory bandwidth in decode
    compute_efficiency: float  # achievable / peak dense tensor throughput in prefill
    link_efficiency: float  # achievable / theoretical host-link bandwidth (pinned copies)
    source: str


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One accelerator or machine. kind: "gpu" (discrete, reached over a host link),
    "unified" (one memory pool shared by CPU and GPU) or "cpu" (a host platform)."""

    slug: str
    name: str
    kind: str
    vendor: str
    device_class: str  # key into the DeviceClass table
    memory_gb: float  # VRAM for gpu, pool size for unified, default installed RAM for cpu
    bandwidth_gbps: float  # peak memory bandwidth (per socket for cpu)
    fp16_tflops: float  # dense tensor FP16/BF16 (FP32-accumulate on GeForce); cpu: from ISA x cores x clock
    fp8_tflops: float | None
    int8_tops: float | None
    fp4_tflops: float | None
    host_link: str  # "pcie" | "nvlink-c2c" | "unified" | "none"
    link_gbps: float | None  # one direction, theoretical (PCIe gen x lanes, or C2C)
    pcie_gen: int | None
    pcie_lanes: int | None
    usable_memory_fraction: float  # share of memory_gb the GPU may use (macOS wired limit ...); 1.0 discrete
    # CPU side (cpu kind, and the CPU of a unified machine); None where not applicable
    cpu_cores: int | None
    cpu_isa: str | None  # "avx2" | "avx512" | "avx512-amx" | "neon" | "sve"
    cpu_clock_ghz: float | None
    mem_type: str | None  # "DDR4" | "DDR5" | "LPDDR5X" | "HBM3" ...
    mem_channels: int | None  # per socket
    mem_mts: int | None
    sockets: int | None
    tdp_w: float | None
    price_usd: float | None
    source: str


@dataclass(frozen=True, slots=True)
class SystemSpec:
    """A multi-device configuration people buy (2x RTX 3090, 8x H200 HGX), listed with devices."""

    slug: str  # e.g. "2x-rtx-3090", "8x-h200"
    name: str
    device: str  # DeviceSpec slug
    device_count: int
    interconnect: str  # "pcie" | "nvlink" | "xgmi"
    interconnect_gbps: float  # per device, one direction
    host: str  # typical host (cpu-kind DeviceSpec slug)
    source: str


@dataclass(frozen=True, slots=True)
class HostSpec:
    """The machine around a GPU: RAM and CPU, resolved from a cpu-kind device plus overrides."""

    slug: str
    mem_type: str
    mem_channels: int  # per socket
    mem_mts: int
    sockets: int
    cores: int  # per socket
    cpu_isa: str
    cpu_clock_ghz: float
    ram_gb: float
    device_class: str

    @property
    def theoretical_bandwidth_gbps(self) -> float:
        return self.mem_channels * 8 * self.mem_mts / 1000 * self.sockets
