from click.testing import CliRunner

from lrp_faces.cli import main


def test_help_lists_every_subcommand_with_its_purpose():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output and "methods" in result.output


def test_methods_lists_the_registry():
    result = CliRunner().invoke(main, ["methods"])
    assert result.exit_code == 0
    assert result.output.split() == sorted(result.output.split())
    assert "epsilon_gamma_box" in result.output.split()
