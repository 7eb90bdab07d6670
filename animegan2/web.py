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

import html
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image
from torch import nn

from .errors import AnimeGANError, ConfigError, FaceNotFoundError, ImageError, VideoError, require
from .imageio import IMAGE_SUFFIXES, DecodedImage, load_image
from .stylize import Stylizer

if TYPE_CHECKING:
    from .video import ClipInfo

logger = logging.getLogger("animegan2")

#: The size choices (long side in pixels, never above the input's own); the last keeps the input's size.
OUTPUT_SIZES = ("512", "768", "1024", "Same as input")
SAME_AS_INPUT = OUTPUT_SIZES[-1]
#: Answers in seconds on a CPU, where full size takes ten times longer (README, "Web app").
DEFAULT_SIZE = "512"
THUMBNAIL_SIZE = 192
PHOTO_TYPES = "JPEG, PNG, WebP, TIFF, BMP or GIF"
FAST_LABEL = "Fast"
FAST_INFO = "Lower precision where this machine has it: quicker, nearly the same picture."
#: What a progress callback gets: the fraction done (``None``: unknown) and a sentence for people.
Report = Callable[[float | None, str], None]

_CSS = """
#title {text-align: center; margin-bottom: 0}
#subtitle {text-align: center; opacity: .75; margin-top: 0}
/* Gradio sizes a gallery's cells to fill its width: two styles became two 580-pixel squares.
   Small cells that wrap, with the style's name under each, on every screen width. */
.thumbs, .thumbs .fixed-height {min-height: 0 !important; height: auto !important}
.thumbs .grid-wrap {height: auto !important; max-height: none !important; overflow: visible !important}
.thumbs .grid-container {grid-template-columns: repeat(auto-fill, minmax(96px, 132px)) !important;
  grid-template-rows: none !important; grid-auto-rows: auto !important}
.thumbs .thumbnail-lg {aspect-ratio: auto !important; height: auto !important}
.thumbs .thumbnail-lg > img {aspect-ratio: 4 / 3; height: auto !important}
.thumbs .caption-label {position: static !important; max-width: none !important; border: 0 !important;
  border-radius: 0 !important; text-align: center !important; white-space: normal !important; overflow-wrap: anywhere}
"""


def _gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return require("gradio", "web")


def _style_label(weights: str) -> str:
    path = Path(weights)
    return path.stem if path.suffix or os.sep in weights else weights


def _long_side(output_size: str) -> int | None:
    """The long side an output-size choice asks for; ``None`` for "Same as input"."""
    if output_size == SAME_AS_INPUT:
        return None
    if output_size not in OUTPUT_SIZES:
        raise ConfigError(f"unknown output size {output_size!r}; choose one of: {', '.join(OUTPUT_SIZES)}")
    return int(output_size)


def _file_part(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("._")[:80] or "photo"


def _markdown(text: str) -> str:
    """``text`` shown literally in a Markdown block (file names may hold ``*`` or ``_``)."""
    return re.sub(r"([\\`*_{}\[\]()#+!|<>~])", r"\\\1", text)


def _fast_note(stylizer: Stylizer, fast: bool) -> str:
    """`` with bfloat16 on torch (cpu; fast: AVX-512 BF16)`` when the page asked for fast."""
    return f" with {stylizer.plan.describe()}" if fast else ""


def _uploaded(payload: Any) -> tuple[str | None, str]:
    """(path on this machine, the user's file name) of a file the page sent; the page's events
    take the raw payload so that the app, not Gradio's image decoder, judges the file."""
    if isinstance(payload, dict) and "video" in payload:  # gr.Video wraps the file
        payload = payload["video"]
    if not payload:
        return None, ""
    if isinstance(payload, (str, os.PathLike)):
        return str(payload), Path(payload).name
    path = payload.get("path")
    return path, payload.get("orig_name") or (Path(path).name if path else "")


def _silent(fraction: float | None, words: str) -> None:
    pass


@dataclass
class PhotoResult:
    """A stylized photo: what the slider compares, the PNG to download, and a sentence about it."""

    before: Image.Image
    after: Image.Image
    file: str
    note: str


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
        max_pixels: the most pixels stylized at once; larger images are reduced first (the page says so).
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
        self._prepared: dict[tuple[str, bool], Stylizer] = {}
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

    def _stylizer(self, style: str, fast: bool = False, **options: Any) -> Stylizer:
        """The one place the page's choices become a :class:`~animegan2.stylize.Stylizer`.

        The model behind it is prepared once per (style, fast) and shared by every request:
        for ``fast`` that is a bfloat16 copy or an int8 session, calibrated once (on the
        ``examples`` photos when given, else on the first photo stylized)."""
        model = self.model(style)
        with self._lock:
            if (style, fast) not in self._prepared:
                self._prepared[style, fast] = Stylizer(
                    model, device=self.device, precision="fast" if fast else "exact", calibration=self._calibration(),
                    max_pixels=self.max_pixels, progress=False,
                )  # fmt: skip
            return self._prepared[style, fast].with_options(**options)

    def _calibration(self) -> list[Path] | None:
        return self._example_photos()[:4] or None

    def _example_photos(self) -> list[Path]:
        if self.examples is None:
            return []
        return sorted(p for p in Path(self.examples).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    def _capped(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an image of this size is stylized at under ``max_pixels``."""
        return Stylizer(nn.Identity(), device="cpu", max_pixels=self.max_pixels).working_size(height, width)

    def _present(self, weights: str) -> bool:
        if Path(weights).exists():
            return True
        from .zoo import cached_weights

        try:
            return cached_weights(weights) is not None
        except AnimeGANError:
            return False

    def _check_upload(self, path: str | None, what: str, name: str = "") -> Path:
        if not path:
            raise ConfigError(f"Upload {what} first.")
        file = Path(path)
        size_mb = file.stat().st_size / 1e6
        if size_mb > self.max_upload_mb:
            smaller = "a smaller photo (saved as JPEG, or at fewer pixels)" if what == "a photo" else "a shorter or smaller clip"
            raise ConfigError(
                f"{name or file.name} is {size_mb:.1f} MB; the limit is {self.max_upload_mb:g} MB. Upload {smaller}."
            )
        return file

    def _decode(self, file: Path, name: str) -> DecodedImage:
        try:
            return load_image(file)
        except ImageError as exc:  # the message names the server's copy; the user knows their own name
            raise ImageError(f"{str(exc).replace(str(file), name or file.name)}. Upload a photo file ({PHOTO_TYPES}).") from None

    def _output(self, name: str, style: str, suffix: str) -> Path:
        """A fresh path named after the input and the style, e.g. ``beach-hayao.png``."""
        folder = Path(tempfile.mkdtemp(dir=self._outdir))
        return folder / f"{_file_part(Path(name).stem)}-{_file_part(style)}{suffix}"

    # --- what the page calls ---

    def check_photo(self, path: str | None, name: str = "") -> str:
        """What the page says as soon as a photo is uploaded; raises for a file it cannot use."""
        file = self._check_upload(path, "a photo", name)
        height, width = self._decode(file, name).pixels.shape[:2]
        note = f"{name or file.name}: {width}x{height} pixels."
        h, w = self._capped(height, width)
        if (h, w) != (height, width):
            note += (
                f" That is more than this server stylizes at once ({self.max_pixels / 1e6:g} megapixels): "
                f"'{SAME_AS_INPUT}' gives {w}x{h}."
            )
        return note

    def stylize_image(
        self,
        path: str | None,
        style: str,
        face_mode: bool = False,
        keep_colors: bool = False,
        output_size: str = DEFAULT_SIZE,
        fast: bool = False,
        *,
        name: str = "",
        restore_size: bool = False,
        report: Report = _silent,
    ) -> PhotoResult:
        """Stylize an uploaded file at ``output_size`` (the long side, never above the photo's own).

        Face mode gives the face's square at that side ("Same as input": at the photo's own
        resolution). ``fast`` runs ``precision="fast"`` (the note says which path ran).
        ``restore_size`` scales the result back to the photo's size when ``max_pixels``
        reduced it; ``report`` hears what is happening, in words.
        """
        file = self._check_upload(path, "a photo", name)
        name = name or file.name
        report(0.0, "Reading the photo")
        photo = self._decode(file, name).to_pil().convert("RGB")
        long_side = _long_side(output_size)
        what = "the photo"
        if face_mode:
            from .face import crop_face, detect_face

            report(0.1, "Looking for a face")
            face = detect_face(photo)
            if face is None:
                raise FaceNotFoundError("No face found in this photo: untick 'Face mode' or upload a closer portrait.")
            photo, long_side, what = crop_face(photo, face, size=long_side).image, None, "the face"
        report(0.2, f"Loading the {style} style")
        size = long_side if long_side and long_side < max(photo.size) else None
        stylizer = self._stylizer(style, fast, size=size, keep_color=keep_colors, restore_size=restore_size)
        h, w = stylizer.working_size(photo.height, photo.width)
        report(0.3, f"Stylizing {what} at {w}x{h} pixels")
        started = time.perf_counter()
        anime = stylizer.stylize(photo)
        seconds = time.perf_counter() - started
        report(0.95, "Saving the PNG")
        out = self._output(name, style, ".png")
        anime.save(out, format="PNG")
        note = f"Done in {seconds:.1f} s{_fast_note(stylizer, fast)}: {what}, {anime.width}x{anime.height} pixels."
        full_h, full_w = self._capped(photo.height, photo.width)
        if (h, w) != (full_h, full_w):
            note += f" For more detail ({full_w}x{full_h}) pick '{SAME_AS_INPUT}': it takes longer."
        if (full_h, full_w) != photo.size[::-1]:
            note += f" This server stylizes at most {self.max_pixels / 1e6:g} megapixels at once."
        before = photo if photo.size == anime.size else photo.resize(anime.size, Image.LANCZOS)
        return PhotoResult(before, anime, str(out), note)

    def api_stylize(self, path: str | None, style: str) -> str:
        """The ``/stylize`` endpoint: (image file, style name) -> stylized PNG at the input's size."""
        return self.stylize_image(path, style, output_size=SAME_AS_INPUT, restore_size=True).file

    def _probe_clip(self, path: str | None, name: str) -> tuple[Path, ClipInfo]:
        from .video import probe_video

        file = self._check_upload(path, "a video", name)
        name = name or file.name
        try:
            clip = probe_video(file)
        except VideoError:
            raise VideoError(f"{name} is not a video this app can read: upload an mp4, mov, webm or gif.") from None
        if clip.seconds > self.max_video_seconds:
            raise VideoError(
                f"{name} is {clip.seconds:.1f} s long; the limit is {self.max_video_seconds:g} s. "
                "Upload a shorter clip, or cut it first (animegan2 video --start/--end on the command line)."
            )
        return file, clip

    def check_clip(self, path: str | None, name: str = "") -> str:
        """What the page says as soon as a clip is uploaded; raises for a file it cannot use."""
        file, clip = self._probe_clip(path, name)
        return f"{name or file.name}: {clip.size[0]}x{clip.size[1]}, {clip.seconds:.1f} s."

    def stylize_video(
        self,
        path: str | None,
        style: str,
        output_size: str = DEFAULT_SIZE,
        fast: bool = False,
        *,
        name: str = "",
        report: Report = _silent,
    ) -> str:
        """Stylize an uploaded clip (audio kept) at ``output_size`` (never above the clip's own),
        with ``precision="fast"`` if ``fast``, and return the path of the result."""
        from .video import stylize_video

        file, clip = self._probe_clip(path, name)
        long_side = _long_side(output_size)
        report(0.0, f"Loading the {style} style" + (" (fast)" if fast else ""))
        # Frames arrive at the output size; max_pixels still caps what the model sees.
        stylizer = self._stylizer(style, fast, batch_size=4, restore_size=True)
        done = 0

        def frames(batch):
            nonlocal done
            out = stylizer.stylize_arrays(batch)
            done += len(batch)
            total = f" of {clip.frames}" if clip.frames else ""
            report(done / clip.frames if clip.frames else None, f"Stylized {done}{total} frames")
            return out

        dst = self._output(name or file.name, style, ".mp4")
        size = long_side if long_side and long_side < max(clip.size) else None
        stylize_video(file, dst, frames, size=size, progress=False)
        return str(dst)

    def api_stylize_video(self, path: str | None, style: str, output_size: str = DEFAULT_SIZE) -> str:
        """The ``/stylize_video`` endpoint: (clip, style name, output size) -> stylized mp4."""
        return self.stylize_video(path, style, output_size)

    def thumbnails(self) -> list[tuple[Image.Image, str]]:
        """(thumbnail, style) for each style whose weights are present, from the first example photo."""
        photos = self._example_photos()
        if not photos:
            return []
        photo = load_image(photos[0]).to_pil().convert("RGB")
        photo.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        return [
            (self._stylizer(style).stylize(photo), style)
            for style, weights in self.styles.items()
            if self._present(weights)
        ]

    # --- the page ---

    def build(self) -> Any:
        """The Gradio Blocks of the app (not yet launched)."""
        gr = _gradio()

        def problem(exc: AnimeGANError, lead: str = "Not done.") -> str:
            logger.info(f"web: {exc}")  # an expected user error: one line at most, never a traceback
            return f"**{lead}** {_markdown(str(exc))}"

        def api(fn):
            def run(*args):
                try:
                    return fn(*args)
                except AnimeGANError as exc:
                    logger.info(f"web: {exc}")
                    raise gr.Error(html.escape(str(exc), quote=False), print_exception=False) from None

            run.__name__ = fn.__name__
            return run

        def words(progress) -> Report:
            return lambda fraction, text: progress(fraction, desc=text)

        idle = gr.DownloadButton(value=None, interactive=False)
        styles = list(self.styles)
        sizes = [(f"{s} (slower)" if s == SAME_AS_INPUT else s, s) for s in OUTPUT_SIZES]
        size_info = (
            f"Long side in pixels, never larger than the input. {DEFAULT_SIZE} takes seconds on a CPU; "
            f"'{SAME_AS_INPUT}' keeps every pixel (up to {self.max_pixels / 1e6:g} megapixels) and takes longer."
        )
        with gr.Blocks(title="AnimeGANv2", analytics_enabled=False) as app:
            gr.Markdown("# AnimeGANv2", elem_id="title")
            gr.Markdown("Turn photos and short clips into anime. Everything runs on this machine.", elem_id="subtitle")
            thumbs = self.thumbnails()
            if thumbs:
                with gr.Accordion("Styles: click one to use it", open=True):
                    gallery = gr.Gallery(
                        thumbs, show_label=False, columns=len(thumbs), fit_columns=False, height="auto",
                        object_fit="cover", allow_preview=False, buttons=[], elem_classes="thumbs", elem_id="thumbs",
                    )  # fmt: skip
            with gr.Tab("Photo"):
                with gr.Row():
                    with gr.Column():
                        photo = gr.Image(type="filepath", label=f"Photo (up to {self.max_upload_mb:g} MB)", sources=["upload", "clipboard", "webcam"], elem_id="photo")
                        photo_note = gr.Markdown(elem_id="photo-note")
                        style = gr.Dropdown(styles, value=styles[0], label="Style", elem_id="style")
                        with gr.Row():
                            face_mode = gr.Checkbox(label="Face mode (a square around the face)", elem_id="face")
                            keep_colors = gr.Checkbox(label="Keep the photo's colours")
                            fast = gr.Checkbox(label=FAST_LABEL, info=FAST_INFO, elem_id="fast")
                        output_size = gr.Radio(sizes, value=DEFAULT_SIZE, label="Output size", info=size_info + (
                            " Face mode gives a square of that side."), elem_id="size")  # fmt: skip
                        go = gr.Button("Stylize", variant="primary", elem_id="go")
                    with gr.Column():
                        compare = gr.ImageSlider(label="Before / after", type="pil", elem_id="compare")
                        status = gr.Markdown(elem_id="status")
                        download = gr.DownloadButton("Download", elem_id="download", interactive=False)

                def on_photo_upload(payload):
                    path, name = _uploaded(payload)
                    try:
                        return gr.skip(), _markdown(self.check_photo(path, name)), None, idle, ""
                    except AnimeGANError as exc:
                        return None, problem(exc, "Can't use this file."), None, idle, ""  # drop the file: no broken-image icon stays

                def on_photo(payload, style_name, face, keep, size, quick, progress=gr.Progress()):
                    path, name = _uploaded(payload)
                    try:
                        result = self.stylize_image(path, style_name, face, keep, size, quick, name=name, report=words(progress))
                    except AnimeGANError as exc:
                        return None, idle, problem(exc)
                    return (result.before, result.after), gr.DownloadButton(value=result.file, interactive=True), _markdown(result.note)

                photo.upload(
                    on_photo_upload, photo, [photo, photo_note, compare, download, status], preprocess=False,
                    concurrency_id="checks", concurrency_limit=2, api_visibility="private",
                )  # fmt: skip
                photo.clear(lambda: ("", None, idle, ""), None, [photo_note, compare, download, status], api_visibility="private")
                # Clear first, so a failed run never leaves the previous result to download.
                go.click(lambda: (None, idle, ""), None, [compare, download, status], queue=False, api_visibility="private").then(
                    on_photo, [photo, style, face_mode, keep_colors, output_size, fast], [compare, download, status],
                    preprocess=False, api_visibility="private",
                )  # fmt: skip
            with gr.Tab("Video"):
                with gr.Row():
                    with gr.Column():
                        clip = gr.Video(label=f"Clip (up to {self.max_video_seconds:g} s, {self.max_upload_mb:g} MB)", sources=["upload"], elem_id="clip")
                        clip_note = gr.Markdown(elem_id="clip-note")
                        video_style = gr.Dropdown(styles, value=styles[0], label="Style", elem_id="video-style")
                        video_size = gr.Radio(sizes, value=DEFAULT_SIZE, label="Output size", info=size_info, elem_id="video-size")
                        video_fast = gr.Checkbox(label=FAST_LABEL, info=FAST_INFO, elem_id="video-fast")
                        go_video = gr.Button("Stylize clip", variant="primary", elem_id="go-video")
                    with gr.Column():
                        result = gr.Video(label="Anime clip", elem_id="result")
                        video_status = gr.Markdown(elem_id="video-status")

                def on_clip_upload(payload):
                    path, name = _uploaded(payload)
                    try:
                        return gr.skip(), _markdown(self.check_clip(path, name))
                    except AnimeGANError as exc:
                        return None, problem(exc, "Can't use this file.")

                def on_video(payload, style_name, size, quick, progress=gr.Progress()):
                    path, name = _uploaded(payload)
                    try:
                        return self.stylize_video(path, style_name, size, quick, name=name, report=words(progress)), ""
                    except AnimeGANError as exc:
                        return None, problem(exc)

                clip.upload(on_clip_upload, clip, [clip, clip_note], preprocess=False, concurrency_id="checks",
                            concurrency_limit=2, api_visibility="private")  # fmt: skip
                go_video.click(lambda: (None, ""), None, [result, video_status], queue=False, api_visibility="private").then(
                    on_video, [clip, video_style, video_size, video_fast], [result, video_status], preprocess=False, api_visibility="private"
                )  # fmt: skip
            if thumbs:

                def pick(evt):
                    return thumbs[evt.index][1], thumbs[evt.index][1]

                # Gradio passes the clicked item to a parameter typed SelectData; this module's
                # postponed annotations would leave it the string "gr.SelectData".
                pick.__annotations__["evt"] = gr.SelectData

                gallery.select(pick, None, [style, video_style], queue=False, api_visibility="private")
            with gr.Row(visible=False):
                api_in = gr.File(type="filepath")
                api_style = gr.Textbox()
                api_size = gr.Textbox(value=DEFAULT_SIZE)
                api_out = gr.File()
                api_go = gr.Button()
                api_go_video = gr.Button()
            api_go.click(api(self.api_stylize), [api_in, api_style], api_out, api_name="stylize")
            api_go_video.click(api(self.api_stylize_video), [api_in, api_style, api_size], api_out, api_name="stylize_video")
        app.queue(default_concurrency_limit=self.concurrency, max_size=self.queue_size)
        return app

    def launch(self, host: str = "127.0.0.1", port: int = 7860, quiet: bool = False, **kwargs: Any) -> None:
        """Build and serve the app until interrupted."""
        gr = _gradio()
        theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
        app = self.build()
        try:
            app.launch(
                server_name=host,
                server_port=port,
                share=False,
                # Gradio's start-up text ends by suggesting share=True, which this app never does: it says its own line.
                quiet=True,
                prevent_thread_lock=True,
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
        if not quiet:
            print(f"animegan2: serving on {app.local_url} (Ctrl+C to stop)", flush=True)
        app.block_thread()
