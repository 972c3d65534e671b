"""`data.name=folder`: a folder of images read like the IDX files, cached, refused in one line when unfit,
and trained grey or RGB at 28, 32 and 64 px on 2 processes with exact resume."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, assert_same_tensors, load_weights, run_probe, run_ranks, run_train, write_png
from dcgan import processes
from dcgan.commands import cli
from dcgan.config import DataConfig
from dcgan.data import ImageStore, building, decoding, ensure_dataset, fingerprint, folder, load_dataset, placement
from dcgan.data import cache as cache_files
from dcgan.errors import UserError

FOLDER = ("data.name=folder", "data.download=false")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh decoded-image cache for this test (subprocesses inherit it)."""
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "folders"


def test_png_folder_loads_pixel_for_pixel_equal_to_the_idx_files(fashion_pngs, cache):
    root, idx = fashion_pngs
    cfg = DataConfig(name="folder", root=str(root))  # 28 px, 1 channel: the defaults
    ensure_dataset(cfg)
    loaded = load_dataset(cfg)
    order = torch.sort(idx.labels, stable=True).indices  # files sort by class folder, then index
    assert loaded.images.shape == (2000, 1, 28, 28) and loaded.images.dtype == torch.uint8
    assert torch.equal(loaded.images, idx.images[order])
    assert torch.equal(loaded.labels, idx.labels[order]) and loaded.classes == tuple("0123456789")


def test_images_are_converted_resized_on_the_short_side_and_centre_cropped(tmp_path, cache):
    wide = np.zeros((32, 64, 3))
    wide[:, :16], wide[:, 16:48], wide[:, 48:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)  # red | green | blue
    write_png(tmp_path / "images" / "wide.png", wide)
    write_png(tmp_path / "images" / "deep" / "tall.png", np.full((90, 45), 200))  # grey, found recursively
    cfg = DataConfig(name="folder", root=str(tmp_path / "images"), image_size=32, channels=3)
    ensure_dataset(cfg)
    data = load_dataset(cfg)
    assert data.images.shape == (2, 3, 32, 32) and data.labels is None and data.classes == ()
    tall, wide_crop = data.images  # sorted: deep/tall.png before wide.png
    assert torch.equal(wide_crop, torch.tensor([0, 255, 0], dtype=torch.uint8)[:, None, None].expand(3, 32, 32))
    assert torch.equal(tall, torch.full((3, 32, 32), 200, dtype=torch.uint8))  # grey becomes RGB


def test_the_cache_is_reused_until_a_file_or_a_setting_changes(tmp_path, cache, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    for i in range(6):
        write_png(tmp_path / "images" / f"{i}.png", rng.integers(0, 256, (40, 50, 3)))
    cfg = DataConfig(name="folder", root=str(tmp_path / "images"), image_size=32, channels=3)
    ensure_dataset(cfg)
    assert "decoded in" in capsys.readouterr().out
    first = load_dataset(cfg).images

    def must_not_decode(*args):
        raise AssertionError("decoded again despite the cache")

    with monkeypatch.context() as patch:
        patch.setattr(decoding, "decode", must_not_decode)
        ensure_dataset(cfg)
        line = capsys.readouterr().out
        assert "6 images, 0 classes, 3x32x32 uint8, 18.0 kB (from the cache" in line
        assert torch.equal(load_dataset(cfg).images, first)  # every rank reads this array
    write_png(tmp_path / "images" / "3.png", rng.integers(0, 256, (40, 50, 3)))  # a file changes
    ensure_dataset(cfg)
    assert "decoded in" in capsys.readouterr().out
    again = load_dataset(cfg).images
    assert torch.equal(again[[0, 1, 2, 4, 5]], first[[0, 1, 2, 4, 5]]) and not torch.equal(again[3], first[3])
    for setting in ({"image_size": 64}, {"channels": 1}, {"skip_bad_images": True}):
        ensure_dataset(DataConfig(**{**vars(cfg), **setting}))
        assert "decoded in" in capsys.readouterr().out, setting
    assert len(list(cache.iterdir())) == 5  # one entry per (files, settings), none left half-written


def test_after_ensure_dataset_the_folder_is_listed_once_and_loads_what_was_prepared(tmp_path, cache, monkeypatch):
    rng = np.random.default_rng(0)
    for i in range(4):
        write_png(tmp_path / "images" / f"{i}.png", rng.integers(0, 256, (40, 50, 3)))
    cfg = DataConfig(name="folder", root=str(tmp_path / "images"), image_size=32, channels=3)
    unprepared_key = fingerprint(cfg)  # no ensure_dataset yet: listed
    ensure_dataset(cfg)
    first = load_dataset(cfg).images
    listed, scan = [], folder.scan
    monkeypatch.setattr(folder, "scan", lambda c: listed.append(c) or scan(c))
    write_png(tmp_path / "images" / "4.png", rng.integers(0, 256, (40, 50, 3)))  # the folder grows meanwhile
    assert torch.equal(load_dataset(cfg).images, first) and fingerprint(cfg) == unprepared_key and not listed
    shutil.rmtree(cache)  # the prepared entry gone: the folder is listed and decoded again, as it is now
    assert len(load_dataset(cfg).images) == 5 and listed == [cfg]


def test_skip_bad_images_counts_and_names_them(tmp_path, cache, capsys):
    for i in range(4):
        write_png(tmp_path / "images" / f"good{i}.png", np.random.default_rng(i).integers(0, 256, (28, 28)))
    png = (tmp_path / "images" / "good0.png").read_bytes()
    for i in range(5):
        (tmp_path / "images" / f"junk{i}.png").write_bytes(b"not an image" if i else png[: len(png) // 2])
    cfg = DataConfig(name="folder", root=str(tmp_path / "images"), skip_bad_images=True)
    ensure_dataset(cfg)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "4 images" in line and "skipped 5 unreadable: junk0.png (image file is truncated)" in line
    assert "junk1.png (not an image Pillow can read)" in line and line.endswith("and 2 more")
    assert load_dataset(cfg).images.shape == (4, 1, 28, 28)


def _mapped_files() -> set[str]:
    return {line.split(maxsplit=5)[5].strip() for line in open("/proc/self/maps") if len(line.split(maxsplit=5)) == 6}


@pytest.mark.parametrize(
    "budget, free, why", [(0.0, None, "data.host_budget_gb=0.0"), (None, 10_000, "the 9.8 kB of free host memory")]
)
def test_images_over_the_host_budget_are_memory_mapped_from_the_cache(tmp_path, cache, monkeypatch, budget, free, why):
    rng = np.random.default_rng(0)
    for i in range(5):
        write_png(tmp_path / "images" / f"{i}.png", rng.integers(0, 256, (40, 40, 3)))
    cfg = DataConfig(name="folder", root=str(tmp_path / "images"), image_size=32, channels=3)
    ensure_dataset(cfg)
    in_memory = load_dataset(cfg)
    assert in_memory.mapped == ""
    if free is not None:
        monkeypatch.setattr(placement, "available_host_bytes", lambda: free)
    mapped = load_dataset(DataConfig(**{**vars(cfg), "host_budget_gb": budget}))
    file = str(next(cache.iterdir()) / cache_files.IMAGES)
    assert mapped.mapped == f"data: 15.0 kB of images exceed {why}: memory-mapped from {file}"
    assert file in _mapped_files() and torch.equal(mapped.images, in_memory.images)
    mapped.images[0] += 1  # copy-on-write: the cache file never changes
    assert torch.equal(load_dataset(cfg).images, in_memory.images)


def test_the_host_budget_counts_one_copy_per_process_of_the_machine():
    quarter, plenty = 2**28, 10 * 2**30  # 256 MB of images; 10 GB free
    assert placement.in_host_memory(quarter, 1.0, sharing=3, available=plenty) == (True, "")
    assert placement.in_host_memory(quarter, 0.5, sharing=3, available=plenty) == (
        False,
        "data: 256.0 MB of images x 3 processes exceed data.host_budget_gb=0.5",
    )
    assert placement.in_host_memory(quarter, None, sharing=3, available=2**29) == (
        False,
        "data: 256.0 MB of images x 3 processes exceed the 512.0 MB of free host memory",
    )


def test_a_partial_cache_left_by_a_crash_is_never_used_and_is_redone(tmp_path, cache, monkeypatch):
    rng = np.random.default_rng(1)
    for i in range(4):
        write_png(tmp_path / "images" / f"{i}.png", rng.integers(0, 256, (28, 28)))
    cfg = DataConfig(name="folder", root=str(tmp_path / "images"))

    def crash(*args):
        raise KeyboardInterrupt  # the run is killed while it decodes

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(building, "decode_rows", crash)
        ensure_dataset(cfg)
    (partial,) = cache.iterdir()
    assert partial.name.startswith(".partial-") and (partial / cache_files.IMAGES).stat().st_size == 4 * 28 * 28
    ensure_dataset(cfg)  # finds the partial entry of this process's interrupted build: removes it, starts again
    assert [p.name for p in cache.iterdir()] == [partial.name.removeprefix(".partial-").split(".")[0]]
    expected = np.stack([np.asarray(Image.open(tmp_path / "images" / f"{i}.png"))[None] for i in range(4)])
    assert np.array_equal(load_dataset(cfg).images.numpy(), expected)


def test_partial_entries_of_builds_still_running_are_left_alone_and_abandoned_ones_removed(
    tmp_path, cache, other_process
):
    """Two runs of a sweep starting on the same new folder each build their own partial entry (the first
    to finish wins); a build never deletes one that another process may still be writing."""
    rng = np.random.default_rng(1)
    for i in range(3):
        write_png(tmp_path / "images" / f"{i}.png", rng.integers(0, 256, (28, 28)))
    cfg = DataConfig(name="folder", root=str(tmp_path / "images"))
    listing = folder.scan(cfg)
    entry = building.Cached(listing, "", listing.content, (), [], {}).entry(cfg)
    here = processes.this_process()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    elsewhere = {**here, "host": "another-node", "pid": 1}
    owners = {
        "running here": {**here, "pid": other_process.pid, "pid_started": processes.process_start(other_process.pid)},
        "ended here": {**here, "pid": int(dead.stdout), "pid_started": 1},
        "elsewhere, fresh": elsewhere,
        "elsewhere, untouched for 2 h": elsewhere,
    }
    for build, owner in owners.items():
        partial = cache_files.partial_path(entry, build)
        partial.mkdir(parents=True)
        (partial / cache_files.OWNER).write_text(json.dumps({"build": build, "rank": 0, **owner}))
        (partial / cache_files.IMAGES).write_bytes(b"\0" * 10)
        if "2 h" in build:
            for path in (partial, *partial.iterdir()):
                os.utime(path, (time.time() - 7200, time.time() - 7200))
    ensure_dataset(cfg)
    left = {p.name for p in cache.iterdir()}
    expected = {cache_files.partial_path(entry, b).name for b in ("running here", "elsewhere, fresh")}
    assert left == {entry.name, *expected}
    assert len(load_dataset(cfg).images) == 3
    # A build that finishes after another one renamed the entry into place gives way and cleans up.
    cache_files.start_partial(entry, (3, 1, 28, 28), "late", 0)
    info = {"source": "", "classes": [], "skipped": [], "settings": {}, "seconds": 0}
    cache_files.finish_partial(entry, "late", np.arange(3), (1, 28, 28), None, info)
    assert not cache_files.partial_path(entry, "late").exists() and len(load_dataset(cfg).images) == 3


def test_machines_that_do_not_share_the_cache_each_build_their_own_entry(tmp_path, fashion_pngs):
    root, _ = fashion_pngs
    proc = run_ranks([str(REPO / "tests" / "helpers" / "cache_probe.py"), str(tmp_path), str(root)], 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert first == second and first["shape"] == [2000, 1, 28, 28]
    assert len(first["cache"]) == 1 and not first["cache"][0].startswith(".partial")  # complete, nothing left
    assert proc.stdout.count("data: decoding 2,000 images") == 2  # each machine's first rank decoded


def test_worker_processes_decode_each_row_into_the_file_and_report_bad_ones(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    for i in range(40):
        write_png(tmp_path / "images" / f"{i:02}.png", rng.integers(0, 256, (30, 20)))
    for i in (7, 31):
        (tmp_path / "images" / f"{i:02}.png").write_bytes(b"junk")
    listing = folder.scan(DataConfig(name="folder", root=str(tmp_path / "images")))
    shape = (40, 1, 16, 16)
    monkeypatch.setattr(decoding, "PROCESSES_FROM", 1)
    monkeypatch.setattr(decoding, "CHUNK", 3)
    results = {}
    for workers in (1, 2):
        target = tmp_path / f"images-{workers}.u8"
        target.write_bytes(bytes(int(np.prod(shape))))
        failed = decoding.decode_rows(listing, range(40), target, shape, "white", True, workers)
        assert failed == [(7, "not an image Pillow can read"), (31, "not an image Pillow can read")]
        results[workers] = np.fromfile(target, np.uint8).reshape(shape)
    assert np.array_equal(results[1], results[2]) and results[2][8].any()
    with pytest.raises(UserError, match=r"^cannot read image .*/07.png \(not an image Pillow can read\); remove"):
        decoding.decode_rows(listing, range(40), tmp_path / "images-2.u8", shape, "white", False, 2)


def test_an_unwritable_cache_says_where_to_put_it(tmp_path, monkeypatch):
    write_png(tmp_path / "images" / "a.png", np.zeros((28, 28)))
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "file"))
    with pytest.raises(UserError) as err:
        ensure_dataset(DataConfig(name="folder", root=str(tmp_path / "images")))
    assert str(err.value).startswith(f"cannot write the decoded-image cache in {tmp_path / 'file' / 'folders'} (")
    assert str(err.value).endswith("); set DCGAN_CACHE to a writable folder")


def test_a_cache_disk_without_room_says_so_and_leaves_nothing(tmp_path, cache, monkeypatch):
    write_png(tmp_path / "images" / "a.png", np.zeros((64, 64, 3)))
    monkeypatch.setattr(cache_files.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    with pytest.raises(UserError) as err:
        ensure_dataset(DataConfig(name="folder", root=str(tmp_path / "images"), image_size=64, channels=3))
    assert str(err.value) == (
        f"the decoded images need 12.0 kB in {cache}, which has 1.0 kB free; "
        "set DCGAN_CACHE to a folder with room, or use part of the images with data.limit"
    )
    assert list(cache.iterdir()) == []


def test_images_over_the_device_budget_stay_in_host_memory(capsys):
    """The meta device stands in for a GPU: only where the images live and where batches go is checked."""
    images = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).view(4, 3, 2, 2)
    kept = ImageStore(images, torch.device("meta"), budget_gb=0, main=True)
    assert kept.index_device.type == "cpu" and "kept in host memory" in capsys.readouterr().out
    batch = kept.batch(torch.tensor([2, 0]))
    assert batch.device.type == "meta" and batch.shape == (2, 3, 2, 2)
    moved = ImageStore(images, torch.device("meta"), budget_gb=1, main=True)
    assert moved.index_device.type == "meta" and capsys.readouterr().out == ""


def _bad_folder(tmp_path, case: str):
    root = tmp_path / "images"
    if case == "missing":
        return root, f"data.root {root} does not exist"
    root.mkdir()
    if case == "empty":
        return root, f"data.root {root} is empty"
    if case == "no images":
        (root / "notes.txt").write_text("no pictures here")
        return root, f"no images (.png, .jpg, .jpeg, .webp, .bmp) found in {root} or its subfolders"
    if case == "empty class":
        write_png(root / "cats" / "a.png", np.zeros((28, 28)))
        (root / "dogs").mkdir()
        return root, f"class folder {root / 'dogs'} holds no images"
    write_png(root / "a.png", np.random.default_rng(0).integers(0, 256, (28, 28)))
    bad, png = root / "b.png", (root / "a.png").read_bytes()
    bad.write_bytes(b"junk" if case == "unreadable" else png[: len(png) // 2])
    reason = "not an image Pillow can read" if case == "unreadable" else "image file is truncated"
    return root, f"cannot read image {bad} ({reason}); remove or replace it, or set data.skip_bad_images=true"


@pytest.mark.parametrize("case", ["missing", "empty", "no images", "empty class", "unreadable", "truncated"])
def test_every_bad_folder_is_one_line_naming_it(tmp_path, cache, case):
    root, message = _bad_folder(tmp_path, case)
    with pytest.raises(UserError) as err:
        ensure_dataset(DataConfig(name="folder", root=str(root)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_bad_folder_stops_training_in_one_line_with_exit_code_2(tmp_path, cache):
    """Through the real entry point: the UserErrors above end as one line on stderr, exit 2."""
    root, message = _bad_folder(tmp_path, "truncated")
    proc = run_train(tmp_path / "run", *FOLDER, f"data.root={root}", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"dcgan: error: {message} to skip unreadable files"
    ]


def _probe(out, *overrides: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """2 real ranks of tests/helpers/dist_probe.py: each rank reports its weights' distance to rank 0's."""
    proc, reports = run_probe(out, *overrides)
    for rank, report in enumerate(reports):
        assert report["rank"] == rank and report["world_size"] == report["dist_world_size"] == 2
        assert report["G_max_diff"] == 0.0 and report["D_max_diff"] == 0.0  # bitwise equal to rank 0
    assert reports[0]["first_real_index"] != reports[1]["first_real_index"]  # each rank its own shard
    return proc, reports


def _rgb(root, size: int) -> tuple[str, ...]:
    return (*FOLDER, f"data.root={root}", f"data.image_size={size}", "data.channels=3", "model.width=8")


@pytest.mark.slow
def test_rgb_folder_at_32_px_trains_on_two_processes_with_equal_weights(tmp_path, cache, fashion_pngs):
    _, reports = _probe(tmp_path, *_rgb(fashion_pngs[0], 32), "train.max_steps=4")
    assert reports[0]["steps"] == 4


@pytest.mark.slow
def test_rgb_folder_at_64_px_on_two_processes_has_equal_weights_and_resumes_bit_identically(
    tmp_path, cache, fashion_pngs
):
    """Stopped mid-epoch and resumed, 2 ranks; evaluation is on but has no network: one line says so."""
    rgb = (*_rgb(fashion_pngs[0], 64), "data.limit=320", "eval.every_epochs=1")  # 10 steps per epoch
    full, split = tmp_path / "full", tmp_path / "split"
    proc, reports = _probe(full, *rgb, "train.max_steps=14")
    assert reports[0]["steps"] == 14 and "into 3.8 MB with 1 thread on each of 2 ranks" in proc.stdout
    assert proc.stdout.count("eval: off, no feature network ships for data.name=folder") == 1
    assert "320 images, 10 classes, 3x64x64 uint8" in proc.stdout
    _probe(split, *rgb, "train.max_steps=6")
    proc, reports = _probe(split, *rgb, "train.max_steps=14", "data.host_budget_gb=0")  # from the map, same batches
    assert "memory-mapped from" in proc.stdout and "at step 6" in proc.stdout and reports[0]["steps"] == 14
    last = "checkpoints/step_0000014"
    for name in ("generator.safetensors", "discriminator.safetensors", "generator_ema.safetensors"):
        assert_same_tensors(load_weights(full / last / name), load_weights(split / last / name))
    assert not (full / "checkpoints" / "best").exists()  # nothing was scored


def test_train_classifier_needs_labels(tmp_path, cache, capsys):
    for i in range(30):
        write_png(tmp_path / "flat" / f"{i}.png", np.full((28, 28), i))
    argv = ["train-classifier", "--dataset", "folder", "--data-root", str(tmp_path / "flat"), "--out", "x.safetensors"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"dcgan: error: dcgan train-classifier needs labelled images: put each class in its own subfolder of "
        f"{tmp_path / 'flat'} (found 0 classes)"
    ]
