"""``python -m edgebook``: the same as the ``edgebook`` command."""

import sys

from .cli.main import main

sys.exit(main())
