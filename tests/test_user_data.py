"""User datasets: a registered dataset and any torchvision-style dataset given to the API, held in
memory or streamed through a DataLoader with workers (the same batches either way); grayscale,
non-square images, any number of classes; a failing dataset is a one-line error."""
import numpy as np
import pytest
import torch
from PIL import Image

import nas
from nas.data import StreamLoader, build_eval_loaders, build_search_loaders, load_dataset
from nas.data.stream import to_uint8
from nas.errors import DataError
from recompute import retrain_test_acc, search_val_acc

KW = dict(root=None, download=False, resize=None, subset=None, train_portion=0.5, batch_size=8, seed=0, device="cpu")


class Shapes(torch.utils.data.Dataset):
    """``n`` grayscale 6x10 images as numpy arrays, ``k`` classes; no ``classes`` attribute."""

    def __init__(self, n=60, k=5, seed=0, kind="numpy"):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 256, (n, 6, 10), generator=g, dtype=torch.uint8)
        self.y = torch.arange(n) % k
        self.kind = kind

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i]
        image = {"numpy": x.numpy(), "pil": Image.fromarray(x.numpy(), mode="L"), "float": x.float()[None] / 255}[self.kind]
        return image, int(self.y[i])


def epochs(loader, n=2):
    return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(n)]


def test_images_of_every_kind_become_uint8_chw():
    a = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)                      # H, W, C
    assert to_uint8(a).shape == (3, 2, 4) and to_uint8(a)[1, 0, 1] == 4
    assert to_uint8(np.zeros((5, 7), np.uint8)).shape == (1, 5, 7)
    assert torch.equal(to_uint8(torch.tensor([[[0.0, 1.0]]])), torch.tensor([[[0, 255]]], dtype=torch.uint8))
    assert to_uint8(Image.new("RGB", (7, 5))).shape == (3, 5, 7)
    assert to_uint8(Image.new("L", (7, 5)), resize=4).shape == (1, 4, 4)
    assert to_uint8(Image.new("I;16", (3, 2), 65535)).max() == 255


@pytest.mark.parametrize("kind", ["numpy", "pil", "float"])
def test_streamed_and_in_memory_batches_are_the_same(kind):
    ds = Shapes(kind=kind)
    mem = build_search_loaders("x", workers=0, given=ds, **KW)
    stream = build_search_loaders("x", workers=2, given=ds, stream=True, **KW)
    assert isinstance(stream[0], StreamLoader) and not isinstance(mem[0], StreamLoader)
    assert mem[2]["shape"] == stream[2]["shape"] == (1, 6, 10)                # grayscale, not square
    assert mem[2]["num_classes"] == 5 and mem[2]["classes"] == ["0", "1", "2", "3", "4"]
    assert mem[2]["mean"] == stream[2]["mean"]                                  # every image is a stats item here
    for a, b in ((mem[0], stream[0]), (mem[1], stream[1]), (mem[1].eval_loader(), stream[1].eval_loader())):
        ea, eb = epochs(a), epochs(b)
        assert len(ea[0]) == len(a) == 4
        for x, y in zip(ea, eb, strict=True):
            assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(x, y, strict=True))
    # resuming the stream loader gives the epoch the saved one would have
    state = stream[0].state_dict()
    nxt = epochs(stream[0], 1)[0]
    again = build_search_loaders("x", workers=0, given=ds, stream=True, **KW)[0]
    again.load_state_dict(state)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(nxt, epochs(again, 1)[0], strict=True))


def test_a_failing_or_malformed_dataset_is_a_one_line_error():
    class Broken(Shapes):
        def __getitem__(self, i):
            if i == 7:
                raise OSError("disk\nread error")
            return super().__getitem__(i)
    for stream, workers in ((False, 0), (True, 2)):
        with pytest.raises(DataError, match=r"item 7: OSError: disk read error") as e:
            loaders = build_search_loaders("x", workers=workers, given=Broken(), stream=stream, **KW)
            for loader in loaders[:2]:
                list(loader)
        assert "\n" not in str(e.value)

    class Mixed(Shapes):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return (x[:, :8] if i % 2 else x), y
    with pytest.raises(DataError, match="different sizes.*data.resize"):
        build_search_loaders("x", workers=0, given=Mixed(), **KW)
    assert build_search_loaders("x", workers=0, given=Mixed(), **{**KW, "resize": 4})[2]["shape"] == (1, 4, 4)
    with pytest.raises(DataError, match="needs len"):
        build_search_loaders("x", workers=0, given=object(), **KW)


def test_a_registered_dataset_with_targets_is_subset_by_class():
    @nas.register_dataset("test_shapes")
    def shapes(*, split, seed=0, **_):
        ds = Shapes(n=60 if split == "train" else 20, k=3, seed=0 if split == "train" else 1)
        ds.targets = ds.y.tolist()           # torchvision's convention: labels without decoding
        ds.classes = ["a", "b", "c"]
        return ds
    mem = load_dataset("test_shapes", subset=9)
    assert mem.images.shape == (9, 1, 6, 10) and mem.labels.bincount().tolist() == [3, 3, 3]
    streamed = load_dataset("test_shapes", subset=9, stream=True)
    assert len(streamed) == 9 and streamed.classes == ["a", "b", "c"]
    train, test, info = build_eval_loaders("test_shapes", root=None, download=False, resize=None, subset=None,
                                           batch_size=8, workers=0, seed=0, device="cpu", stream=True)
    assert info["num_classes"] == 3 and info["n_test"] == 20 and next(iter(test))[0].shape == (8, 1, 6, 10)


def test_imagefolder_streams_the_same_images(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    kw = {**KW, "root": str(tmp_path), "batch_size": 4}
    mem = build_search_loaders("imagefolder", workers=0, **kw)
    stream = build_search_loaders("imagefolder", workers=0, stream=True, **kw)
    assert isinstance(stream[0], StreamLoader) and stream[2]["classes"] == ["cat", "dog"]
    for a, b in zip(epochs(mem[0]), epochs(stream[0]), strict=True):
        assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b, strict=True))


def test_search_and_retrain_on_a_dataset_object(tmp_path):
    cfg = nas.load_config("quickstart", "space.C=4", "space.N=1", "trainer.epochs=1", "trainer.bn_batches=1",
                          "data.stream=true", "data.workers=0", "data.resize=null", "data.batch_size=16")
    res = nas.search(cfg, tmp_path / "s", dataset=Shapes(n=64, k=7))
    assert res.metrics["val_acc"] == pytest.approx(search_val_acc(tmp_path / "s", dataset=Shapes(n=64, k=7)))
    import yaml
    assert yaml.safe_load((tmp_path / "s" / "config.yaml").read_text())["data"]["dataset"] == "<python>"
    rcfg = nas.load_config("retrain_nb201_digits", "model.C=4", "trainer.epochs=1", "data.resize=null", "device=cpu")
    given = {"train": Shapes(n=32, k=7), "test": Shapes(n=14, k=7, seed=1)}
    out = nas.retrain(rcfg, res.genotype, tmp_path / "r", dataset=given)
    assert out.metrics["test_acc"] == pytest.approx(retrain_test_acc(tmp_path / "r", dataset=given))
    with pytest.raises(DataError, match="no 'test' split"):
        nas.retrain(rcfg, res.genotype, tmp_path / "r2", dataset={"train": Shapes()})


def test_an_image_datasets_own_options_reach_its_loader_in_search_and_retrain(tmp_path):
    """``register_dataset(..., options=...)``: ``data.<key>`` of a search and of a retraining is
    handed to the entry as ``options``; a retrain config takes the dataset's keys like a search's."""
    from dataclasses import dataclass
    from nas.bounds import ranged
    from nas.retrainer.config import RetrainConfig
    seen = []

    @dataclass
    class ShapesOptions:
        classes: int = ranged(3, ge=2, help="classes of shapes")

    @nas.register_dataset("test_shapes_k", options=ShapesOptions)
    def shapes(*, split, options, **_):
        seen.append((split, options.classes))
        return Shapes(n=48 if split == "train" else 24, k=options.classes, seed=0 if split == "train" else 1)

    cfg = nas.load_config("quickstart", "data.dataset=test_shapes_k", "data.classes=4", "data.resize=null",
                          "space.C=4", "space.N=1", "trainer.epochs=1", "trainer.bn_batches=1", "data.batch_size=16")
    res = nas.search(cfg, tmp_path / "s")
    assert seen == [("train", 4)]
    rcfg = nas.load_config("retrain_nb201_digits", "data.dataset=test_shapes_k", "data.classes=6", "model.C=4",
                           "trainer.epochs=1", "data.resize=null", "device=cpu")
    assert isinstance(rcfg, RetrainConfig)
    assert rcfg.data.classes == 6
    out = nas.retrain(rcfg, res.genotype, tmp_path / "r")
    assert seen[1:] == [("train", 6), ("test", 6)]
    assert out.metrics["test_acc"] == pytest.approx(retrain_test_acc(tmp_path / "r"))
    with pytest.raises(nas.ConfigError, match=r"^data\.classes=1 is out of range"):
        nas.load_config("retrain_nb201_digits", "data.dataset=test_shapes_k", "data.classes=1")
    with pytest.raises(nas.ConfigError, match=r"^unknown config key 'data\.classes'"):
        nas.load_config("retrain_nb201_digits", "data.classes=6")  # digits declares no such key
