"""``python -m hub_ext.cli``: the same as ``hub-ext``."""

import sys

from . import main

sys.exit(main())
