"""Meters: what training and evaluation measure (text metrics, gradient noise, FLOPs).

The bottom of agents: the trainer measures with them and the evaluation harness reads them from
above. They import nothing of ours but errors and fileio (pyproject.toml's import-linter
contracts, checked by ``make lint``).
"""
