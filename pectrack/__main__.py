"""``python -m pectrack``: the ``pectrack`` command."""

import sys

from pectrack.cli import main

sys.exit(main())
