"""Record routing traces from a local Hugging Face transformers MoE model (optional extra `record`).

The model runs greedy decoding with `output_router_logits=True`; each MoE layer's router logits
give the top-k experts (softmax, then the model's own renormalisation rule) for every prompt token
(prefill) and every generated token (decode). Nothing is downloaded: the model directory must be
local.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from moesim.errors import MoesimError
from moesim.trace.format import Trace, TraceMeta, make_trace


def load_installed_hub_kernels() -> None:
    """Make ``import kernels`` inside transformers get the installed PyPI package, not this checkout.

    The directory that ships as `moesim.kernels` is named `kernels/` in a source checkout, and when the
    checkout root is on sys.path (``python -m moesim``, ``python -m pytest``) it hides the PyPI package
    `kernels`, which transformers 5 imports whenever that package is installed (it depends on it). Load
    the installed one first, with the checkout's entries out of sys.path, so transformers finds it in
    sys.modules; if none is installed, transformers sees no version for the name and leaves it alone."""
    import importlib.util
    import sys

    from moesim import kernels as own

    own_dir = Path(own.__path__[0]).resolve()
    loaded = sys.modules.get("kernels")
    if loaded is not None and Path(getattr(loaded, "__file__", None) or "/").parent.resolve() != own_dir:
        return
    spec = importlib.util.find_spec("kernels") if loaded is None else loaded.__spec__
    if spec is None or spec.origin is None or Path(spec.origin).parent.resolve() != own_dir:
        return
    saved_path = sys.path[:]
    sys.path[:] = [entry for entry in sys.path if (Path(entry or ".") / "kernels").resolve() != own_dir]
    sys.modules.pop("kernels", None)
    try:
        importlib.import_module("kernels")
    except ImportError:
        pass
    finally:
        sys.path[:] = saved_path


def _imports():
    load_installed_hub_kernels()
    try:
        import torch
        import transformers
    except ImportError:
        raise MoesimError("recording needs torch and transformers: pip install 'moesim[record]'") from None
    return torch, transformers


def moe_shape_from_config(config) -> tuple[int, tuple[int, ...], int, int, bool]:
    """(n_layers, MoE layer indices, routed experts, top_k, renormalise top-k) from a transformers config."""
    n_layers = int(config.num_hidden_layers)
    n_experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None) \
        or getattr(config, "n_routed_experts", None)
    top_k = getattr(config, "num_experts_per_tok", None) or getattr(config, "moe_top_k", None)
    if not n_experts or not top_k:
        raise MoesimError(f"config of model_type '{config.model_type}' has no routed experts (not a MoE model?)")
    layers = list(range(n_layers))
    step = getattr(config, "decoder_sparse_step", None)
    mlp_only = set(getattr(config, "mlp_only_layers", None) or [])
    if step:
        layers = [i for i in layers if i not in mlp_only and (i + 1) % int(step) == 0]
    first_dense = getattr(config, "first_k_dense_replace", None)
    if first_dense:
        layers = [i for i in layers if i >= int(first_dense)]
    # Mixtral always renormalises the top-k weights; Qwen-MoE style configs say so explicitly
    renormalise = bool(getattr(config, "norm_topk_prob", config.model_type == "mixtral"))
    return n_layers, tuple(layers), int(n_experts), int(top_k), renormalise


def _route(torch, router_logits, n_moe_layers: int, n_experts: int, top_k: int, renormalise: bool):
    """(tokens, layers, k) experts and weights from per-layer router logits of one forward pass."""
    if len(router_logits) != n_moe_layers:
        raise MoesimError(f"the model returned router logits for {len(router_logits)} layers, "
                          f"its config implies {n_moe_layers} MoE layers")
    experts, weights = [], []
    for logits in router_logits:
        logits = logits.reshape(-1, n_experts).float()
        probs = torch.softmax(logits, dim=-1)
        top_w, top_e = torch.topk(probs, top_k, dim=-1)
        if renormalise:
            top_w = top_w / top_w.sum(dim=-1, keepdim=True)
        experts.append(top_e.cpu().numpy())
        weights.append(top_w.cpu().numpy().astype(np.float32))
    return np.stack(experts, axis=1), np.stack(weights, axis=1)


def record_hf(model_dir: str | os.PathLike, prompts=(), prompt_ids=(), max_new_tokens: int = 64,
              model_id: str | None = None) -> Trace:
    """Greedy-decode each prompt and return the routing of every prompt and generated token."""
    torch, transformers = _imports()
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise MoesimError(f"{model_dir}: no config.json (give a local transformers model directory)")
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise MoesimError(f"{model_dir}: cannot load the model ({' '.join(str(exc).split())[:200]})") from None
    model.eval()
    config = model.config
    n_layers, moe_layers, n_experts, top_k, renormalise = moe_shape_from_config(config)
    sequences = [list(ids) for ids in prompt_ids]
    if prompts:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise MoesimError(f"{model_dir}: --prompt needs a tokenizer ({' '.join(str(exc).split())[:200]}); "
                              "use --prompt-ids") from None
        sequences += [tokenizer(text)["input_ids"] for text in prompts]
    vocab = int(config.vocab_size)
    for ids in sequences:
        if not ids:
            raise MoesimError("empty prompt")
        if min(ids) < 0 or max(ids) >= vocab:
            raise MoesimError(f"prompt token ids must be in 0..{vocab - 1}")
    all_exp, all_w, seq, tok, prefill = [], [], [], [], []
    with torch.no_grad():
        for s, ids in enumerate(sequences):
            input_ids = torch.tensor([ids], dtype=torch.long)
            out = model(input_ids=input_ids, use_cache=True, output_router_logits=True)
            e, w = _route(torch, out.router_logits, len(moe_layers), n_experts, top_k, renormalise)
            all_exp.append(e)
            all_w.append(w)
            prefill += [True] * len(ids)
            past = out.past_key_values
            next_id = out.logits[:, -1].argmax(dim=-1, keepdim=True)
            for _ in range(max_new_tokens):
                out = model(input_ids=next_id, past_key_values=past, use_cache=True, output_router_logits=True)
                e, w = _route(torch, out.router_logits, len(moe_layers), n_experts, top_k, renormalise)
                all_exp.append(e)
                all_w.append(w)
                prefill.append(False)
                past = out.past_key_values
                next_id = out.logits[:, -1].argmax(dim=-1, keepdim=True)
            n = len(ids) + max_new_tokens
            seq += [s] * n
            tok += list(range(n))
    meta = TraceMeta(
        model_id=model_id or model_dir.name,
        n_layers=n_layers,
        moe_layers=moe_layers,
        n_routed_experts=n_experts,
        top_k=top_k,
        source={"kind": "recorded", "engine": f"transformers {transformers.__version__}",
                "model_type": config.model_type, "dtype": str(next(model.parameters()).dtype),
                "decoding": "greedy", "max_new_tokens": int(max_new_tokens), "n_prompts": len(sequences)},
        licence="unspecified",
    )
    return make_trace(meta, np.concatenate(all_exp), weights=np.concatenate(all_w), seq=seq, token=tok,
                      is_prefill=prefill)
