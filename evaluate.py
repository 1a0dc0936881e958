"""Evaluate a checkpoint: ``python evaluate.py ckpt=PATH [split=valid|test]``."""

from tpulearn.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()
