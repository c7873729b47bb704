"""Device catalog: coverage of the id file, sourced entries, link/bandwidth arithmetic, hosts, systems, errors."""

from __future__ import annotations

import csv
import re
import tomllib
from importlib import resources

import pytest

from moesim.catalog import data_file_hash
from moesim.catalog.devices import (
    DeviceSpec,
    HostSpec,
    SystemSpec,
    all_device_classes,
    all_devices,
    all_systems,
    catalog_hash,
    cpu_isa_names,
    get_device,
    get_device_class,
    get_host,
    get_system,
    pcie_link_gbps,
    resolve_target,
    typical_host,
)
from moesim.errors import MoesimError

DATA_FILES = ("devices.toml", "device_classes.toml", "systems.toml", "engines.toml")
# Calibration rows are named Vnnn. "V100" is also an NVIDIA product name, so the generic scan skips exactly
# that token; the shared-file test below checks the real ids one by one.
MEASUREMENT_ID = re.compile(r"\bV(?!100\b)\d{3}\b")


def _raw(name: str) -> dict:
    with resources.files("moesim.catalog").joinpath("data", name).open("rb") as fh:
        return tomllib.load(fh)


# --- coverage -------------------------------------------------------------------------------------------

def test_every_slug_of_the_shared_id_file_is_in_the_catalog(shared_dir):
    with open(shared_dir / "reference" / "device-ids.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 100
    for row in rows:
        dev = get_device(row["slug"])
        assert dev.kind == row["kind"], row["slug"]
        if row["memory_gb"]:
            assert dev.memory_gb == pytest.approx(float(row["memory_gb"])), row["slug"]


def test_catalog_size_and_kinds_are_sane_without_shared_files():
    devices = all_devices()
    kinds = {d.kind for d in devices}
    assert kinds == {"gpu", "unified", "cpu"}
    assert len(devices) >= 100
    assert len({d.slug for d in devices}) == len(devices)
    assert sum(d.kind == "gpu" for d in devices) >= 55
    assert sum(d.kind == "unified" for d in devices) >= 20
    assert sum(d.kind == "cpu" for d in devices) >= 20


@pytest.mark.parametrize("dev", all_devices(), ids=lambda d: d.slug)
def test_each_device_is_complete_and_plausible(dev: DeviceSpec):
    assert dev.source.strip()
    assert 1 <= dev.memory_gb <= 4096
    assert 20 <= dev.bandwidth_gbps <= 10_000
    assert 0.1 <= dev.fp16_tflops <= 5000
    assert 0 < dev.usable_memory_fraction <= 1
    get_device_class(dev.device_class)  # every class key resolves
    for optional in (dev.fp8_tflops, dev.int8_tops, dev.fp4_tflops):
        assert optional is None or optional > 0
    if dev.kind == "gpu":
        assert dev.host_link in ("pcie", "nvlink-c2c")
        assert dev.link_gbps and 7 < dev.link_gbps <= 450
        assert dev.usable_memory_fraction == 1.0
        typical_host(dev)  # every GPU has a host to pair with
    else:
        assert dev.cpu_cores and dev.cpu_isa in cpu_isa_names() and dev.cpu_clock_ghz
        assert dev.mem_type and dev.mem_channels and dev.mem_mts and dev.sockets == 1
    if dev.kind == "cpu":
        assert dev.host_link == "none"


def test_every_data_entry_carries_a_source():
    for name in ("devices.toml", "systems.toml"):
        for slug, entry in _raw(name).items():
            assert str(entry.get("source", "")).strip(), f"{name} [{slug}]"
    classes = _raw("device_classes.toml")
    for table in ("classes", "cpu_isas", "typical_hosts"):
        for key, entry in classes[table].items():
            assert str(entry.get("source", "")).strip(), f"{table}.{key}"
    for key, entry in _raw("engines.toml").items():
        assert str(entry.get("source", "")).strip(), key


def _strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    else:
        yield str(obj)


@pytest.mark.parametrize("name", DATA_FILES)
def test_no_catalog_value_names_a_measurement_id(name):
    text = resources.files("moesim.catalog").joinpath("data", name).read_text()
    assert not MEASUREMENT_ID.search(text), MEASUREMENT_ID.search(text)
    assert not any(MEASUREMENT_ID.search(s) for s in _strings(_raw(name)))


def test_no_catalog_value_names_a_real_measurement_id(shared_dir):
    with open(shared_dir / "calibration" / "measurements.csv", newline="") as fh:
        ids = {row["id"] for row in csv.DictReader(fh)}
    assert ids
    texts = [resources.files("moesim.catalog").joinpath("data", name).read_text() for name in DATA_FILES]
    for mid in sorted(ids - {"V100"}):
        pattern = re.compile(rf"\b{mid}\b")
        assert not any(pattern.search(text) for text in texts), mid


def test_measurement_id_pattern_does_catch_ids():
    assert MEASUREMENT_ID.search("tuned to V039 row") and not MEASUREMENT_ID.search("V100 PCIe")


def test_catalog_hash_is_stable_and_changes_with_content():
    assert catalog_hash() == catalog_hash()
    assert len(catalog_hash()) == 64
    assert data_file_hash(["devices.toml"]) != data_file_hash(["systems.toml"])


# --- arithmetic -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("gen", "lanes", "expected"), [(3, 16, 15.75), (4, 16, 31.5), (5, 16, 63.0), (4, 8, 15.75),
                                                         (5, 8, 31.5)])
def test_pcie_link_math(gen, lanes, expected):
    assert pcie_link_gbps(gen, lanes) == pytest.approx(expected, rel=2e-3)


def test_device_links_follow_generation_and_lanes():
    assert get_device("rtx-4090").link_gbps == pytest.approx(31.5, rel=2e-3)
    assert get_device("rtx-4060-ti-16gb").link_gbps == pytest.approx(15.75, rel=2e-3)  # x8 card
    assert get_device("rtx-5060-ti-16gb").link_gbps == pytest.approx(31.5, rel=2e-3)  # gen5 x8
    assert get_device("rtx-5090").link_gbps == pytest.approx(63.0, rel=2e-3)
    assert get_device("t4").link_gbps == pytest.approx(15.75, rel=2e-3)
    assert get_device("gh200-144gb").link_gbps == 450  # NVLink-C2C, one way


def test_bad_pcie_inputs_raise():
    with pytest.raises(MoesimError):
        pcie_link_gbps(2, 16)
    with pytest.raises(MoesimError):
        pcie_link_gbps(4, 0)


@pytest.mark.parametrize(("slug", "expected"), [
    ("desktop-ddr4-3200-2ch", 51.2), ("desktop-ddr5-5600-2ch", 89.6), ("desktop-ddr5-6000-2ch", 96.0),
    ("threadripper-7000", 166.4), ("threadripper-pro-7000wx", 332.8), ("epyc-9004", 460.8), ("epyc-9005", 576.0),
    ("xeon-sapphire-rapids", 307.2), ("xeon-emerald-rapids", 358.4), ("xeon-6900p", 614.4), ("xeon-6700p", 409.6)])
def test_theoretical_host_bandwidth(slug, expected):
    host = get_host(slug)
    assert host.theoretical_bandwidth_gbps == pytest.approx(expected)
    assert get_device(slug).bandwidth_gbps == pytest.approx(expected)  # per socket, same formula


def test_host_bandwidth_scales_with_sockets_channels_and_speed():
    base = get_host("epyc-9004")
    assert get_host("epyc-9004", sockets=2).theoretical_bandwidth_gbps == pytest.approx(2 * 460.8)
    assert get_host("epyc-9004", mem_channels=6).theoretical_bandwidth_gbps == pytest.approx(230.4)
    assert get_host("epyc-9004", mem_mts=6000).theoretical_bandwidth_gbps == pytest.approx(576.0)
    assert get_host("epyc-9004", sockets=2).bandwidth_per_socket_gbps == base.theoretical_bandwidth_gbps


def test_unified_bandwidth_matches_bus_width_times_rate():
    # Apple M1 Max: 512-bit LPDDR5-6400 = 409.6 GB/s (llama.cpp PR 1642); M4 Max 40c 546 GB/s; Strix Halo 256.
    for slug, expected in (("m1-max-32c", 409.6), ("m4-max-40c", 546.1), ("strix-halo-395", 256.0),
                           ("m1-8c", 68.25), ("dgx-spark", 273.1)):
        dev = get_device(slug)
        assert dev.bandwidth_gbps == pytest.approx(expected, rel=2e-3)
        assert typical_host(dev).theoretical_bandwidth_gbps == pytest.approx(expected, rel=2e-3)


def test_cpu_peak_compute_follows_isa_table():
    host = get_host("xeon-sapphire-rapids")
    assert host.peak_bf16_tflops == pytest.approx(1024 * 56 * 2.0 / 1000)  # AMX
    assert host.peak_fp32_tflops == pytest.approx(64 * 56 * 2.0 / 1000)
    zen4 = get_host("desktop-ddr5-5600-2ch")
    assert zen4.peak_bf16_tflops == pytest.approx(64 * zen4.cores * zen4.cpu_clock_ghz / 1000)
    assert get_host("epyc-9004", cpu_isa="avx2").peak_int8_tops < get_host("epyc-9004").peak_int8_tops


def test_usable_memory_fraction_follows_the_macos_rule():
    assert get_device("m1-8c").usable_memory_fraction == pytest.approx(2 / 3, abs=0.01)  # 16 GB
    assert get_device("m2-ultra-76c").usable_memory_fraction == 0.75  # 192 GB
    assert get_device("m2-ultra-76c").usable_memory_gb == pytest.approx(144)
    assert get_device("rtx-4090").usable_memory_gb == 24


def test_geforce_fp16_is_the_fp32_accumulate_rate_and_pro_cards_are_full_rate():
    assert get_device("rtx-4090").fp16_tflops == pytest.approx(165.2)
    assert get_device("rtx-3090").fp16_tflops == pytest.approx(71)
    assert get_device("rtx-6000-ada").fp16_tflops == pytest.approx(364.2)


def test_h100_without_form_factor_is_modelled_as_sxm():
    bare, sxm = get_device("h100-80gb"), get_device("h100-sxm")
    assert (bare.bandwidth_gbps, bare.fp16_tflops, bare.memory_gb) == (sxm.bandwidth_gbps, sxm.fp16_tflops,
                                                                       sxm.memory_gb)


def test_device_classes_are_fractions_with_sources():
    classes = all_device_classes()
    assert len(classes) >= 10
    for cls in classes:
        for value in (cls.memory_bandwidth_efficiency, cls.compute_efficiency, cls.link_efficiency):
            assert 0 < value <= 1
        assert cls.source.strip()
    assert get_device_class(get_device("rtx-4090")).name == "consumer-gpu"


# --- hosts ----------------------------------------------------------------------------------------------

def test_typical_hosts_by_class():
    assert typical_host("rtx-4090").slug == "desktop-ddr5-5600-2ch"
    assert typical_host("rx-7900-xtx").mem_type == "DDR5"
    assert typical_host("rtx-2080").slug == "desktop-ddr4-3200-2ch"  # PCIe-3-era card
    assert typical_host("rtx-4070-laptop").slug == "core-i9-13900h"
    assert typical_host("rtx-pro-6000-blackwell").slug == "threadripper-pro-7000wx"
    assert typical_host("h100-sxm").mem_channels == 12
    assert typical_host("gh200-96gb").slug == "nvidia-grace"
    assert typical_host("epyc-9b14").slug == "epyc-9b14"  # a cpu is its own host
    m2 = typical_host(get_device("m2-ultra-76c"))
    assert m2.slug == "m2-ultra-76c" and m2.ram_gb == 192 and m2.cpu_isa == "neon"


def test_system_hosts_apply_their_overrides():
    host = typical_host("8x-h200")
    assert isinstance(host, HostSpec)
    assert host.sockets == 2 and host.ram_gb == 2048
    assert typical_host(get_system("2x-rtx-3090")).ram_gb == 128


def test_host_overrides_are_applied_and_noted():
    host = get_host("desktop-ddr5-5600-2ch", mem_type="ddr5", mem_channels=4, mem_mts=6400, cores=16, ram_gb=192,
                    sockets=1, cpu_isa="avx512-zen5", cpu_clock_ghz=None)
    assert (host.mem_channels, host.mem_mts, host.cores, host.ram_gb, host.cpu_isa) == (4, 6400, 16, 192, "avx512-zen5")
    assert host.mem_type == "DDR5" and host.fp32_flops_per_cycle == 64
    assert "overridden" in host.source


@pytest.mark.parametrize("bad", [dict(mem_channels=0), dict(mem_channels=-2), dict(mem_mts=-4800), dict(sockets=0),
                                 dict(cores=-1), dict(ram_gb=0), dict(ram_gb=-64), dict(mem_channels=2.5),
                                 dict(mem_type="DDR9"), dict(cpu_isa="avx1024"), dict(cpu_clock_ghz=0),
                                 dict(numa="on"), dict(mem_channels="two")])
def test_bad_host_overrides_raise(bad):
    with pytest.raises(MoesimError):
        get_host("epyc-9004", **bad)


def test_get_host_refuses_gpus_and_unified_memory_rewiring():
    with pytest.raises(MoesimError, match="GPU"):
        get_host("rtx-4090")
    with pytest.raises(MoesimError, match="unified"):
        get_host("m2-ultra-76c", mem_channels=4)
    assert get_host("m2-ultra-76c", cores=16).cores == 16


# --- systems and targets --------------------------------------------------------------------------------

def test_systems_people_buy_are_listed():
    slugs = {s.slug for s in all_systems()}
    assert {"2x-rtx-3090", "2x-rtx-4090", "4x-rtx-3090", "2x-rtx-5090", "8x-a100-80gb-sxm", "8x-h100-sxm", "8x-h200",
            "8x-b200", "8x-mi300x", "2x-h100-pcie"} <= slugs
    for system in all_systems():
        assert isinstance(system, SystemSpec) and system.source.strip()
        assert system.device_count >= 2 and system.interconnect in ("pcie", "nvlink", "xgmi")
        assert get_device(system.device).kind == "gpu"
        assert get_device(system.host).kind == "cpu"


def test_interconnect_is_one_direction():
    assert get_system("8x-h100-sxm").interconnect_gbps == 450  # NVLink4 900 GB/s bidirectional
    assert get_system("8x-b200").interconnect_gbps == 900
    assert get_system("2x-rtx-3090").interconnect_gbps == pytest.approx(15.75)  # x8/x8 desktop
    assert get_system("2x-rtx-3090-nvlink").interconnect_gbps == pytest.approx(56.25)


def test_resolve_target():
    dev, count, system = resolve_target("rtx-4090")
    assert dev.slug == "rtx-4090" and count == 1 and system is None
    dev, count, system = resolve_target("8x-h200")
    assert dev.slug == "h200" and count == 8 and system.slug == "8x-h200"
    dev, count, system = resolve_target("rtx-3090", count=2)
    assert system.slug == "2x-rtx-3090"
    dev, count, system = resolve_target("3x-rtx-4090")  # ad hoc over the card's own link
    assert count == 3 and system.interconnect == "pcie" and system.interconnect_gbps == dev.link_gbps
    dev, count, system = resolve_target("h100-80gb", count=2)  # SXM: NVLink without a catalog system
    assert count == 2 and system.device == "h100-80gb"
    assert system.interconnect == "nvlink" and system.interconnect_gbps == 450


def test_resolve_target_errors():
    with pytest.raises(MoesimError, match="rtx-4090"):
        resolve_target("rtx-4909")
    with pytest.raises(MoesimError):
        resolve_target("8x-h200", count=4)
    with pytest.raises(MoesimError):
        resolve_target("rtx-4090", count=0)
    with pytest.raises(MoesimError):
        resolve_target("2x-m2-ultra-76c")


@pytest.mark.parametrize(("lookup", "name"), [(get_device, "rtx-4900"), (get_system, "8x-h300"),
                                              (get_device_class, "consumer-gpus")])
def test_unknown_ids_suggest_close_ones(lookup, name):
    with pytest.raises(MoesimError) as info:
        lookup(name)
    message = str(info.value)
    assert "did you mean" in message and "\n" not in message


def test_lookup_is_case_insensitive():
    assert get_device("RTX-4090").slug == "rtx-4090"
    assert get_system("8X-H200").slug == "8x-h200"
