"""``python -m rewardgym``: the same command line as ``rewardgym``."""

import sys

from rewardgym.cli import main

if __name__ == "__main__":
    sys.exit(main())
