"""``python -m cortexfit`` runs the CLI (the workflow uses this so it needs no activated venv)."""

import sys

from cortexfit.cli import main

sys.exit(main())
