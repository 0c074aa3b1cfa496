"""`python -m plexus` = the `plexus` command."""

import sys

from plexus.cli import main

sys.exit(main())
