"""Running the leaderboard: compose each run's config, train (or reuse, or resume) it,
score transfers, evaluate on valid, pick each row's seed for test, merge the submission."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from .._checks import resolve_device
from ..data.schema import COLLECTIONS
from ..submission import merge_submissions, validate_submission
from .plan import experiment_name, plan_sources, root_folder_and_override, split_counts
from .records import Row, Run
from .reuse import existing_run

CONFIG_DIR = Path(__file__).parent.parent / "configs"


def compose(name: str, overrides: Sequence[str]):
    """A Hydra config composed from the package's configs (``config`` or ``eval``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(name, overrides=list(overrides))


def quote(value) -> str:
    """A path as a quoted Hydra override value (spaces, commas and ``=`` are safe)."""
    return "'" + str(value).replace("'", "\\'") + "'"


def _run_config(collection, seed, run_dir, root_value, overrides):
    from hydra.errors import HydraException

    experiment = f"experiment={experiment_name(collection)}"
    args = [
        experiment,
        *overrides,
        f"data.root={quote(root_value)}",
        f"trainer.seed={seed}",
        f"out_dir={quote(run_dir)}",
    ]
    try:
        cfg = compose("config", args)
    except HydraException as exc:
        # Hydra's advice for an unknown key, to append it with +KEY, fails in the
        # constructor that does not take it: name the key likely meant instead.
        hint = _unknown_keys(collection, args)
        raise ValueError(
            hint
            or f"{collection}: the overrides {list(overrides)} do not apply to {experiment}: {exc}"
        ) from None
    if any(o.startswith("+") and not o.startswith("++") for o in overrides):
        # A key appended where the config has one like it (+model.hidden_channels for the
        # segment model's model.model.hidden_channels) would fail once training starts.
        hint = _unknown_keys(collection, args)
        if hint:
            raise ValueError(hint)
    return cfg


def _unknown_keys(collection: str, args: Sequence[str]) -> str | None:
    """One line naming the run's overrides that its config has no setting for, with the
    keys likely meant (:func:`tpulearn.cli.key_hints`); None where none is unknown."""
    from ..cli import key_hints

    lines = key_hints("config", list(args))
    if not lines:
        return None
    return (
        f"{collection}: {'; '.join(lines)} (python train.py {args[0]} --cfg job prints every key)"
    )


def _best_seed(runs: Sequence[Run]) -> int | None:
    """The seed with the best valid score (the lowest seed on ties); None without scores."""
    scored = [(r.valid["score"], -r.seed) for r in runs if r.valid]
    return -max(scored)[1] if scored else None


class _Reproduction:
    """One leaderboard invocation: checked settings in, runs and table rows out."""

    def __init__(self, root, out, collections, seeds, overrides, retrain, device, log, ensemble):
        self.root, self.root_value = root_folder_and_override(root)
        self.collections, self.seeds = collections, seeds
        self.overrides, self.retrain, self.log = overrides, retrain, log
        self.out = Path(out).expanduser().resolve()
        self.sources = plan_sources(self.root, collections)
        # Checked before any training (evaluation comes after it); "auto" resolved once.
        self.device = str(resolve_device(device))
        self.runs: dict[tuple[str, int], Run] = {}
        self.ensemble = ensemble
        # The root's collections left out of this invocation: its submission cannot be
        # validated, and its files take other names than a full run's, which they would
        # otherwise replace (a rerun of one collection into a finished board's folder).
        in_root = [c for c in COLLECTIONS if split_counts(self.root, c)["test"]]
        self.left_out = [c for c in in_root if c not in collections]

    def output(self, name: str) -> Path:
        """``OUT/<name>``; ``OUT/<stem>_partial<suffix>`` for a run of some collections only."""
        path = self.out / name
        return path.with_stem(f"{path.stem}_partial") if self.left_out else path

    def run_dir(self, collection: str, seed: int) -> Path:
        return self.out / experiment_name(collection) / f"seed{seed}"

    def evaluate(self, ckpt, split: str, collection: str, run_dir: Path) -> dict:
        """``evaluate()`` of a checkpoint (or a list: their ensemble) on one split; its
        prints go to ``eval.log``."""
        from ..evaluation import evaluate

        if isinstance(ckpt, list):
            ckpt = "[" + ",".join(quote(c) for c in ckpt) + "]"
        else:
            ckpt = quote(ckpt)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg = compose(
            "eval",
            [
                f"ckpt={ckpt}",
                f"ensemble={self.ensemble or 'rank'}",
                f"split={split}",
                f"out_dir={quote(run_dir / split)}",
                f"data.root={quote(self.root_value)}",
                f"data.collection={collection}",
                f"device={self.device}",
            ],
        )
        with open(run_dir / "eval.log", "a") as fp, contextlib.redirect_stdout(fp):
            return evaluate(cfg)

    def run(self) -> list[Row]:
        # Every config is composed before any training: a bad override fails at once.
        trained = [c for c in COLLECTIONS if c in self.sources.values()]
        configs = {
            (c, s): _run_config(c, s, self.run_dir(c, s), self.root_value, self.overrides[c])
            for c in trained
            for s in self.seeds
        }
        transfers = [c for c in self.collections if self.sources[c] != c]
        total = len(configs) + len(transfers) * len(self.seeds)
        for number, ((c, s), cfg) in enumerate(configs.items(), start=1):
            self.train(c, s, cfg, f"[{number}/{total}] {c} seed {s}")
        number = len(configs)
        for c in transfers:
            for s in self.seeds:
                number += 1
                self.transfer(c, s, f"[{number}/{total}] {c} seed {s}")
        rows = []
        for c in self.collections:
            row = Row(c, [self.runs[c, s] for s in self.seeds], split_counts(self.root, c))
            if row.transfer_from:
                row.note = f"transfer from {row.transfer_from}: no train split in {self.root_value}"
                if not row.values("score"):
                    row.note += "; no valid split: valid metrics n/a"
            if self.ensemble:
                self.ensemble_valid(row)
            self.test(row)
            rows.append(row)
        return rows

    def train(self, collection: str, seed: int, cfg, prefix: str) -> None:
        """Train, resume or reuse one run, then evaluate its best checkpoint on valid."""
        from omegaconf import OmegaConf

        from ..training import train

        here = self.run_dir(collection, seed)
        if self.retrain and here.exists():
            shutil.rmtree(here)
        ckpt = here / "checkpoints" / "best.pt"
        action, step = existing_run(here, OmegaConf.to_container(cfg, resolve=True))
        start = time.perf_counter()
        if action == "reuse":
            status = "reused"
        else:
            resume = action == "resume"
            OmegaConf.update(cfg, "trainer.resume", resume)
            status = "resumed" if resume else "trained"
            here.mkdir(parents=True, exist_ok=True)
            self.log(f"{prefix}: {'resuming' if resume else 'training'} in {here} (log: train.log)")
            with open(here / "train.log", "a") as fp, contextlib.redirect_stdout(fp):
                step = train(cfg)["best"]["step"]
        valid = self.evaluate(ckpt, "valid", collection, here)["metrics"]
        self.runs[collection, seed] = Run(
            collection, seed, status, here, ckpt, collection, step, valid
        )
        took = f" in {time.perf_counter() - start:.1f} s" if status != "reused" else ""
        self.log(
            f"{prefix}: {status}{took}, valid score {valid['score']:.4f} (best step {step}, {ckpt})"
        )

    def transfer(self, collection: str, seed: int, prefix: str) -> None:
        """Score a collection without a train split with another collection's model."""
        donor = self.runs[self.sources[collection], seed]
        here = self.run_dir(collection, seed)
        here.mkdir(parents=True, exist_ok=True)
        valid = None
        if split_counts(self.root, collection)["valid"]:
            valid = self.evaluate(donor.checkpoint, "valid", collection, here)["metrics"]
        self.runs[collection, seed] = Run(
            collection, seed, "transfer", here, donor.checkpoint, donor.collection, valid=valid
        )
        self.runs[collection, seed].best_step = donor.best_step
        text = f"valid score {valid['score']:.4f}" if valid else "no valid split: valid n/a"
        self.log(
            f"{prefix}: transfer of {donor.checkpoint} ({donor.collection}; no train split in "
            f"the root), {text}"
        )

    def ensemble_dir(self, collection: str) -> Path:
        return self.out / experiment_name(collection) / "ensemble"

    def ensemble_valid(self, row: Row) -> None:
        """The valid metrics of the ensemble of the row's runs (transfers: the donors')."""
        if not row.graphs["valid"]:
            return
        ckpts = [r.checkpoint for r in row.runs]
        result = self.evaluate(ckpts, "valid", row.collection, self.ensemble_dir(row.collection))
        row.ensemble_valid = result["metrics"]
        self.log(
            f"ensemble {row.collection}: {len(ckpts)} seeds ({self.ensemble}), valid score "
            f"{row.ensemble_valid['score']:.4f} (seeds' mean {row.mean('score'):.4f})"
        )

    def test(self, row: Row) -> None:
        """Score the test split with the best-on-valid seed's checkpoint, or with the
        ensemble of the seeds' checkpoints (``--ensemble``)."""
        if not row.graphs["test"]:
            row.note = "; ".join(filter(None, [row.note, "no test split: no submission rows"]))
            return
        if self.ensemble:
            ckpts = [r.checkpoint for r in row.runs]
            folder = self.ensemble_dir(row.collection)
            result = self.evaluate(ckpts, "test", row.collection, folder)
            row.submission_why = f"ensemble={self.ensemble} of the seeds' best checkpoints"
            row.submission_part = Path(result["submission"])
            self.log(
                f"test {row.collection}: ensemble of seeds {', '.join(map(str, self.seeds))} "
                f"({self.ensemble}), {result['graphs']} graphs scored"
            )
            return
        seed, why = _best_seed(row.runs), "best valid score"
        if seed is None:  # a transfer without valid labels: the source's choice
            seed = _best_seed([self.runs[row.transfer_from, s] for s in self.seeds])
            why = f"the seed chosen on {row.transfer_from}'s valid score"
        run = self.runs[row.collection, seed]
        result = self.evaluate(run.checkpoint, "test", row.collection, run.run_dir)
        row.submission_seed, row.submission_why = seed, why
        row.submission_part = Path(result["submission"])
        self.log(f"test {row.collection}: seed {seed} ({why}), {result['graphs']} graphs scored")

    def merge(self, rows: Sequence[Row]) -> tuple[Path | None, str]:
        """The merged submission, validated when it covers every test graph of the root."""
        parts = [r.submission_part for r in rows if r.submission_part]
        if not parts:
            return None, f"no submission: the root has no test files for {self.collections}"
        merged = merge_submissions(parts, self.output("submission.csv"))
        if self.left_out:
            return merged, (
                f"{merged.name} covers {self.collections} only; not validated, since "
                f"validate_submission needs every test graph of the root (also "
                f"{self.left_out})"
            )
        report = validate_submission(merged, self.root)
        counts = ", ".join(f"{c} {n}" for c, n in report.items())
        return merged, f"{merged.name} validated against the root's test files (rows: {counts})"
