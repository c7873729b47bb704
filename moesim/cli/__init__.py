"""The `moesim` command line: a thin click layer over the library.

Subcommands are imported lazily (by name, from `COMMANDS`) so `moesim --help` loads neither
numba nor pyarrow. Any `MoesimError`, and any click usage error, becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import click

from moesim import __version__
from moesim.errors import MoesimError

# name -> (module, attribute, one-line help shown by `moesim --help` without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "catalog": ("moesim.cli.catalog_cmd", "catalog", "List and show models, quantizations, devices and engines."),
    "fit": ("moesim.cli.fit_cmd", "fit", "Memory footprint of a model at a quantization, and whether it fits a device."),
    "trace": ("moesim.cli.trace_cmd", "trace", "Generate, import, fit, inspect and replay routing traces."),
    "simulate": ("moesim.cli.simulate_cmd", "simulate", "Estimate decode/prefill speed of one model on one machine."),
    "validate": ("moesim.cli.validate_cmd", "validate", "Predict every row of a measurement file and score the errors."),
    "sweep": ("moesim.cli.sweep_cmd", "sweep", "Simulate every model x quant x device x placement into an Arrow dataset."),
    "grade": ("moesim.cli.sweep_cmd", "grade", "Write the compact graded table of a sweep for other tools."),
    "report": ("moesim.cli.sweep_cmd", "report", "Summarise a sweep in the terminal and as a self-contained HTML page."),
    "plan": ("moesim.cli.sweep_cmd", "plan", "The best model/quant/placement for one machine, with its llama.cpp command."),
}

CONTEXT_SETTINGS = dict(help_option_names=["-h", "--help"], max_content_width=100)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MoesimError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's standalone handling, except that a usage error (unknown option, bad choice, missing
        argument) is one line on stderr, like every other bad input, instead of usage + hint + error."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"Error: {exc.format_message()}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="moesim")
def cli():
    """moesim: how fast a Mixture-of-Experts model really runs on your hardware, and why.

    Data flows one way: catalog -> footprint -> placement -> trace replay -> timing -> sweep
    store -> grades/report.
    """


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="moesim", standalone_mode=True)
    except MoesimError as exc:  # raised outside a command's invoke (e.g. during lazy import)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
