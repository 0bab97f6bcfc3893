"""``python -m edgeinfer``: the same command line as the ``edgeinfer`` script."""

import sys

from edgeinfer.cli import main

sys.exit(main())
