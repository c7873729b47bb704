"""`moesim trace ...`: generate, import, fit, inspect, record (and replay) routing traces."""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from moesim.errors import MoesimError
from moesim.output import emit_data, emit_json, output_options, to_json


def _model(name: str):
    from moesim.catalog.models import get_model

    return get_model(name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fmt(value, digits=3) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.{digits}f}"
    return str(value)


@click.group("trace")
def trace():
    """Generate, import, fit, inspect and replay routing traces (Arrow IPC, see traces/README.md)."""


@trace.command("gen")
@click.option("--model", "model_name", required=True, help="Catalog model id or alias (its MoE shape is used).")
@click.option("--tokens", type=click.IntRange(min=1), default=256, show_default=True,
              help="Decode tokens per sequence.")
@click.option("--seqs", type=click.IntRange(min=1), default=1, show_default=True, help="Number of sequences.")
@click.option("--prefill", type=click.IntRange(min=0), default=0, show_default=True,
              help="Prefill (prompt) tokens at the start of each sequence.")
@click.option("--preset", default=None, help="Preset name or TOML path (default: the model family's preset).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="Output .arrow file.")
@output_options
def gen(model_name, tokens, seqs, prefill, preset, seed, output, as_json, output_format):
    """Generate a synthetic routing trace, deterministic from the seed."""
    from moesim.trace.format import write_trace
    from moesim.trace.generate import default_preset_for, generate_trace

    model = _model(model_name)
    preset = preset or default_preset_for(model)
    trace_obj = generate_trace(model, tokens, n_seqs=seqs, preset=preset, seed=seed, prefill_tokens=prefill)
    path = Path(output)
    write_trace(trace_obj, path)
    result = {
        "path": str(path),
        "model": model.id,
        "preset": trace_obj.meta.source["preset"],
        "seed": seed,
        "n_tokens": trace_obj.n_tokens,
        "n_seqs": seqs,
        "n_moe_layers": trace_obj.n_moe_layers,
        "n_routed_experts": trace_obj.meta.n_routed_experts,
        "top_k": trace_obj.top_k,
        "bytes": path.stat().st_size,
        "sha256": _sha256(path),
    }
    if not emit_data(result, as_json, output_format):
        click.echo(f"wrote {path}: {result['n_tokens']} tokens x {result['n_moe_layers']} MoE layers x top-"
                   f"{result['top_k']} of {result['n_routed_experts']} ({model.id}, preset {result['preset']}, "
                   f"seed {seed})")


@trace.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "model_name", default=None,
              help="Catalog model the trace was recorded on (default: infer the shape from the data).")
@click.option("--format", "import_format", default=None,
              type=click.Choice(["vllm-jsonl", "vllm-raw", "npy", "npz", "csv", "arrow"]),
              help="Force the input format (default: detect from the content).")
@click.option("--gaps", type=click.Choice(["auto", "fill", "drop"]), default="auto", show_default=True,
              help="Missing (token, layer) records: fill from the nearest earlier token, or drop the token.")
@click.option("--licence", default="unspecified", show_default=True, help="Licence of the recorded data.")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="Output .arrow file.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
def import_(file, model_name, import_format, gaps, licence, output, as_json):
    """Import a recorded trace (vLLM JSONL, numpy, CSV) into the moesim format."""
    from dataclasses import asdict

    from moesim.trace.format import write_trace
    from moesim.trace.importers import import_trace

    model = _model(model_name) if model_name else None
    trace_obj, report = import_trace(file, model=model, fmt=import_format, gaps=gaps, licence=licence)
    path = Path(output)
    write_trace(trace_obj, path)
    result = {"path": str(path), "model": trace_obj.meta.model_id, **asdict(report)}
    if as_json:
        emit_json(result)
    else:
        click.echo(f"wrote {path}: {report.tokens} tokens in {report.sequences} sequence(s) "
                   f"({report.prefill_tokens} prefill) from {report.records_read} {report.format} records; "
                   f"gaps={report.gaps}: {report.filled_records} filled, {report.dropped_records} dropped "
                   f"({report.dropped_tokens} tokens), {report.duplicate_records} duplicates ignored")



def _load_any(file, model_name):
    """A trace from an Arrow file, or imported on the fly from any importable format."""
    from moesim.trace.importers import detect_format, import_trace

    fmt = detect_format(file)
    model = _model(model_name) if model_name else None
    trace_obj, _ = import_trace(file, model=model, fmt=fmt)
    return trace_obj


@trace.command("fit")
@click.argument("real_trace", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="Preset TOML to write.")
@click.option("--model", "model_name", default=None, help="Model for a non-Arrow input (imported on the fly).")
@click.option("--name", default=None, help="Preset name (default: the output file's stem).")
@click.option("--iterations", type=click.IntRange(min=1, max=100), default=15, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
def fit(real_trace, output, model_name, name, iterations, seed, as_json):
    """Fit generator parameters to a recorded trace and write them as a preset."""
    import numpy as np

    from moesim.trace.fit import fit_trace, write_preset

    trace_obj = _load_any(real_trace, model_name)
    result = fit_trace(trace_obj, iterations=iterations, seed=seed)
    path = Path(output)
    source = f"fitted to {Path(real_trace).name} ({trace_obj.meta.model_id}; {trace_obj.meta.source.get('kind', '?')})"
    write_preset(result, path, name or path.stem, source)

    def means(d):
        return {k: float(np.nanmean(v)) if isinstance(v, list) else v for k, v in d.items()}

    summary = {"path": str(path), "model": trace_obj.meta.model_id, "n_tokens": result.n_tokens,
               "n_seqs": result.n_seqs, "iterations": result.iterations,
               "targets": means(result.targets), "achieved": means(result.achieved)}
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"wrote {path} (fitted to {result.n_tokens} decode tokens)")
        for key, target in summary["targets"].items():
            click.echo(f"  {key:24s} target {_fmt(target)}  generator {_fmt(summary['achieved'][key])}")


@trace.command("stats")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "model_name", default=None, help="Model for a non-Arrow input (imported on the fly).")
@click.option("--decode-only", is_flag=True, help="Ignore prefill tokens.")
@click.option("--per-layer/--no-per-layer", default=False, help="Print the per-layer table (text output).")
@output_options
def stats(file, model_name, decode_only, per_layer, as_json, output_format):
    """Routing statistics: skew, temporal reuse, reuse distances, LRU hit rates, inter-layer predictability."""
    from moesim.trace.stats import stats_to_dict, trace_stats

    trace_obj = _load_any(file, model_name)
    st = trace_stats(trace_obj, decode_only=decode_only)
    result = stats_to_dict(trace_obj, st)
    if emit_data(result, as_json, output_format):
        return
    meta = result["meta"]
    click.echo(f"{file}: {meta['model_id']}, {result['n_tokens']} tokens in {result['n_seqs']} sequence(s) "
               f"({result['n_prefill_tokens']} prefill), {len(meta['moe_layers'])} MoE layers, top-{meta['top_k']} "
               f"of {meta['n_routed_experts']}")
    click.echo("means over layers:")
    for key, value in result["summary"].items():
        click.echo(f"  {key:24s} {_fmt(value)}")
    total = result["reuse_distance_total"]
    n = max(1, sum(total))
    click.echo("reuse distance (tokens): " + ", ".join(f"{label} {c / n:.1%}"
                                                     for label, c in zip(result["reuse_distance_bins"], total)))
    if per_layer:
        pl = result["per_layer"]
        click.echo("layer  top1  top10%  entropy  reuse  " + "  ".join(f"lru@{c}" for c in pl["lru_hit_rate"]))
        for i, layer in enumerate(pl["layer"]):
            lru = "  ".join(f"{float(v[i]):.3f}" for v in pl["lru_hit_rate"].values())
            click.echo(f"{layer:5d}  {float(pl['top1_share'][i]):.3f}  {float(pl['top10pct_share'][i]):.3f}   "
                       f"{float(pl['entropy_norm'][i]):.3f}  {float(pl['temporal_reuse'][i]):.3f}  {lru}")


@trace.command("record")
@click.option("--hf-model", "hf_model", required=True, type=click.Path(file_okay=False),
              help="Local directory of a Hugging Face transformers MoE model (no download is attempted).")
@click.option("--prompt", "prompts", multiple=True, help="Prompt text (needs a tokenizer in the model directory).")
@click.option("--prompt-ids", "prompt_ids", multiple=True,
              help="Prompt as space-separated token ids (no tokenizer needed); repeat for several sequences.")
@click.option("--max-new-tokens", type=click.IntRange(min=0), default=64, show_default=True)
@click.option("--model-id", default=None, help="Model id to store in the trace (default: the config's name).")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="Output .arrow file.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
def record(hf_model, prompts, prompt_ids, max_new_tokens, model_id, output, as_json):
    """Record routing from a local transformers MoE model (optional extra: pip install 'moesim[record]')."""
    from moesim.trace.format import write_trace
    from moesim.trace.record import record_hf

    id_lists = []
    for text in prompt_ids:
        try:
            id_lists.append([int(x) for x in text.replace(",", " ").split()])
        except ValueError:
            raise MoesimError(f"--prompt-ids must be integers separated by spaces, got {text!r}") from None
    if not prompts and not id_lists:
        raise MoesimError("give at least one --prompt or --prompt-ids")
    trace_obj = record_hf(hf_model, prompts=list(prompts), prompt_ids=id_lists, max_new_tokens=max_new_tokens,
                          model_id=model_id)
    path = Path(output)
    write_trace(trace_obj, path)
    result = {"path": str(path), "model": trace_obj.meta.model_id, "n_tokens": trace_obj.n_tokens,
              "n_seqs": trace_obj.n_seqs, "prefill_tokens": int(trace_obj.is_prefill.sum()),
              "n_moe_layers": trace_obj.n_moe_layers, "top_k": trace_obj.top_k}
    if as_json:
        emit_json(result)
    else:
        click.echo(f"wrote {path}: {to_json(result)}")


@trace.command("presets")
@output_options
def presets(as_json, output_format):
    """List the built-in generator presets."""
    from moesim.trace.generate import load_preset, preset_names

    rows = [load_preset(name).to_dict() for name in preset_names()]
    if not emit_data({"presets": rows}, as_json, output_format):
        for row in rows:
            click.echo(f"{row['name']:12s} {row['description']}")


from moesim.cli.replay_cmd import curve, replay  # noqa: E402  (registered under `trace`)

trace.add_command(replay)
trace.add_command(curve)
