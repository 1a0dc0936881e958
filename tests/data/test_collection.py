"""CollectionData built from arguments and from the data configs."""

import warnings

import numpy as np
import pytest
from hydra.utils import instantiate
from tiny_runs import CONFIG_DIR, compose_config, tiny_overrides

from tpulearn.data import CollectionData, FastBiasedSampler, UniformSampler, sample_root
from tpulearn.data.collection import data_root_folder
from tpulearn.data.schema import root_above

LAYOUT = "layout:xla:default"
LAYOUT_RANDOM = "layout:xla:random"  # what the synthetic writer writes by default


def test_sampler_partial_from_config_gets_configs_per_graph():
    cfg = compose_config(overrides=["data.sampler.fast_share=0.3", "data.configs_per_graph=7"])
    sampler = instantiate(cfg.data).sampler(cfg.data.configs_per_graph)
    assert isinstance(sampler, FastBiasedSampler)
    assert (sampler.num_configs, sampler.fast_share, sampler.fast_quantile) == (7, 0.3, 0.1)
    cfg = compose_config(overrides=["data/sampler=uniform"])
    assert isinstance(instantiate(cfg.data).sampler(4), UniformSampler)


def test_sampler_class_and_old_names():
    assert CollectionData(LAYOUT, "layout").sampler is FastBiasedSampler
    # Configs stored in checkpoints before samplers were config nodes name them, and
    # CollectionData under tpulearn.training.
    import tpulearn.training

    assert tpulearn.training.CollectionData is CollectionData
    assert CollectionData(LAYOUT, "layout", sampler="uniform").sampler is UniformSampler
    with pytest.raises(ValueError, match="data.sampler must be one of"):
        CollectionData(LAYOUT, "layout", sampler="fast")
    with pytest.raises(TypeError, match="data.sampler must build a ConfigSampler"):
        CollectionData(LAYOUT, "layout", sampler=3)


def test_bad_choices_are_refused():
    with pytest.raises(ValueError, match="data.valid_indices must be one of"):
        CollectionData(LAYOUT, "layout", valid_indices="some")
    with pytest.raises(ValueError, match="data.normalize must be one of"):
        CollectionData(LAYOUT, "layout", normalize="std")
    with pytest.raises(ValueError, match="data.dedup must be one of"):
        CollectionData(LAYOUT, "layout", dedup="median")
    with pytest.raises(ValueError, match="does not match collection"):
        CollectionData(LAYOUT, "tile")


@pytest.mark.parametrize("configs", [1, 0, -3, 2.5, True])
def test_too_few_configs_per_graph_are_refused(configs):
    # Every loss compares configs of one graph: one config a graph trains on a zero loss.
    wanted = rf"data.configs_per_graph must be an integer >= 2 \(every loss .*\), got {configs}"
    with pytest.raises(ValueError, match=wanted):
        CollectionData(LAYOUT, "layout", configs_per_graph=configs)
    assert CollectionData(LAYOUT, "layout", configs_per_graph=np.int64(2)).configs_per_graph == 2


@pytest.mark.parametrize("chunk", [0, -1, 8.0, None])
def test_eval_chunk_must_be_a_positive_integer(chunk):
    with pytest.raises(ValueError, match=rf"data.eval_chunk must be an integer >= 1, got {chunk}"):
        CollectionData(LAYOUT, "layout", eval_chunk=chunk)


def test_ineffective_options_warn_only_when_changed():
    with pytest.warns(UserWarning, match="data.log_features=False has no effect"):
        CollectionData(LAYOUT, "layout", normalize=None, log_features=False)
    with pytest.warns(UserWarning, match="data.cache_dir='/tmp' has no effect"):
        CollectionData("tile:xla", "tile", cache_dir="/tmp")
    with pytest.warns(UserWarning, match="data.tile_layout=True has no effect"):
        CollectionData(LAYOUT, "layout", tile_layout=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CollectionData(LAYOUT, "layout", normalize=None)  # log_features left at its default
        CollectionData("tile:xla", "tile")
        CollectionData(LAYOUT, "layout", cache_dir="/tmp")


@pytest.mark.parametrize(
    "choice",
    [f"data={p.stem}" for p in sorted((CONFIG_DIR / "data").glob("*.yaml"))]
    + [f"experiment={p.stem}" for p in sorted((CONFIG_DIR / "experiment").glob("*.yaml"))],
)
def test_shipped_configs_build_without_warnings(choice):
    cfg = compose_config(overrides=[choice, "data.root=sample"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = instantiate(cfg.data)
    assert data.root == sample_root() and data.sampler(3).num_configs == 3


def test_data_root_folder():
    assert data_root_folder(None) == data_root_folder("sample") == sample_root()
    with pytest.raises(FileNotFoundError, match="no data root given"):
        data_root_folder("")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data_root_folder("/nonexistent/tpugraphs")
    # A file, not "does not exist" with a download hint for it.
    file = sample_root() / "npz/layout/xla/default/train/unet3d.npz"
    with pytest.raises(FileNotFoundError, match=r"unet3d.npz is a file; the data root is the"):
        data_root_folder(file)


def test_a_cache_dir_that_is_a_file_is_refused_before_anything_reads(tmp_path):
    file = tmp_path / "cache.pt"
    file.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"^data.cache_dir='.*cache.pt' is a file: expected a fo"):
        CollectionData("layout:xla:default", "layout", cache_dir=file)
    assert CollectionData("layout:xla:default", "layout", cache_dir=tmp_path / "new").cache_dir


@pytest.mark.parametrize("inside", ["npz", "npz/layout/xla"])
def test_a_data_root_given_inside_npz_names_the_folder_meant(inside):
    # Before, a root one level too deep failed on a missing <root>/npz/npz/... folder and
    # suggested downloading the collection into it.
    with pytest.raises(FileNotFoundError) as info:
        data_root_folder(sample_root() / inside)
    assert str(info.value).endswith(f"the folder that holds npz/: data.root={sample_root()}")


def test_root_above_finds_the_folder_that_holds_npz(tmp_path):
    (tmp_path / "npz" / "layout").mkdir(parents=True)
    assert root_above(tmp_path) is None
    assert root_above(tmp_path / "npz") == root_above(tmp_path / "npz" / "layout") == tmp_path
    assert root_above(tmp_path / "elsewhere") is None
    # A root that holds npz/ is a root, whatever its own name.
    (tmp_path / "npz" / "npz").mkdir()
    assert root_above(tmp_path / "npz") is None


@pytest.fixture(scope="module")
def five_graph_root(tmp_path_factory):
    """Tiny synthetic layout and tile collections with 5 train graphs each."""
    from tpulearn.data.synthetic import write_layout_collection, write_tile_collection

    root = tmp_path_factory.mktemp("folds")
    counts = {"train": 5, "valid": 1, "test": 0}
    write_layout_collection(root, num_graphs=counts, nodes=(20, 30), configs=(6, 8), seed=1)
    write_tile_collection(root, num_graphs=counts, nodes=(5, 8), configs=(6, 8), seed=1)
    return root


@pytest.mark.parametrize(("collection", "task"), [(LAYOUT_RANDOM, "layout"), ("tile:xla", "tile")])
def test_folds_leave_out_one_fold_of_the_train_graphs(five_graph_root, collection, task):
    every = CollectionData(collection, task, root=five_graph_root).train_set().files
    assert len(every) == 5

    def trained(**kwargs):
        return CollectionData(collection, task, root=five_graph_root, folds=3, **kwargs)

    # File i (sorted by name) is in fold i % 3; the fold left out is the seed's by default.
    left_out = [sorted(set(every) - set(trained(seed=s).train_set().files)) for s in range(3)]
    assert left_out == [[every[0], every[3]], [every[1], every[4]], [every[2]]]
    assert trained(seed=4).train_set().files == trained(seed=1).train_set().files
    assert trained(seed=0, fold=2).train_set().files == [*every[:2], *every[3:]]
    # The feature statistics are those of the graphs trained on.
    data = trained(seed=0)
    data.train_set()
    alone = CollectionData(collection, task, root=five_graph_root)
    subset = alone._dataset("train", alone.sampler(4), files=data.train_files())
    full = alone._dataset("train", alone.sampler(4)).fit_normalizer(mode="zscore", log=True)

    def same(a, b):
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

    got = data.node_normalizer.state_dict()
    assert same(got, subset.fit_normalizer(mode="zscore", log=True).state_dict())
    assert not same(got, full.state_dict())
    assert data.describe().endswith("training on all but fold 0 of 3")
    assert data.left_out_fold == 0 and alone.left_out_fold is None


def test_folds_are_checked(five_graph_root):
    with pytest.raises(ValueError, match="data.folds must be >= 2"):
        CollectionData(LAYOUT_RANDOM, "layout", root=five_graph_root, folds=1)
    data = CollectionData(LAYOUT_RANDOM, "layout", root=five_graph_root, folds=6)
    with pytest.raises(
        ValueError, match=r"data.folds=6 needs at least as many train graphs; .*has 5"
    ):
        data.train_set()


def test_folds_from_the_config_follow_the_seed(five_graph_root):
    cfg = compose_config(
        overrides=[
            "data=synthetic",
            f"data.root={five_graph_root}",
            "data.folds=3",
            "trainer.seed=2",
        ]
    )
    data = instantiate(cfg.data)
    assert (data.folds, data.left_out_fold, len(data.train_set())) == (3, 2, 4)


@pytest.fixture(scope="module")
def two_source_root(tmp_path_factory):
    """Tiny layout:xla:random and layout:nlp:random collections (3 and 2 train graphs) and
    layout:xla:default, which shares the xla graphs and their names."""
    from tpulearn.data.synthetic import write_layout_collection

    root = tmp_path_factory.mktemp("extra")
    kwargs = dict(nodes=(20, 30), configs=(6, 8), seed=1)
    write_layout_collection(root, "xla", "random", num_graphs={"train": 3, "valid": 1}, **kwargs)
    write_layout_collection(root, "nlp", "random", num_graphs={"train": 2, "valid": 1}, **kwargs)
    write_layout_collection(root, "xla", "default", num_graphs={"train": 3, "valid": 1}, **kwargs)
    return root


def test_extra_train_adds_the_train_graphs_of_other_collections(two_source_root):
    root = two_source_root
    own = CollectionData(LAYOUT_RANDOM, "layout", root=root)
    assert own.train_files() is None
    data = CollectionData(LAYOUT_RANDOM, "layout", root=root, extra_train=["layout:nlp:random"])
    xla = sorted((root / "npz/layout/xla/random/train").glob("*.npz"))
    nlp = sorted((root / "npz/layout/nlp/random/train").glob("*.npz"))
    assert (len(xla), len(nlp)) == (3, 2)
    train = data.train_set()
    assert train.files == [*xla, *nlp]
    # Validation is the collection's own; the statistics are fitted on every train graph.
    assert data.eval_set("valid").files == own.eval_set("valid").files
    own.train_set()
    fitted, alone = data.node_normalizer.state_dict(), own.node_normalizer.state_dict()
    assert fitted.keys() == alone.keys()
    assert not all(np.array_equal(fitted[k], alone[k]) for k in fitted)
    assert data.describe().endswith("also training on the train graphs of layout:nlp:random")
    # Folds split the graphs of every collection, in that order.
    folded = CollectionData(
        LAYOUT_RANDOM, "layout", root=root, extra_train=["layout:nlp:random"], folds=2, fold=1
    )
    assert folded.train_set().files == [xla[0], xla[2], nlp[1]]
    assert folded.describe().endswith(
        "also training on the train graphs of layout:nlp:random, training on all but fold 1 of 2"
    )


def test_extra_train_is_checked(two_source_root):
    root = two_source_root
    with pytest.raises(ValueError, match="applies to layout collections: got 'tile:xla'"):
        CollectionData(LAYOUT_RANDOM, "layout", root=root, extra_train=["tile:xla"])
    with pytest.raises(ValueError, match="applies to layout collections"):
        CollectionData("tile:xla", "tile", root=root, extra_train=["layout:nlp:random"])
    with pytest.raises(ValueError, match="names data.collection itself"):
        CollectionData(LAYOUT_RANDOM, "layout", root=root, extra_train=[LAYOUT_RANDOM])
    with pytest.raises(ValueError, match="names a collection twice"):
        twice = ["layout:nlp:random", "layout:nlp:random"]
        CollectionData(LAYOUT_RANDOM, "layout", root=root, extra_train=twice)
    # The default collection of the same source holds the same graphs under the same names.
    same_names = CollectionData(
        LAYOUT_RANDOM, "layout", root=root, extra_train=["layout:xla:default"]
    )
    with pytest.raises(ValueError, match=r"two train graphs named \S+: .*random.* and .*default"):
        same_names.train_set()
    too_few = CollectionData(
        LAYOUT_RANDOM, "layout", root=root, extra_train=["layout:nlp:random"], folds=6
    )
    with pytest.raises(ValueError, match=r"folds=6 .*train and the train splits of .* have 5"):
        too_few.train_set()
    missing = CollectionData(LAYOUT_RANDOM, "layout", root=root, extra_train=["layout:nlp:default"])
    with pytest.raises(FileNotFoundError, match="nlp/default/train does not exist"):
        missing.train_set()


def test_extra_train_from_the_config_trains(two_source_root, tmp_path):
    from tpulearn.training import train

    cfg = compose_config(
        overrides=[
            "data=synthetic",
            f"data.root={two_source_root}",
            "data.extra_train=[layout:nlp:random]",
            "trainer.max_steps=2",
            "trainer.max_epochs=null",
            "trainer.val_every=2",
            "trainer.progress=false",
            "model.hidden_channels=8",
            f"out_dir={tmp_path}",
        ]
    )
    data = instantiate(cfg.data)
    assert len(data.train_set()) == 5
    result = train(cfg)
    assert result["history"][-1]["step"] == 2
    assert result["data"].endswith("also training on the train graphs of layout:nlp:random")


@pytest.fixture(scope="module")
def sized_root(tmp_path_factory):
    """A layout:xla:random collection whose graphs hold 100 - 900 configs (tens to
    hundreds of kB of config features each)."""
    from tpulearn.data.synthetic import write_layout_collection

    root = tmp_path_factory.mktemp("sized")
    write_layout_collection(
        root,
        "xla",
        "random",
        num_graphs={"train": 3, "valid": 1},
        nodes=(300, 400),
        configs=(100, 900),
        seed=2,
    )
    return root


def _feat_kb(folder) -> list[float]:
    return [np.load(p)["node_config_feat"].size * 4 / 1e3 for p in sorted(folder.glob("*.npz"))]


def test_a_run_without_cache_says_what_the_files_decompress_to(sized_root, monkeypatch):
    """Without data.cache_dir an item decompresses its graph's whole node_config_feat; from
    a train graph of UNCACHED_NOTE_BYTES on, the note gives the sizes (from the files'
    headers) and the cache that would avoid it."""
    from tpulearn.data import collection

    root = sized_root
    data = CollectionData(LAYOUT_RANDOM, "layout", root=root)
    assert data.uncached_note() is None  # kilobytes: below the default threshold
    train = _feat_kb(root / "npz/layout/xla/random/train")
    valid = _feat_kb(root / "npz/layout/xla/random/valid")
    assert len(set(round(kb) for kb in train)) == 3  # the mean and the largest differ
    monkeypatch.setattr(collection, "UNCACHED_NOTE_BYTES", max(train) * 1e3)
    note = data.uncached_note()
    assert note.startswith("without data.cache_dir every training step decompresses")
    size = collection._size
    assert f"{size(sum(train) / len(train) * 1e3)} per train graph on average" in note
    assert f"{size(max(train) * 1e3)} at most" in note
    assert f"uncompressed copy ({size((sum(train) + sum(valid)) * 1e3)} for the train" in note
    assert "sample 32 configs" in note
    # With a cache, or above every train graph's size, nothing to say.
    cached = CollectionData(LAYOUT_RANDOM, "layout", root=root, cache_dir=root / "cache")
    assert cached.uncached_note() is None
    monkeypatch.setattr(collection, "UNCACHED_NOTE_BYTES", max(train) * 1e3 + 1)
    assert data.uncached_note() is None
    assert CollectionData("tile:xla", "tile", root=root).uncached_note() is None
    assert [size(n) for n in (999, 1.2e6, 64.4e9)] == ["1 kB", "1 MB", "64.4 GB"]


def test_train_prints_the_uncached_note(sized_root, tmp_path, monkeypatch, capsys):
    from tpulearn.data import collection
    from tpulearn.training import train

    monkeypatch.setattr(collection, "UNCACHED_NOTE_BYTES", 1)
    cfg = compose_config(
        overrides=["data=synthetic", f"data.root={sized_root}", *tiny_overrides(tmp_path)]
    )
    train(cfg)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("data: layout:xla:random from ")
    assert lines[1].startswith("data: without data.cache_dir every training step")
