"""Train a tpulearn model: ``python train.py model=sage [data=...] [trainer.max_steps=...]``.

With no arguments it trains on the real TpuGraphs files bundled with tpulearn.
"""

from tpulearn.cli import train_main

if __name__ == "__main__":
    train_main()
