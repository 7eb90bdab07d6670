"""The web app, served by the real CLI on 127.0.0.1: through gradio_client and in Chromium."""

import math
import os
import re
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from tests.reference import random_state_dict

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, testdata):
    work = tmp_path_factory.mktemp("web")
    torch.save(random_state_dict(seed=3), work / "toon.pt")
    torch.save(random_state_dict(seed=4), work / "ink.pt")
    port = _free_port()
    log = open(work / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "animegan2", "serve", "--weights", str(work / "toon.pt"), "--weights", str(work / "ink.pt"),
         "--port", str(port), "--examples", str(testdata), "--max-upload-mb", "0.3", "--device", "cpu"],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"},  # the log is read mid-run
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (work / "server.log").read_text()
        try:
            if requests.get(url, timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the web app did not start in 120 s:\n" + (work / "server.log").read_text())
    yield url, work
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_api_stylize_returns_the_image_at_the_input_size_named_after_it(server, testdata):
    from gradio_client import Client, handle_file

    url, _ = server
    client = Client(url, verbose=False)
    out = client.predict(handle_file(str(testdata / "face_b.jpg")), "toon", api_name="/stylize")
    assert os.path.basename(out) == "face_b-toon.png"
    with Image.open(testdata / "face_b.jpg") as src, Image.open(out) as anime:
        assert anime.size == src.size
        assert anime.mode == "RGB"
        assert anime.getextrema() != src.getextrema() or list(anime.getdata())[:100] != list(src.getdata())[:100]


def test_api_bad_uploads_get_the_page_message_and_the_log_no_traceback(server, testdata, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, work = server
    client = Client(url, verbose=False)
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo")
    with pytest.raises(AppError, match=r"notes.jpg: not an image .* Upload a photo file \(JPEG"):
        client.predict(handle_file(str(text)), "toon", api_name="/stylize")
    with pytest.raises(AppError, match=r"alley.jpg is 0.4 MB; the limit is 0.3 MB. Upload a smaller photo"):  # 418 kB
        client.predict(handle_file(str(testdata / "alley.jpg")), "toon", api_name="/stylize")
    with pytest.raises(AppError, match="unknown style 'nope'"):
        client.predict(handle_file(str(testdata / "face_a.jpg")), "nope", api_name="/stylize")
    log = (work / "server.log").read_text()
    assert "Traceback" not in log and "Error" not in log, log
    assert "share=True" not in log, log  # the app never makes a share link: Gradio must not suggest one
    assert f"animegan2: serving on {url} (Ctrl+C to stop)" in log.splitlines()


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def _outside_requests(page) -> list:
    outside = []
    page.on("request", lambda r: outside.append(r.url) if urlsplit(r.url).hostname not in (None, "127.0.0.1", "localhost") and urlsplit(r.url).scheme in ("http", "https", "ws", "wss") else None)
    return outside


@pytest.mark.parametrize("viewport", [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_browser_page_explains_uploads_and_its_gallery_picks_the_style(server, testdata, tmp_path, viewport):
    from playwright.sync_api import expect, sync_playwright

    url, _ = server
    (tmp_path / "notes.jpg").write_text("this is not a photo")
    (tmp_path / "empty.jpg").write_bytes(b"")
    width, height = viewport
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": width, "height": height})
        outside = _outside_requests(page)
        page.goto(url, wait_until="networkidle")
        # the styles gallery: small thumbnails, each with its name on the first screen; a click picks the style
        thumbs = page.locator(".thumbs .thumbnail-item")
        expect(thumbs).to_have_count(2, timeout=30_000)
        for i, name in enumerate(["toon", "ink"]):
            image, label = thumbs.nth(i).locator("img").bounding_box(), thumbs.nth(i).locator(".caption-label")
            assert image["width"] <= 140 and image["height"] <= 110, image  # Gradio alone drew 582 x 582 on a desktop
            expect(label).to_have_text(name)
            assert label.bounding_box()["y"] + label.bounding_box()["height"] <= height
        thumbs.nth(1).click()
        expect(page.locator("#style input")).to_have_value("ink")
        page.get_by_role("tab", name="Video").click()
        expect(page.locator("#video-style input")).to_have_value("ink")
        page.get_by_role("tab", name="Photo").click()
        # bad uploads: said in the page at once, and the file is dropped (no broken-image icon)
        for file, says in [
            ("notes.jpg", "notes.jpg: not an image (no known image format); check the file. Upload a photo file (JPEG"),
            ("empty.jpg", "empty.jpg: empty file (0 bytes). Upload a photo file (JPEG"),
            (testdata / "alley.jpg", "alley.jpg is 0.4 MB; the limit is 0.3 MB. Upload a smaller photo"),
        ]:
            page.set_input_files("#photo input[type=file]", str(tmp_path / file))
            expect(page.locator("#photo-note")).to_contain_text(says, timeout=30_000)
            expect(page.locator("#photo img")).to_have_count(0)
        page.set_input_files("#photo input[type=file]", str(testdata / "face_a.jpg"))
        expect(page.locator("#photo-note")).to_have_text("face_a.jpg: 704x704 pixels.", timeout=30_000)
        shot = tmp_path / f"page_{width}x{height}.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    print(f"screenshot: {shot}")
    assert outside == [], f"the page requested outside hosts: {outside}"


def test_browser_download_is_named_after_input_and_style_and_a_failed_run_leaves_none(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, _ = server
    blank = tmp_path / "blank.png"  # a gradient: a photo without a face
    Image.fromarray(np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))).convert("RGB").save(blank)
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.goto(url, wait_until="networkidle")
        page.set_input_files("#photo input[type=file]", str(blank))
        expect(page.locator("#photo-note")).to_have_text("blank.png: 160x120 pixels.", timeout=30_000)
        page.click("#go")
        expect(page.locator("#status")).to_contain_text("Done in", timeout=120_000)
        expect(page.locator("#status")).to_contain_text("the photo, 160x120 pixels.")  # 512 never enlarges
        expect(page.locator("#download")).to_be_enabled()
        with page.expect_download() as download:
            page.click("#download")
        assert download.value.suggested_filename == "blank-toon.png"
        download.value.save_as(tmp_path / "anime.png")
        with Image.open(tmp_path / "anime.png") as anime:
            assert anime.size == (160, 120)
        page.locator("#fast input").check()  # the fast path on this CPU, named in the note
        page.click("#go")
        expect(page.locator("#status")).to_contain_text(re.compile(r"Done in [0-9.]+ s with \w+ on \w+ \(cpu; fast: "), timeout=120_000)
        expect(page.locator("#status")).to_contain_text("the photo, 160x120 pixels.")
        page.locator("#face input").check()
        page.click("#go")
        expect(page.locator("#status")).to_contain_text("No face found in this photo: untick 'Face mode'", timeout=120_000)
        expect(page.locator("#download")).to_be_disabled()  # not the previous run's file
        expect(page.locator("#compare img")).to_have_count(0)
        page.screenshot(path=str(tmp_path / "failed_run.png"), full_page=True)
        browser.close()


def test_api_video_keeps_frames_and_audio_never_enlarges_and_limits_length(server, tmp_path):
    from gradio_client import Client, handle_file

    from animegan2.errors import VideoError
    from animegan2.web import WebApp
    from tests.test_video import H, N, W, make_clip, probe

    url, work = server
    client = Client(url, verbose=False)
    clip = make_clip(tmp_path / "clip.mp4")  # 2 s of 64x48, within the default 15 s limit
    out = client.predict(handle_file(str(clip)), "toon", "512", api_name="/stylize_video")  # the page's default size
    assert os.path.basename(out) == "clip-toon.mp4"
    frames, _, audio = probe(out)
    assert len(frames) == N and frames[0].shape == (H, W, 3)  # not enlarged to 512
    assert audio == probe(clip)[2]
    short_limit = WebApp([str(work / "toon.pt")], device="cpu", max_video_seconds=1.5)
    with pytest.raises(VideoError, match=r"clip.mp4 is 2.0 s long; the limit is 1.5 s. Upload a shorter clip"):
        short_limit.check_clip(str(clip))
    said = []
    short_limit.max_video_seconds = 15
    short_limit.stylize_video(str(clip), "toon", report=lambda fraction, words: said.append((fraction, words)))
    assert said[0] == (0.0, "Loading the toon style")
    assert said[-1] == (1.0, f"Stylized {N} of {N} frames")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from animegan2.web import WebApp

    work = tmp_path_factory.mktemp("app")
    torch.save(random_state_dict(seed=3), work / "toon.pt")
    return WebApp([str(work / "toon.pt")], device="cpu", max_pixels=300_000)


def test_default_size_answers_fast_says_how_to_get_full_size_and_reports_progress_in_words(app, testdata):
    said = []
    result = app.stylize_image(str(testdata / "street.jpg"), "toon", report=lambda fraction, words: said.append(words))
    assert result.after.size == result.before.size == (512, 269)  # 1280x672 at the default long side 512
    assert said == ["Reading the photo", "Loading the toon style", "Stylizing the photo at 512x269 pixels", "Saving the PNG"]
    # max_pixels=300,000 caps 'Same as input' at sqrt(300000 / (1280 * 672)) = 0.5906 of each side, floored: 755x396
    assert result.note.endswith(
        "the photo, 512x269 pixels. For more detail (755x396) pick 'Same as input': it takes longer. "
        "This server stylizes at most 0.3 megapixels at once."
    )
    assert os.path.basename(result.file) == "street-toon.png"
    assert app.check_photo(str(testdata / "street.jpg")) == (
        "street.jpg: 1280x672 pixels. That is more than this server stylizes at once (0.3 megapixels): "
        "'Same as input' gives 755x396."
    )


def test_fast_toggle_runs_the_fast_path_prepared_once_and_says_which(app, testdata, monkeypatch):
    import animegan2.stylize
    from animegan2.precision import FAST_MIN_PSNR, Capabilities

    bf16_cpu = Capabilities(cpu_name="a CPU with AVX-512 BF16", avx2=True, avx512=True, avx512_bf16=True)
    monkeypatch.setattr(animegan2.stylize, "detect", lambda device: bf16_cpu)
    exact = app.stylize_image(str(testdata / "street.jpg"), "toon")
    fast = app.stylize_image(str(testdata / "street.jpg"), "toon", fast=True)
    assert exact.note.startswith("Done in ") and " with " not in exact.note
    assert " s with bfloat16 on torch (cpu; fast: AVX-512 BF16, no AMX): the photo, 512x269 pixels." in fast.note
    a, b = (np.asarray(r.after, dtype=np.float64) for r in (exact, fast))
    psnr = 10 * math.log10(255**2 / np.mean((a - b) ** 2))
    # bfloat16 keeps 8 significant bits (relative rounding 2^-9 per operation); the bar for fast is 40 dB.
    assert psnr >= FAST_MIN_PSNR, psnr
    # one prepared model per (style, fast), shared by every request whatever its image options
    assert app._stylizer("toon", True, size=64).model is app._stylizer("toon", True).model
    assert app._stylizer("toon", True).model is not app._stylizer("toon").model


def test_face_mode_gives_the_face_square_at_the_chosen_size(app, testdata):
    from animegan2.face import crop_face, detect_face

    with Image.open(testdata / "face_a.jpg") as photo:
        face = detect_face(photo)
        native = crop_face(photo, face, size=None).image.size
    assert native[0] == native[1] and 600 < native[0] <= 703  # the face box (376) and its margins, inside 704x704
    said = []
    full = app.stylize_image(str(testdata / "face_a.jpg"), "toon", True, False, "Same as input", report=lambda f, w: said.append(w))
    side = math.floor(native[0] * math.sqrt(300_000 / native[0] ** 2))  # over max_pixels: reduced to about 547
    assert full.after.size == (side, side) and f"the face, {side}x{side} pixels" in full.note
    assert said[1:4] == ["Looking for a face", "Loading the toon style", f"Stylizing the face at {side}x{side} pixels"]
    small = app.stylize_image(str(testdata / "face_a.jpg"), "toon", True, False, "512")
    assert small.after.size == small.before.size == (512, 512)
    assert small.note.endswith("the face, 512x512 pixels.")


def test_bad_start_up_options_fail_at_once_in_one_line(tmp_path, capsys):
    from animegan2.cli import main

    torch.save(random_state_dict(seed=3), tmp_path / "toon.pt")
    assert main(["serve", "--weights", str(tmp_path / "tono.pt")]) == 1
    assert capsys.readouterr().err == f"animegan2: error: no weights named '{tmp_path}/tono.pt': the file {tmp_path}/tono.pt does not exist\n"
    assert main(["serve", "--weights", str(tmp_path / "toon.pt"), "--examples", str(tmp_path / "photos")]) == 1
    assert capsys.readouterr().err.startswith(f"animegan2: error: examples folder {tmp_path}/photos does not exist;")
    for option, value in [("--port", "99999"), ("--concurrency", "0"), ("--max-upload-mb", "-1")]:
        with pytest.raises(SystemExit) as exc:
            main(["serve", option, value])
        assert exc.value.code == 2 and f"argument {option}: must be" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--weights", str(tmp_path / "toon.pt"), "--port", str(port), "--device", "cpu", "-q"]) == 1
    assert capsys.readouterr().err == (
        f"animegan2: error: cannot serve on 127.0.0.1:{port}: Cannot find empty port in range: {port}-{port}; "
        "choose another --port or --host\n"
    )


def test_serve_notices_are_one_prefixed_line_and_quiet_silences_them(monkeypatch, capsys):
    import logging

    from animegan2 import cli, web

    class Fetching:  # stands for a WebApp whose styles are downloaded at start-up
        def __init__(self, **kwargs):
            logging.getLogger("animegan2").warning("licence note for hayao: non-commercial")

        def launch(self, *args, **kwargs):
            pass

    monkeypatch.setattr(web, "WebApp", Fetching)
    assert cli.main(["serve"]) == 0
    assert capsys.readouterr().err == "animegan2: licence note for hayao: non-commercial\n"
    assert cli.main(["serve", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
