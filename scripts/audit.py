#!/usr/bin/env python
"""Reward audit: ``python scripts/audit.py --task translate --reward speed_only`` (see --help)."""

import sys

from rewardgym.cli import main

if __name__ == "__main__":
    sys.exit(main(["audit", *sys.argv[1:]]))
