"""The zoo, Stylizer and CLI with AnimeGAN v1 weights and AnimeGANv3 ONNX models."""

import json
import logging
import math

import numpy as np
import pytest
import torch

from animegan2 import cli, zoo
from animegan2.errors import ChecksumError, ConfigError, ManifestError, WeightsError
from animegan2.model import Generator
from animegan2.model_v1 import GeneratorV1
from animegan2.onnx_v3 import OnnxGeneratorV3
from animegan2.stylize import Stylizer
from tests.manifests import cache, entry
from tests.onnx_graphs import make_graph

pytestmark = pytest.mark.usefixtures("fast_retries")


def onnx_entry(url, name="AnimeGANv3_Stub_1.onnx", **fields):
    spec = entry([url], name=name, format="onnx", architecture="animeganv3", license="non-commercial test note")
    del spec["upsample"], spec["norm_eps"]
    spec.update(fields)
    return spec


def test_onnx_entry_downloads_checks_pins_and_runs(server, manifest, tmp_path, caplog):
    body = make_graph(tmp_path / "stub.onnx").read_bytes()
    manifest(v3stub=onnx_entry(server.add("/v3.onnx", body), aliases=["stub"]))
    with caplog.at_level(logging.WARNING, logger="animegan2"):
        g = zoo.load_generator("stub", progress=False)
    assert isinstance(g, OnnxGeneratorV3)
    assert [r.getMessage() for r in caplog.records][-1] == "licence note for v3stub: non-commercial test note"
    y = g(torch.full((1, 3, 260, 300), 0.25))
    assert y.shape == (1, 3, 260, 300) and torch.allclose(y, torch.full_like(y, math.tanh(0.5)), atol=1e-6)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="animegan2"):
        zoo.load_generator("v3stub", progress=False)
    assert caplog.records == []  # the licence note comes once, with the first download
    assert cache("v3stub", "AnimeGANv3_Stub_1.onnx").read_bytes() == body
    with pytest.raises(WeightsError, match="ONNX model .* has no state_dict"):
        zoo.load_state_dict("v3stub", progress=False)
    with pytest.raises(ConfigError, match="fix their own upsampling"):
        zoo.load_generator("v3stub", upsample="tf", progress=False)


def test_an_onnx_download_that_is_no_v3_model_is_refused_before_pinning(server, manifest):
    manifest(v3stub=onnx_entry(server.add("/v3.onnx", b"<html>rate limited</html>")))
    with pytest.raises(ChecksumError, match="fail their integrity check: cannot load .* as an ONNX model"):
        zoo.fetch_weights("v3stub", progress=False)
    assert not cache("pins", "v3stub").exists()
    assert not cache("v3stub", "AnimeGANv3_Stub_1.onnx").exists()


def test_stylizer_and_cli_take_an_onnx_file_like_any_weights(tmp_path):
    path = make_graph(tmp_path / "AnimeGANv3_Stub_1.onnx")
    image = np.full((90, 130, 3), 191, np.uint8)  # 191/255*2-1 = 0.498 -> tanh(0.996) -> 0.760 -> 224.4
    out = Stylizer(str(path), device="cpu", progress=False).stylize(image)
    assert out.shape == (90, 130, 3) and out.dtype == np.uint8
    want = round((math.tanh(2 * (191 / 255 * 2 - 1)) + 1) / 2 * 255)
    assert np.abs(out.astype(int) - want).max() <= 1
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "in.png")
    assert cli.main(["stylize", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--weights", str(path), "-q"]) == 0
    assert np.abs(np.asarray(Image.open(tmp_path / "out.png")).astype(int) - want).max() <= 1


def test_v1_state_dict_files_build_the_v1_generator(tmp_path):
    state = GeneratorV1().state_dict()
    torch.save(state, tmp_path / "v1.pt")
    g = zoo.load_generator(tmp_path / "v1.pt")
    assert isinstance(g, GeneratorV1) and not g.training
    with pytest.raises(ConfigError, match="AnimeGAN v1 weights run with TF1 bilinear"):
        zoo.load_generator(tmp_path / "v1.pt", upsample="align_corners")
    assert isinstance(zoo.build_model(zoo.WeightsMeta()), Generator)
    with pytest.raises(WeightsError, match="'animeganv3' cannot be built here"):
        zoo.build_model(zoo.WeightsMeta(architecture="animeganv3"))


@pytest.mark.parametrize(
    "change,match",
    [
        ({"architecture": "animeganv2"}, "animeganv3 weights are 'onnx' files, and only they are"),
        ({"architecture": "animeganv4"}, "'animeganv4' is not one of"),
        ({"upsample": "tf"}, "field 'upsample': animeganv3 fixes it; remove the field"),
        ({"files": [{"name": "a.pt", "urls": ["https://example.org/a.pt"]}]}, "an onnx entry is exactly one '.onnx' file"),
    ],
)
def test_manifest_refuses_inconsistent_family_entries(manifest, change, match):
    manifest(bad=onnx_entry("https://example.org/a.onnx", **change))
    with pytest.raises(ManifestError, match=match):
        zoo.load_manifest()


def test_manifest_still_requires_numerics_for_v2(manifest):
    spec = entry(["https://example.org/a.pt"])
    del spec["norm_eps"]
    manifest(bad=spec)
    with pytest.raises(ManifestError, match="field 'norm_eps': missing"):
        zoo.load_manifest()


def test_bundled_family_entries_and_their_licences(capsys):
    specs = zoo.load_manifest(zoo.BUNDLED_MANIFEST)
    v1, v3h, v3s = specs["v1-hayao"], specs["v3-hayao"], specs["v3-shinkai"]
    assert (v1.format, v1.architecture, v1.meta.upsample) == ("tf1-checkpoint", "animeganv1", None)
    assert [f.name for f in v1.files] == ["Hayao-60.ckpt.index", "Hayao-60.ckpt.data-00000-of-00001"]
    assert v1.files[1].size == 3_956_096 * 4
    assert [f.urls[0] for f in (*v3h.files, *v3s.files)] == [
        "https://github.com/TachibanaYoshino/AnimeGANv3/releases/download/v1.1.0/AnimeGANv3_Hayao_36.onnx",
        "https://github.com/TachibanaYoshino/AnimeGANv3/releases/download/v1.1.0/AnimeGANv3_Shinkai_37.onnx",
    ]
    assert all("non-commercial use only" in s.license for s in (v1, v3h, v3s))
    assert cli.main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert f"v3-shinkai: {v3s.license}" in out.splitlines()
    assert json.loads(zoo.BUNDLED_MANIFEST.read_text())["weights"]["v3-hayao"]["format"] == "onnx"


def test_face_and_video_paths_take_a_v3_model(tmp_path):
    from PIL import Image

    from animegan2.face import face2paint
    from animegan2.video import stylize_video
    from tests.clips import make_clip, probe

    g = OnnxGeneratorV3(make_graph(tmp_path / "AnimeGANv3_Stub_1.onnx"))
    painted = np.asarray(face2paint(size=64)(g, Image.new("RGB", (80, 60), (191, 191, 191))))
    want = round((math.tanh(2 * (191 / 255 * 2 - 1)) + 1) / 2 * 255)
    assert painted.shape == (64, 64, 3) and np.abs(painted.astype(int) - want).max() <= 1
    clip = make_clip(tmp_path / "in.mp4", audio=False, n=4)
    stylize_video(clip, tmp_path / "out.mp4", Stylizer(g, device="cpu", progress=False).stylize_arrays, progress=False)
    frames, _, _ = probe(tmp_path / "out.mp4")
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)


def test_stylizer_keeps_the_size_with_v1_models():
    # v1 floors outputs to multiples of 4 like v2's "tf" mode; the Stylizer pads and crops back
    out = Stylizer(GeneratorV1().eval(), device="cpu", progress=False).stylize(np.zeros((37, 53, 3), np.uint8))
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
