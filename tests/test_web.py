"""The web app, served by the real CLI on 127.0.0.1: through gradio_client and in Chromium."""

import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

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
    port = _free_port()
    log = open(work / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "animegan2", "serve", "--weights", str(work / "toon.pt"), "--port", str(port),
         "--examples", str(testdata), "--max-upload-mb", "0.3", "--device", "cpu", "--quiet"],
        stdout=log, stderr=subprocess.STDOUT, env={**__import__("os").environ, "GRADIO_ANALYTICS_ENABLED": "False"},
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


def test_api_stylize_returns_the_image_at_the_input_size(server, testdata):
    from gradio_client import Client, handle_file

    url, _ = server
    client = Client(url, verbose=False)
    out = client.predict(handle_file(str(testdata / "face_b.jpg")), "toon", api_name="/stylize")
    with Image.open(testdata / "face_b.jpg") as src, Image.open(out) as anime:
        assert anime.size == src.size
        assert anime.mode == "RGB"
        assert anime.getextrema() != src.getextrema() or list(anime.getdata())[:100] != list(src.getdata())[:100]


def test_api_bad_uploads_get_the_page_message(server, testdata, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, _ = server
    client = Client(url, verbose=False)
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(text)), "toon", api_name="/stylize")
    with pytest.raises(AppError, match=r"the limit is 0.3 MB"):  # alley.jpg is 418 kB
        client.predict(handle_file(str(testdata / "alley.jpg")), "toon", api_name="/stylize")
    with pytest.raises(AppError, match="unknown style 'nope'"):
        client.predict(handle_file(str(testdata / "face_a.jpg")), "nope", api_name="/stylize")


def test_browser_upload_stylize_download(server, testdata, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _ = server
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.on("request", lambda r: outside.append(r.url) if urlsplit(r.url).hostname not in (None, "127.0.0.1", "localhost") and urlsplit(r.url).scheme in ("http", "https", "ws", "wss") else None)
        page.goto(url, wait_until="networkidle")
        page.locator(".thumbs img").first.wait_for(timeout=30_000)  # the style thumbnail made at start-up
        page.set_input_files("#photo input[type=file]", str(testdata / "face_a.jpg"))
        page.locator("#style input").click()
        page.get_by_role("option", name="toon").click()
        page.wait_for_timeout(500)
        page.click("#go")
        page.wait_for_selector("#compare img", timeout=120_000)
        page.wait_for_function("!document.querySelector('#download').disabled", timeout=30_000)
        with page.expect_download() as download:
            page.click("#download")
        saved = tmp_path / "anime.png"
        download.value.save_as(saved)
        page.screenshot(path=str(tmp_path / "finished_page.png"), full_page=True)
        browser.close()
    print(f"screenshot of the finished page: {tmp_path / 'finished_page.png'}")
    with Image.open(saved) as anime, Image.open(testdata / "face_a.jpg") as src:
        assert anime.size == src.size
    assert (tmp_path / "finished_page.png").stat().st_size > 10_000
    assert outside == [], f"the page requested outside hosts: {outside}"


def test_api_video_keeps_frames_and_audio_and_limits_length(server, tmp_path):
    from gradio_client import Client, handle_file

    from animegan2.errors import ConfigError
    from animegan2.web import WebApp
    from tests.test_video import N, make_clip, probe

    url, _ = server
    client = Client(url, verbose=False)
    clip = make_clip(tmp_path / "clip.mp4")  # 2 s, within the default 15 s limit
    out = client.predict(handle_file(str(clip)), "toon", "Same as input", api_name="/stylize_video")
    frames, _, audio = probe(out)
    assert len(frames) == N and frames[0].shape == (48, 64, 3)
    assert audio == probe(clip)[2]
    short_limit = WebApp([str(server[1] / "toon.pt")], device="cpu", max_video_seconds=1.5)
    with pytest.raises(ConfigError, match=r"2.0 s long; the limit is 1.5 s"):
        short_limit.stylize_video(str(clip), "toon")


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
