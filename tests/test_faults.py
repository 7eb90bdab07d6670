"""The fault sweep's cases (issue 13, items 5-11): outputs are never lost, runs never replace
each other's files, signals leave no temporary file, bad input is one line, never a traceback.
Downloads and the cache (items 1-4) are tested in test_zoo.py beside the other server faults."""

import errno
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from animegan2 import _atomic, stylize, zoo
from animegan2.cli import main
from animegan2.errors import (
    AnimeGANError,
    ArgumentError,
    ConfigError,
    ImageError,
    MissingDependencyError,
    OutputExistsError,
    WeightsError,
    WriteError,
)
from animegan2.model import Generator
from animegan2.imageio import DecodedImage, load_image, save_image
from animegan2.stylize import Stylizer
from tests.clips import make_clip
from tests.reference import random_state_dict
from tests.toy_training import config as train_config

REPO = Path(__file__).resolve().parents[1]


def _noise_photos(folder: Path, names: list[str], size: tuple[int, int], seed: int) -> Path:
    """PNGs of uniform noise, height x width ``size``, one per name, in a new ``folder``."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
    return folder


@pytest.fixture
def photos(tmp_path):
    return _noise_photos(tmp_path / "photos", [f"img{i}.png" for i in range(3)], (24, 32), seed=0)


def _cli(*args):
    """Start ``python -m animegan2`` in a child process with this checkout on its path."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "animegan2", *args], env=env, stderr=subprocess.PIPE, text=True)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- 5: an output that is the input, or exists ---


def test_video_never_replaces_its_input_nor_an_existing_output(weights, tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", audio=False, n=4)
    original = clip.read_bytes()
    (tmp_path / "link.mp4").symlink_to(clip)
    os.link(clip, tmp_path / "hard.mp4")
    for out in (clip, tmp_path / "link.mp4", tmp_path / "hard.mp4", tmp_path):
        assert main(["video", str(clip), "-o", str(out), "--weights", weights, "-q", "--overwrite"]) == 1
        assert capsys.readouterr().err == f"animegan2: error: {clip}: the output would replace its input; choose another name\n"
    assert clip.read_bytes() == original
    existing = tmp_path / "anime.mp4"
    existing.write_bytes(b"an earlier result")
    args = ["video", str(clip), "-o", str(existing), "--weights", weights, "-q"]
    assert main(args) == 1
    assert capsys.readouterr().err == f"animegan2: error: {existing} already exists; overwrite it or skip existing outputs\n"
    assert main(args + ["--skip-existing"]) == 0 and existing.read_bytes() == b"an earlier result"
    assert main(args + ["--overwrite"]) == 0 and existing.read_bytes()[4:8] == b"ftyp"


def test_convert_export_and_train_export_keep_existing_outputs(weights, tmp_path, capsys):
    existing = tmp_path / "out.safetensors"
    existing.write_bytes(b"keep me")
    for argv in (
        ["convert", str(tmp_path / "ckpt"), "-o", str(existing)],
        ["export", "--weights", weights, "--onnx", str(existing)],
        ["export", "--weights", weights, "--torchscript", str(existing)],
        ["train", "export", str(tmp_path / "run"), "-o", str(existing)],
    ):
        assert main(argv) == 1, argv
        assert capsys.readouterr().err == f"animegan2: error: {existing} already exists; overwrite it or skip existing outputs\n"
        assert main(argv + ["--skip-existing", "-q"]) == 0
    assert existing.read_bytes() == b"keep me"
    assert main(["export", "--weights", weights, "--torchscript", weights, "--overwrite"]) == 1
    assert "the output would replace its input" in capsys.readouterr().err
    assert main(["export", "--weights", weights, "--torchscript", str(existing), "--overwrite", "--size", "16", "16", "-q"]) == 0
    torch.jit.load(str(existing))


# --- 6: the final step refuses to replace ---


def test_a_file_written_meanwhile_by_another_run_is_not_replaced(photos, tmp_path):
    out = tmp_path / "out"
    other_run = {}

    class Racing(Stylizer):
        def stylize_decoded(self, images, labels=None):
            for src in labels:  # another run finishes these names while this one computes
                dst = out / Path(src).name
                dst.parent.mkdir(exist_ok=True)
                dst.write_bytes(other_run.setdefault(dst.name, f"other run's {dst.name}".encode()))
            return super().stylize_decoded(images, labels)

    jobs = [(p, out / p.name) for p in sorted(photos.iterdir())]
    racing = Racing(torch.nn.Identity(), device="cpu", progress=False)
    report = racing.stylize_files(jobs)
    assert [reason for _, reason, _ in report.failed] == [
        f"{dst} already exists (another run wrote it meanwhile); it was left as it is" for _, dst in jobs
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == other_run
    for p in out.iterdir():
        p.unlink()
    report = racing.stylize_files(jobs, skip_existing=True)  # the other run's files count as done
    assert len(report.skipped) == 3 and not report.failed and not report.done
    assert {p.name: p.read_bytes() for p in out.iterdir()} == other_run


@pytest.mark.slow
def test_two_concurrent_runs_write_each_name_once(tmp_path):
    photos = _noise_photos(tmp_path / "photos", [f"{i:02d}.png" for i in range(12)], (32, 32), seed=1)
    runs = []
    for seed in (1, 2):
        w = tmp_path / f"w{seed}.pt"
        torch.save(random_state_dict(seed=seed), w)
        runs.append(_cli("stylize", str(photos), "-o", str(tmp_path / "out"), "--weights", str(w), "--device", "cpu"))
    errs = [run.communicate(timeout=300)[1] for run in runs]
    counts = [int(err.splitlines()[-1].split()[1]) for err in errs]  # "animegan2: N stylized, ..."
    assert sum(counts) == 12, errs  # no name written twice
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in photos.iterdir())
    assert all("Traceback" not in err for err in errs)


# --- 7: names stay inside -o ---


def test_suffix_cannot_leave_the_output_folder(photos, weights, tmp_path, capsys):
    out = tmp_path / "a" / "b" / "out"
    argv = ["stylize", str(photos), "-o", str(out), "--weights", weights, "--suffix", "/../../x", "-q"]
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        "animegan2: error: --suffix '/../../x' would leave the output folder: give letters to append, e.g. _anime\n"
    )
    assert not (tmp_path / "a").exists()


# --- 8: signals, stale temporary files, --resume ---


@pytest.mark.slow
def test_sigterm_mid_run_leaves_no_temporary_file(photos, weights, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # the child stalls in its first file's fsync, temporary file open, until the signal comes
    stall = "import os, sys, time; os.fsync = lambda fd: time.sleep(120); from animegan2.cli import main; sys.exit(main())"
    run = subprocess.Popen(
        [sys.executable, "-c", stall, "stylize", str(photos), "-o", str(out), "--weights", weights, "-q"],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.iterdir()) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    (partial,) = out.iterdir()
    assert partial.name.startswith(".img0.png.animegan2-") and run.poll() is None
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert (run.returncode, err) == (143, "animegan2: terminated\n")
    assert list(out.iterdir()) == []


def test_stale_temporary_files_of_dead_runs_are_removed_on_the_next_run(photos, weights, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead, alive = _dead_pid(), os.getppid()
    stale = out / f".img0.png.animegan2-{dead}-0123abcd.tmp.png"
    running = out / f".img1.png.animegan2-{alive}-0123abcd.tmp.png"  # another run's, still working
    mine = out / "notes.tmp"
    for path in (stale, running, mine):
        path.write_bytes(b"x")
    _atomic._swept.clear()
    assert main(["stylize", str(photos), "-o", str(out), "--weights", weights, "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["img0.png", "img1.png", "img2.png", running.name, mine.name])


@pytest.mark.slow
def test_resume_after_a_kill_before_the_first_checkpoint(dataset, tmp_path, monkeypatch, caplog):
    from animegan2.train import trainer

    out = tmp_path / "run"

    def killed(obj, path):
        (path.parent / f".{path.name}.animegan2-{_dead_pid()}-0123abcd.tmp.pt").write_bytes(b"half a checkpoint")
        raise SystemExit(137)  # as SIGKILL would stop it, mid-write

    with monkeypatch.context() as m:
        m.setattr(trainer, "_save_torch", killed)
        with pytest.raises(SystemExit):
            trainer.train(train_config(dataset, out, max_steps=1, epochs=1, init_epochs=1), progress=False)
    assert sorted(p.name for p in out.iterdir() if p.is_file())[0].startswith(".checkpoint.pt.animegan2-")
    _atomic._swept.clear()
    cfg = trainer.resolve_config(resume=out)
    with caplog.at_level(logging.WARNING, logger="animegan2"):
        trainer.train(cfg, resume=True, progress=False)
    assert f"{out} has no checkpoint yet: starting the run from step 0" in caplog.messages
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# --- 9, 10: metadata and weights that cannot be right ---


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"norm_eps": "abc"}, "its metadata norm_eps='abc' is not a positive number"),
        ({"norm_eps": "nan"}, "its metadata norm_eps='nan' is not a positive number"),
        ({"norm_eps": "-1"}, "its metadata norm_eps='-1' is not a positive number"),
        ({"size": "big"}, "its metadata size='big' is not a positive whole number of pixels"),
        ({"upsample": "nope"}, "its metadata upsample='nope' is not one of tf, align_corners, half_pixel"),
    ],
)
def test_invalid_metadata_is_one_line(photos, tmp_path, capsys, metadata, message):
    path = tmp_path / "w.safetensors"
    save_file(random_state_dict(seed=1), path, metadata={"architecture": "animeganv2", **metadata})
    assert main(["stylize", str(photos), "-o", str(tmp_path / "out"), "--weights", str(path)]) == 1
    assert capsys.readouterr().err == f"animegan2: error: {path}: {message}; fix the file's metadata or re-export it\n"
    assert not (tmp_path / "out").exists()


def test_non_finite_weights_are_refused(tmp_path):
    state = random_state_dict(seed=1)
    state["block_c.5.1.weight"].view(-1)[3] = math.nan
    state["out_layer.0.weight"].view(-1)[0] = math.inf
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"nan.pt: tensor block_c.5.1.weight holds 1 NaN or infinite value\(s\); these weights are broken"):
        zoo.load_generator(path)


# --- 9: the data tools ---


def test_data_tools_output_that_is_a_file_and_a_decompression_bomb(tmp_path, capsys, monkeypatch):
    frames = tmp_path / "style"
    frames.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(frames / "ok.png")
    Image.new("L", (2000, 1500)).save(frames / "bomb.png")  # 3 Mpx of zeros: a few KB
    afile = tmp_path / "afile"
    afile.write_text("")
    for action in ("smooth", "prepare"):
        assert main(["data", action, str(frames), "-o", str(afile)]) == 1
        assert capsys.readouterr().err == (
            f"animegan2: error: -o {afile} is a file, but the outputs need a folder: give a folder (it is created if missing)\n"
        )
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    for action, option in (("smooth", ["--workers", "1"]), ("prepare", ["--size", "16"])):
        assert main(["data", action, str(frames), "-o", str(tmp_path / action), "-q"] + option) == 0
        err = capsys.readouterr().err.splitlines()
        assert err[0] == "1 written, 1 skipped"
        assert err[1].startswith(f"  skipped {frames / 'bomb.png'}: {frames / 'bomb.png'}: refused as a possible decompression bomb (")
        assert [p.name for p in (tmp_path / action).iterdir()] == ["ok.png" if action == "smooth" else "ok.jpg"]


# --- 11: smaller things ---


def test_animated_gif_says_only_its_first_frame_is_used(weights, tmp_path, capsys):
    frames = [Image.new("RGB", (16, 16), (i * 60, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    assert main(["stylize", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "out"), "--weights", weights]) == 0
    assert (
        f"animegan2: {tmp_path / 'anim.gif'} is animated (3 frames): only its first frame is used; "
        f"`animegan2 video {tmp_path / 'anim.gif'} -o OUT.gif` stylizes every frame"
    ) in capsys.readouterr().err.splitlines()


@pytest.mark.slow
def test_special_files_and_odd_names_are_reported_one_line_each(photos, weights, tmp_path, capsys):
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(photos / "pipe.png")
    odd = photos / "two\nlines.png"
    odd.write_bytes(b"not an image")
    assert main(["stylize", str(tmp_path / "zero.png"), str(photos), "-o", str(tmp_path / "out"), "--weights", weights]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-4:] == [
        f"animegan2: failed: {tmp_path / 'zero.png'}: not a regular file but a device, pipe or socket; give an image file",
        f"animegan2: failed: {photos / 'pipe.png'}: not a regular file but a device, pipe or socket; give an image file",
        f"animegan2: failed: {photos}/two\\nlines.png: not an image (no known image format); check the file",
        "animegan2: 3 stylized, 0 skipped, 3 failed",
    ]


def test_output_folder_that_is_a_file_fails_before_any_work(photos, weights, tmp_path, capsys, monkeypatch):
    import animegan2.stylize

    afile = tmp_path / "afile"
    afile.write_text("mine")
    monkeypatch.setattr(animegan2.stylize.Stylizer, "__init__", lambda *a, **k: pytest.fail("the model was loaded"))
    for command in ("stylize", "face"):
        assert main([command, str(photos), "-o", str(afile), "--weights", weights]) == 1
        assert capsys.readouterr().err == (
            f"animegan2: error: -o {afile} is a file, but the outputs need a folder: give a folder (it is created if missing)\n"
        )
    assert afile.read_text() == "mine"


@pytest.mark.slow
def test_face_takes_folders_recursion_and_globs(photos, weights, tmp_path, capsys):
    (photos / "sub").mkdir()
    Image.new("RGB", (20, 20), (90, 90, 90)).save(photos / "sub" / "deep.png")
    common = ["--weights", weights, "--size", "32", "--on-missing", "center", "-q"]
    assert main(["face", str(photos), "-o", str(tmp_path / "a"), "-r"] + common) == 0
    assert sorted(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*.png")) == [
        "img0.png", "img1.png", "img2.png", "sub/deep.png",
    ]  # fmt: skip
    assert main(["face", str(photos / "img[01].png"), "-o", str(tmp_path / "b")] + common) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["img0.png", "img1.png"]


def test_the_final_step_refuses_to_replace_also_without_hard_links(tmp_path, monkeypatch):
    dest = tmp_path / "a.txt"
    dest.write_text("first")
    with pytest.raises(FileExistsError):
        _atomic.write_bytes_atomic(dest, b"second", replace=False)
    monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(PermissionError(1, "no hard links here")))
    with pytest.raises(FileExistsError):
        _atomic.write_bytes_atomic(dest, b"second", replace=False)
    assert dest.read_text() == "first" and os.listdir(tmp_path) == ["a.txt"]
    _atomic.write_bytes_atomic(tmp_path / "b.txt", b"new", replace=False)
    assert (tmp_path / "b.txt").read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]
    save_image(DecodedImage(np.zeros((2, 2, 3), np.uint8)), tmp_path / "b.png", overwrite=False)
    with pytest.raises(OutputExistsError, match="b.png already exists"):
        save_image(DecodedImage(np.ones((2, 2, 3), np.uint8)), tmp_path / "b.png", overwrite=False)
    assert load_image(tmp_path / "b.png").pixels.max() == 0  # the first one's


def test_every_failed_write_is_one_write_error_that_is_also_what_it_was(tmp_path):
    """ConfigError (convert), ImageError (images), WeightsError (the cache) and OSError (exports,
    training) were the types of a failed write, module by module: WriteError is each of them."""
    dest = tmp_path / "missing" / "w.bin"
    with pytest.raises(WriteError) as info:
        _atomic.write_bytes_atomic(dest, b"x")
    exc = info.value
    assert all(isinstance(exc, kind) for kind in (ConfigError, ImageError, WeightsError, OSError))
    assert (exc.errno, exc.filename, exc.reason) == (errno.ENOENT, str(dest), "No such file or directory")
    assert str(exc) == f"cannot write {dest}: No such file or directory; check that its folder exists, is writable and has room"
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match=re.escape(f"cannot write {blocker / 'w.bin'}: {blocker} is a file, not a folder")):
        _atomic.write_bytes_atomic(blocker / "w.bin", b"x", parents=True)
    with pytest.raises(WriteError, match="Not a directory"):
        _atomic.write_bytes_atomic(blocker / "sub" / "w.bin", b"x", parents=True)
    (tmp_path / "dir").mkdir()
    with pytest.raises(WriteError, match="Is a directory"):  # publishing over a folder fails at the rename
        _atomic.write_bytes_atomic(tmp_path / "dir", b"x")
    assert sorted(os.listdir(tmp_path)) == ["a_file", "dir"] and os.listdir(tmp_path / "dir") == []


def test_a_bad_argument_value_is_ours_and_a_value_error():
    with pytest.raises(ArgumentError, match="upsample must be one of") as info:
        Generator(upsample="bicubic")
    assert isinstance(info.value, ValueError) and isinstance(info.value, AnimeGANError)


def test_the_cached_stylizer_is_built_once_and_its_own_type_errors_pass_through(monkeypatch):
    built = []

    class Fake:
        def __init__(self, style, **kwargs):
            built.append((style, kwargs))
            if "bogus" in kwargs:
                raise TypeError("Stylizer() got an unexpected keyword argument 'bogus'")

    monkeypatch.setattr(stylize, "Stylizer", Fake)
    stylize._shared_stylizer.cache_clear()
    try:
        with pytest.raises(TypeError, match="bogus"):
            stylize._stylizer("hayao", {"bogus": 1})
        assert len(built) == 1  # not built a second time by a fall-back
        assert stylize._stylizer("hayao", {"size": 64}) is stylize._stylizer("hayao", {"size": 64})  # cached
        photos = ["a.jpg", "b.jpg"]  # a list is unhashable: built, not cached
        assert stylize._stylizer("hayao", {"calibration": photos}) is not stylize._stylizer("hayao", {"calibration": photos})
        assert len(built) == 4
    finally:
        stylize._shared_stylizer.cache_clear()


def test_a_missing_haar_cascade_is_an_installation_problem(monkeypatch):
    import cv2

    from animegan2.face import detect_face

    class Empty:
        def __init__(self, path):
            pass

        def empty(self):
            return True

    monkeypatch.setattr(cv2, "CascadeClassifier", Empty)
    with pytest.raises(MissingDependencyError, match=r"haarcascade_frontalface_default\.xml is missing .*animegan2\[face\]"):
        detect_face(np.zeros((64, 64, 3), np.uint8))

