"""Engine catalog: every engine the calibration names, complete sourced profiles, lookups and errors."""

from __future__ import annotations

import csv
from dataclasses import fields

import pytest

from moesim.catalog.engines import EngineProfile, all_engines, get_engine
from moesim.errors import MoesimError

ENGINES = ("llama.cpp", "ik_llama.cpp", "ktransformers", "vllm", "mlx")


def test_all_engines_are_present():
    assert tuple(e.name for e in all_engines()) == ENGINES


def test_engines_named_by_the_measurements_resolve(shared_dir):
    with open(shared_dir / "calibration" / "measurements.csv", newline="") as fh:
        names = {row["engine"] for row in csv.DictReader(fh)} - {"unknown"}
    assert names
    for name in names:
        assert get_engine(name).name == name


@pytest.mark.parametrize("name", ENGINES)
def test_profile_is_complete_and_sourced(name):
    engine = get_engine(name)
    assert engine.source.strip()
    assert engine.mla_kv_layout in ("absorbed", "naive")
    assert engine.prefill_ubatch >= 1 and engine.prefill_batch_tokens >= engine.prefill_ubatch
    assert 100e6 <= engine.runtime_overhead_bytes <= 4e9
    assert 0 < engine.compute_buffer_bytes_per_token < 4e6
    for scale in (engine.gpu_bandwidth_efficiency_scale, engine.cpu_bandwidth_efficiency_scale,
                  engine.gpu_compute_efficiency_scale, engine.cpu_compute_efficiency_scale):
        assert 0.2 <= scale <= 3
    assert 0 < engine.usable_vram_fraction <= 1 and 0 < engine.dual_socket_bandwidth_fraction <= 1
    assert engine.backends and engine.kv_cache_types
    assert len(engine.field_sources) >= 5 and all(text.strip() for _, text in engine.field_sources)
    # every justification points at a field (or a named topic covering several)
    known = {f.name for f in fields(EngineProfile)} | {"compute_buffer", "efficiency"}
    assert {key for key, _ in engine.field_sources} <= known


def test_engine_behaviours_that_the_timing_model_relies_on():
    llama = get_engine("llama.cpp")
    assert llama.uploads_weights_for_prefill and llama.prefill_upload_min_batch == 32
    assert llama.prefill_ubatch == 512 and not llama.overlaps_cpu_gpu
    kt = get_engine("ktransformers")
    assert kt.numa_duplicates_weights and kt.overlaps_cpu_gpu and not kt.uploads_weights_for_prefill
    assert get_engine("vllm").usable_vram_fraction == pytest.approx(0.9)
    assert not get_engine("vllm").supports_cpu_offload and not get_engine("mlx").supports_cpu_offload
    assert llama.supports_cpu_offload and kt.supports_cpu_offload
    assert get_engine("mlx").backends == ("metal",)
    # the llama.cpp compute buffer at the default micro-batch is "a few hundred MB"
    assert 100e6 < llama.compute_buffer_bytes_per_token * llama.prefill_ubatch < 1e9


def test_source_for_returns_field_justification():
    llama = get_engine("llama.cpp")
    assert "32" in llama.source_for("prefill_upload_min_batch")
    assert llama.source_for("no-such-field") == llama.source


@pytest.mark.parametrize("alias", ["llama.cpp", "LLAMA.CPP", "llama-cpp", "llama_cpp"])
def test_name_spellings(alias):
    assert get_engine(alias).name == "llama.cpp"


def test_profile_passes_through():
    engine = get_engine("vllm")
    assert get_engine(engine) is engine


@pytest.mark.parametrize("bad", ["llamacpp2", "tensorrt", ""])
def test_unknown_engine_raises_one_line(bad):
    with pytest.raises(MoesimError) as info:
        get_engine(bad)
    assert "\n" not in str(info.value) and "unknown engine" in str(info.value)


def test_unknown_engine_suggests():
    with pytest.raises(MoesimError, match="did you mean"):
        get_engine("ktransformer")


def test_non_text_engine_name_raises():
    with pytest.raises(MoesimError):
        get_engine(3)
