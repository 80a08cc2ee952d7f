"""``python -m reaxopt``: the command line of ``reaxopt.cli``, where no ``reaxopt`` script is on
the PATH (a batch job's bare interpreter, a package unpacked beside the code)."""

import sys

from reaxopt.cli import main

sys.exit(main())
