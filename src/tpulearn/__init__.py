"""tpulearn: graph neural network baselines for the TpuGraphs runtime-ranking benchmark."""

__version__ = "0.1.0"
