"""`animegan2 export --web`: the static folder, served on 127.0.0.1 and driven in Chromium."""

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from animegan2.cli import main
from animegan2.errors import ChecksumError
from animegan2.stylize import Stylizer
from animegan2.zoo import load_generator
from animegan2.webexport import ORT_WEB_FILES, ORT_WEB_VERSION, onnxruntime_web_tarball
from tests.reference import random_state_dict
from tests.test_web import CHROMIUM, CHROMIUM_ARGS

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


@pytest.fixture(scope="module")
def served(site):
    _, folder = site
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *args):
        pass


def test_folder_holds_the_page_the_model_with_metadata_and_the_runtime(site):
    _, folder = site
    assert sorted(p.name for p in folder.iterdir()) == sorted(["index.html", "app.js", "model.onnx", *ORT_WEB_FILES])
    props = {p.key: p.value for p in onnx.load(folder / "model.onnx").metadata_props}
    assert props["weights"] == "toon" and props["upsample"] == "tf" and props["norm_eps"] == "1e-05"
    assert "multiples of 4" in props["input_sizes"]
    html = (folder / "index.html").read_text()
    assert '"upsample": "tf"' in html and "{{" not in html
    assert "http" not in html.replace('http-equiv', '') and "http" not in (folder / "app.js").read_text()


def test_page_output_equals_pytorch_and_downloads(served, site, testdata, tmp_path):
    from playwright.sync_api import sync_playwright

    work, _ = site
    # A real photo at an odd size (TF mode pads 150 x 99 to 152 x 100), as PNG: the browser
    # and PIL decode PNG identically, JPEG decoders may differ by a level.
    photo = tmp_path / "street.png"
    Image.open(testdata / "street.jpg").resize((150, 99), Image.LANCZOS).save(photo)
    requests_seen = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(accept_downloads=True)
        page.on("request", lambda r: requests_seen.append(r.url))
        page.goto(served)
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("body[data-done='1']", timeout=120_000)
        with page.expect_download() as download:
            page.click("#download")
        saved = tmp_path / "page.png"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "street_anime.png"
        browser.close()
    assert all(url.startswith(served) or url.startswith(("blob:", "data:")) for url in requests_seen), requests_seen
    generator = load_generator(str(work / "toon.pt"), upsample="tf")
    want = Stylizer(generator, device="cpu", progress=False).stylize_arrays([np.asarray(Image.open(photo))])[0]
    got = np.asarray(Image.open(saved).convert("RGB"))
    assert got.shape == want.shape == (99, 150, 3)
    # float32 in both; ONNX Runtime's kernels sum in another order (~1e-5 apart): a level at most
    # where a value sits on a rounding edge; the issue allows 2/255.
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2
