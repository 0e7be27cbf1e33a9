"""``python -m aiart.cli``: the ``aiart`` command."""

import sys

from aiart.cli.main import main

sys.exit(main())
