"""Drive an exported web folder (``animegan2 export --web``) in Debian's Chromium: serve it on
127.0.0.1, drop a photo, download the result. Used by the web-export test and its benchmark."""

from __future__ import annotations

import contextlib
import functools
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """The folder on a local HTTP server; yields its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def stylize_in_page(url: str, photo: Path, out: Path) -> dict:
    """Open the page, drop ``photo``, save the download to ``out``. Returns the URLs requested,
    the download's suggested name and the seconds the page reports."""
    from playwright.sync_api import sync_playwright

    seen: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(accept_downloads=True)
            page.on("request", lambda r: seen.append(r.url))
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=120_000)
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("body[data-done='1']", timeout=600_000)
            status = page.text_content("#status") or ""
            with page.expect_download() as download:
                page.click("#download")
            download.value.save_as(out)
            name = download.value.suggested_filename
        finally:
            browser.close()
    seconds = re.search(r"Done in ([0-9.]+) s", status)
    return {"requests": seen, "name": name, "seconds": float(seconds.group(1)) if seconds else None}
