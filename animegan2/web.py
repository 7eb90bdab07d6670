"""The web app: upload a photo (or a short clip), pick a style, download the anime version.

A Gradio app (extra ``web``) that runs fully offline: it binds to 127.0.0.1 by default,
sends no analytics, uses system fonts only, and never creates a share link. Models are
loaded once per style and reused; requests are queued with a configurable limit.

>>> WebApp(["face_paint_512_v2"]).launch()   # doctest: +SKIP

The same file runs as a Hugging Face Space: the Space's ``app.py`` is
``from animegan2.web import WebApp; WebApp(["face_paint_512_v2", "hayao"]).launch("0.0.0.0", 7860)``
and its ``requirements.txt`` says ``animegan2[web,face,video]``. (``build()`` alone gives the
Blocks without the theme, the upload cap and the output folder that :meth:`WebApp.launch` sets.)
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch import nn

from .errors import AnimeGANError, ConfigError, require
from .imageio import IMAGE_SUFFIXES, load_image

OUTPUT_SIZES = ("Same as input", "512", "768", "1024")
FACE_SIZE = 512
THUMBNAIL_SIZE = 192

_CSS = """
#title {text-align: center; margin-bottom: 0}
#subtitle {text-align: center; opacity: .75; margin-top: 0}
.thumbs img {object-fit: cover}
"""


def _gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return require("gradio", "web")


def _style_label(weights: str) -> str:
    path = Path(weights)
    return path.stem if path.suffix or os.sep in weights else weights


@dataclass
class WebApp:
    """The app's configuration and its loaded models.

    Args:
        weights: zoo names, aliases or local files offered as styles; by default every
            generator in the zoo (downloaded on first use).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        examples: a folder of photos; each style whose weights are present gets a
            thumbnail of the first one, stylized at start-up.
        max_upload_mb: larger uploads are refused with a message in the page.
        max_pixels: "Same as input" stylizes at most this many pixels, then scales back.
        max_video_seconds: longer clips are refused.
        concurrency: requests stylized at once; the rest wait in a queue of ``queue_size``.
    """

    weights: list[str] = field(default_factory=list)
    device: str = "auto"
    examples: str | os.PathLike | None = None
    max_upload_mb: float = 20.0
    max_pixels: int = 2_000_000
    max_video_seconds: float = 15.0
    concurrency: int = 1
    queue_size: int = 16
    progress: bool = False

    def __post_init__(self) -> None:
        from .stylize import resolve_device

        if not self.weights:
            from .zoo import load_manifest

            self.weights = [name for name, spec in load_manifest().items() if spec.architecture.startswith("animegan")]
        from .zoo import check_weights

        for weights in self.weights:
            check_weights(weights)  # a typo fails at start-up, not at the first request
        if self.examples is not None and not Path(self.examples).is_dir():
            raise ConfigError(f"examples folder {self.examples} does not exist; give a folder of photos or leave it out")
        self.styles = {_style_label(w): w for w in self.weights}
        if len(self.styles) != len(self.weights):
            raise ConfigError("two --weights share a name; rename one of the files")
        self.device = str(resolve_device(self.device))
        self._models: dict[str, nn.Module] = {}
        self._lock = threading.Lock()
        self._outdir = Path(tempfile.mkdtemp(prefix="animegan2-web-"))

    # --- models and checks ---

    def model(self, style: str) -> nn.Module:
        """The generator of ``style``, loaded once and shared by every request."""
        if style not in self.styles:
            raise ConfigError(f"unknown style {style!r}; choose one of: {', '.join(self.styles)}")
        with self._lock:
            if style not in self._models:
                from .zoo import load_generator

                self._models[style] = load_generator(self.styles[style], device=self.device, progress=self.progress)
            return self._models[style]

    def _present(self, weights: str) -> bool:
        if Path(weights).exists():
            return True
        from .zoo import cached_weights

        try:
            return cached_weights(weights) is not None
        except AnimeGANError:
            return False

    def _check_upload(self, path: str | None, what: str) -> Path:
        if not path:
            raise ConfigError(f"Upload {what} first.")
        file = Path(path)
        size_mb = file.stat().st_size / 1e6
        if size_mb > self.max_upload_mb:
            raise ConfigError(f"The file is {size_mb:.1f} MB; the limit is {self.max_upload_mb:g} MB.")
        return file

    def _save(self, image: Image.Image) -> str:
        fd, name = tempfile.mkstemp(suffix=".png", prefix="anime-", dir=self._outdir)
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG")
        return name

    # --- what the page calls ---

    def stylize_image(
        self, path: str | None, style: str, face_mode: bool = False, keep_colors: bool = False, output_size: str = OUTPUT_SIZES[0]
    ) -> tuple[Image.Image, Image.Image, str]:
        """Stylize an uploaded file; returns (before, after, path of the PNG to download)."""
        from .stylize import Stylizer

        decoded = load_image(self._check_upload(path, "a photo"))
        photo = decoded.to_pil().convert("RGB")
        model = self.model(style)
        if face_mode:
            from .face import crop_face, detect_face

            face = detect_face(photo)
            if face is None:
                raise ConfigError("No face found in this photo: untick 'Face mode' or upload a closer portrait.")
            photo = crop_face(photo, face, size=FACE_SIZE).image
        if output_size == OUTPUT_SIZES[0] or face_mode:
            stylizer = Stylizer(model, device=self.device, max_pixels=self.max_pixels, keep_color=keep_colors)
        else:
            stylizer = Stylizer(model, device=self.device, size=int(output_size), keep_color=keep_colors, restore_size=False)
        anime = stylizer.stylize(photo)
        before = photo if photo.size == anime.size else photo.resize(anime.size, Image.LANCZOS)
        return before, anime, self._save(anime)

    def api_stylize(self, path: str | None, style: str) -> str:
        """The ``/stylize`` endpoint: (image file, style name) -> stylized PNG at the input's size."""
        return self.stylize_image(path, style)[2]

    def stylize_video(self, path: str | None, style: str, output_size: str = "512") -> str:
        """Stylize an uploaded clip (audio kept) and return the path of the result."""
        from .stylize import Stylizer
        from .video import probe_duration, stylize_video

        src = self._check_upload(path, "a video")
        seconds = probe_duration(src)
        if seconds > self.max_video_seconds:
            raise ConfigError(f"The clip is {seconds:.1f} s long; the limit is {self.max_video_seconds:g} s.")
        stylizer = Stylizer(self.model(style), device=self.device, batch_size=4)
        fd, dst = tempfile.mkstemp(suffix=".mp4", prefix="anime-", dir=self._outdir)
        os.close(fd)
        size = None if output_size == OUTPUT_SIZES[0] else int(output_size)
        stylize_video(src, dst, stylizer.stylize_arrays, size=size, progress=True)
        return dst

    def thumbnails(self) -> list[tuple[Image.Image, str]]:
        """(thumbnail, style) for each style whose weights are present, from the first example photo."""
        if not self.examples:
            return []
        photos = sorted(p for p in Path(self.examples).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not photos:
            return []
        from .stylize import Stylizer

        photo = load_image(photos[0]).to_pil().convert("RGB")
        photo.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        return [
            (Stylizer(self.model(style), device=self.device).stylize(photo), style)
            for style, weights in self.styles.items()
            if self._present(weights)
        ]

    # --- the page ---

    def build(self) -> Any:
        """The Gradio Blocks of the app (not yet launched)."""
        gr = _gradio()
        messages = (AnimeGANError,)

        def guarded(fn):
            def run(*args):
                try:
                    return fn(*args)
                except messages as exc:
                    raise gr.Error(str(exc)) from None

            run.__name__ = fn.__name__
            return run

        def video_with_progress(path, style, output_size, progress=gr.Progress(track_tqdm=True)):
            return guarded(self.stylize_video)(path, style, output_size)

        styles = list(self.styles)
        with gr.Blocks(title="AnimeGANv2", analytics_enabled=False) as app:
            gr.Markdown("# AnimeGANv2", elem_id="title")
            gr.Markdown("Turn photos and short clips into anime. Everything runs on this machine.", elem_id="subtitle")
            thumbs = self.thumbnails()
            if thumbs:
                with gr.Accordion("Styles", open=True):
                    gr.Gallery(thumbs, show_label=False, columns=6, height=220, object_fit="cover", allow_preview=False, elem_classes="thumbs")
            with gr.Tab("Photo"):
                with gr.Row():
                    with gr.Column():
                        photo = gr.Image(type="filepath", label="Photo", sources=["upload", "clipboard", "webcam"], elem_id="photo")
                        style = gr.Dropdown(styles, value=styles[0], label="Style", elem_id="style")
                        with gr.Row():
                            face_mode = gr.Checkbox(label="Face mode (detect, align and crop the face)")
                            keep_colors = gr.Checkbox(label="Keep the photo's colours")
                        output_size = gr.Radio(list(OUTPUT_SIZES), value=OUTPUT_SIZES[0], label="Output size (long side)")
                        go = gr.Button("Stylize", variant="primary", elem_id="go")
                    with gr.Column():
                        compare = gr.ImageSlider(label="Before / after", type="pil", elem_id="compare")
                        download = gr.DownloadButton("Download", elem_id="download", interactive=False)

                def on_photo(path, style_name, face, keep, size):
                    before, after, file = guarded(self.stylize_image)(path, style_name, face, keep, size)
                    return (before, after), gr.DownloadButton(value=file, interactive=True)

                go.click(on_photo, [photo, style, face_mode, keep_colors, output_size], [compare, download], api_visibility="private")
            with gr.Tab("Video"):
                with gr.Row():
                    with gr.Column():
                        clip = gr.Video(label=f"Clip (up to {self.max_video_seconds:g} s)", sources=["upload"])
                        video_style = gr.Dropdown(styles, value=styles[0], label="Style")
                        video_size = gr.Radio(list(OUTPUT_SIZES), value="512", label="Output size (long side)")
                        go_video = gr.Button("Stylize clip", variant="primary")
                    result = gr.Video(label="Anime clip")
                go_video.click(video_with_progress, [clip, video_style, video_size], result, api_name="stylize_video")
            with gr.Row(visible=False):
                api_in = gr.File(type="filepath")
                api_style = gr.Textbox()
                api_out = gr.File()
                api_go = gr.Button()
            api_go.click(guarded(self.api_stylize), [api_in, api_style], api_out, api_name="stylize")
        app.queue(default_concurrency_limit=self.concurrency, max_size=self.queue_size)
        return app

    def launch(self, host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> None:
        """Build and serve the app until interrupted."""
        gr = _gradio()
        theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
        app = self.build()
        try:
            app.launch(
                server_name=host,
                server_port=port,
                share=False,
                theme=theme,
                css=_CSS,
                # Gradio's own cap is a backstop against filling the disk; the page's message comes
                # from _check_upload, which sits below it.
                max_file_size=int(2 * self.max_upload_mb * 1e6) + 1_000_000,
                allowed_paths=[str(self._outdir)],
                footer_links=["api"],
                **kwargs,
            )
        except OSError as exc:  # gradio's "Cannot find empty port", or an address not of this machine
            raise ConfigError(f"cannot serve on {host}:{port}: {str(exc).split('. ')[0]}; choose another --port or --host") from exc
