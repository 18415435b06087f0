#!/usr/bin/env python
"""Compare reward schemes: ``python scripts/compare.py [STUDY.yaml | NAME] [--out DIR]``.

Runs a study (train every scheme × seed, evaluate, aggregate) and writes its report.
"""

import sys

from rewardgym.cli import main

if __name__ == "__main__":
    sys.exit(main(["study", *sys.argv[1:]]))
