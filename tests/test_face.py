"""face2paint: the hub drop-in, face detection/alignment on the shared photos, paste-back, CLI."""

import numpy as np
import pytest
import torch
from PIL import Image

from animegan2 import Generator
from animegan2.cli import main
from animegan2.errors import ConfigError, FaceNotFoundError
from animegan2.face import crop_face, detect_face, face2paint
from tests.reference import random_state_dict

# Hand-checked on the photos (704x704): eye centres, and a box around eyebrows-to-mouth
# that every correct detection must contain, inside a box no face detection may leave.
EYES = {"face_a.jpg": ((255, 328), (425, 328)), "face_b.jpg": ((285, 292), (435, 292))}
CORE = {"face_a.jpg": (220, 300, 460, 530), "face_b.jpg": (250, 260, 470, 480)}  # x0, y0, x1, y1
OUTER = {"face_a.jpg": (100, 150, 600, 650), "face_b.jpg": (120, 100, 600, 600)}


@pytest.fixture(scope="module")
def model():
    g = Generator(upsample="align_corners", norm_eps=1e-5)
    g.load_state_dict(random_state_dict(3))
    return g.eval()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "faces.pt"
    torch.save(random_state_dict(3), path)
    return path


def hub_face2paint(model, img, size, side_by_side):
    """The published hub entry, written out with plain torch (torchvision's to_tensor and
    to_pil_image are x/255 and mul(255).byte())."""
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
    img = img.resize((size, size), Image.LANCZOS)
    with torch.no_grad():
        inp = torch.tensor(np.array(img)).permute(2, 0, 1).float().div(255).unsqueeze(0) * 2 - 1
        out = model(inp)[0]
        if side_by_side:
            out = torch.cat([inp[0], out], dim=2)
        out = (out * 0.5 + 0.5).clip(0, 1)
    return Image.fromarray(out.mul(255).byte().permute(1, 2, 0).numpy())


@pytest.mark.parametrize("side_by_side", [False, True])
def test_drop_in_equals_the_hub_entry(model, testdata, side_by_side):
    img = Image.open(testdata / "street.jpg").convert("RGB").crop((0, 0, 301, 170))  # odd, landscape
    expected = hub_face2paint(model, img, 96, side_by_side)
    got = face2paint(size=96, side_by_side=side_by_side)(model, img)
    assert got.size == ((192, 96) if side_by_side else (96, 96))
    assert np.array_equal(np.asarray(got), np.asarray(expected))
    # the inner function's keyword overrides work as in the hub entry
    small = face2paint()(model, img, size=64, side_by_side=side_by_side)
    assert np.array_equal(np.asarray(small), np.asarray(hub_face2paint(model, img, 64, side_by_side)))


@pytest.mark.parametrize("name", ["face_a.jpg", "face_b.jpg"])
def test_detects_and_crops_the_face(testdata, name):
    photo = Image.open(testdata / name)
    face = detect_face(photo)
    assert face is not None
    x, y, w, h = face.box
    cx0, cy0, cx1, cy1 = CORE[name]
    ox0, oy0, ox1, oy1 = OUTER[name]
    assert x <= cx0 and y <= cy0 and x + w >= cx1 and y + h >= cy1, face.box
    assert x >= ox0 and y >= oy0 and x + w <= ox1 and y + h <= oy1, face.box
    assert face.eyes is not None
    for found, true in zip(face.eyes, EYES[name]):
        assert np.hypot(found[0] - true[0], found[1] - true[1]) < 15, face.eyes
    crop = crop_face(photo, face, size=128, margin=0.5)
    assert crop.image.size == (128, 128)
    corners = np.array([(cx0, cy0), (cx1, cy0), (cx0, cy1), (cx1, cy1)])
    inside = crop.to_crop(corners)
    assert (inside >= 0).all() and (inside < 128).all(), inside
    left, right = crop.to_crop(np.array(face.eyes))
    assert abs(left[1] - right[1]) < 1e-6  # eye line levelled
    assert 0.3 * 128 < left[0] < right[0] < 0.7 * 128


def test_tilted_face_is_levelled(testdata):
    photo = Image.open(testdata / "face_b.jpg").convert("RGB").rotate(15, resample=Image.BICUBIC)  # counter-clockwise
    face = detect_face(photo)
    assert face is not None and face.eyes is not None
    assert -19 < face.angle < -11, face.angle
    left, right = crop_face(photo, face, size=64).to_crop(np.array(face.eyes))
    assert abs(left[1] - right[1]) < 1e-6


def test_no_face(model):
    blank = Image.fromarray(np.tile(np.linspace(0, 255, 120, dtype=np.uint8), (90, 1))).convert("RGB")
    assert detect_face(blank) is None
    with pytest.raises(FaceNotFoundError, match="no face found.*on_missing='center'"):
        face2paint(size=64, detect=True)(model, blank)
    fallback = face2paint(size=64, detect=True, on_missing="center")(model, blank)
    assert np.array_equal(np.asarray(fallback), np.asarray(hub_face2paint(model, blank, 64, False)))
    with pytest.raises(ConfigError, match="on_missing"):
        face2paint(on_missing="skip")
    with pytest.raises(TypeError, match="detct"):
        face2paint()(model, blank, detct=True)
    assert np.array_equal(np.asarray(face2paint(size=64)(model, blank, detect=True, on_missing="center")), np.asarray(fallback))


def test_paste_back_keeps_the_photo_outside_the_face(model, testdata):
    photo = Image.open(testdata / "face_a.jpg").convert("RGB")
    out = face2paint(size=128, detect=True, paste_back=True, margin=0.2)(model, photo)
    assert out.size == photo.size
    before, after = np.asarray(photo), np.asarray(out)
    # the crop is the face box (154..530) grown by 0.2 of 376 on each side: x 79..605, y 128..654
    # (a slight rotation moves its corners by a few pixels); far from it nothing changes
    assert np.array_equal(after[:, :70], before[:, :70])
    assert np.array_equal(after[:115], before[:115])
    assert np.array_equal(after[:, 615:], before[:, 615:])
    centre = (slice(300, 500), slice(250, 450))
    assert np.abs(after[centre].astype(int) - before[centre]).mean() > 20  # the face itself is stylized
    sbs = face2paint(size=128, detect=True, paste_back=True, margin=0.2, side_by_side=True)(model, photo)
    assert sbs.size == (2 * photo.width, photo.height)
    assert np.array_equal(np.asarray(sbs)[:, : photo.width], before)


def test_cli_face(weights_file, testdata, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (80, 60), (120, 130, 140)).save(blank)
    out = tmp_path / "out"
    argv = ["face", str(testdata / "face_b.jpg"), str(blank), "-o", str(out), "--weights", str(weights_file), "--size", "64", "--quiet"]
    assert main(argv + ["--paste-back", "--margin", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "blank.png" in err and "no face found" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["face_b.jpg"]
    assert Image.open(out / "face_b.jpg").size == (704, 704)
    assert main(argv[:2] + ["-o", str(out / "crop.png")] + argv[5:]) == 0
    assert Image.open(out / "crop.png").size == (64, 64)
    assert main(argv[:3] + ["-o", str(out / "b"), "--on-missing", "center"] + argv[5:]) == 0
    assert Image.open(out / "b" / "blank.png").size == (64, 64)


def test_cli_face_keeps_existing_outputs_unless_told(weights_file, testdata, tmp_path, capsys):
    out = tmp_path / "face.png"
    out.write_bytes(b"earlier result")
    argv = ["face", str(testdata / "face_b.jpg"), "-o", str(out), "--weights", str(weights_file), "--size", "64", "--quiet"]
    assert main(argv) == 1
    assert "face.png already exists; overwrite it or skip existing outputs" in capsys.readouterr().err
    assert main(argv + ["--skip-existing"]) == 0
    assert out.read_bytes() == b"earlier result"
    assert main(argv + ["--overwrite"]) == 0
    assert Image.open(out).size == (64, 64)


def test_large_photo_is_searched_at_reduced_size(testdata):
    photo = Image.open(testdata / "face_b.jpg").convert("RGB")
    big = Image.new("RGB", (2400, 1600), (128, 128, 128))
    big.paste(photo.resize((1408, 1408), Image.BICUBIC), (600, 100))  # 2x, offset
    face = detect_face(big)
    assert face is not None
    x, y, w, h = face.box
    cx0, cy0, cx1, cy1 = CORE["face_b.jpg"]
    assert x <= 600 + 2 * cx0 and y <= 100 + 2 * cy0 and x + w >= 600 + 2 * cx1 and y + h >= 100 + 2 * cy1, face.box
    for found, true in zip(face.eyes, EYES["face_b.jpg"]):
        assert np.hypot(found[0] - (600 + 2 * true[0]), found[1] - (100 + 2 * true[1])) < 30, face.eyes


@pytest.mark.parametrize("tilt", [0.0, 12.0])
def test_crop_near_the_edge_stays_inside_the_photo(testdata, tilt):
    import cv2

    from animegan2.face import Face

    photo = Image.open(testdata / "face_a.jpg").convert("RGB").crop((0, 170, 704, 704))  # the hair touches the top edge
    left = (257.0, 161.0)
    right = (417.0, 161.0 + 160.0 * np.tan(np.radians(tilt)))
    face = Face(box=(160, 40, 364, 364), eyes=(left, right))  # as detect_face finds it, tilted by hand
    crop = crop_face(photo, face, size=None)  # the margin (0.5 of 364 on each side) would reach 142 rows above the photo
    side = crop.image.width
    # shrunk to what fits: the rotated square's bounding box (side * (cos + sin)) within the 533 rows' last index
    spread = abs(np.cos(np.radians(face.angle))) + abs(np.sin(np.radians(face.angle)))
    assert crop.image.size == (side, side) and side == int(533 / spread)
    # every crop pixel is sampled inside the photo: nothing is padded, mirrored or invented
    corners = np.array([(0, 0), (side - 1, 0), (0, side - 1), (side - 1, side - 1)], dtype=np.float64)
    back = corners @ cv2.invertAffineTransform(crop.matrix)[:, :2].T + cv2.invertAffineTransform(crop.matrix)[:, 2]
    assert (back >= -0.5).all() and (back[:, 0] <= 703.5).all() and (back[:, 1] <= 533.5).all(), back
    inside = crop.to_crop(np.array([left, right, (342, 360)]))  # the eyes and the mouth
    assert (inside >= 0).all() and (inside < side).all(), inside
    a, b = crop.to_crop(np.array([left, right]))
    assert abs(a[1] - b[1]) < 1e-6  # still levelled
    if tilt == 0:  # no rotation: the crop is the photo's own pixels, not resampled
        x0, y0 = (round(-v) for v in crop.matrix[:, 2])
        assert np.array_equal(np.asarray(crop.image), np.asarray(photo)[y0 : y0 + side, x0 : x0 + side])
