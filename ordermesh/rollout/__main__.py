"""`python -m ordermesh.rollout`: a blue-green rollout of the gateway (see --help)."""

import sys

from ordermesh.rollout.cli import main

if __name__ == "__main__":
    sys.exit(main())
