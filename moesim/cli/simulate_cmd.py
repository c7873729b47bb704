"""`moesim simulate`: decode/prefill speed of one model on one machine, and why."""

from __future__ import annotations

import math

import click

from moesim.errors import MoesimError
from moesim.output import emit_data, output_options


def _nonneg(ctx, param, value):
    if value is not None and value < 0:
        raise MoesimError(f"--{param.name.replace('_', '-')} must not be negative, got {value}")
    return value


@click.command("simulate")
@click.option("--model", "-m", required=True, help="Model id, alias, or path to a config.json.")
@click.option("--quant", "-q", required=True, help="Quantization, e.g. Q4_K_M, MXFP4, UD-Q2_K_XL.")
@click.option("--device", "-d", required=True, help="Device or multi-GPU system slug (see `moesim catalog devices`).")
@click.option("--device-count", type=int, default=1, show_default=True, callback=_nonneg, help="Number of such devices.")
@click.option("--host", default=None, help="Host CPU slug (default: the typical host for the device).")
@click.option("--ram-type", default=None, help="Host RAM type, e.g. DDR5.")
@click.option("--ram-channels", type=int, default=None, callback=_nonneg, help="Populated memory channels per socket.")
@click.option("--ram-mts", type=int, default=None, callback=_nonneg, help="Memory transfer rate (MT/s).")
@click.option("--ram-gb", type=float, default=None, callback=_nonneg, help="Installed host RAM (GB).")
@click.option("--sockets", type=int, default=None, callback=_nonneg, help="CPU sockets.")
@click.option("--cores", type=int, default=None, callback=_nonneg, help="Physical cores per socket.")
@click.option("--strategy", "-s", default="auto", show_default=True,
              help="gpu | cpu | unified | auto | ngl:N | cpu-moe | n-cpu-moe:N | expert-cache:POLICY[:BYTES][:prefetch] "
                   "| cpu-or-fetch | tp:N | ep:N | ktransformers")
@click.option("--context", type=int, default=4096, show_default=True, callback=_nonneg, help="Tokens already in the KV cache.")
@click.option("--batch", type=int, default=1, show_default=True, callback=_nonneg, help="Concurrent sequences.")
@click.option("--prompt", "prompt_tokens", type=int, default=512, show_default=True, callback=_nonneg,
              help="Prompt length for prefill tok/s and time to first token.")
@click.option("--engine", "-e", default="llama.cpp", show_default=True, help="llama.cpp, ik_llama.cpp, ktransformers, vllm, mlx.")
@click.option("--kv-type", default="f16", show_default=True, help="KV cache type: f16, q8_0, q4_0.")
@click.option("--trace", "trace_path", default=None, help="Routing trace file (default: synthetic, model family preset).")
@click.option("--seed", type=int, default=0, show_default=True, callback=_nonneg)
@output_options
def simulate(model, quant, device, device_count, host, ram_type, ram_channels, ram_mts, ram_gb, sockets, cores,
             strategy, context, batch, prompt_tokens, engine, kv_type, trace_path, seed, as_json, output_format):
    """Estimate decode and prefill speed of MODEL at QUANT on DEVICE with a placement STRATEGY."""
    from moesim.simulate import SimRequest, simulate as run

    overrides = []
    for name, value in (("mem_type", ram_type), ("mem_channels", ram_channels), ("mem_mts", ram_mts),
                        ("ram_gb", ram_gb), ("sockets", sockets), ("cores", cores)):
        if value is not None:
            if name != "mem_type" and value == 0:
                raise MoesimError(f"host {name} must be positive")
            overrides.append((name, value))
    if batch == 0:
        raise MoesimError("--batch must be at least 1")
    if device_count == 0:
        raise MoesimError("--device-count must be at least 1")
    req = SimRequest(
        model=model, quant=quant, device=device, device_count=device_count, host=host,
        host_overrides=tuple(overrides), strategy=strategy, context=context, batch=batch, engine=engine,
        prompt_tokens=prompt_tokens, kv_type=kv_type, trace=trace_path, seed=seed,
    )
    res = run(req)
    if emit_data(result_dict(res), as_json, output_format):
        return
    click.echo(format_result(res))


def result_dict(res) -> dict:
    """The JSON object of one result (flat keys first, details after)."""
    from dataclasses import asdict

    out = {
        "model": res.request.model, "quant": res.request.quant, "device": res.request.device,
        "device_count": res.request.device_count, "strategy": res.strategy, "requested_strategy": res.request.strategy,
        "fits": res.fits, "reason": res.reason,
        "decode_tok_s": res.decode_tok_s, "decode_tok_s_low": res.decode_tok_s_low, "decode_tok_s_high": res.decode_tok_s_high,
        "prefill_tok_s": res.prefill_tok_s, "ttft_s": res.ttft_s,
        "latency_mean_s": res.latency_mean_s, "latency_p50_s": res.latency_p50_s,
        "latency_p95_s": res.latency_p95_s, "latency_p99_s": res.latency_p99_s,
        "hit_rate": res.hit_rate, "weights_bytes": res.weights_bytes, "kv_cache_bytes": res.kv_cache_bytes,
        "bytes_by_tier": res.bytes_by_tier, "bytes_per_token_by_link": res.bytes_per_token_by_link,
        "time_breakdown_s": res.time_breakdown_s, "group": res.group, "candidates": res.candidates,
        "llama_cpp_command": res.llama_cpp_command, "assumptions": res.assumptions,
        "request": asdict(res.request),
    }
    return out


def _fmt(x, spec=".1f", unit="") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:{spec}}{unit}"


def format_result(res) -> str:
    """Human-readable summary: the estimate, the assumptions behind it and the llama.cpp command."""
    r = res.request
    lines = [f"{r.model} {r.quant} on {r.device}" + (f" x{r.device_count}" if r.device_count > 1 else "")
             + f"  strategy={res.strategy}  context={r.context}  batch={r.batch}  engine={r.engine}"]
    if not res.fits:
        lines.append(f"DOES NOT FIT: {res.reason}")
    else:
        lines.append(f"decode   {_fmt(res.decode_tok_s)} tok/s  (band {_fmt(res.decode_tok_s_low)}-{_fmt(res.decode_tok_s_high)}, "
                     f"group {res.group})")
        lines.append(f"latency  p50 {_fmt(res.latency_p50_s * 1e3, '.2f')} ms  p95 {_fmt(res.latency_p95_s * 1e3, '.2f')} ms  "
                     f"p99 {_fmt(res.latency_p99_s * 1e3, '.2f')} ms")
        lines.append(f"prefill  {_fmt(res.prefill_tok_s)} tok/s  TTFT {_fmt(res.ttft_s, '.3f')} s ({r.prompt_tokens}-token prompt)")
        lines.append(f"hit rate {_fmt(res.hit_rate * 100 if math.isfinite(res.hit_rate) else res.hit_rate, '.1f', '%')} "
                     "(routed-expert look-ups served from VRAM)")
        if res.reason:
            lines.append(f"note: {res.reason}")
    gb = 1e9
    lines.append(f"weights {res.weights_bytes / gb:.2f} GB   KV cache {res.kv_cache_bytes / gb:.2f} GB")
    if res.bytes_by_tier:
        lines.append("memory per tier: " + ", ".join(f"{k} {v / gb:.2f} GB" for k, v in res.bytes_by_tier.items()))
    if res.bytes_per_token_by_link:
        lines.append("bytes per token: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in res.bytes_per_token_by_link.items() if v))
    if res.time_breakdown_s:
        lines.append("time per step: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in res.time_breakdown_s.items() if abs(v) > 1e-7))
    if res.candidates:
        lines.append("auto compared: " + ", ".join(f"{k} {v:.1f} tok/s" for k, v in res.candidates.items()))
    lines.append("assumed:")
    skip = {"prefill_breakdown_s", "device_class_source", "host_class_source"}
    for key, value in res.assumptions.items():
        if key in skip or value is None or value == []:
            continue
        lines.append(f"  {key}: {value}")
    if res.llama_cpp_command:
        lines.append(f"llama.cpp: {res.llama_cpp_command}")
    return "\n".join(lines)
