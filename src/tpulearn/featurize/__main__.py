"""``python -m tpulearn.featurize``: the ``tpulearn-featurize`` command (see :mod:`.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
