"""`moesim catalog`: list and show models, quantizations, devices and engines."""

from __future__ import annotations

from dataclasses import asdict

import click

from moesim.errors import MoesimError, unknown_id_error
from moesim.output import emit_data, output_options, print_table


def model_record(m) -> dict:
    """A model as one JSON-ready dict: config facts plus derived parameter counts."""
    from moesim.catalog.models import active_params, param_breakdown, total_params

    rec = asdict(m)
    rec["total_params"] = total_params(m)
    rec["active_params"] = active_params(m)
    rec["params_by_category"] = param_breakdown(m)
    return rec


def quant_record(q) -> dict:
    from moesim.catalog.quants import get_storage_type

    rec = asdict(q)
    rec["default_bits_per_weight"] = get_storage_type(q.default_type).bits_per_weight
    return rec


@click.group("catalog")
def catalog():
    """List and show models, quantizations, devices and engines."""


@catalog.command("models")
@output_options
def models_cmd(as_json, output_format):
    """Every model: Hugging Face id, alias, family, total/active parameters."""
    from moesim.catalog.models import active_params, all_models, total_params

    models = all_models()
    if emit_data({"models": [model_record(m) for m in models]}, as_json, output_format):
        return
    rows = [
        (m.alias, m.id, m.family, m.attention, f"{m.n_routed_experts}/{m.top_k}" if m.is_moe else "dense",
         f"{total_params(m) / 1e9:.1f}B", f"{active_params(m) / 1e9:.1f}B", m.max_context)
        for m in models
    ]
    print_table(rows, ("alias", "id", "family", "attn", "experts", "total", "active", "context"))


@catalog.command("quants")
@output_options
def quants_cmd(as_json, output_format):
    """Every quantization scheme and every storage type."""
    from moesim.catalog.quants import LLAMA_CPP_RULES, all_quants, all_storage_types

    quants = all_quants()
    types = all_storage_types()
    if emit_data({
        "quants": [quant_record(q) for q in quants],
        "storage_types": [dict(asdict(t), bits_per_weight=t.bits_per_weight) for t in types],
        "llama_cpp_rules": [asdict(r) for r in LLAMA_CPP_RULES.values()],
    }, as_json, output_format):
        return
    print_table([(q.id, q.kind, q.default_type, q.description) for q in quants], ("quant", "kind", "default", "description"))
    click.echo("")
    print_table([(t.name, t.block_size * t.block_rows, t.bits_per_block, f"{t.bits_per_weight:.4f}", "ggml" if t.ggml else "")
            for t in types], ("type", "block", "bits/block", "bpw", ""))
    click.echo("")
    click.echo("llama.cpp rule sets (append to a file type: Q4_K_M@pre-4872):")
    print_table([(r.name, r.until or "-", r.description) for r in LLAMA_CPP_RULES.values()],
           ("rules", "replaced", "description"))


@catalog.command("devices")
@output_options
def devices_cmd(as_json, output_format):
    """Every device (GPU, unified-memory machine, CPU host) and multi-GPU system."""
    from moesim.catalog.devices import all_devices, all_systems

    devices = all_devices()
    systems = all_systems()
    if emit_data({"devices": [asdict(d) for d in devices], "systems": [asdict(s) for s in systems]}, as_json,
                 output_format):
        return
    print_table([(d.slug, d.kind, d.name, f"{d.memory_gb:g} GB", f"{d.bandwidth_gbps:g} GB/s") for d in devices],
           ("slug", "kind", "name", "memory", "bandwidth"))
    if systems:
        click.echo("")
        print_table([(s.slug, s.name, s.device, s.device_count, s.interconnect) for s in systems],
               ("system", "name", "device", "count", "interconnect"))


@catalog.command("engines")
@output_options
def engines_cmd(as_json, output_format):
    """Every inference-engine profile."""
    from moesim.catalog.engines import all_engines

    engines = all_engines()
    if emit_data({"engines": [asdict(e) for e in engines]}, as_json, output_format):
        return
    print_table([(e.name, ",".join(e.strategies), ",".join(e.backends), e.mla_kv_layout, e.runtime_overhead_bytes,
                  e.source) for e in engines],
                ("engine", "placements", "backends", "mla kv", "overhead bytes", "source"))


def _lookup(item_id: str) -> tuple[str, object]:
    """(kind, record) of a model, quant, storage type, device, system or engine id."""
    from moesim.catalog import models, quants

    tries = [
        ("model", lambda: models.get_model(item_id)),
        ("quant", lambda: quants.get_quant(item_id)),
        ("storage_type", lambda: quants.get_storage_type(item_id)),
    ]
    for kind, fn in tries:
        try:
            return kind, fn()
        except MoesimError:
            pass
    try:
        from moesim.catalog import devices, engines

        for kind, fn in (("device", devices.get_device), ("system", devices.get_system), ("engine", engines.get_engine)):
            try:
                return kind, fn(item_id)
            except MoesimError:
                pass
        known_hw = [d.slug for d in devices.all_devices()] + [s.slug for s in devices.all_systems()]
        known_hw += [e.name for e in engines.all_engines()]
    except (ImportError, AttributeError):
        known_hw = []
    known = list(models.model_ids()) + [q.id for q in quants.all_quants()] + known_hw
    err = unknown_id_error("model, quant, device, system or engine", item_id, known)
    raise MoesimError(str(err).split(" (see")[0] + " (see `moesim catalog models|quants|devices|engines`)")


@catalog.command("show")
@click.argument("item_id", metavar="ID")
@output_options
def show_cmd(item_id, as_json, output_format):
    """Show one model, quantization, storage type, device, system or engine."""
    kind, obj = _lookup(item_id)
    if kind == "model":
        rec = model_record(obj)
        rec.pop("attention_window_by_layer")
        windows = sorted(set(obj.attention_window_by_layer))
        rec["attention_windows"] = windows
        rec["moe_layers"] = f"{len(obj.moe_layers)} of {obj.n_layers}"
    elif kind == "quant":
        rec = quant_record(obj)
    elif kind == "storage_type":
        rec = dict(asdict(obj), bits_per_weight=obj.bits_per_weight)
    else:
        rec = asdict(obj)
    if emit_data({"kind": kind, kind: rec}, as_json, output_format):
        return
    click.echo(f"{kind}: {item_id}")
    for key, value in rec.items():
        if key == "rules" and value:
            click.echo("  rules:")
            for rule in value:
                cond = ", ".join(f"{k}={v}" for k, v in rule.items() if k != "type" and v)
                click.echo(f"    {cond or 'any'} -> {rule['type']}")
            continue
        if isinstance(value, dict):
            click.echo(f"  {key}:")
            for k, v in value.items():
                click.echo(f"    {k}: {v}")
            continue
        click.echo(f"  {key}: {value}")
