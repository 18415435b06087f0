"""Meters: what training and evaluation measure (text metrics, gradient noise, FLOPs).

They sit below agents, which use them while training, and import nothing of ours above
``rewards`` (the layers contract in ``pyproject.toml`` says so, and ``make lint`` checks it).
"""
