"""``python -m plexus.cli``: the same as ``plexus`` / ``python -m plexus``."""

import sys

from plexus.cli import main

sys.exit(main())
