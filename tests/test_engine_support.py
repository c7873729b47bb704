"""Engines run only the placements they implement, on devices they have a backend for: `auto` recommends
nothing else, an explicit strategy outside that is refused with the engine's reason, and the what-if
placements no catalog engine implements (expert-cache, cpu-or-fetch) stay open as explicit strategies."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from moesim.catalog.devices import all_devices
from moesim.catalog.engines import all_engines, machine_backends
from moesim.cli import cli
from moesim.errors import MoesimError
from moesim.simulate import SimRequest, simulate, simulate_many
from moesim.timing_layout import KIND_CODES

FILE_FORMAT = {"vllm": "FP8", "mlx": "MLX-4bit"}  # a quantization each engine loads (GGUF for the rest)


def request(engine="llama.cpp", **fields) -> SimRequest:
    return SimRequest(model="qwen3-30b-a3b", quant=FILE_FORMAT.get(engine, "Q4_K_M"), engine=engine, **fields)


def test_every_engine_lists_known_placements_and_every_device_has_backends():
    for engine in all_engines():
        assert set(engine.strategies) <= set(KIND_CODES) - {"auto"}, engine.name
        # kinds that share a kernel code are one placement family: an engine runs all of them or none
        codes = {KIND_CODES[kind] for kind in engine.strategies}
        assert {kind for kind, code in KIND_CODES.items() if code in codes} == set(engine.strategies), engine.name
    for device in all_devices():
        assert "cpu" in machine_backends(device.kind, device.vendor)


@pytest.mark.parametrize("engine, device", [("vllm", "a100-80gb-pcie"), ("vllm", "2x-rtx-3090"),
                                            ("llama.cpp", "rtx-3060-12gb"), ("ktransformers", "rtx-3060-12gb"),
                                            ("mlx", "m2-max"), ("ik_llama.cpp", "rx-7900-xtx")])
def test_auto_only_weighs_placements_the_engine_runs(engine, device):
    res = simulate(request(device=device, engine=engine))
    runs = {e.name: set(e.strategies) for e in all_engines()}[engine]
    assert res.fits, res.reason
    assert {name.split(":")[0] for name in res.candidates} <= runs
    assert res.strategy.split(":")[0] in runs


def test_vllm_is_refused_cpu_offload_and_llama_cpp_expert_parallelism():
    offload = simulate(request(device="rtx-3060-12gb", engine="vllm", strategy="n-cpu-moe:28"))
    assert not offload.fits
    assert offload.reason == ("n-cpu-moe:28: vllm runs only gpu, unified, tp, ep "
                              "(and the what-if expert-cache, cpu-or-fetch)")
    ep = simulate(request(device="2x-rtx-3090", strategy="ep:2"))
    assert not ep.fits and ep.reason.startswith("ep:2: llama.cpp runs only gpu, cpu, unified, ngl")
    assert simulate(request(device="2x-rtx-3090", strategy="ep:2", engine="vllm")).fits


def test_engines_without_a_backend_for_the_device_are_refused_with_it():
    mlx = simulate(request(device="rtx-4090", engine="mlx"))
    assert not mlx.fits
    assert mlx.reason == "gpu: mlx has no backend for nvidia gpu devices (its backends: metal)"
    tpu = simulate(request(device="tpu-v5e", strategy="gpu"))
    assert not tpu.fits and "llama.cpp has no backend for google gpu devices" in tpu.reason
    assert tpu.reason.endswith("it runs only cpu here, on the host")
    on_host = simulate(request(device="tpu-v5e"))
    assert on_host.fits and on_host.strategy == "cpu"
    assert not simulate(request(device="epyc-9b14", engine="vllm", strategy="cpu")).fits


def test_what_if_placements_stay_open_to_every_engine_but_auto_skips_them():
    for engine in ("llama.cpp", "vllm"):
        res = simulate(request(device="rtx-3060-12gb", engine=engine, strategy="expert-cache:lru"))
        assert res.fits and res.hit_rate > 0, (engine, res.reason)
        auto = simulate(request(device="rtx-3060-12gb", engine=engine))
        assert not any(name.startswith(("expert-cache", "cpu-or-fetch")) for name in auto.candidates)


def test_ktransformers_auto_weighs_its_own_placement():
    res = simulate(SimRequest(model="deepseek-r1", quant="Q4_K_M", device="rtx-4090", engine="ktransformers",
                              host_overrides=(("ram_gb", 768.0),)))
    assert res.fits and "ktransformers" in res.candidates


def test_the_batch_path_gives_the_same_engine_refusals():
    requests = [request(device=device, engine=engine, strategy=strategy)
                for device in ("rtx-4090", "tpu-v5e", "m2-max", "epyc-9b14")
                for engine in ("llama.cpp", "vllm", "mlx", "ktransformers")
                for strategy in ("auto", "cpu", "n-cpu-moe:10", "ep:1", "expert-cache:lru", "unified")]
    requests = [req for req in requests if not req.strategy.startswith("ep")]
    for req, got in zip(requests, simulate_many(requests)):
        want = simulate(req)
        assert (got.fits, got.strategy, got.reason) == (want.fits, want.strategy, want.reason), req


def test_simulate_cli_prints_the_engine_refusal_in_json():
    res = CliRunner().invoke(cli, ["simulate", "-m", "qwen3-30b-a3b", "-q", "MLX-4bit", "-d", "rtx-4090", "-e", "mlx",
                                   "--json"])
    out = json.loads(res.stdout)
    assert out["fits"] is False and "mlx has no backend for nvidia gpu devices" in out["reason"]


def test_sweep_default_strategies_follow_the_engine():
    from moesim.sweep.points import resolve_strategies

    llama = resolve_strategies("main", "llama.cpp")
    assert llama["gpu"] == ("auto", "gpu", "cpu-moe", "expert-cache:lru")
    assert llama["system"] == ("auto", "gpu", "tp:{n}", "cpu-moe", "expert-cache:lru")  # no expert parallelism
    vllm = resolve_strategies("main", "vllm")
    assert vllm["gpu"] == ("auto", "gpu", "expert-cache:lru") and vllm["system"] == ("auto", "gpu", "tp:{n}", "ep:{n}",
                                                                                      "expert-cache:lru")
    assert resolve_strategies("main", "mlx")["unified"] == ("auto", "unified")
    assert resolve_strategies("cpu-moe,gpu", "vllm")["gpu"] == ("cpu-moe", "gpu")  # a list is taken as given


def test_only_llama_cpp_builds_get_a_llama_server_command():
    def command(engine, device="a100-80gb-pcie", strategy="auto"):
        return simulate(request(device=device, engine=engine, strategy=strategy)).llama_cpp_command

    assert command("llama.cpp").startswith("llama-server ") and command("ik_llama.cpp").startswith("llama-server ")
    assert command("vllm") == "" and command("mlx", device="m2-max") == ""
    assert command("ktransformers", device="rtx-4090", strategy="ktransformers").startswith("# ktransformers:")
    assert command("ktransformers", device="rtx-4090", strategy="gpu") == ""
    rows = simulate_many([request(device="a100-80gb-pcie", engine=e) for e in ("vllm", "llama.cpp")])
    assert rows[0].llama_cpp_command == "" and rows[1].llama_cpp_command.startswith("llama-server ")


def test_an_engine_is_refused_a_file_format_it_cannot_load():
    with pytest.raises(MoesimError, match=r"^mlx does not load Q4_K_M \(gguf files\); it loads mlx, native, BF16, F16$"):
        simulate(SimRequest(model="qwen3-30b-a3b", quant="Q4_K_M", device="m2-max", engine="mlx"))
    with pytest.raises(MoesimError, match="llama.cpp does not load FP8"):
        simulate_many([SimRequest(model="qwen3-30b-a3b", quant="FP8", device="rtx-4090")])
    assert simulate(SimRequest(model="qwen3-30b-a3b", quant="BF16", device="a100-80gb-pcie", engine="vllm")).fits
    res = CliRunner().invoke(cli, ["simulate", "-m", "qwen3-30b-a3b", "-q", "FP8", "-d", "rtx-4090", "--json"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr.strip().splitlines() == ["Error: llama.cpp does not load FP8 (fp8 files); it loads gguf, "
                                               "gguf-dynamic, native"]


def test_sweep_quants_follow_the_engine_and_a_listed_quant_it_cannot_load_is_an_error():
    from moesim.catalog.models import get_model
    from moesim.sweep.points import resolve_quants

    models = (get_model("qwen3-30b-a3b"),)
    vllm = resolve_quants("all", models, "vllm")["qwen3-30b-a3b"]
    assert "BF16" in vllm and "FP8" in vllm and "Q4_K_M" not in vllm
    assert "Q4_K_M" in resolve_quants("all", models, "llama.cpp")["qwen3-30b-a3b"]
    with pytest.raises(MoesimError, match="vllm does not load Q4_K_M"):
        resolve_quants("Q4_K_M,FP8", models, "vllm")
