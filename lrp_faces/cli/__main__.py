"""``python -m lrp_faces.cli``: the ``lrp-faces`` command."""
from . import main

main(prog_name="lrp-faces")
