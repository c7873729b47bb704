"""`moesim catalog` and `moesim fit` through the CLI: JSON shape, fits/overflow, one-line errors."""

from __future__ import annotations

import json

import gguf
import pytest
from click.testing import CliRunner
from gguf_testing import TINY_MOE, write_gguf

from moesim.catalog.models import all_models, model_from_hf_config
from moesim.cli import cli
from moesim.footprint import footprint, kv_cache_bytes

try:  # CliRunner(mix_stderr=False) was removed in click 8.2, where stderr is always separate
    RUNNER = CliRunner(mix_stderr=False)
except TypeError:
    RUNNER = CliRunner()


def run(*args):
    return RUNNER.invoke(cli, list(args))


def run_json(*args) -> dict:
    res = run(*args, "--json")
    assert res.exit_code == 0, res.output + (res.stderr or "")
    return json.loads(res.stdout)


def assert_one_line_error(res):
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("Error:")
    assert "Traceback" not in res.output + res.stderr


def test_catalog_models_json_covers_every_model():
    data = run_json("catalog", "models")
    assert set(data) == {"models"}
    assert {m["id"] for m in data["models"]} == {m.id for m in all_models()}
    r1 = next(m for m in data["models"] if m["alias"] == "deepseek-r1")
    assert r1["total_params"] == pytest.approx(671e9, rel=0.003) and r1["source"].startswith("https://")


def test_catalog_quants_json():
    data = run_json("catalog", "quants")
    ids = {q["id"] for q in data["quants"]}
    assert {"Q4_K_M", "UD-Q2_K_XL", "MXFP4_MOE", "FP8", "MLX-4bit"} <= ids
    assert all(q["source"] for q in data["quants"])
    assert {t["name"] for t in data["storage_types"]} >= {"IQ1_S", "TQ2_0", "MXFP4", "BF16"}
    rules = {r["name"]: r for r in data["llama_cpp_rules"]}
    assert set(rules) == {"current", "pre-4872"} and all(r["source"] for r in rules.values())
    assert "pre-4872" in run("catalog", "quants").stdout


def test_catalog_devices_json_covers_every_slug(shared_dir):
    import csv

    data = run_json("catalog", "devices")
    slugs = {d["slug"] for d in data["devices"]} | {s["slug"] for s in data.get("systems", [])}
    wanted = {r["slug"] for r in csv.DictReader((shared_dir / "reference" / "device-ids.csv").open())}
    assert wanted <= slugs
    assert all(d["source"] for d in data["devices"])


def test_catalog_engines_json():
    data = run_json("catalog", "engines")
    assert "llama.cpp" in {e["name"] for e in data["engines"]}
    by_name = {e["name"]: e for e in data["engines"]}
    assert by_name["vllm"]["strategies"] == ["gpu", "unified", "tp", "ep"] and by_name["mlx"]["backends"] == ["metal"]


@pytest.mark.parametrize("item, kind", [("deepseek-r1", "model"), ("Q4_K_M", "quant"), ("Q6_K", "quant"),
                                        ("IQ4_NL", "quant"), ("MXFP4", "quant"), ("Q4_K", "storage_type"),
                                        ("llama.cpp", "engine")])
def test_catalog_show(item, kind):
    data = run_json("catalog", "show", item)
    assert data["kind"] == kind and kind in data
    assert run("catalog", "show", item).exit_code == 0


def test_catalog_show_device():
    from moesim.catalog.devices import all_devices

    slug = all_devices()[0].slug
    data = run_json("catalog", "show", slug)
    assert data["kind"] == "device" and data["device"]["slug"] == slug


def test_catalog_show_unknown_suggests():
    res = run("catalog", "show", "deepseek-r2")
    assert_one_line_error(res)
    assert "deepseek-r1" in res.stderr


def test_fit_json_numbers_come_from_the_footprint():
    data = run_json("fit", "qwen3-30b-a3b", "--quant", "Q4_K_M", "--context", "8192")
    fp = footprint("qwen3-30b-a3b", "Q4_K_M")
    assert data["weights_bytes"] == fp.weights_bytes
    assert data["kv_cache_bytes"] == kv_cache_bytes("qwen3-30b-a3b", 8192)
    assert data["total_bytes"] == data["weights_bytes"] + data["kv_cache_bytes"] + data["runtime_overhead_bytes"]
    assert sum(data["by_tensor_class"].values()) == fp.weights_bytes
    assert sum(data["by_category"].values()) == fp.weights_bytes
    assert data["fits"] is None and data["device_memory_bytes"] is None


def _device_with_memory(min_gb: float, max_gb: float):
    from moesim.catalog.devices import all_devices

    for d in all_devices():
        if d.kind == "gpu" and min_gb <= d.memory_gb * d.usable_memory_fraction <= max_gb:
            return d
    pytest.skip(f"no GPU with {min_gb}-{max_gb} GB in the device catalog")


def test_fit_on_device_small_and_large():
    gpu = _device_with_memory(20, 30)  # a 24 GB class card
    small = run_json("fit", "qwen3-30b-a3b", "-q", "Q4_K_M", "-d", gpu.slug, "--context", "4096")
    assert small["fits"] is True and small["overflow_bytes"] == 0
    assert small["device_memory_bytes"] == int(gpu.memory_gb * 1e9 * gpu.usable_memory_fraction)  # llama.cpp: 1.0
    vllm = run_json("fit", "qwen3-30b-a3b", "-q", "Q4_K_M", "-d", gpu.slug, "--engine", "vllm")
    assert vllm["device_memory_bytes"] < small["device_memory_bytes"]
    big = run_json("fit", "deepseek-r1", "-q", "Q4_K_M", "-d", gpu.slug)
    assert big["fits"] is False
    assert big["overflow_bytes"] == big["total_bytes"] - big["device_memory_bytes"]
    assert big["always_on_fits"] is True
    assert big["routed_bytes_elsewhere"] == big["overflow_bytes"]
    text = run("fit", "deepseek-r1", "-q", "Q4_K_M", "-d", gpu.slug)
    assert text.exit_code == 0 and "does NOT fit" in text.stdout


def test_fit_on_multi_gpu_system_counts_every_device():
    from moesim.catalog.devices import all_systems, get_device

    systems = all_systems()
    if not systems:
        pytest.skip("no multi-GPU systems in the catalog")
    s = systems[0]
    d = get_device(s.device)
    data = run_json("fit", "llama-3-8b", "-q", "Q4_K_M", "-d", s.slug)
    assert data["device_memory_bytes"] == int(s.device_count * d.memory_gb * 1e9 * d.usable_memory_fraction)


def test_fit_mla_layout_and_kv_type():
    absorbed = run_json("fit", "deepseek-r1", "-q", "Q4_K_M", "-c", "1000", "--kv-type", "bf16",
                        "--mla-layout", "absorbed")
    naive = run_json("fit", "deepseek-r1", "-q", "Q4_K_M", "-c", "1000", "--kv-type", "bf16", "--mla-layout", "naive")
    assert absorbed["kv_cache_bytes"] == 1000 * 70272
    assert naive["kv_cache_bytes"] == 1000 * 61 * 40960 * 2
    q8 = run_json("fit", "llama-3-8b", "-q", "Q8_0", "-c", "4096", "--kv-type", "q8_0")
    f16 = run_json("fit", "llama-3-8b", "-q", "Q8_0", "-c", "4096")
    assert q8["kv_cache_bytes"] * 64 == f16["kv_cache_bytes"] * 34


def test_fit_reads_a_gguf_file(tmp_path):
    model = model_from_hf_config(TINY_MOE, id="tiny/moe")
    path = tmp_path / "tiny-Q4_K_M.gguf"
    write_gguf(path, model, "Q4_K_M", gguf.LlamaFileType.MOSTLY_Q4_K_M)
    data = run_json("fit", str(path), "--context", "128")
    assert data["exact_tensor_bytes"] is True and data["quant"] == "Q4_K_M"
    assert data["weights_bytes"] == footprint(model, "Q4_K_M").weights_bytes
    mismatch = run("fit", str(path), "--quant", "Q8_0")
    assert_one_line_error(mismatch)


@pytest.mark.parametrize(
    "args",
    [
        ("fit", "deepseek-r1", "-q", "Q4_K_M", "--context", "-5"),
        ("fit", "deepseek-r1", "-q", "Q4_K_M", "--batch", "-1"),
        ("fit", "deepseek-r2", "-q", "Q4_K_M"),
        ("fit", "deepseek-r1", "-q", "Q4_KM"),
        ("fit", "deepseek-r1", "-q", "Q4_K_M", "-d", "rtx-9999"),
        ("fit", "deepseek-r1"),
        ("fit", "deepseek-r1", "-q", "Q4_K_M", "--kv-type", "q3_k"),
        ("fit", "deepseek-r1", "-q", "Q4_K_M", "--engine", "nope-engine"),
        ("catalog", "show", "no-such-thing"),
        ("fit", "mixtral-8x7b", "-q", "Q4_K_M@pre-9999"),
        ("fit", "mixtral-8x7b", "-q", "IQ2_XXS@pre-4872"),
    ],
)
def test_bad_input_is_one_line_exit_2(args):
    assert_one_line_error(run(*args))


def test_fit_with_a_historical_llama_cpp_rule_set():
    old = run_json("fit", "mixtral-8x7b", "-q", "Q4_K_M@pre-4872")
    new = run_json("fit", "mixtral-8x7b", "-q", "Q4_K_M")
    assert old["quant"] == "Q4_K_M@pre-4872" and new["quant"] == "Q4_K_M"
    assert old["weights_bytes"] == footprint("mixtral-8x7b", "Q4_K_M@pre-4872").weights_bytes
    assert old["weights_bytes"] < new["weights_bytes"]


def test_unknown_ids_suggest_the_closest():
    res = run("fit", "deepseek-r2", "-q", "Q4_K_M")
    assert "did you mean" in res.stderr and "deepseek-r1" in res.stderr
    res = run("fit", "deepseek-r1", "-q", "Q4_KM")
    assert "Q4_K_M" in res.stderr


@pytest.mark.parametrize("content", ["{", '{"model_type": "qwen3_moe"}', "\x00\x01garbage"])
def test_malformed_config_and_gguf_files(tmp_path, content):
    cfg = tmp_path / "config.json"
    cfg.write_text(content)
    assert_one_line_error(run("fit", str(cfg), "-q", "Q4_K_M"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content.encode())
    assert_one_line_error(run("fit", str(bad)))
