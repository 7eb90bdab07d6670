"""`animegan2 export --web`: the static folder, served on 127.0.0.1 and driven in Chromium."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from animegan2.cli import main
from animegan2.errors import ChecksumError, ConfigError
from animegan2.stylize import Stylizer
from animegan2.webexport import ORT_WEB_FILES, ORT_WEB_VERSION, onnxruntime_web_tarball
from animegan2.zoo import load_generator
from tests.reference import random_state_dict
from tests.web_page import serve, stylize_in_page

# scripts/setup_dev.sh puts the npm tarball here, so the tests need no registry.
ORT_TARBALL = Path(__file__).resolve().parents[1] / ".cache" / f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"


@pytest.fixture(scope="module")
def tarball():
    assert ORT_TARBALL.is_file(), f"{ORT_TARBALL} is missing: run scripts/setup_dev.sh (it runs `npm pack`)"
    return ORT_TARBALL


@pytest.fixture(scope="module")
def site(tmp_path_factory, tarball):
    work = tmp_path_factory.mktemp("webexport")
    torch.save(random_state_dict(seed=11), work / "toon.pt")
    folder = work / "site"
    assert main(["export", "--web", str(folder), "--weights", str(work / "toon.pt"), "--upsample", "tf",
                 "--onnxruntime-web", str(tarball), "-q"]) == 0  # fmt: skip
    return work, folder


def test_folder_holds_the_page_the_model_with_metadata_and_the_runtime(site):
    _, folder = site
    assert sorted(p.name for p in folder.iterdir()) == sorted(["index.html", "app.js", "model.onnx", *ORT_WEB_FILES])
    props = {p.key: p.value for p in onnx.load(folder / "model.onnx").metadata_props}
    assert props["weights"] == "toon" and props["upsample"] == "tf" and props["norm_eps"] == "1e-05"
    assert "multiples of 4" in props["input_sizes"]
    html = (folder / "index.html").read_text()
    assert '"upsample": "tf"' in html and "{{" not in html
    assert "http" not in html.replace("http-equiv", "") and "http" not in (folder / "app.js").read_text()


@pytest.mark.browser
def test_page_output_equals_pytorch_and_downloads(site, testdata, tmp_path):
    work, folder = site
    # A real photo at an odd size (TF mode pads 150 x 99 to 152 x 100), as PNG: the browser
    # and PIL decode PNG identically, JPEG decoders may differ by a level.
    photo = tmp_path / "street.png"
    Image.open(testdata / "street.jpg").resize((150, 99), Image.LANCZOS).save(photo)
    with serve(folder) as url:
        page = stylize_in_page(url, photo, tmp_path / "page.png")
    assert page["name"] == "street_anime.png"
    assert all(u.startswith((url, "blob:", "data:")) for u in page["requests"]), page["requests"]
    generator = load_generator(str(work / "toon.pt"), upsample="tf")
    want = Stylizer(generator, device="cpu", progress=False).stylize_arrays([np.asarray(Image.open(photo))])[0]
    got = np.asarray(Image.open(tmp_path / "page.png").convert("RGB"))
    assert got.shape == want.shape == (99, 150, 3)
    # float32 in both; ONNX Runtime's kernels sum in another order (~1e-5 apart): a level at most
    # where a value sits on a rounding edge; the issue allows 2/255.
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2


def test_tarball_is_checked_and_the_folder_must_be_new(site, tmp_path, tarball):
    work, folder = site
    fake = tmp_path / f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"
    fake.write_bytes(tarball.read_bytes()[:-1] + b"x")
    with pytest.raises(ChecksumError, match="is not onnxruntime-web@" + ORT_WEB_VERSION):
        onnxruntime_web_tarball(fake)
    g = load_generator(str(work / "toon.pt"))
    from animegan2.webexport import export_web

    with pytest.raises(ConfigError, match="exists and is not an empty folder"):
        export_web(g, folder, metadata={}, ort_tarball=tarball)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["site", "toon.pt"]  # no temporary left behind
