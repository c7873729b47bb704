"""Placements: parsing, memory per tier, refusing what does not fit (hand-built toy inputs)."""

import numpy as np
import pytest

from moesim.errors import MoesimError
from moesim.placement import CACHE, CPU, GPU, auto_candidates, llama_cpp_command, parse_size, parse_strategy, place
from naive_timing import toy_cpu_machine, toy_dense_profile, toy_gpu_machine, toy_profile

OVERHEAD = 0.2e9


def _place(name, profile=None, hier=None, context=1024, batch=1):
    return place(parse_strategy(name), profile or toy_profile(), hier or toy_gpu_machine(), context, batch, OVERHEAD)


@pytest.mark.parametrize("text,canonical", [
    ("gpu", "gpu"), ("NGL:12", "ngl:12"), ("n-cpu-moe:3", "n-cpu-moe:3"), ("expert-cache:lru", "expert-cache:lru"),
    ("expert-cache:lru:2GB", "expert-cache:lru:2000000000"), ("expert-cache:lru:1GiB:prefetch", "expert-cache:lru:1073741824:prefetch"),
    ("tp:2", "tp:2"), ("ktransformers", "ktransformers"), ("auto", "auto"),
])
def test_parse_strategy_canonical_names(text, canonical):
    assert parse_strategy(text).name == canonical


@pytest.mark.parametrize("bad", ["ngl:-1", "ngl:x", "tp:0", "ep:-2", "warp-drive", "expert-cache:nosuchpolicy", "expert-cache:lru:-5GB"])
def test_parse_strategy_rejects_bad_input(bad):
    with pytest.raises(MoesimError) as err:
        parse_strategy(bad)
    assert "\n" not in str(err.value)


def test_parse_size_units():
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("24GB") == 24_000_000_000
    assert parse_size("1000") == 1000


def test_tp_more_gpus_than_machine_is_an_error():
    with pytest.raises(MoesimError, match="needs 3 GPUs"):
        _place("tp:3")


def test_gpu_placement_counts_every_byte():
    p = toy_profile()
    pl = _place("gpu", p, toy_gpu_machine(vram_gb=20))
    assert pl.fits
    expected = p.layer_fixed_bytes.sum() + p.routed_bytes + p.output_bytes + p.kv_bytes(1024) + OVERHEAD
    assert pl.bytes_by_tier["vram"] == pytest.approx(expected)
    assert pl.bytes_by_tier["host"] == pytest.approx(p.embedding_bytes)  # token_embd stays in RAM


def test_refuses_when_vram_too_small():
    pl = _place("gpu", hier=toy_gpu_machine(vram_gb=1))
    assert not pl.fits and "VRAM" in pl.reason


def test_cpu_moe_moves_every_routed_expert_to_host():
    p = toy_profile()
    pl = _place("cpu-moe", p, toy_gpu_machine(vram_gb=20))
    assert (pl.expert_home == CPU).all()
    assert pl.bytes_by_tier["host"] == pytest.approx(p.routed_bytes + p.embedding_bytes)


def test_n_cpu_moe_counts_blocks_like_llama_cpp():
    p = toy_profile(dense_first=1)  # block 0 dense, blocks 1..7 MoE
    pl = _place("n-cpu-moe:3", p, toy_gpu_machine(vram_gb=20))
    # blocks 0,1,2 -> the MoE layers 1 and 2 go to the CPU
    assert list(pl.expert_home) == [CPU, CPU, GPU, GPU, GPU, GPU, GPU]


def test_ngl_offloads_the_last_layers_and_output_only_beyond_block_count():
    p = toy_profile()
    pl = _place("ngl:3", p, toy_gpu_machine(vram_gb=20))
    assert list(pl.fixed_on_gpu) == [False] * 5 + [True] * 3
    assert not pl.output_on_gpu
    assert _place("ngl:9", p, toy_gpu_machine(vram_gb=20)).output_on_gpu


def test_expert_cache_uses_leftover_vram_and_refuses_oversized_budget():
    p = toy_profile()
    h = toy_gpu_machine(vram_gb=2.5)
    pl = _place("expert-cache:lru", p, h)
    assert pl.fits and (pl.expert_home == CACHE).all()
    always_on = p.layer_fixed_bytes.sum() + p.output_bytes + p.kv_bytes(1024) + OVERHEAD
    slots = int((h.gpu_capacity_bytes - always_on) // p.expert_bytes.sum())
    assert pl.cache_experts_per_layer == slots
    assert pl.bytes_by_tier["vram"] <= h.gpu_capacity_bytes
    too_big = _place("expert-cache:lru:5GB", p, h)
    assert not too_big.fits and "does not fit" in too_big.reason


def test_experts_beyond_ram_are_paged_from_nvme():
    p = toy_profile(expert_mb=100)
    pl = _place("cpu", p, toy_cpu_machine(ram_gb=5))
    assert pl.fits
    assert pl.bytes_by_tier["nvme"] > 0
    assert pl.ram_experts_per_layer < p.n_experts
    assert "NVMe" in pl.reason


def test_refuses_when_non_expert_weights_exceed_ram():
    pl = _place("cpu", toy_profile(fixed_mb=2000), toy_cpu_machine(ram_gb=8))
    assert not pl.fits and "host RAM" in pl.reason


def test_moe_only_strategies_refused_for_dense_models():
    pl = _place("cpu-moe", toy_dense_profile(), toy_gpu_machine(vram_gb=20))
    assert not pl.fits and "dense" in pl.reason


def test_cpu_only_machine_only_runs_cpu():
    assert not _place("gpu", hier=toy_cpu_machine()).fits
    assert _place("cpu", hier=toy_cpu_machine()).fits


def test_auto_candidates_pick_smallest_fitting_n_cpu_moe():
    p = toy_profile()
    h = toy_gpu_machine(vram_gb=3.0)
    cands = {c.kind: c for c in auto_candidates(p, h, 1024, 1, OVERHEAD)}
    n = cands["n-cpu-moe"].n
    assert _place(f"n-cpu-moe:{n}", p, h).fits
    if n > 0:
        assert not _place(f"n-cpu-moe:{n - 1}", p, h).fits


def test_llama_cpp_commands():
    assert llama_cpp_command("n-cpu-moe:20", "m.gguf", 4096, 1, 1) == "llama-server -m m.gguf -ngl 999 --n-cpu-moe 20 -c 4096"
    assert llama_cpp_command("cpu", "m.gguf", 2048, 1, 0) == "llama-server -m m.gguf -ngl 0 -c 2048"
    assert "--split-mode layer" in llama_cpp_command("gpu", "m.gguf", 4096, 1, 2)
    assert llama_cpp_command("expert-cache:lru", "m.gguf", 4096, 1, 1).startswith("#")


@pytest.mark.parametrize("asked, kind", [("n-cpu-moe:60", "n-cpu-moe"), ("ngl:60", "ngl")])
def test_refusal_names_the_boundary_n_that_fits(asked, kind):
    from dataclasses import replace

    from moesim.simulate import SimRequest, simulate

    request = SimRequest(model="qwen3-235b-a22b", quant="Q3_K_M", device="rtx-4090", strategy=asked)
    refused = simulate(request)
    assert not refused.fits
    suggested = refused.reason.rsplit(" ", 1)[-1]
    assert suggested.startswith(kind + ":")
    n = int(suggested.split(":")[1])
    step = -1 if kind == "n-cpu-moe" else 1  # one expert layer fewer on the CPU / one layer more on the GPU
    assert simulate(replace(request, strategy=suggested)).fits
    assert not simulate(replace(request, strategy=f"{kind}:{n + step}")).fits
