"""``python -m jaxgen.cli``: the ``jaxgen`` command."""

import sys

from jaxgen.cli import main

sys.exit(main())
