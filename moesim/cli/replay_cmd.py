"""`moesim trace replay` (issue 4 fills this in)."""

import click


@click.command("replay")
def replay():
    """Replay a trace through an expert cache (not built yet)."""
    raise click.ClickException("trace replay is not built yet")
