"""Recording routing from a tiny randomly initialised transformers MoE model (no download)."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from moesim.cli import cli
from moesim.trace.format import read_trace
from moesim.trace.record import load_installed_hub_kernels

REPO = Path(__file__).resolve().parent.parent


def test_the_checkout_kernels_dir_does_not_hide_the_hub_kernels_package():
    """From the checkout root (on sys.path under `python -c` / `python -m`), `kernels` must end up as the
    installed PyPI package that transformers 5 imports, or stay unloaded where none is installed."""
    probe = ("import sys; from moesim.trace.record import load_installed_hub_kernels; load_installed_hub_kernels(); "
             "module = sys.modules.get('kernels'); print(module.__file__ if module else 'none')")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert not Path(loaded.strip()).is_relative_to(REPO / "kernels")
    try:
        importlib.metadata.version("kernels")
    except importlib.metadata.PackageNotFoundError:
        assert loaded.strip() == "none"
    else:
        assert loaded.strip() != "none"


@pytest.fixture(scope="module")
def hf():
    """(torch, transformers), or a skip where the optional `record` extra is not installed."""
    load_installed_hub_kernels()  # before transformers, which imports `kernels` under `python -m pytest`
    return pytest.importorskip("torch"), pytest.importorskip("transformers")


def _save(torch, tmp_path, config_cls, model_cls, **kwargs):
    torch.manual_seed(0)
    config = config_cls(vocab_size=64, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                        num_key_value_heads=1, max_position_embeddings=128, **kwargs)
    model = model_cls(config)
    path = tmp_path / "model"
    model.save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["mixtral", "qwen2_moe"])
def test_record_tiny_moe_model(hf, tmp_path, kind):
    torch, transformers = hf
    if kind == "mixtral":
        path = _save(torch, tmp_path, transformers.MixtralConfig, transformers.MixtralForCausalLM, num_hidden_layers=3,
                     num_local_experts=6, num_experts_per_tok=2)
        moe_layers, n_experts, k = (0, 1, 2), 6, 2
    else:
        path = _save(torch, tmp_path, transformers.Qwen2MoeConfig, transformers.Qwen2MoeForCausalLM, num_hidden_layers=4,
                     num_experts=8, num_experts_per_tok=3, moe_intermediate_size=8,
                     shared_expert_intermediate_size=16, decoder_sparse_step=2)
        moe_layers, n_experts, k = (1, 3), 8, 3
    out = tmp_path / "rec.arrow"
    result = CliRunner().invoke(cli, ["trace", "record", "--hf-model", str(path), "--prompt-ids", "1 2 3 4",
                                      "--prompt-ids", "5 6", "--max-new-tokens", "5", "--model-id", "tiny",
                                      "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_tokens"] == (4 + 5) + (2 + 5) and summary["prefill_tokens"] == 6
    trace = read_trace(out)
    assert trace.meta.moe_layers == moe_layers and trace.meta.n_routed_experts == n_experts and trace.top_k == k
    assert trace.seq.tolist() == [0] * 9 + [1] * 7
    assert trace.is_prefill.tolist()[:5] == [True, True, True, True, False]
    # the recorded routing is the model's own: recompute the prompt's router logits directly
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3, 4]]), output_router_logits=True).router_logits
    for layer, layer_logits in enumerate(logits):
        top = torch.topk(torch.softmax(layer_logits.float(), -1), k, dim=-1).indices.numpy()
        np.testing.assert_array_equal(trace.experts[:4, layer], top)
    assert np.all(np.diff(trace.weights, axis=2) <= 1e-6)  # highest weight first


def test_record_rejects_missing_model(hf, tmp_path):
    result = CliRunner().invoke(cli, ["trace", "record", "--hf-model", str(tmp_path), "--prompt-ids", "1",
                                      "-o", str(tmp_path / "x.arrow")])
    assert result.exit_code == 2
    assert "no config.json" in result.output and "Traceback" not in result.output
