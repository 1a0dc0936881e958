"""Reference numbers the leaderboard is compared with, each with its source: the
TpuGraphs paper's top-K errors and the Kaggle competition's validation scores."""

from __future__ import annotations

PAPER_SOURCE = (
    "TpuGraphs paper (Phothilimthana et al., arXiv 2308.13490), as transcribed in "
    "TPUGRAPHS.md: layout = GraphSAGE with graph segment training, tile = EarlyJoin SAGE "
    "with ListMLE"
)
# Top-K error in percent, (validation, test), from the paper's tables.
PAPER_TOP_K_ERROR_PERCENT: dict[str, dict[int, tuple[float, float]]] = {
    "tile:xla": {1: (10.0, 10.0), 5: (3.2, 4.3), 10: (2.1, 2.9)},
    "layout:xla:default": {1: (1.7, 1.6), 10: (0.5, 0.5), 100: (0.1, 0.1)},
    "layout:xla:random": {1: (24.3, 25.3), 10: (6.4, 10.4), 100: (0.4, 1.2)},
    "layout:nlp:default": {1: (2.3, 3.0), 10: (0.2, 0.2), 100: (0.1, 0.1)},
    "layout:nlp:random": {1: (23.7, 24.5), 10: (7.4, 8.0), 100: (1.8, 2.7)},
}
KAGGLE_SOURCE = (
    "Kaggle 'Fast or Slow? Predict AI Model Runtime', as summarised in TPUGRAPHS.md: strong "
    "single models' validation scores, and the official TF baseline's Kendall tau"
)
# Validation score (Kendall tau; tile: 1 - top-5 error) of strong single models.
KAGGLE_STRONG_SINGLE_MODEL = {
    "tile:xla": "about 0.975",
    "layout:xla:default": "0.37 - 0.46",
    "layout:xla:random": "0.67 - 0.71",
    "layout:nlp:default": "0.51 - 0.55",
    "layout:nlp:random": "0.93 - 0.96",
}
KAGGLE_TF_BASELINE = {
    "tile:xla": "n/a",
    "layout:xla:default": "0.12",
    "layout:xla:random": "0.18",
    "layout:nlp:default": "0.32",
    "layout:nlp:random": "0.72",
}
KAGGLE_BEST_PRIVATE = "1st place: best single model 0.714 private, ensemble 0.736"
