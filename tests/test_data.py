"""Tests of nas.data: datasets, deterministic split and subset, the tensor batch loader, caching."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.data import (DATASETS, BatchLoader, ImageSet, build_eval_loaders, build_search_loaders,
                      load_dataset, split_indices)
from nas.data.datasets import stratified_subset
from nas.data.loader import crop_flip
from nas.errors import DataError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE", str(tmp_path / "cache"))


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2)
                                    for (x1, y1), (x2, y2) in zip(a, b, strict=True))


def test_registry_names():
    assert DATASETS.names() == ["breast_cancer", "cifar10", "cifar100", "digits", "imagefolder", "maze", "synthetic_dnf"]


def test_digits_shapes_and_split():
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert isinstance(train, ImageSet)
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, 8, 8)
    assert train.labels.dtype == torch.int64 and len(train.classes) == 10
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert torch.equal(train.images[:, 0], train.images[:, 2])  # grayscale copied to 3 channels
    assert train.images.max() == 255 and len(train.mean) == 3 and len(train.std) == 3
    # the held-out split does not depend on the run seed
    assert torch.equal(load_dataset("digits", split="test", seed=5).images, test.images)
    resized = load_dataset("digits", resize=16)
    assert resized.images.shape == (len(train), 3, 16, 16) and resized.images.dtype == torch.uint8


def test_split_indices_deterministic_disjoint_complete():
    a_tr, a_va = split_indices(101, 0.5, seed=3)
    b_tr, b_va = split_indices(101, 0.5, seed=3)
    assert torch.equal(a_tr, b_tr) and torch.equal(a_va, b_va)
    assert len(a_tr) == 50 and len(a_va) == 51
    assert sorted(torch.cat([a_tr, a_va]).tolist()) == list(range(101))
    assert not torch.equal(split_indices(101, 0.5, seed=4)[0], a_tr)


def test_subset_stratified_and_deterministic():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 4)
    idx = stratified_subset(labels, 30, seed=1)
    assert torch.equal(idx, stratified_subset(labels, 30, seed=1))
    assert not torch.equal(idx, stratified_subset(labels, 30, seed=2))
    assert len(set(idx.tolist())) == 30
    assert labels[idx].bincount().tolist() == [13, 13, 4]  # class 2 runs out, the others share
    d = load_dataset("digits", subset=50, seed=7)
    assert len(d) == 50 and d.labels.bincount().tolist() == [5] * 10
    assert torch.equal(d.images, load_dataset("digits", subset=50, seed=7).images)


def _loader(seed, images=None, **kw):
    images = torch.randint(0, 256, (50, 3, 16, 16), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)) if images is None else images
    args = dict(batch_size=16, shuffle=True, augment=True, mean=(0.5,) * 3, std=(0.25,) * 3)
    args.update(kw)
    return BatchLoader(images, torch.arange(len(images)), seed=seed, **args)


def test_loader_seeded_batches():
    a, b, c = _epoch(_loader(0)), _epoch(_loader(0)), _epoch(_loader(1))
    assert _same(a, b) and not _same(a, c)
    x, y = a[0]
    assert x.dtype == torch.float32 and x.shape == (16, 3, 16, 16) and y.dtype == torch.int64
    assert len(_loader(0)) == 4 and len(_loader(0, drop_last=True)) == 3
    assert [len(y) for _, y in a] == [16, 16, 16, 2]
    assert sorted(torch.cat([y for _, y in a]).tolist()) == list(range(50))
    ordered = _epoch(_loader(0, shuffle=False, augment=False))
    assert torch.cat([y for _, y in ordered]).tolist() == list(range(50))


def test_crop_flip_matches_padded_slice():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    pad = 1
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    out = crop_flip(x, torch.tensor([[0, 2], [1, 1]]), torch.tensor([False, True]), pad)
    assert out.shape == x.shape
    assert torch.equal(out[0], padded[0, :, 0:8, 2:10])          # shifted down-right, zeros enter
    assert torch.equal(out[1], x[1].flip(-1))                     # centre crop, mirrored
    assert (out[0, :, 0, :] == 0).all() and (out[0, :, :, -1] == 0).all()


def test_loader_augmentation_changes_images():
    plain = _epoch(_loader(0, augment=False))
    aug = _epoch(_loader(0))
    assert all(xa.shape == xp.shape for (xa, _), (xp, _) in zip(aug, plain, strict=True))
    assert not _same(aug, plain)


def test_state_dict_resume_is_exact():
    loader = _loader(3)
    _epoch(loader)
    state = loader.state_dict()
    expected = _epoch(loader)
    resumed = _loader(3)
    resumed.load_state_dict(state)
    assert resumed.epoch == 1 and _same(_epoch(resumed), expected)


def test_resume_after_partial_epoch():
    # zip() over a short and a long loader leaves the long one's epoch unfinished
    short, long = _loader(1, batch_size=25), _loader(2)
    for _ in zip(short, long):
        pass
    state = long.state_dict()
    expected = _epoch(long)
    resumed = _loader(2)
    resumed.load_state_dict(state)
    assert _same(_epoch(resumed), expected)


def _write_folder(root: Path, n_per_class=5, size=12):
    rng = np.random.default_rng(0)
    for c, ext in (("cat", "png"), ("dog", "jpg")):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.{ext}")


def test_imagefolder_and_cache(tmp_path):
    root = tmp_path / "imgs"
    _write_folder(root)
    d = load_dataset("imagefolder", root=str(root))
    assert d.images.shape == (10, 3, 12, 12) and d.classes == ["cat", "dog"]
    assert d.labels.tolist() == [0] * 5 + [1] * 5
    assert torch.equal(d.images[0].permute(1, 2, 0), torch.from_numpy(
        np.array(Image.open(root / "cat" / "0.png"))))  # PNG is lossless
    small = load_dataset("imagefolder", root=str(root), resize=8, subset=4, seed=1)
    assert small.images.shape == (4, 3, 8, 8) and small.labels.bincount().tolist() == [2, 2]
    cached = list((tmp_path / "cache" / "decoded").glob("*.pt"))
    assert len(cached) == 2


def _no_decoding(monkeypatch):
    import nas.data.datasets as ds

    def refuse(*a, **kw):
        raise AssertionError("decoded although the cache holds these images")
    monkeypatch.setattr(ds, "_decode_all", refuse)


def _decodes(monkeypatch) -> list:
    """Count the decodings (each call's image count)."""
    import nas.data.datasets as ds
    calls, real = [], ds._decode_all
    monkeypatch.setattr(ds, "_decode_all", lambda paths, *a: calls.append(len(paths)) or real(paths, *a))
    return calls


def test_imagefolder_cache_hit_equals_fresh_decode(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    _write_folder(root, size=20)
    first = load_dataset("imagefolder", root=str(root), resize=8, subset=6, seed=3)
    with monkeypatch.context() as m:
        _no_decoding(m)
        hit = load_dataset("imagefolder", root=str(root), resize=8, subset=6, seed=3)
    fresh = load_dataset("imagefolder", root=str(root), resize=8, subset=6, seed=3,
                         options=DATASETS.get("imagefolder").Options(cache=False))
    for d in (hit, first):
        assert torch.equal(d.images, fresh.images) and torch.equal(d.labels, fresh.labels)
        assert (d.classes, d.mean, d.std) == (fresh.classes, fresh.mean, fresh.std)


def test_imagefolder_stale_cache_is_not_used(tmp_path, monkeypatch):
    import os

    root = tmp_path / "imgs"
    _write_folder(root)
    calls = _decodes(monkeypatch)
    before = load_dataset("imagefolder", root=str(root))
    # an image rewritten in place: same name, same folder modification time (the old key's blind spot)
    dog = root / "dog" / "1.jpg"
    folder_times = [(d, d.stat()) for d in (root, root / "dog")]
    Image.fromarray(np.full((12, 12, 3), 7, np.uint8)).save(dog)
    os.utime(dog, ns=(dog.stat().st_atime_ns, dog.stat().st_mtime_ns + 10**9))
    for d, st in folder_times:
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = load_dataset("imagefolder", root=str(root))
    assert calls == [10, 10]
    assert torch.equal(after.images[6], torch.from_numpy(np.array(Image.open(dog))).permute(2, 0, 1))
    assert not torch.equal(after.images[6], before.images[6])
    assert torch.equal(after.images[:6], before.images[:6]) and torch.equal(after.images[7:], before.images[7:])
    (root / "cat" / "4.png").unlink()  # one image fewer
    assert len(load_dataset("imagefolder", root=str(root))) == 9 and calls == [10, 10, 9]


def test_imagefolder_cache_off_and_corrupt_cache(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    _write_folder(root)
    calls = _decodes(monkeypatch)
    off = DATASETS.get("imagefolder").Options(cache=False)
    a = load_dataset("imagefolder", root=str(root), options=off)
    b = load_dataset("imagefolder", root=str(root), options=off)
    assert calls == [10, 10] and not (tmp_path / "cache" / "decoded").exists()
    assert torch.equal(a.images, b.images)
    load_dataset("imagefolder", root=str(root))
    (cached,) = (tmp_path / "cache" / "decoded").glob("*.pt")
    cached.write_bytes(b"half a file")  # e.g. a disk that filled up under another writer
    import subprocess
    import sys
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    orphan = cached.parent / f".tmp-{gone.pid}-abcd.pt"  # a writer killed by SIGKILL
    orphan.write_bytes(b"x")
    again = load_dataset("imagefolder", root=str(root))
    assert calls == [10, 10, 10, 10] and torch.equal(again.images, a.images)
    assert torch.equal(torch.load(cached, weights_only=True)["images"], a.images)  # rewritten whole
    assert list(cached.parent.iterdir()) == [cached]


def _load_in_child(root, cache, barrier, out):
    import hashlib
    import os
    os.environ["NAS_CACHE"] = cache
    barrier.wait()  # every writer decodes and writes at once
    d = load_dataset("imagefolder", root=root, resize=10)
    out.put(hashlib.sha1(d.images.numpy().tobytes()).hexdigest())


def test_imagefolder_cache_concurrent_writers(tmp_path):
    import hashlib
    import multiprocessing

    root = tmp_path / "imgs"
    _write_folder(root, n_per_class=40, size=24)
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_load_in_child, args=(str(root), str(tmp_path / "cache"), barrier, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    digests = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    fresh = load_dataset("imagefolder", root=str(root), resize=10,
                         options=DATASETS.get("imagefolder").Options(cache=False))
    assert set(digests) == {hashlib.sha1(fresh.images.numpy().tobytes()).hexdigest()}
    files = list((tmp_path / "cache" / "decoded").iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"  # one entry, no temporary file left behind
    assert torch.equal(torch.load(files[0], weights_only=True)["images"], fresh.images)


def test_imagefolder_train_test_layout_and_pool(tmp_path, monkeypatch):
    _write_folder(tmp_path / "ds" / "train")
    _write_folder(tmp_path / "ds" / "test", n_per_class=2)
    train, test, info = build_eval_loaders("imagefolder", root=str(tmp_path / "ds"),
                                           download=False, resize=None, subset=None, batch_size=4,
                                           workers=2, seed=0, device="cpu")
    assert info["n_train"] == 10 and info["n_test"] == 4 and info["shape"] == (3, 12, 12)
    pooled = load_dataset("imagefolder", root=str(tmp_path / "ds"), workers=2)
    monkeypatch.setenv("NAS_CACHE", str(tmp_path / "other_cache"))  # force a fresh decode
    serial = load_dataset("imagefolder", root=str(tmp_path / "ds"), workers=0)
    assert torch.equal(serial.images, pooled.images) and torch.equal(serial.labels, pooled.labels)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("imagefolder", root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_dataset("imagefolder", root=str(tmp_path / "empty"))
    _write_folder(tmp_path / "only_train")
    with pytest.raises(DataError, match="test/"):
        load_dataset("imagefolder", root=str(tmp_path / "only_train"), split="test")
    (tmp_path / "only_train" / "dog" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not an image"):
        load_dataset("imagefolder", root=str(tmp_path / "only_train"))
    _write_folder(tmp_path / "broken")
    (tmp_path / "broken" / "dog" / "0.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read image") as e:
        load_dataset("imagefolder", root=str(tmp_path / "broken"))
    assert "\n" not in str(e.value)


def test_imagefolder_tarball(tmp_path):
    import tarfile

    _write_folder(tmp_path / "src" / "wrapped" / "train")
    archive = tmp_path / "ds.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "src" / "wrapped", arcname="wrapped")
    d = load_dataset("imagefolder", root=str(archive))
    assert len(d) == 10 and d.classes == ["cat", "dog"]
    assert len(list((tmp_path / "cache" / "extract").iterdir())) == 1


def test_cifar_missing_gives_data_error(tmp_path):
    with pytest.raises(DataError, match="data.root") as e:
        load_dataset("cifar10", root=str(tmp_path), download=False)
    assert "\n" not in str(e.value)


def test_search_loaders_on_digits():
    train, val, info = build_search_loaders("digits", root=None, download=False, resize=None,
                                            subset=200, train_portion=0.5, batch_size=32,
                                            workers=0, seed=0, device="cpu")
    assert info["num_classes"] == 10 and info["shape"] == (3, 8, 8)
    assert info["n_train"] == info["n_val"] == 100 and len(train) == len(val) == 4
    x, y = next(iter(val))
    assert x.shape == (32, 3, 8, 8) and y.shape == (32,)
    assert not _same(_epoch(train)[:1], _epoch(val)[:1])
