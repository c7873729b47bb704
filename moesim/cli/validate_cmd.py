"""`moesim validate`: predict every row of a measurement file and score the errors per group."""

from __future__ import annotations

import click

from moesim.output import emit_data, output_options


@click.command("validate")
@click.argument("measurements", type=click.Path(dir_okay=False))
@output_options
def validate(measurements, as_json, output_format):
    """Predict every row of MEASUREMENTS.csv; print predicted vs measured and MdAPE per group."""
    from moesim.validate import validate_file

    result = validate_file(measurements)
    if emit_data(result, as_json, output_format):
        return
    click.echo(f"{'id':6} {'group':14} {'metric':14} {'measured':>9} {'predicted':>9} {'band':>15} {'error':>7}  strategy")
    for r in result["rows"]:
        if r["error"]:
            click.echo(f"{r['id']:6} {r['group']:14} {r['metric']:14} {_num(r['measured']):>9} {'-':>9} {'':>15} {'':>7}  "
                       f"cannot predict: {r['error']}")
            continue
        band = f"{_num(r['low'])}-{_num(r['high'])}" if r["low"] is not None else ""
        err = (r["predicted"] - r["measured"]) / r["measured"]
        click.echo(f"{r['id']:6} {r['group']:14} {r['metric']:14} {_num(r['measured']):>9} {_num(r['predicted']):>9} "
                   f"{band:>15} {err * 100:+6.1f}%  {r['strategy']}")
    click.echo("")
    click.echo(f"{'group':14} {'rows':>5} {'predicted':>9} {'MdAPE':>7} {'target':>7}")
    for group, s in result["summary"].items():
        md = f"{s['mdape'] * 100:.1f}%" if s["mdape"] is not None else "n/a"
        tgt = f"{s['target_mdape'] * 100:.0f}%" if s["target_mdape"] is not None else ""
        click.echo(f"{group:14} {s['rows']:>5} {s['predicted']:>9} {md:>7} {tgt:>7}")


def _num(x) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}" if x < 1000 else f"{x:.0f}"
