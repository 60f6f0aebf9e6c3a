"""``python -m edgebook``: the same as the ``edgebook`` command."""

import sys

from .cli import main

sys.exit(main())
