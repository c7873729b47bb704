"""Device catalog: GPUs, unified-memory machines, CPU host platforms and multi-GPU systems.

CONTRACT (used by footprint/fit, timing and sweep -- extend, do not rename).
Units: GB = 1e9 bytes; bandwidths in GB/s (`_gbps` = gigabytes per second); compute in TFLOP/s.
Data: `data/devices.toml` (one entry per device, each with its source), `data/device_classes.toml`
(efficiency factors per class, CPU ISA throughput, PCIe lane rates, typical host per class) and
`data/systems.toml` (multi-GPU configurations people buy).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources

from moesim.errors import MoesimError, unknown_id_error


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
    cpu_cores: int | None  # per socket
    cpu_isa: str | None  # key of device_classes.toml [cpu_isas]: "avx2", "avx512-zen4", "avx512-amx", "neon", ...
    cpu_clock_ghz: float | None  # sustained all-core clock assumed for compute
    mem_type: str | None  # "DDR4" | "DDR5" | "LPDDR5X" | "HBM3" ...
    mem_channels: int | None  # per socket, 64-bit channel equivalents
    mem_mts: int | None
    sockets: int | None
    tdp_w: float | None
    price_usd: float | None
    source: str
    typical_host: str | None = None  # cpu-kind slug overriding the class's typical host (laptops, old cards)
    peer_link: str | None = None  # built-in GPU-to-GPU fabric of SXM/OAM parts: "nvlink" | "xgmi"
    peer_link_gbps: float | None = None  # per device, one direction

    @property
    def usable_memory_gb(self) -> float:
        """Memory the accelerator may actually allocate (GB)."""
        return self.memory_gb * self.usable_memory_fraction


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
    host_link_gbps: float | None = None  # each device's own link to the host in this chassis (x8/x8 desktops)
    host_overrides: tuple[tuple[str, object], ...] = ()  # HostSpec fields applied to `host` (sockets, ram_gb ...)


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
    fp32_flops_per_cycle: float = 32.0  # per core, from device_classes.toml [cpu_isas]
    bf16_flops_per_cycle: float = 32.0
    int8_ops_per_cycle: float = 64.0
    source: str = ""

    @property
    def theoretical_bandwidth_gbps(self) -> float:
        """Peak RAM bandwidth over all sockets: channels x 8 bytes x MT/s x sockets."""
        return self.mem_channels * 8 * self.mem_mts / 1000 * self.sockets

    @property
    def bandwidth_per_socket_gbps(self) -> float:
        """Peak RAM bandwidth of one socket (what a NUMA-unaware engine sees for remote-free access)."""
        return self.mem_channels * 8 * self.mem_mts / 1000

    @property
    def total_cores(self) -> int:
        return self.cores * self.sockets

    @property
    def peak_fp32_tflops(self) -> float:
        """Theoretical FP32 vector throughput of all sockets."""
        return self.fp32_flops_per_cycle * self.total_cores * self.cpu_clock_ghz / 1000

    @property
    def peak_bf16_tflops(self) -> float:
        """Theoretical BF16/FP16 throughput of all sockets (FP32 rate where the ISA lacks BF16)."""
        return self.bf16_flops_per_cycle * self.total_cores * self.cpu_clock_ghz / 1000

    @property
    def peak_int8_tops(self) -> float:
        """Theoretical INT8 dot-product throughput of all sockets (VNNI / AMX / SDOT)."""
        return self.int8_ops_per_cycle * self.total_cores * self.cpu_clock_ghz / 1000


# ---------------------------------------------------------------------------------------------------------
# Loaders. Data lives in data/devices.toml, device_classes.toml and systems.toml; everything is parsed once.

_HOST_LINKS = ("pcie", "nvlink-c2c", "unified", "none")
_KINDS = ("gpu", "unified", "cpu")
_MEM_TYPES = ("DDR4", "DDR5", "LPDDR4X", "LPDDR5", "LPDDR5X", "GDDR6", "GDDR6X", "GDDR7", "HBM", "HBM2", "HBM2e",
              "HBM3", "HBM3e")
_INTERCONNECTS = ("pcie", "nvlink", "xgmi")
_HOST_OVERRIDE_FIELDS = ("mem_type", "mem_channels", "mem_mts", "sockets", "cores", "ram_gb", "cpu_isa", "cpu_clock_ghz")
_SYSTEM_PATTERN = re.compile(r"^(\d+)x-(.+)$")


def _data_path(name: str):
    return resources.files("moesim.catalog").joinpath("data", name)


@lru_cache(maxsize=None)
def _load(name: str) -> dict:
    with _data_path(name).open("rb") as fh:
        return tomllib.load(fh)


def _positive(value, what: str, *, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MoesimError(f"{what} must be a number, got {value!r}")
    if integer and int(value) != value:
        raise MoesimError(f"{what} must be a whole number, got {value!r}")
    if not value > 0:
        raise MoesimError(f"{what} must be positive, got {value!r}")
    return int(value) if integer else float(value)


def pcie_link_gbps(gen: int, lanes: int) -> float:
    """Theoretical one-direction PCIe bandwidth in GB/s: GT/s per lane x lanes x 128/130 encoding / 8 bits."""
    rates = _load("device_classes.toml")["pcie_gt_per_s"]
    if str(gen) not in rates:
        raise MoesimError(f"unknown PCIe generation {gen!r}; known: {', '.join(sorted(rates))}")
    lanes = _positive(lanes, "PCIe lanes", integer=True)
    return rates[str(gen)] * lanes * (128 / 130) / 8


@lru_cache(maxsize=None)
def _isa_table() -> dict[str, dict]:
    return _load("device_classes.toml")["cpu_isas"]


def _isa(name: str) -> dict:
    table = _isa_table()
    if name not in table:
        raise unknown_id_error("cpu ISA", name, table)
    return table[name]


def _build_device(slug: str, raw: dict) -> DeviceSpec:
    where = f"devices.toml [{slug}]"
    for key in ("name", "kind", "vendor", "device_class", "memory_gb", "host_link", "source"):
        if key not in raw:
            raise MoesimError(f"{where} lacks '{key}'")
    kind = raw["kind"]
    if kind not in _KINDS:
        raise MoesimError(f"{where}: kind must be one of {_KINDS}, got {kind!r}")
    if raw["host_link"] not in _HOST_LINKS:
        raise MoesimError(f"{where}: host_link must be one of {_HOST_LINKS}")
    if raw["device_class"] not in _load("device_classes.toml")["classes"]:
        raise MoesimError(f"{where}: unknown device_class {raw['device_class']!r}")
    if not str(raw["source"]).strip():
        raise MoesimError(f"{where}: empty source")

    channels, mts, sockets = raw.get("mem_channels"), raw.get("mem_mts"), raw.get("sockets")
    cores, isa, clock = raw.get("cpu_cores"), raw.get("cpu_isa"), raw.get("cpu_clock_ghz")
    if kind in ("cpu", "unified"):
        for key in ("mem_channels", "mem_mts", "cpu_cores", "cpu_isa", "cpu_clock_ghz"):
            if raw.get(key) is None:
                raise MoesimError(f"{where}: a {kind} entry needs '{key}'")
        _isa(isa)

    if kind == "cpu":
        # Per socket, from the memory configuration, so overrides and the catalog agree by construction.
        bandwidth = channels * 8 * mts / 1000
        fp16 = _isa(isa)["bf16_flops_per_cycle"] * cores * clock / 1000
    else:
        bandwidth = raw["bandwidth_gbps"]
        fp16 = raw["fp16_tflops"]

    link_gbps = raw.get("link_gbps")
    if raw["host_link"] == "pcie":
        if raw.get("pcie_gen") is None or raw.get("pcie_lanes") is None:
            raise MoesimError(f"{where}: a PCIe device needs pcie_gen and pcie_lanes")
        link_gbps = pcie_link_gbps(raw["pcie_gen"], raw["pcie_lanes"])
    elif raw["host_link"] == "nvlink-c2c" and link_gbps is None:
        raise MoesimError(f"{where}: an NVLink-C2C device needs link_gbps")

    fraction = raw.get("usable_memory_fraction", 1.0)
    if not 0 < fraction <= 1:
        raise MoesimError(f"{where}: usable_memory_fraction must be in (0, 1]")

    spec = DeviceSpec(
        slug=slug,
        name=raw["name"],
        kind=kind,
        vendor=raw["vendor"],
        device_class=raw["device_class"],
        memory_gb=_positive(raw["memory_gb"], f"{where} memory_gb"),
        bandwidth_gbps=_positive(bandwidth, f"{where} bandwidth_gbps"),
        fp16_tflops=_positive(fp16, f"{where} fp16_tflops"),
        fp8_tflops=raw.get("fp8_tflops"),
        int8_tops=raw.get("int8_tops"),
        fp4_tflops=raw.get("fp4_tflops"),
        host_link=raw["host_link"],
        link_gbps=link_gbps,
        pcie_gen=raw.get("pcie_gen"),
        pcie_lanes=raw.get("pcie_lanes"),
        usable_memory_fraction=float(fraction),
        cpu_cores=cores,
        cpu_isa=isa,
        cpu_clock_ghz=clock,
        mem_type=raw.get("mem_type"),
        mem_channels=channels,
        mem_mts=mts,
        sockets=sockets if sockets is not None else (1 if kind != "gpu" else None),
        tdp_w=raw.get("tdp_w"),
        price_usd=raw.get("price_usd"),
        source=raw["source"],
        typical_host=raw.get("typical_host"),
        peer_link=raw.get("peer_link"),
        peer_link_gbps=raw.get("peer_link_gbps"),
    )
    if (spec.peer_link is None) != (spec.peer_link_gbps is None) or spec.peer_link not in (None, *_INTERCONNECTS):
        raise MoesimError(f"{where}: peer_link and peer_link_gbps go together; peer_link one of {_INTERCONNECTS}")
    return spec


@lru_cache(maxsize=None)
def _devices() -> dict[str, DeviceSpec]:
    return {slug: _build_device(slug, raw) for slug, raw in _load("devices.toml").items()}


@lru_cache(maxsize=None)
def _systems() -> dict[str, SystemSpec]:
    devices = _devices()
    out = {}
    for slug, raw in _load("systems.toml").items():
        where = f"systems.toml [{slug}]"
        if raw.get("device") not in devices:
            raise MoesimError(f"{where}: unknown device {raw.get('device')!r}")
        if raw.get("interconnect") not in _INTERCONNECTS:
            raise MoesimError(f"{where}: interconnect must be one of {_INTERCONNECTS}")
        host = raw.get("host")
        if host not in devices or devices[host].kind != "cpu":
            raise MoesimError(f"{where}: host {host!r} is not a cpu-kind device")
        overrides = raw.get("host_overrides", {})
        _check_override_keys(overrides, where)
        out[slug] = SystemSpec(
            slug=slug,
            name=raw["name"],
            device=raw["device"],
            device_count=_positive(raw["device_count"], f"{where} device_count", integer=True),
            interconnect=raw["interconnect"],
            interconnect_gbps=_positive(raw["interconnect_gbps"], f"{where} interconnect_gbps"),
            host=host,
            source=raw["source"],
            host_link_gbps=raw.get("host_link_gbps"),
            host_overrides=tuple(sorted(overrides.items())),
        )
    return out


@lru_cache(maxsize=None)
def _classes() -> dict[str, DeviceClass]:
    out = {}
    for name, raw in _load("device_classes.toml")["classes"].items():
        for key in ("memory_bandwidth_efficiency", "compute_efficiency", "link_efficiency"):
            if not 0 < raw[key] <= 1:
                raise MoesimError(f"device_classes.toml [{name}] {key} must be in (0, 1]")
        out[name] = DeviceClass(name=name, memory_bandwidth_efficiency=raw["memory_bandwidth_efficiency"],
                                compute_efficiency=raw["compute_efficiency"],
                                link_efficiency=raw["link_efficiency"], source=raw["source"])
    return out


def get_device(slug: str) -> DeviceSpec:
    """The catalog device with this slug (GPU, unified machine or CPU host platform)."""
    devices = _devices()
    if slug in devices:
        return devices[slug]
    lowered = slug.lower() if isinstance(slug, str) else slug
    if lowered in devices:
        return devices[lowered]
    raise unknown_id_error("device", str(slug), devices)


def all_devices() -> tuple[DeviceSpec, ...]:
    """Every catalog device, in file order."""
    return tuple(_devices().values())


def get_system(slug: str) -> SystemSpec:
    """A catalog multi-device system (e.g. '8x-h200'), or an ad-hoc 'Nx-<device>' over the device's own link."""
    systems = _systems()
    key = slug.lower() if isinstance(slug, str) else slug
    if key in systems:
        return systems[key]
    match = _SYSTEM_PATTERN.match(key) if isinstance(key, str) else None
    if match and match.group(2) in _devices():
        return _adhoc_system(int(match.group(1)), _devices()[match.group(2)])
    raise unknown_id_error("system", str(slug), systems)


def all_systems() -> tuple[SystemSpec, ...]:
    """Every catalog multi-device system, in file order."""
    return tuple(_systems().values())


def get_device_class(name: str) -> DeviceClass:
    """Efficiency factors of a device class (by name, or of a DeviceSpec / HostSpec)."""
    if isinstance(name, (DeviceSpec, HostSpec)):
        name = name.device_class
    classes = _classes()
    if name not in classes:
        raise unknown_id_error("device class", str(name), classes)
    return classes[name]


def all_device_classes() -> tuple[DeviceClass, ...]:
    """Every device class."""
    return tuple(_classes().values())


def cpu_isa_names() -> tuple[str, ...]:
    """The CPU ISA names known to the catalog (valid values for HostSpec.cpu_isa)."""
    return tuple(_isa_table())


def _adhoc_system(count: int, device: DeviceSpec) -> SystemSpec:
    if count < 1:
        raise MoesimError(f"device count must be positive, got {count}")
    if device.kind != "gpu":
        raise MoesimError(f"'{device.slug}' is a {device.kind} machine; multi-device systems are built from GPUs")
    host = typical_host(device)
    return SystemSpec(
        slug=f"{count}x-{device.slug}",
        name=f"{count}x {device.name}",
        device=device.slug,
        device_count=count,
        interconnect=device.peer_link or "pcie",
        interconnect_gbps=device.peer_link_gbps or device.link_gbps,
        host=host.slug,
        source="ad hoc: devices talk over their built-in fabric (SXM/OAM) or else their own PCIe link (no bridge "
               "assumed); host as for one device",
        host_link_gbps=device.link_gbps,
        host_overrides=(),
    )


def resolve_target(slug: str, count: int | None = None) -> tuple[DeviceSpec, int, SystemSpec | None]:
    """Resolve a device or system slug to (device, device_count, system or None).

    A plain device resolves to one unit unless `count` asks for more, in which case the matching catalog
    system (e.g. 2 x rtx-3090 -> '2x-rtx-3090') is used when there is one, else an ad-hoc PCIe system."""
    if count is not None:
        count = _positive(count, "device count", integer=True)
    devices = _devices()
    key = slug.lower() if isinstance(slug, str) else slug
    if key in devices:
        device = devices[key]
        if count is None or count == 1:
            return device, 1, None
        system = _systems().get(f"{count}x-{device.slug}") or _adhoc_system(count, device)
        return device, count, system
    systems = _systems()
    if key in systems or (isinstance(key, str) and _SYSTEM_PATTERN.match(key)):
        try:
            system = get_system(key)
        except MoesimError:
            system = None
        if system is not None:
            if count is not None and count != system.device_count:
                raise MoesimError(f"'{slug}' has {system.device_count} devices, but a count of {count} was asked")
            return devices[system.device], system.device_count, system
    raise unknown_id_error("device", str(slug), [*devices, *systems])


# ---------------------------------------------------------------------------------------------------------
# Hosts

def _check_override_keys(overrides: dict, where: str) -> None:
    unknown = sorted(set(overrides) - set(_HOST_OVERRIDE_FIELDS))
    if unknown:
        raise MoesimError(f"{where}: unknown host option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(_HOST_OVERRIDE_FIELDS)}")


def _host_from_device(device: DeviceSpec) -> HostSpec:
    isa = _isa(device.cpu_isa)
    return HostSpec(
        slug=device.slug,
        mem_type=device.mem_type,
        mem_channels=device.mem_channels,
        mem_mts=device.mem_mts,
        sockets=device.sockets or 1,
        cores=device.cpu_cores,
        cpu_isa=device.cpu_isa,
        cpu_clock_ghz=device.cpu_clock_ghz,
        ram_gb=device.memory_gb,
        device_class=device.device_class,
        fp32_flops_per_cycle=isa["fp32_flops_per_cycle"],
        bf16_flops_per_cycle=isa["bf16_flops_per_cycle"],
        int8_ops_per_cycle=isa["int8_ops_per_cycle"],
        source=device.source,
    )


def get_host(slug: str, **overrides) -> HostSpec:
    """A host platform: a cpu-kind (or unified) catalog entry with optional overrides.

    Overrides (None means keep the catalog value): mem_type, mem_channels, mem_mts, sockets, cores (per socket),
    ram_gb, cpu_isa, cpu_clock_ghz. Bad values raise MoesimError."""
    device = get_device(slug)
    if device.kind == "gpu":
        raise MoesimError(f"'{device.slug}' is a GPU, not a host; use a cpu platform such as "
                          f"'{typical_host(device).slug}'")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    _check_override_keys(overrides, "host")
    host = _host_from_device(device)
    if not overrides:
        return host
    if device.kind == "unified" and set(overrides) & {"mem_channels", "mem_mts", "sockets"}:
        raise MoesimError(f"'{device.slug}' is a unified-memory machine; its memory system cannot be changed")
    changes = {}
    for key in ("mem_channels", "mem_mts", "sockets", "cores"):
        if key in overrides:
            changes[key] = _positive(overrides[key], f"host {key.replace('_', ' ')}", integer=True)
    for key in ("ram_gb", "cpu_clock_ghz"):
        if key in overrides:
            changes[key] = _positive(overrides[key], f"host {key.replace('_', ' ')}")
    if "mem_type" in overrides:
        mem_type = str(overrides["mem_type"]).upper()
        known = {m.upper(): m for m in _MEM_TYPES}
        if mem_type not in known:
            raise unknown_id_error("memory type", str(overrides["mem_type"]), _MEM_TYPES)
        changes["mem_type"] = known[mem_type]
    if "cpu_isa" in overrides:
        isa = _isa(str(overrides["cpu_isa"]))
        changes.update(cpu_isa=str(overrides["cpu_isa"]), fp32_flops_per_cycle=isa["fp32_flops_per_cycle"],
                       bf16_flops_per_cycle=isa["bf16_flops_per_cycle"],
                       int8_ops_per_cycle=isa["int8_ops_per_cycle"])
    note = ", ".join(f"{k}={overrides[k]}" for k in sorted(overrides))
    return replace(host, source=f"{host.source}; overridden: {note}", **changes)


def typical_host(device_or_system) -> HostSpec:
    """The host a device or system usually sits in (sweep pairing).

    Accepts a slug, DeviceSpec or SystemSpec. A cpu or unified machine is its own host; a GPU uses its
    own `typical_host` or its class's entry in device_classes.toml [typical_hosts]; a system its own."""
    target = device_or_system
    if isinstance(target, str):
        key = target.lower()
        if key in _devices():
            target = _devices()[key]
        else:
            try:
                target = get_system(key)
            except MoesimError:
                raise unknown_id_error("device", target, [*_devices(), *_systems()]) from None
    if isinstance(target, SystemSpec):
        return get_host(target.host, **dict(target.host_overrides))
    if not isinstance(target, DeviceSpec):
        raise MoesimError(f"typical_host needs a device or system, got {type(target).__name__}")
    if target.kind != "gpu":
        return _host_from_device(target)
    if target.typical_host:
        return get_host(target.typical_host)
    entry = _load("device_classes.toml")["typical_hosts"].get(target.device_class)
    if entry is None:
        raise MoesimError(f"no typical host for device class '{target.device_class}'")
    return get_host(entry["host"], **entry.get("overrides", {}))


def catalog_hash() -> str:
    """sha256 over the device, class, system, engine and backend data files (sweep metadata)."""
    from moesim.catalog import data_file_hash

    return data_file_hash(("devices.toml", "device_classes.toml", "systems.toml", "engines.toml", "backends.toml"))
