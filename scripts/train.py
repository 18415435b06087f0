#!/usr/bin/env python
"""Train an agent: ``python scripts/train.py --task translate --reward balanced --out runs/a``."""

import sys

from rewardgym.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
