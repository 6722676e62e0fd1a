"""``python -m fastmlp``: the same command line as ``fastmlp`` (see :mod:`fastmlp.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
