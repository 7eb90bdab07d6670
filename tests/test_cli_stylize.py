import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from animegan2.cli import main
from animegan2.imageio import DecodedImage, load_image, save_image
from tests.images import jpeg_bytes, png_declaring
from tests.reference import random_state_dict

BAD = {
    "empty.jpg": "empty file (0 bytes)",
    "text.jpg": "not an image (no known image format); check the file",
    "truncated.jpg": "corrupt or truncated image",
    "bomb.png": "refused as a possible decompression bomb",
}


@pytest.fixture
def mixed(tmp_path, testdata):
    """A folder of good and bad files, every kind the issue names."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    with Image.open(testdata / "street.jpg") as street:
        small = street.reduce(8)  # 160 x 84
        exif = small.getexif()
        exif[0x0112] = 8  # shown rotated 90 degrees counter-clockwise
        small.save(folder / "rotated.jpg", exif=exif.tobytes(), icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a JPEG\n")
    (folder / "truncated.jpg").write_bytes(jpeg_bytes((64, 64))[:500])
    (folder / "bomb.png").write_bytes(png_declaring(50_000, 50_000))
    rng = np.random.default_rng(0)
    save_image(DecodedImage(rng.integers(0, 65536, (12, 20, 3), dtype=np.uint16)), folder / "deep.png")
    Image.new("CMYK", (16, 12), (0, 200, 200, 0)).save(folder / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 256, (10, 14, 4), dtype=np.uint8), "RGBA").save(folder / "rgba.png")
    Image.new("P", (9, 9), 3).save(folder / "sub" / "palette.gif")
    Image.new("RGB", (1, 1), (250, 10, 10)).save(folder / "one.png")
    Image.new("L", (7, 5), 90).save(folder / "sub" / "tiny.png")
    return folder


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_mixed_folder_never_stops_and_reports_each_failure(mixed, weights, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["stylize", str(mixed), "-o", str(out), "--weights", weights, "--device", "cpu", "-r", "--suffix", "_a", "--batch-size", "3"])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    failures = [line for line in err.splitlines() if line.startswith("animegan2: failed: ")]
    assert len(failures) == len(BAD)
    for name, reason in BAD.items():
        assert any(line.startswith(f"animegan2: failed: {mixed / name}: {reason}") for line in failures), name
    assert err.splitlines()[-1] == "animegan2: 7 stylized, 0 skipped, 4 failed"
    assert _files(out) == [
        "cmyk_a.jpg", "deep_a.png", "one_a.png", "rgba_a.png", "rotated_a.jpg", "sub/palette_a.png", "sub/tiny_a.png",
    ]  # fmt: skip  -- and no temporary or partial files
    rotated = load_image(out / "rotated_a.jpg")
    assert rotated.pixels.shape == (160, 84, 3) and rotated.icc_profile is not None
    assert load_image(out / "deep_a.png").bit_depth == 16
    rgba = load_image(out / "rgba_a.png")
    assert np.array_equal(rgba.alpha, np.asarray(Image.open(mixed / "rgba.png"))[..., 3])
    assert Image.open(out / "one_a.png").size == (1, 1) and Image.open(out / "sub/tiny_a.png").size == (7, 5)
    assert Image.open(out / "cmyk_a.jpg").mode == "RGB"

    status = main(["stylize", str(mixed), "-o", str(out), "--weights", weights, "--device", "cpu", "-r", "--suffix", "_a", "--skip-existing", "-q"])
    err = capsys.readouterr().err
    assert status == 1 and len(err.splitlines()) == len(BAD)  # quiet: only the failures


def test_existing_outputs_need_overwrite_or_skip(mixed, weights, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["stylize", str(mixed / "one.png"), "-o", str(out), "--weights", weights, "--device", "cpu", "-q"]
    assert main(args) == 0
    before = (out / "one.png").stat().st_mtime_ns
    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--skip-existing"]) == 0 and (out / "one.png").stat().st_mtime_ns == before
    assert main(args + ["--overwrite"]) == 0


def test_globs_single_file_output_and_side_by_side(mixed, weights, tmp_path, capsys):
    common = ["--weights", weights, "--device", "cpu", "-q"]
    assert main(["stylize", str(mixed / "*.png"), "-o", str(tmp_path / "g"), "--format", "webp"] + common) == 1
    assert _files(tmp_path / "g") == ["deep.webp", "one.webp", "rgba.webp"]  # bomb.png failed
    assert main(["stylize", str(mixed / "rgba.png"), "-o", str(tmp_path / "x.png"), "--side-by-side"] + common) == 0
    assert Image.open(tmp_path / "x.png").size == (28, 10)
    assert main(["stylize", str(tmp_path / "nothing*.jpg"), str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "n")] + common) == 1
    err = capsys.readouterr().err
    assert "nothing*.jpg: no file matches this pattern" in err and "missing.jpg: no such file or folder" in err


def test_unwritable_output_directory(mixed, weights, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = ["stylize", str(mixed / "one.png"), str(mixed / "rgba.png"), "--weights", weights, "--device", "cpu", "-q"]
    assert main(args + ["-o", str(blocker / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"animegan2: failed: {mixed / 'one.png'}: {blocker / 'out' / 'one.png'}: cannot write: Not a directory",
        f"animegan2: failed: {mixed / 'rgba.png'}: {blocker / 'out' / 'rgba.png'}: cannot write: Not a directory",
    ]

    # A read-only folder (simulated: permission bits do not stop root).
    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("animegan2.imageio.os.open", denied)
    (tmp_path / "ro").mkdir()
    assert main(args + ["-o", str(tmp_path / "ro")]) == 1
    assert "ro/one.png: cannot write: Permission denied" in capsys.readouterr().err
    assert list((tmp_path / "ro").iterdir()) == []


def test_errors_before_any_file_are_one_line(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert main(["stylize", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "none.pt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("animegan2: error: no weights named") and err.count("\n") == 1


def test_debug_shows_the_traceback_of_each_failure(weights, tmp_path, capsys):
    (tmp_path / "empty.png").write_bytes(b"")
    assert main(["stylize", str(tmp_path / "empty.png"), "-o", str(tmp_path / "o"), "--weights", weights, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "animegan2.errors.ImageError" in err


@pytest.mark.slow
def test_scene_photos_through_the_cli(testdata, weights, tmp_path):
    photos = [str(testdata / "street.jpg"), str(testdata / "alley.jpg")]
    done = subprocess.run([sys.executable, "-m", "animegan2", "stylize"] + photos
                          + ["-o", str(tmp_path), "--weights", weights, "--size", "256", "--device", "cpu", "--keep-color"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "animegan2: 2 stylized, 0 skipped, 0 failed"
    assert Image.open(tmp_path / "street.jpg").size == (1280, 672) and Image.open(tmp_path / "alley.jpg").size == (1536, 992)


def test_stdin_to_stdout(testdata, weights, monkeypatch, capsysbinary):
    photo = io.BytesIO((testdata / "street.jpg").read_bytes())
    photo.name = "<stdin>"  # as the real sys.stdin.buffer is named
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(photo))
    assert main(["stylize", "-", "-o", "-", "--weights", weights, "--device", "cpu", "--max-pixels", "4000", "--format", "png"]) == 0
    captured = capsysbinary.readouterr()
    assert Image.open(io.BytesIO(captured.out)).size == (1280, 672)
    assert b"<stdin>: 1280x672 is over max_pixels=4000; stylized at 87x45" in captured.err


def test_zoo_name_through_the_cli_and_the_one_liner(tmp_path, monkeypatch, capsys):
    import json

    import animegan2
    from tests.manifests import entry
    from tests.weights_server import WeightsServer

    buf = io.BytesIO()
    torch.save(random_state_dict(seed=5), buf)
    body = buf.getvalue()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("ANIMEGAN2_OFFLINE", raising=False)
    Image.new("RGB", (12, 9), (40, 80, 120)).save(tmp_path / "p.jpg")
    with WeightsServer() as server:
        url = server.add("/toon.pt", body)
        (tmp_path / "manifest.json").write_text(json.dumps({"schema": 1, "weights": {"toon": entry([url], body, aliases=["toonish"])}}))
        monkeypatch.setenv("ANIMEGAN2_MANIFEST", str(tmp_path / "manifest.json"))
        assert main(["stylize", str(tmp_path / "p.jpg"), "-o", str(tmp_path / "out"), "--style", "toonish", "--device", "cpu", "-q"]) == 0
        assert animegan2.stylize(tmp_path / "p.jpg", style="toon", device="cpu", progress=False).size == (12, 9)
        assert server.gets("/toon.pt") == [None]  # downloaded once, then from the verified cache
    assert Image.open(tmp_path / "out" / "p.jpg").size == (12, 9)
