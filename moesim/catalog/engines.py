"""Engine profiles (llama.cpp, ik_llama.cpp, ktransformers, vllm, mlx) as sourced data.

CONTRACT: memory fields are used by the footprint; timing fields by the timing model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineProfile:
    name: str
    mla_kv_layout: str  # "absorbed" (576 elements/layer) | "naive"
    overlaps_cpu_gpu: bool  # CPU-expert work overlaps GPU work within a layer
    launch_overhead_us_per_layer: float
    uploads_weights_for_prefill: bool  # llama.cpp copies CPU-resident weights to the GPU for big batches
    prefill_upload_min_batch: int
    runtime_overhead_bytes: int  # CUDA context, allocator slack ...
    compute_buffer_bytes_per_token: float  # scratch growth with micro-batch x hidden
    gpu_bandwidth_efficiency_scale: float  # multiplies the device-class efficiency
    cpu_bandwidth_efficiency_scale: float
    source: str
    # timing-model fields (issue 5); defaults are llama.cpp's behaviour, engines.toml may override
    prefill_ubatch: int = 512  # tokens per prefill micro-batch (llama.cpp -ub default 512)
    numa_duplicates_weights: bool = False  # CPU weights copied into every NUMA node (ktransformers dual socket)
    dual_socket_bandwidth_fraction: float = 0.5  # share of 2-socket RAM bandwidth reached without duplication
