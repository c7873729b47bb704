"""The batch kernel behind `simulate_many` equals the per-point path (placement + decode + prefill
evaluated one strategy at a time in Python), which is the reference implementation."""

import math
import random

import pytest

from moesim import simulate as sim
from moesim.errors import MoesimError
from moesim.simulate import SimRequest, simulate_many

MODELS = ("Qwen/Qwen3-30B-A3B", "allenai/OLMoE-1B-7B-0924", "openai/gpt-oss-20b", "meta-llama/Llama-3.1-8B",
          "mistralai/Mixtral-8x7B-v0.1", "deepseek-ai/DeepSeek-V2-Lite")
DEVICES = ("rtx-4090", "rtx-3060-12gb", "rtx-4060-ti-16gb", "a100-80gb-pcie", "m2-ultra-76c", "strix-halo-395",
           "epyc-9b14", "2x-rtx-3090", "8x-h200", "dgx-spark")
STRATEGIES = ("auto", "gpu", "cpu", "cpu-moe", "n-cpu-moe:10", "expert-cache:lru", "expert-cache:lru:1GB",
              "cpu-or-fetch", "ngl:12", "ngl:999", "ktransformers", "unified")
FIELDS = ("strategy", "fits", "reason", "decode_tok_s", "latency_mean_s", "latency_p50_s", "latency_p95_s",
          "latency_p99_s", "prefill_tok_s", "ttft_s", "hit_rate", "weights_bytes", "kv_cache_bytes", "bytes_by_tier",
          "bytes_per_token_by_link", "time_breakdown_s", "group", "llama_cpp_command", "candidates",
          "decode_tok_s_low", "decode_tok_s_high")


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return a == b


ENGINES = ("llama.cpp", "ik_llama.cpp", "ktransformers", "vllm", "mlx")
ENGINE_DEVICES = DEVICES + ("rx-7900-xtx", "tpu-v5e", "arc-a770-16gb")


ENGINE_QUANTS = {"vllm": ("FP8", "BF16", "GPTQ-Int4"), "mlx": ("MLX-4bit", "BF16")}  # formats they load


def _requests(n, seed, engines=("llama.cpp",), devices=DEVICES, strategies=STRATEGIES):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        engine = rng.choice(engines)
        quant = rng.choice(ENGINE_QUANTS.get(engine, ("Q4_K_M", "Q8_0", "Q2_K")))
        out.append(SimRequest(model=rng.choice(MODELS), quant=quant,
                              device=rng.choice(devices), strategy=rng.choice(strategies),
                              context=rng.choice((0, 4096, 32768)), batch=rng.choice((1, 1, 4)), engine=engine))
    return out


@pytest.mark.parametrize("engines, devices, strategies", [
    (("llama.cpp",), DEVICES, STRATEGIES),
    # every engine, on devices some of them cannot drive, with strategies some of them do not run
    (ENGINES, ENGINE_DEVICES, STRATEGIES + ("tp:2", "ep:2", "tp:8", "ep:8")),
])
def test_batch_equals_per_point_reference(engines, devices, strategies):
    session = sim._SESSION
    checked = 0
    for req in _requests(150, 3, engines, devices, strategies):
        try:
            ref = session.run(req)
        except MoesimError:
            with pytest.raises(MoesimError):
                simulate_many([req])
            continue
        got = simulate_many([req])[0]
        for name in FIELDS:
            assert _same(getattr(ref, name), getattr(got, name)), (req, name, getattr(ref, name), getattr(got, name))
        checked += 1
    assert checked > 100


def test_batch_of_many_points_keeps_order_and_values():
    reqs = [r for r in _requests(60, seed=5)]
    ok = []
    for r in reqs:
        try:
            sim._SESSION.run(r)
            ok.append(r)
        except MoesimError:
            pass
    together = simulate_many(ok)
    one_by_one = [simulate_many([r])[0] for r in ok]
    assert [r.request for r in together] == ok
    for a, b in zip(together, one_by_one):
        assert _same(a.decode_tok_s, b.decode_tok_s) and a.strategy == b.strategy and a.fits == b.fits


def test_columns_equal_results():
    from moesim.simulate import COLUMN_FLOATS, COLUMN_INTS, COLUMN_STRINGS, simulate_columns

    reqs = []
    for r in _requests(80, seed=9) + [SimRequest(model="qwen3-30b-a3b", quant="Q4_K_M", device="rtx-4090",
                                                 strategy="expert-cache:lfu")]:
        try:
            simulate_many([r])
            reqs.append(r)
        except MoesimError:
            pass
    results = simulate_many(reqs)
    cols = simulate_columns(reqs)
    for i, res in enumerate(results):
        for name in COLUMN_FLOATS + COLUMN_INTS + COLUMN_STRINGS + ("fits",):
            assert _same(getattr(res, name), cols[name][i].item() if hasattr(cols[name][i], "item") else cols[name][i]), (name, i)
        for tier in ("vram", "host", "nvme"):
            assert cols[f"bytes_{tier}"][i] == res.bytes_by_tier.get(tier, 0)
        for key, value in res.time_breakdown_s.items():
            assert _same(float(cols[f"time_{key}_s"][i]), value)
        for key, value in res.bytes_per_token_by_link.items():
            assert _same(float(cols[f"bytes_per_token_{key}"][i]), value)
