"""The ``lrp-faces`` command."""
from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lrp-faces")
def main():
    """Pixel-wise relevance (LRP) for VGG-16 face classifiers, validated by masking and across models."""


@main.command()
def demo():
    """Run the whole study offline on synthetic faces (not built yet)."""
    raise click.ClickException(
        "the demo is not built yet: it arrives with the faces/zoo, cube, masking and report modules. "
        "Until then use the library, e.g. lrp_faces.attribute(lrp_faces.vgg16(...), images).")


@main.command()
def methods():
    """List the attribution methods."""
    from . import methods as registry
    for name in registry.names():
        click.echo(name)
