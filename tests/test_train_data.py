"""Data tools: edge smoothing, prepare (photos and video), data mean, layout checks."""

import cv2
import numpy as np
import pytest

from animegan2 import cli
from animegan2.errors import ConfigError
from animegan2.train import data
from tests.reference_train import edge_smooth_reference


def crop(testdata, name, size):
    return data.resize_crop(data.read_bgr(testdata / name), size)


def test_edge_smooth_equals_the_per_pixel_reference(testdata):
    for name, size in (("street.jpg", 40), ("face_a.jpg", 33)):
        image = crop(testdata, name, size)
        got, want = data.edge_smooth(image), edge_smooth_reference(image)
        assert (got != image).any()  # there are edges to smooth
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_smooth_folder_multiprocess_skips_corrupt(tmp_path, testdata):
    src, dst = tmp_path / "style", tmp_path / "smooth"
    src.mkdir()
    for i, name in enumerate(("street.jpg", "alley.jpg", "face_b.jpg")):
        cv2.imwrite(str(src / f"{i}.png"), crop(testdata, name, 32))
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    report = data.smooth_folder(src, dst, workers=2, progress=False)
    assert report.written == 3 and [p.name for p, _ in report.skipped] == ["broken.jpg"]
    assert "broken.jpg" in report.summary()
    for i in range(3):
        assert np.array_equal(cv2.imread(str(dst / f"{i}.png")), data.edge_smooth(cv2.imread(str(src / f"{i}.png"))))
    assert sorted(p.name for p in dst.iterdir()) == ["0.png", "1.png", "2.png"]  # no temp files left


def test_prepare_photos_resizes_and_centre_crops(tmp_path, testdata):
    src = tmp_path / "photos"
    src.mkdir()
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 200  # the centre square after resizing to 20 high
    cv2.imwrite(str(src / "wide.png"), wide)
    (src / "bad.png").write_bytes(b"garbage")
    report = data.prepare(src, tmp_path / "out", size=16, progress=False)
    assert report.written == 1 and len(report.skipped) == 1
    out = cv2.imread(str(tmp_path / "out" / "wide.jpg"))
    assert out.shape == (16, 16, 3)
    assert abs(int(out[8, 8, 0]) - 200) <= 3


def test_prepare_video_takes_frames_at_the_chosen_rate(tmp_path):
    import av
    video = tmp_path / "film.mp4"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):  # 3 seconds at 10 fps
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 8, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    report = data.prepare(video, tmp_path / "frames", size=32, fps=2.0, progress=False)
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert report.written == 6 and names == [f"film_{i:06d}.jpg" for i in range(6)]
    levels = [int(cv2.imread(str(tmp_path / "frames" / n))[16, 16].mean()) for n in names]
    assert levels == sorted(levels) and abs(levels[1] - 5 * 8) <= 4  # frame at t=0.5 s is frame 5


def test_data_mean_hand_computed(tmp_path):
    a = np.zeros((4, 4, 3), np.uint8)
    a[...] = (10, 20, 60)  # B, G, R
    b = np.zeros((2, 2, 3), np.uint8)
    b[...] = (30, 40, 20)
    cv2.imwrite(str(tmp_path / "a.png"), a)
    cv2.imwrite(str(tmp_path / "b.png"), b)
    (tmp_path / "c.jpg").write_bytes(b"")
    adjust, report = data.data_mean(tmp_path, progress=False)
    # channel means B 20, G 30, R 40; their mean 30 -> (10, 0, -10)
    assert adjust == pytest.approx((10.0, 0.0, -10.0))
    assert report.written == 2 and report.skipped[0][0].name == "c.jpg"


def test_data_cli_prints_the_mean_and_reports_skips(tmp_path, capsys):
    a = np.zeros((4, 4, 3), np.uint8)
    a[...] = (10, 20, 60)
    cv2.imwrite(str(tmp_path / "a.png"), a)
    (tmp_path / "c.jpg").write_bytes(b"")
    assert cli.main(["data", "mean", "--quiet", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out == "20.0000 10.0000 -30.0000\n" and "skipped" in err and "c.jpg" in err
    assert cli.main(["data", "smooth", "--quiet", "--workers", "1", str(tmp_path), "-o", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "a.png").exists() and not (tmp_path / "s" / "c.jpg").exists()
    assert cli.main(["data", "prepare", "--quiet", str(tmp_path / "none"), "-o", str(tmp_path / "p")]) == 1


def make_layout(root, n=2, size=16, style="toy"):
    rng = np.random.default_rng(0)
    for folder in ("train_photo", f"{style}/style", f"{style}/smooth"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / folder / f"{i}.png"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return root


def test_layout_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="lacks"):
        data.check_layout(tmp_path, "toy")
    make_layout(tmp_path)
    data.check_layout(tmp_path, "toy")
    for f in (tmp_path / "toy/style").iterdir():
        f.unlink()
    with pytest.raises(ConfigError, match="has no images"):
        data.check_layout(tmp_path, "toy")
    make_layout(tmp_path)
    (tmp_path / "toy/smooth/0.png").rename(tmp_path / "toy/smooth/x.png")
    with pytest.raises(ConfigError, match="same file names"):
        data.check_layout(tmp_path, "toy")
    (tmp_path / "toy/smooth/x.png").rename(tmp_path / "toy/smooth/0.png")
    (tmp_path / "train_photo/1.png").write_bytes(b"oops")
    with pytest.raises(ConfigError, match="unreadable"):
        data.check_layout(tmp_path, "toy")


def test_dataset_items_and_mean_adjustment(tmp_path):
    make_layout(tmp_path, n=3)
    layout = data.check_layout(tmp_path, "toy")
    ds = data.UnpairedDataset(layout, 16, (1.0, 2.0, 3.0))
    item = ds[0]
    k = ds.anime_order[0]
    anime = cv2.imread(str(layout.style[k])).astype(np.float32)
    want_r = (anime[:, :, 2] + 3.0) / 127.5 - 1  # the R adjustment lands on R
    assert np.allclose(item["anime"][0].numpy(), want_r, atol=1e-6)
    gray = cv2.cvtColor(cv2.imread(str(layout.smooth[k])), cv2.COLOR_BGR2GRAY) / 127.5 - 1
    assert np.allclose(item["smooth_gray"].numpy(), gray[None].repeat(3, 0), atol=1e-6)
    assert len(ds) == 3 and item["photo"].shape == (3, 16, 16)
