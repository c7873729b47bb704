"""Column layout and codes shared by the batch timing kernel and its Python wrapper.

Plain integers, no Numba import, so `moesim.simulate` can read result rows without loading the JIT.
"""

# strategy kinds (StrategySpec.kind)
K_AUTO, K_GPU, K_CPU, K_UNIFIED, K_NGL, K_NCPUMOE, K_CACHE, K_FIDDLER, K_TP, K_EP, K_KTRANS = range(11)
# placement kind (strategy name without parameters) -> code; cpu-moe is n-cpu-moe over every block
KIND_CODES = {"auto": K_AUTO, "gpu": K_GPU, "cpu": K_CPU, "unified": K_UNIFIED, "ngl": K_NGL, "cpu-moe": K_NCPUMOE,
              "n-cpu-moe": K_NCPUMOE, "expert-cache": K_CACHE, "cpu-or-fetch": K_FIDDLER, "tp": K_TP, "ep": K_EP,
              "ktransformers": K_KTRANS}
ALL_KINDS_MASK = sum({1 << code for kind, code in KIND_CODES.items() if kind != "auto"})  # every kind but auto
# code -> the name a resolved `auto` placement reports (cpu-moe is reported as the n-cpu-moe it is)
KIND_NAMES = {code: kind for kind, code in KIND_CODES.items() if kind not in ("auto", "cpu-moe")}
# refusal reasons; R_ENGINE: the engine does not run the strategy, R_BACKEND: it has no backend for the device
R_OK, R_NO_GPU, R_NOT_UNIFIED, R_DENSE, R_NO_LINK, R_VRAM, R_CACHE_BUDGET, R_HOST, R_ENGINE, R_BACKEND = range(10)
# machine table columns
(M_NGPU, M_UNIFIED, M_GPU_CAP, M_GBW, M_GFLOPS, M_HOST_CAP, M_POOL_CAP, M_HBW, M_COPS, M_LINK, M_LINK_PAGEABLE,
 M_LINK_LAT, M_IC_BW, M_COLL_LAT, M_NVME, M_SYNC, M_LAUNCH, M_TOKEN, M_FLOOR, M_OVERLAP, M_NUMA_DUP, M_SOCKETS,
 M_AUTO_KINDS, M_RUN_KINDS, M_ENGINE_DRIVES, M_WIDTH) = range(26)
# output columns
(O_FITS, O_REASON, O_KIND, O_N, O_NEED, O_CAP, O_CACHE, O_RAM, O_TOKS, O_MEAN, O_P50, O_P95, O_P99, O_HIT, O_PREFILL,
 O_FIRST, O_T_VRAM, O_T_HOST, O_T_NVME, O_T_VRAM_GPU, O_L0) = range(21)
O_B0 = O_L0 + 5  # 13 breakdown components
O_P0 = O_B0 + 13  # 6 prefill parts
O_NG = O_P0 + 6  # GPUs used
O_C0 = O_NG + 1  # up to 8 auto candidates: (kind, n, tok/s)
N_CAND = 8
O_WIDTH = O_C0 + 3 * N_CAND
