"""``python -m algoedge`` is the ``algoedge`` command."""

import sys

from algoedge.cli import main

sys.exit(main())
