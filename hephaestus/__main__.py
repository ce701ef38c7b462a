"""``python -m hephaestus``: the same as the ``hephaestus`` command."""

import sys

from hephaestus.cli import main

sys.exit(main())
