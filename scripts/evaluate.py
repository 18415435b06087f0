#!/usr/bin/env python
"""Evaluate a run: ``python scripts/evaluate.py RUN_DIR [--split test] [--noise TYPE ...]
[--severity S ...]``; writes ``RUN_DIR/eval/<split>.json`` and the hypothesis/reference files."""

import sys

from rewardgym.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
