"""`moesim fit`: memory footprint of a model at a quantization, and whether it fits a device."""

from __future__ import annotations

import click

from moesim.errors import MoesimError
from moesim.output import emit_data, output_options

DEFAULT_CONTEXT = 4096


def _gb(n: int | float) -> str:
    return f"{n / 1e9:,.2f} GB ({n / 2**30:,.2f} GiB)"


def _int_option(name: str, value: int) -> int:
    if value < 0:
        raise MoesimError(f"--{name} must be zero or positive, got {value}")
    return value


def fit_report(model_arg: str, quant: str | None, device: str | None, context: int, kv_type: str,
               engine: str, batch: int, mla_layout: str | None) -> dict:
    """Everything `moesim fit` prints, as one JSON-ready dict (also used by other commands)."""
    from moesim.catalog.models import get_model
    from moesim.catalog.quants import get_quant
    from moesim.footprint import footprint, kv_bytes_per_token, kv_cache_bytes, runtime_overhead_bytes

    context = _int_option("context", context)
    batch = _int_option("batch", batch)
    if batch == 0:
        raise MoesimError("--batch must be at least 1")
    if model_arg.lower().endswith(".gguf"):
        from moesim.gguf_input import read_gguf

        info = read_gguf(model_arg)
        model, fp = info.model, info.footprint
        quant_id = info.file_type
        if quant and get_quant(quant).id != quant_id:
            raise MoesimError(f"{model_arg} is a {quant_id} file; drop --quant or pass --quant {quant_id}")
    else:
        if not quant:
            raise MoesimError("--quant is required unless MODEL is a .gguf file (see `moesim catalog quants`)")
        model = get_model(model_arg)
        q = get_quant(quant)
        quant_id = q.id
        fp = footprint(model, q)

    from moesim.catalog.engines import get_engine

    prof = get_engine(engine)
    layout = mla_layout or getattr(prof, "mla_kv_layout", "absorbed")
    kv = kv_cache_bytes(model, context, kv_type, layout, batch)
    overhead = runtime_overhead_bytes(model, prof, context, batch)
    total = fp.weights_bytes + kv + overhead
    report: dict = {
        "model": model.id,
        "quant": quant_id,
        "engine": prof.name,
        "context": context,
        "batch": batch,
        "kv_type": kv_type,
        "mla_layout": layout if model.attention == "mla" else None,
        "exact_tensor_bytes": fp.exact,
        "n_params": fp.n_params,
        "bits_per_weight": round(fp.bits_per_weight, 4),
        "weights_bytes": fp.weights_bytes,
        "kv_cache_bytes": kv,
        "kv_bytes_per_token": kv_bytes_per_token(model, kv_type, layout, 0),
        "runtime_overhead_bytes": overhead,
        "total_bytes": total,
        "always_on_bytes": fp.always_on_bytes,
        "routed_bytes": fp.routed_bytes,
        "by_category": dict(fp.bytes_by_category),
        "by_tensor_class": dict(fp.bytes_by_tensor_class),
        "tensor_class_types": dict(fp.tensor_types),
        "by_storage_type": dict(fp.bytes_by_storage_type),
        "device": None,
        "device_count": None,
        "device_memory_bytes": None,
        "fits": None,
        "overflow_bytes": None,
        "always_on_fits": None,
        "routed_bytes_elsewhere": None,
    }
    if device:
        from moesim.catalog.devices import resolve_target

        spec, count, system = resolve_target(device)
        # the device's usable share (macOS wired limit ...) times the engine's own cap (vLLM 0.9)
        fraction = spec.usable_memory_fraction * float(getattr(prof, "usable_vram_fraction", 1.0) or 1.0)
        capacity = int(count * spec.memory_gb * 1e9 * fraction)
        overflow = max(0, total - capacity)
        always_on_total = fp.always_on_bytes + kv + overhead
        report.update(
            device=system.slug if system is not None else spec.slug,
            device_count=count,
            device_memory_bytes=capacity,
            fits=total <= capacity,
            overflow_bytes=overflow,
            always_on_fits=always_on_total <= capacity,
            # with attention, shared experts and KV on the device, this much of the routed experts
            # would have to live in host RAM (or on disk)
            routed_bytes_elsewhere=min(fp.routed_bytes, overflow) if always_on_total <= capacity else None,
        )
    return report


def _print_table(r: dict) -> None:
    echo = click.echo
    echo(f"{r['model']}  {r['quant']}  ({r['n_params'] / 1e9:.2f}B params, {r['bits_per_weight']:.3f} bits/weight)")
    echo("")
    echo("weights by category:")
    for cat, n in r["by_category"].items():
        if n:
            echo(f"  {cat:<16} {_gb(n)}")
    echo("weights by tensor class:")
    for cls, n in sorted(r["by_tensor_class"].items(), key=lambda kv: -kv[1]):
        if n:
            echo(f"  {cls:<22} {r['tensor_class_types'][cls]:<14} {_gb(n)}")
    echo("")
    exact = " (exact, from the GGUF header)" if r["exact_tensor_bytes"] else ""
    echo(f"weights          {_gb(r['weights_bytes'])}{exact}")
    layout = f", MLA {r['mla_layout']}" if r["mla_layout"] else ""
    echo(f"KV cache         {_gb(r['kv_cache_bytes'])}  ({r['context']} tokens x {r['batch']} seq, {r['kv_type']}{layout})")
    echo(f"runtime overhead {_gb(r['runtime_overhead_bytes'])}  ({r['engine']})")
    echo(f"total            {_gb(r['total_bytes'])}")
    if r["device"] is not None:
        echo("")
        echo(f"device {r['device']}: {_gb(r['device_memory_bytes'])} usable")
        if r["fits"]:
            echo("fits entirely in device memory")
        else:
            echo(f"does NOT fit: {_gb(r['overflow_bytes'])} must live elsewhere")
            if r["always_on_fits"]:
                echo(f"  attention, shared weights and KV fit; {_gb(r['routed_bytes_elsewhere'])} of routed experts go to host RAM")
            else:
                echo("  even the always-on weights + KV cache exceed device memory")


@click.command("fit")
@click.argument("model")
@click.option("--quant", "-q", default=None, help="Quantization id (see `moesim catalog quants`).")
@click.option("--device", "-d", default=None, help="Device or multi-GPU system slug (see `moesim catalog devices`).")
@click.option("--context", "-c", type=int, default=DEFAULT_CONTEXT, show_default=True, help="Tokens in the KV cache.")
@click.option("--kv-type", default="f16", show_default=True, help="KV cache type: f16, bf16, q8_0, q4_0 ...")
@click.option("--engine", default="llama.cpp", show_default=True, help="Engine profile for runtime overhead.")
@click.option("--batch", "-b", type=int, default=1, show_default=True, help="Concurrent sequences.")
@click.option("--mla-layout", type=click.Choice(["absorbed", "naive"]), default=None,
              help="MLA KV cache layout (default: the engine's).")
@output_options
def fit(model, quant, device, context, kv_type, engine, batch, mla_layout, as_json, output_format):
    """Memory footprint of MODEL (catalog id, alias, config.json or .gguf) at a quantization,
    per tensor class, and whether it fits DEVICE."""
    report = fit_report(model, quant, device, context, kv_type, engine, batch, mla_layout)
    if not emit_data(report, as_json, output_format):
        _print_table(report)
