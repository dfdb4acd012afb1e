"""Datasets as whole uint8 tensors: sklearn digits, CIFAR-10/100 and folders of class subfolders.

Every entry of :data:`DATASETS` has the same signature and returns an :class:`ImageSet` holding
the complete split in memory as ``uint8 [N, 3, H, W]``; batching, augmentation and normalisation
happen later on the tensor (see :mod:`nas.data.loader`). The image sets used for NAS searches
(CIFAR-sized, at most a few hundred MB as uint8) fit in memory, which makes per-image PIL work in
the training loop unnecessary.

``mean``/``std`` are computed from the images of the returned set (per channel, in [0, 1] units),
except for cifar10/cifar100, which use the published constants of the DARTS/NB201 code. The
loader builders normalise every split with the *train* split's constants.
"""
from __future__ import annotations

import errno
import hashlib
import inspect
import multiprocessing
import os
import shutil
import signal
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple
from urllib.error import URLError

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError, storage_error
from ..options import option
from .registry import DATASETS, register_dataset
from .sets import ImageSet, channel_stats, stratified_subset  # noqa: F401  (the names data readers import)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif",
                    ".tiff")
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0  # fixed, so that "test" stays held out whatever the run seed is
_CHUNK = 4096  # images per chunk in float work on whole datasets (bounds temporary memory)


def cache_dir() -> Path:
    return Path(os.environ.get("NAS_CACHE") or Path.home() / ".cache" / "nas")


def load_dataset(name: str, *, root: Optional[str] = None, download: bool = False,
                 resize: Optional[int] = None, subset: Optional[int] = None, split: str = "train",
                 seed: int = 0, workers: int = 0, stream: bool = False, options: Any = None) -> Any:
    """Load one split of a registered dataset; ``subset`` keeps that many images, class-balanced.

    An entry returns an :class:`ImageSet`, or any torchvision-style dataset, which is then decoded
    into one (or, with ``stream``, read batch by batch: :mod:`nas.data.stream`). ``stream`` is
    passed on to the entries that take it (``imagefolder``); ``options``, an instance of the
    options the entry declares (``register_dataset(..., options=...)``), to an entry that declares
    them (default: the declared defaults)."""
    if split not in ("train", "test"):
        raise ConfigError(f"data split must be 'train' or 'test', got '{split}'")
    if resize is not None and resize < 1:
        raise ConfigError(f"data.resize must be a positive image size or null, got {resize}")
    if subset is not None and subset < 1:
        raise ConfigError(f"data.subset must be a positive number of images or null, got {subset}")
    from .stream import dataset_source
    fn = DATASETS.get(name, "data.dataset")
    kw = dict(root=root, download=download, resize=resize, subset=subset, split=split, seed=seed, workers=workers)
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    if "stream" in params or takes_any:
        kw["stream"] = stream
    declared = getattr(fn, "Options", None)
    if declared is not None and ("options" in params or takes_any):
        kw["options"] = options if options is not None else declared()
    out = fn(**kw)
    if isinstance(out, ImageSet):
        return out
    return dataset_source(out, stream=stream, resize=resize, subset=subset, seed=seed, workers=workers)


def require_classes(labels: Optional[torch.Tensor], classes: Sequence[str], dataset: str) -> None:
    """A one-line DataError unless the labels hold at least two classes: with one, every loss is
    0 and every accuracy 100 %, and a search would "derive" its random initialisation. Without
    ``labels`` (a streamed dataset that does not list them) the ``classes`` found count."""
    if labels is None:
        present, found = len(classes), list(classes)
    else:
        found = [classes[i] if 0 <= i < len(classes) else i for i in torch.unique(labels).tolist()]
        present = len(found)
    if present < 2:
        names = ", ".join(map(str, found[:3])) or "none"
        raise DataError(f"data.dataset={dataset}: its training data holds {present} class"
                        f"{'' if present == 1 else 'es'} ({names}) but a classifier needs at least 2; "
                        f"check data.root (one subfolder per class), data.subset or the dataset's options")


def resize_u8(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-2:] == (size, size):
        return images
    out = [F.interpolate(c.float(), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).round_().clamp_(0, 255).to(torch.uint8)
           for c in images.split(_CHUNK)]
    return torch.cat(out)


def _finish(images: torch.Tensor, labels: torch.Tensor, classes: List[str], *,
            resize: Optional[int], subset: Optional[int], seed: int,
            stats: Optional[Tuple[tuple, tuple]] = None) -> ImageSet:
    # subset first: resizing and statistics then only touch what is kept
    keep = stratified_subset(labels, subset, seed)
    if keep.numel() < labels.numel():
        images, labels = images[keep], labels[keep]
    if resize is not None:
        images = resize_u8(images, resize)
    mean, std = stats if stats is not None else channel_stats(images)
    return ImageSet(images.contiguous(), labels.to(torch.int64), list(classes), mean, std)


@DATASETS.register("digits")
def _digits(*, root, download, resize, subset, split, seed, workers) -> ImageSet:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes; no download), split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()  # bundled with scikit-learn: works offline
    x = torch.from_numpy(d.images).mul(255 / 16).round().clamp(0, 255).to(torch.uint8)
    x = x[:, None].expand(-1, 3, -1, -1)                                     # [N, 3, 8, 8]
    y = torch.from_numpy(d.target).to(torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    n_test = int(len(y) * DIGITS_TEST_FRACTION)
    idx = perm[n_test:] if split == "train" else perm[:n_test]
    return _finish(x[idx], y[idx], [str(c) for c in d.target_names], resize=resize,
                   subset=subset, seed=seed)


def _cifar(name: str, root: Optional[str], download: bool, split: str):
    from torchvision import datasets

    cls, folder = {"cifar10": (datasets.CIFAR10, "cifar-10-batches-py"),
                   "cifar100": (datasets.CIFAR100, "cifar-100-python")}[name]
    where = Path(root).expanduser() if root else cache_dir() / "datasets"
    hint = (f"set data.root=<folder containing {folder}> or data.download=true (needs internet), "
            "or use data.dataset=imagefolder with data.root=<folder of class subfolders>")
    if not download and not (where / folder).is_dir():
        raise DataError(f"{name} not found under {where}; {hint}")
    try:
        ds = cls(str(where), train=split == "train", download=download)
    except (URLError, OSError, RuntimeError, ValueError, EOFError, KeyError) as e:
        why = " ".join(str(e).split())[:200]
        raise DataError(f"{name} could not be loaded from {where} ({type(e).__name__}: {why}); "
                        f"{hint}") from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # NHWC -> NCHW
    return images, torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes)


@DATASETS.register("cifar10")
def _cifar10(*, root, download, resize, subset, split, seed, workers) -> ImageSet:
    """CIFAR-10 through torchvision (``data.root``, or ``data.download=true`` with internet)."""
    x, y, classes = _cifar("cifar10", root, download, split)
    return _finish(x, y, classes, resize=resize, subset=subset, seed=seed,
                   stats=(CIFAR10_MEAN, CIFAR10_STD))


@DATASETS.register("cifar100")
def _cifar100(*, root, download, resize, subset, split, seed, workers) -> ImageSet:
    """CIFAR-100 through torchvision (``data.root``, or ``data.download=true`` with internet)."""
    x, y, classes = _cifar("cifar100", root, download, split)
    return _finish(x, y, classes, resize=resize, subset=subset, seed=seed,
                   stats=(CIFAR100_MEAN, CIFAR100_STD))


# --- imagefolder: <root>/<class>/<image> or <root>/{train,test}/<class>/<image>, or a tarball ---

_IF_HINT = "set data.root=<folder of class subfolders, or with train/ and test/ ones, or a .tar.gz>"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def _extract(archive: Path) -> Path:
    """Extract ``archive`` once into the cache, keyed by its path, size and mtime."""
    st = archive.stat()
    key = hashlib.sha1(f"{archive}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    dest = cache_dir() / "extract" / key
    if dest.is_dir():
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(dest.parent)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".tmp-{os.getpid()}-"))
    except OSError as e:
        raise storage_error(e, dest.parent, "extract the archive into") from None
    try:
        with tarfile.open(archive) as tf:
            tf.extractall(tmp, filter="data")
        os.replace(tmp, dest)  # a half-extracted folder is never visible under dest
    except BaseException as e:  # a signal too: a half-extracted folder must not stay in the cache
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(e, Exception):
            raise
        if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
            raise storage_error(e, dest.parent, "extract the archive into") from None
        if not dest.is_dir():  # else: a concurrent run finished the same extraction first
            # tarfile, gzip and zlib each have their own error types
            raise DataError(f"cannot extract {archive} ({_one_line(e)}); "
                            f"check the archive or {_IF_HINT}") from None
    return dest


_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM)


def _remove_orphans(folder: Path) -> None:
    """Remove ``.tmp-<pid>-*`` extraction folders and cache files whose process is gone (killed by
    SIGKILL or a power cut, when no cleanup could run); those of running writers stay."""
    for p in folder.glob(".tmp-*-*"):
        pid = p.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _unwrap(folder: Path) -> Path:
    # archives usually wrap everything in one top folder (name/train/...); step into it
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].name in ("train", "test"):
            return folder
        folder = entries[0]


def _split_dir(root: Path, split: str) -> Path:
    if (root / split).is_dir():
        return root / split
    if split == "train" and not (root / "test").is_dir():
        return root
    if split == "test":
        raise DataError(f"{root} has no test/ folder for the held-out images; put them in "
                        f"{root}/test/<class>/ and the training images in {root}/train/<class>/")
    raise DataError(f"{root} has test/ but no train/ folder; put the training images in "
                    f"{root}/train/<class>/")


def _class_dirs(folder: Path) -> List[Path]:
    dirs = sorted(Path(e.path) for e in os.scandir(folder)
                  if e.is_dir() and not e.name.startswith("."))
    if not dirs:
        what = "holds no class subfolders" if any(folder.iterdir()) else "is empty"
        raise DataError(f"{folder} {what}; expected {folder}/<class>/<image>.jpg ({_IF_HINT})")
    return dirs


def _list_images(class_dirs: Sequence[Path]) -> Tuple[List[str], torch.Tensor]:
    paths: List[str] = []
    labels: List[int] = []
    for k, c in enumerate(class_dirs):
        n0 = len(paths)
        for top, subdirs, files in os.walk(c, followlinks=True):
            subdirs[:] = sorted(s for s in subdirs if not s.startswith("."))
            for f in sorted(files):
                if f.startswith("."):
                    continue
                if not f.lower().endswith(IMAGE_EXTENSIONS):
                    raise DataError(f"{os.path.join(top, f)} is not an image "
                                    f"({'/'.join(IMAGE_EXTENSIONS)}); move it out of the class "
                                    f"folders of {c.parent}")
                paths.append(os.path.join(top, f))
        if len(paths) == n0:
            raise DataError(f"class folder {c} has no images; add images or remove the folder")
        labels += [k] * (len(paths) - n0)
    return paths, torch.tensor(labels, dtype=torch.int64)


# Pillow modes of 16-bit (and 32-bit integer) grayscale, which ``convert("RGB")`` clips to 255
_WIDE_GRAY = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_rgb(im: "Image.Image") -> "Image.Image":  # noqa: F821
    """RGB with 8 bits per channel. 16-bit grayscale (PNG, TIFF) is scaled by 255/65535 to the
    nearest 8-bit value, ``(v + 128) // 257``; Pillow's own conversion would clip every value
    above 255, so that a 16-bit image reads as almost white."""
    from PIL import Image
    if im.mode not in _WIDE_GRAY:
        return im.convert("RGB")
    a = np.asarray(im).astype(np.int64)
    if im.mode == "I" and (a.min() < 0 or a.max() > 65535):
        raise ValueError(f"32-bit integer pixels ({a.min()}..{a.max()}) are not a 16-bit image")
    return Image.fromarray(((a + 128) // 257).astype(np.uint8), mode="L").convert("RGB")


def _decode(paths: Sequence[str], resize: Optional[int]) -> np.ndarray:
    """Decode to uint8 [n, H, W, 3]; runs in pool workers, so it touches no torch state."""
    from PIL import Image

    out = None
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                if resize is not None:
                    im.draft("RGB", (resize, resize))  # JPEG: decode at a reduced scale, far faster
                im = _to_rgb(im)
                if resize is not None and im.size != (resize, resize):
                    im = im.resize((resize, resize), Image.BILINEAR)
                a = np.asarray(im)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {p} ({_one_line(e)}); delete or replace it"
                            ) from None
        if out is None:
            out = np.empty((len(paths),) + a.shape, dtype=np.uint8)
        elif a.shape != out.shape[1:]:
            raise DataError(f"{p} is {a.shape[1]}x{a.shape[0]} but {paths[0]} is "
                            f"{out.shape[2]}x{out.shape[1]}; set data.resize=<size>")
        out[i] = a
    return out


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group: the parent stops the pool; workers would each
    # print a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_all(paths: List[str], resize: Optional[int], workers: int) -> np.ndarray:
    if workers <= 1 or len(paths) < 2 * workers:
        return _decode(paths, resize)
    chunks = [list(c) for c in np.array_split(np.array(paths, dtype=object), workers * 8) if len(c)]
    with multiprocessing.get_context().Pool(workers, initializer=_ignore_interrupts) as pool:
        parts = pool.starmap(_decode, [(c, resize) for c in chunks])
    for c, part in zip(chunks, parts):
        if part.shape[1:] != parts[0].shape[1:]:
            raise DataError(f"{c[0]} and {chunks[0][0]} differ in size; set data.resize=<size>")
    return np.concatenate(parts)


def _cache_save(path: Path, obj: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(path.parent)
        # concurrent writers each write their own file and rename it over ``path``: the rename is
        # atomic, so a reader sees one whole file (whichever came last), never a mix or a part
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{os.getpid()}-", suffix=".pt")
        os.close(fd)
        try:
            torch.save(obj, tmp)
            os.replace(tmp, path)  # readers never see a partly written file
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError:
        pass  # the cache only saves time: a read-only or full disk must not fail the run


class FolderImages(torch.utils.data.Dataset):
    """An image folder read on demand (``data.stream: true``): ``(RGB PIL image, label)``."""

    def __init__(self, paths: List[str], labels: torch.Tensor, classes: List[str]):
        self.paths, self.targets, self.classes = paths, labels.tolist(), classes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tuple[Any, int]:
        from PIL import Image
        with Image.open(self.paths[i]) as im:
            return im.convert("RGB"), self.targets[i]


@dataclass
class ImageFolderOptions:
    """The ``data.*`` keys of ``imagefolder`` besides every image dataset's."""
    cache: bool = option(True, help="keep the decoded images in the user's cache (NAS_CACHE, default "
                                    "~/.cache/nas) and reuse them while every image file is unchanged; "
                                    "false: decode on every run and write nothing")


def _cache_key(folder: Path, paths: Sequence[str], resize: Optional[int], subset: Optional[int],
               seed: int) -> str:
    """The decoded images' identity: the folder, every image's path, size and modification time
    (an image added, removed, renamed or rewritten makes a new key), the decoder (Pillow's version:
    its JPEG scaling may round differently) and what is decoded (resize, subset)."""
    import PIL
    files = hashlib.sha1()
    files.update("\n".join(paths).encode())
    stats = [os.stat(p) for p in paths]
    files.update("\n".join(f"{st.st_size} {st.st_mtime_ns}" for st in stats).encode())
    # v3: keyed by the files themselves (v2: by the folders' modification times)
    key = repr(("v3", str(folder), files.hexdigest(), PIL.__version__, resize, subset, seed if subset else None))
    return hashlib.sha1(key.encode()).hexdigest()[:20]


def load_imagefolder(*, root, download, resize, subset, split, seed, workers, stream: bool = False,
                     options: Optional[ImageFolderOptions] = None) -> Any:
    """Decode a folder of class subfolders once; later calls load the cached uint8 tensor, which
    equals a fresh decoding exactly (``options.cache``; :func:`_cache_key` says when it is
    stale). With ``stream`` nothing is decoded here: the folder's images are read as batches
    need them."""
    options = options or ImageFolderOptions()
    if root is None:
        raise DataError(f"data.dataset=imagefolder needs a folder: {_IF_HINT}")
    path = Path(root).expanduser().absolute()
    if not path.exists():
        raise DataError(f"data.root: imagefolder root {path} does not exist; {_IF_HINT}")
    if path.is_file():
        if not path.name.lower().endswith((".tar", ".tar.gz", ".tgz")):
            raise DataError(f"{path} is a file, not a folder or .tar/.tar.gz archive; {_IF_HINT}")
        path = _unwrap(_extract(path))
    folder = _split_dir(path, split)
    class_dirs = _class_dirs(folder)
    paths, labels = _list_images(class_dirs)
    if stream:
        return FolderImages(paths, labels, [d.name for d in class_dirs])
    keep = stratified_subset(labels, subset, seed)  # before decoding: decode only what is used
    paths, labels = [paths[i] for i in keep.tolist()], labels[keep]
    cache_file = None
    if options.cache:
        cache_file = cache_dir() / "decoded" / (_cache_key(folder, paths, resize, subset, seed) + ".pt")
        hit = _cache_load(cache_file, labels)
        if hit is not None:
            return hit
    images = torch.from_numpy(_decode_all(paths, resize, workers)).permute(0, 3, 1, 2).contiguous()
    mean, std = channel_stats(images)
    out = ImageSet(images, labels, [d.name for d in class_dirs], mean, std)
    if cache_file is not None:
        _cache_save(cache_file, dict(vars(out)))
    return out


def _cache_load(path: Path, labels: torch.Tensor) -> Optional[ImageSet]:
    """The cached set at ``path``, or None: missing, unreadable (a corrupt or foreign file), or
    not of these images (its labels differ from the listing's)."""
    try:
        out = ImageSet(**torch.load(path, weights_only=True))
    except Exception:
        return None
    if not torch.equal(out.labels, labels) or out.images.dtype != torch.uint8 or len(out) != len(labels):
        return None
    return out


register_dataset("imagefolder", load_imagefolder, options=ImageFolderOptions)
