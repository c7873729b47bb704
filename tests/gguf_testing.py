"""Test helper: write small GGUF files with gguf.GGUFWriter (zeros for the weights)."""

from __future__ import annotations

import gguf
import numpy as np

from moesim.catalog.quants import assign_types, get_quant, get_storage_type, tensor_bytes

TINY_MOE = {
    "model_type": "mixtral", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 512,
    "vocab_size": 1000, "max_position_embeddings": 2048,
}


def write_gguf(path, model, quant_id: str, file_type) -> None:
    """Write `model`'s tensors (zeros) with the types moesim's rules give them."""
    types = assign_types(get_quant(quant_id), model)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(model.n_layers)
    w.add_embedding_length(model.hidden_size)
    w.add_feed_forward_length(model.expert_ffn_dim)
    w.add_head_count(model.n_heads)
    w.add_head_count_kv(model.n_kv_heads)
    w.add_context_length(model.max_context)
    w.add_expert_count(model.n_routed_experts)
    w.add_expert_used_count(model.top_k)
    w.add_file_type(file_type)
    for t in model.tensors():
        stype = get_storage_type(types[t.name])
        ggml_shape = t.shape
        numpy_shape = tuple(reversed(ggml_shape))
        if stype.name == "F32":
            w.add_tensor(t.name, np.zeros(numpy_shape, dtype=np.float32))
        elif stype.name == "F16":
            w.add_tensor(t.name, np.zeros(numpy_shape, dtype=np.float16))
        else:
            row_bytes = tensor_bytes(stype, (ggml_shape[0],))
            byte_shape = numpy_shape[:-1] + (row_bytes,)
            w.add_tensor(t.name, np.zeros(byte_shape, dtype=np.uint8),
                         raw_dtype=gguf.GGMLQuantizationType[stype.name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
