"""GGUF header input: exact tensor bytes from files written with gguf.GGUFWriter."""

from __future__ import annotations

import gguf
import pytest

from gguf_testing import TINY_MOE, write_gguf
from moesim.catalog.models import get_model, model_from_hf_config
from moesim.catalog.quants import assign_types, get_quant
from moesim.errors import MoesimError
from moesim.footprint import footprint
from moesim.gguf_input import read_gguf, tensor_category

@pytest.fixture
def tiny_model():
    return model_from_hf_config(TINY_MOE, id="tiny/moe")


@pytest.mark.parametrize("quant_id, ftype", [("Q8_0", gguf.LlamaFileType.MOSTLY_Q8_0),
                                             ("Q4_K_M", gguf.LlamaFileType.MOSTLY_Q4_K_M),
                                             ("F16", gguf.LlamaFileType.MOSTLY_F16)])
def test_exact_bytes_equal_the_rule_based_footprint(tmp_path, tiny_model, quant_id, ftype):
    path = tmp_path / "tiny.gguf"
    write_gguf(path, tiny_model, quant_id, ftype)
    info = read_gguf(path)
    computed = footprint(tiny_model, quant_id)
    assert info.file_type == quant_id
    assert info.footprint.exact and not computed.exact
    assert info.footprint.weights_bytes == computed.weights_bytes == sum(info.tensor_bytes.values())
    assert info.footprint.bytes_by_category == computed.bytes_by_category
    assert info.footprint.routed_expert_bytes_by_layer == computed.routed_expert_bytes_by_layer
    assert info.tensor_types == assign_types(get_quant(quant_id), tiny_model)


def test_model_rebuilt_from_metadata(tmp_path, tiny_model):
    path = tmp_path / "tiny.gguf"
    write_gguf(path, tiny_model, "Q8_0", gguf.LlamaFileType.MOSTLY_Q8_0)
    m = read_gguf(path).model
    assert (m.n_layers, m.hidden_size, m.n_heads, m.n_kv_heads, m.head_dim) == (2, 256, 4, 2, 64)
    assert (m.n_routed_experts, m.top_k, m.expert_ffn_dim, m.moe_layers) == (4, 2, 512, (0, 1))
    assert m.vocab_size == 1000 and m.max_context == 2048 and not m.tie_word_embeddings
    assert get_model(str(path)).n_routed_experts == 4


def test_tensor_categories():
    assert tensor_category("blk.3.ffn_down_exps.weight") == "routed_expert"
    assert tensor_category("blk.3.ffn_down_shexp.weight") == "shared_expert"
    assert tensor_category("blk.3.ffn_gate_inp.weight") == "router"
    assert tensor_category("blk.3.attn_kv_b.weight") == "attention"
    assert tensor_category("blk.3.attn_q_a_norm.weight") == "norm"
    assert tensor_category("output.weight") == "output"
    assert tensor_category("output_norm.weight") == "norm"
    assert tensor_category("token_embd.weight") == "embedding"
    assert tensor_category("blk.0.ffn_up.weight") == "dense_ffn"


def test_truncated_gguf_raises(tmp_path, tiny_model):
    path = tmp_path / "tiny.gguf"
    write_gguf(path, tiny_model, "Q8_0", gguf.LlamaFileType.MOSTLY_Q8_0)
    data = path.read_bytes()
    for cut in (len(data) // 2, 200, 30, 6):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(MoesimError) as exc:
            read_gguf(bad)
        assert "\n" not in str(exc.value)


def test_garbage_and_missing_files_raise(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"NOTGGUF" + bytes(range(200)))
    with pytest.raises(MoesimError, match="not a GGUF"):
        read_gguf(junk)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + bytes([0xFF] * 100))
    with pytest.raises(MoesimError):
        read_gguf(fake)
    with pytest.raises(MoesimError, match="no such"):
        read_gguf(tmp_path / "absent.gguf")
