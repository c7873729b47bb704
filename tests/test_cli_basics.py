import subprocess
import sys

from click.testing import CliRunner

from moesim.cli import COMMANDS, cli


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_help_does_not_import_numba_or_pyarrow():
    code = "import sys; from moesim.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('numba' in sys.modules, 'pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_usage_errors_are_one_line_with_exit_code_2():
    """A bad choice, a missing argument and an unknown command: one line on stderr naming the problem and
    where to look, exit code 2, nothing on stdout (other tools read stdout as JSON)."""
    cases = [
        (["trace", "replay", "t.arrow", "--policy", "lur", "--capacity", "25%", "--json"], "'lur' is not one of"),
        (["trace", "replay", "--json"], "Missing argument 'TRACE'"),
        (["bogus"], "No such command 'bogus'"),
    ]
    for argv, message in cases:
        code = f"from moesim.cli import main; main({argv!r})"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 2, argv
        assert out.stdout == ""
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], out.stderr
        assert "--help" in lines[0]
