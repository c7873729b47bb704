"""`moesim sweep`, `moesim grade`, `moesim report`, `moesim plan`: thin click layers over moesim.sweep."""

from __future__ import annotations

import sys

import click

from moesim.errors import MoesimError
from moesim.output import emit_json

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")


def _console():
    """A rich console; piped output gets a wide fixed width so tables are not squeezed to 80 columns."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def _progress_reporter(enabled: bool):
    """A rich progress bar on a terminal (stderr), nothing otherwise."""
    if not enabled:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("points"), TimeElapsedColumn(),
                   transient=False)
    task = bar.add_task("sweep", total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


@click.command()
@click.option("--models", default="all", show_default=True, help="`all` or comma-separated model ids/aliases.")
@click.option("--devices", default="all", show_default=True,
              help="`all` (every device and multi-GPU system) or comma-separated device/system slugs.")
@click.option("--quants", default="all", show_default=True,
              help="`all` (every quant applicable to each model) or comma-separated quant ids.")
@click.option("--strategies", default="main", show_default=True,
              help="`main` (auto + the usual alternatives per device kind), `all`, `auto`, or a comma list.")
@click.option("--contexts", default="4096", show_default=True, help="Comma-separated KV-cache contexts in tokens.")
@click.option("--batch", "batches", default="1", show_default=True, help="Comma-separated decode batch sizes.")
@click.option("--hosts", default="typical", show_default=True,
              help="Hosts for GPU targets: `typical` (per device class) or comma-separated cpu-kind slugs.")
@click.option("--trace", type=click.Path(dir_okay=False), default=None, help="Replay this trace file for every point.")
@click.option("--preset", default=None, help="Synthetic trace preset (name or file) instead of each family's default.")
@click.option("--engine", default="llama.cpp", show_default=True)
@click.option("--out", "out", default="moesim-sweep", show_default=True, type=click.Path(file_okay=False),
              help="Dataset folder (created, or resumed if it holds a compatible sweep).")
@click.option("--jobs", type=int, default=None, help="Worker processes (default: all cores).")
@click.option("--format", "fmt", type=click.Choice(["arrow", "parquet"]), default="arrow", show_default=True)
@click.option("--force", is_flag=True, help="Recompute points already on disk.")
@click.option("--grading", type=click.Path(dir_okay=False), default=None, help="Grading rubric TOML (default: built in).")
@click.option("--chunk-points", type=int, default=4096, show_default=True,
              help="Points per chunk file (whole cells; the unit of resumption).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic traces.")
@JSON_OPTION
def sweep(models, devices, quants, strategies, contexts, batches, hosts, trace, preset, engine, out, jobs, fmt, force,
          grading, chunk_points, seed, as_json):
    """Simulate every model x quant x device x placement into a resumable Arrow dataset.

    \b
    Example:
        moesim sweep --devices all --quants all
        moesim sweep --models qwen3-30b-a3b --devices rtx-4090,m2-max --contexts 4096,32768 --out qwen
    """
    from moesim.sweep.runner import SweepOptions, run_sweep

    if jobs is not None and jobs < 1:
        raise MoesimError("--jobs must be >= 1")
    options = SweepOptions(models=models, devices=devices, quants=quants, strategies=strategies, contexts=contexts,
                           batches=batches, hosts=hosts, engine=engine, trace=trace, preset=preset, seed=seed,
                           fmt=fmt, grading=grading, chunk_points=chunk_points)
    bar, update = _progress_reporter(not as_json and sys.stderr.isatty())
    if bar is not None:
        with bar:
            summary = run_sweep(options, out, jobs=jobs, force=force, progress=update)
    else:
        summary = run_sweep(options, out, jobs=jobs, force=force)
    result = {"out": summary.out, "points": summary.points, "computed": summary.computed, "skipped": summary.skipped,
              "chunks_written": summary.chunks_written, "seconds": round(summary.seconds, 3), "format": summary.format}
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{summary.points} points in {summary.out} ({summary.computed} computed, {summary.skipped} already "
                   f"present) in {summary.seconds:.1f} s")


@click.command()
@click.argument("sweep_dir", metavar="SWEEP", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["arrow", "json", "csv"]), default=None,
              help="Output format (default: csv, or json with --json; arrow needs -o).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to this file.")
@JSON_OPTION
def grade(sweep_dir, fmt, output, as_json):
    """Write the compact graded table (best strategy per cell) of a sweep for other tools.

    \b
    Example:
        moesim grade moesim-sweep --format json -o grades.json
    """
    from moesim.sweep.grades import grade_table, write_grades
    from moesim.sweep.store import open_sweep

    _, table = open_sweep(sweep_dir)
    grades = grade_table(table)
    fmt = fmt or ("json" if as_json and output is None else "csv")
    if as_json and output is None and fmt != "json":
        raise MoesimError("--json prints the table as JSON; use -o FILE to write another format")
    text = write_grades(grades, fmt, output)
    if output is None:
        sys.stdout.write(text)
    elif as_json:
        emit_json({"out": output, "format": fmt, "rows": grades.num_rows})
    else:
        click.echo(f"{grades.num_rows} graded rows written to {output} ({fmt})")


@click.command()
@click.argument("sweep_dir", metavar="SWEEP", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the HTML report here.")
@click.option("--models", default=None, help="Comma-separated models for the per-model plots (default: the largest 3).")
@JSON_OPTION
def report(sweep_dir, output, models, as_json):
    """Summarise a sweep in the terminal and (with -o) as a self-contained HTML page of plots.

    \b
    Example:
        moesim report moesim-sweep -o report.html
    """
    from pathlib import Path

    from moesim.sweep.report import print_summary, render_html, summary_rows
    from moesim.sweep.store import _atomic_write_bytes, open_sweep

    meta, table = open_sweep(sweep_dir)
    wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
    rows = summary_rows(table)
    if output is not None:
        page = render_html(meta, table, wanted)
        _atomic_write_bytes(Path(output), lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    if as_json:
        emit_json({"html": output, "points": table.num_rows, "summary": rows})
        return
    print_summary(rows, _console())
    if output is not None:
        click.echo(f"report written to {output}")


@click.command()
@click.option("--device", required=True, help="Device or multi-GPU system slug.")
@click.option("--host", default=None, help="Host platform (cpu-kind slug) around a GPU; default: typical for its class.")
@click.option("--model", default=None, help="Only this model (default: every catalog model).")
@click.option("--sweep", "sweep_dir", type=click.Path(), default=None, help="Read candidates from this sweep dataset.")
@click.option("--context", type=int, default=4096, show_default=True)
@click.option("--grading", type=click.Path(dir_okay=False), default=None)
@click.option("--top", type=int, default=10, show_default=True, help="How many candidates to list.")
@JSON_OPTION
def plan(device, host, model, sweep_dir, context, grading, top, as_json):
    """The best model / quantization / placement for one machine, with its llama.cpp command.

    \b
    Example:
        moesim plan --device rtx-4090 --host desktop-ddr5-6000-2ch
        moesim plan --device 8x-h200 --model deepseek-r1 --json
    """
    from moesim.sweep.plan import plan as make_plan
    from moesim.sweep.svg import fmt

    if context < 0:
        raise MoesimError("--context must be >= 0")
    result = make_plan(device, host, model, sweep_dir, context, grading, top)
    if as_json:
        emit_json(result)
        return
    from rich.table import Table

    console = _console()
    table = Table(title=f"moesim plan: {device} (host {result['host']}, context {context})")
    for name in ("model", "quant", "strategy", "tok/s", "p95 tok/s", "grade", "why"):
        table.add_column(name)
    for row in result["candidates"]:
        table.add_row(row["model"], row["quant"], row["resolved_strategy"], fmt(row["decode_tok_s"]),
                      fmt(row["decode_tok_s_p95"]), row["grade"], row["grade_notes"])
    console.print(table)
    best = result["best"]
    if best is not None:
        console.print(f"best: {best['model']} {best['quant']} ({best['resolved_strategy']}), grade {best['grade']}")
        if best["llama_cpp_command"]:
            click.echo(best["llama_cpp_command"])
