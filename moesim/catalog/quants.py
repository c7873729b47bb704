"""Quantization catalog: storage types (ggml block formats and others) and file-type rules.

CONTRACT: `StorageType` gives exact storage cost; `QuantScheme.tensor_type(tensor, model)`
names the StorageType a given tensor gets (llama.cpp `llama_tensor_get_type` logic for GGUF
file types, rule tables for other formats); `tensor_bytes` turns that into bytes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StorageType:
    """One storage format of a tensor: `block_size` weights take `bits_per_block` bits.

    Bits (not bytes) so formats whose blocks are not whole bytes (GPTQ g128 with 4-bit zeros)
    are exact too. ggml types: bits_per_block = 8 * bytes per block.
    """

    name: str  # "Q4_K", "Q6_K", "MXFP4", "F16", "FP8_E4M3_B128", "GPTQ_INT4_G128", ...
    block_size: int
    bits_per_block: int
    ggml: bool  # a real ggml tensor type (can appear in a GGUF file)
    source: str

    @property
    def bits_per_weight(self) -> float:
        return self.bits_per_block / self.block_size


@dataclass(frozen=True, slots=True)
class QuantScheme:
    """A whole-model quantization (llama.cpp file type, unsloth dynamic mix, FP8, GPTQ, MLX ...)."""

    id: str  # "Q4_K_M", "UD-Q2_K_XL", "FP8", "GPTQ-Int4", "MLX-4bit", "MXFP4", ...
    kind: str  # "gguf" | "gguf-dynamic" | "fp8" | "gptq" | "awq" | "mlx" | "nvfp4" | "native"
    default_type: str  # StorageType name for tensors no rule overrides
    description: str
    source: str
