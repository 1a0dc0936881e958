"""Test-suite root: its folder is on ``sys.path``, so every test imports ``tiny_runs``."""
