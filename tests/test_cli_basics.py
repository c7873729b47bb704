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
