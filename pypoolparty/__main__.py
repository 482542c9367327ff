"""``python -m pypoolparty``: the command line (see :mod:`pypoolparty.cli`)."""
import sys

from .cli import main

sys.exit(main())
