"""Deployment files against PyTorch: for each format, how close the exported file's output is
to the PyTorch default path on a real photo, its size, and its speed as a ratio to PyTorch
measured in the same run.

    python benchmarks/bench_deploy.py WEIGHTS.pt [--size 336 640] [--threads 2] [--repeat 3]

Two layouts of the same tensors: the face_paint_512_v2 layout (align_corners upsampling,
norm epsilon 1e-5) and a TF-converted layout (TF1 bilinear, epsilon 1e-12). Formats whose
package is missing are left out: run it with ``.venv-litert/bin/python`` (scripts/setup_dev.sh
makes it: this environment's packages plus the litert extra) to include LiteRT in float32,
float16 and int8. Core ML runs only on Apple systems, so only its size is measured here.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animegan2.export import OnnxRuntimeModel, export_metadata, export_onnx  # noqa: E402
from animegan2.imageio import from_tensor, load_image, to_tensor  # noqa: E402
from animegan2.model import Generator  # noqa: E402
from benchmarks.bench_speed import TESTDATA  # noqa: E402

LAYOUTS = {"face_paint_512_v2 layout": ("align_corners", 1e-5), "TF-converted layout": ("tf", 1e-12)}


def _timed(fn, x, repeat: int) -> tuple[torch.Tensor, float]:
    y = fn(x)  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        y = fn(x)
        times.append(time.perf_counter() - start)
    return y, statistics.median(times)


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _formats(g: Generator, x: torch.Tensor, tmp: Path, threads: int):
    """(name, path, runner or None) for each format this environment can produce."""
    meta = export_metadata(g, "proxy", "benchmark weights")
    onnx_path = tmp / "g.onnx"
    export_onnx(g, onnx_path, dynamic=True, metadata=meta)
    yield "ONNX (ONNX Runtime)", onnx_path, OnnxRuntimeModel(onnx_path, upsample=g.upsample, threads=threads)
    if importlib.util.find_spec("executorch"):
        from animegan2.mobile import ExecuTorchModel, export_executorch

        path = export_executorch(g, tmp / "g.pte", metadata=meta)
        yield "ExecuTorch (XNNPACK)", path, ExecuTorchModel(path)
    if importlib.util.find_spec("litert_torch"):
        from animegan2.mobile import LITERT_PRECISIONS, LiteRTModel, convert_litert, export_litert

        size = tuple(x.shape[-2:])
        flatbuffer = convert_litert(g, size=size)
        for precision in LITERT_PRECISIONS:
            path = export_litert(flatbuffer, tmp / f"g_{precision}.tflite", size=size, precision=precision, metadata=meta)
            yield f"LiteRT {precision}", path, LiteRTModel(path, threads=threads)
    if importlib.util.find_spec("coremltools"):
        from animegan2.mobile import export_coreml

        for precision in ("float32", "float16"):
            path = export_coreml(g, tmp / f"g_{precision}.mlpackage", size=tuple(x.shape[-2:]), precision=precision, metadata=meta)
            yield f"Core ML {precision}", path, None


def _web(g: Generator, x: torch.Tensor, tmp: Path, want: np.ndarray) -> tuple[int, int, float | None]:
    from animegan2.webexport import export_web
    from tests.web_page import serve, stylize_in_page

    folder = export_web(g, tmp / "web", metadata=export_metadata(g, "proxy", "benchmark weights"),
                        ort_tarball=ROOT / ".cache" / "onnxruntime-web-1.30.0.tgz")  # fmt: skip
    photo = tmp / "photo.png"
    Image.fromarray(from_tensor(x)[0]).save(photo)
    with serve(folder) as url:
        page = stylize_in_page(url, photo, tmp / "page.png")
    got = np.asarray(Image.open(tmp / "page.png").convert("RGB")).astype(int)
    return _size(folder), int(np.abs(got - want.astype(int)).max()), page["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="an AnimeGANv2 state_dict (.pt), e.g. benchmarks/proxy_weights.py's")
    parser.add_argument("--size", type=int, nargs=2, default=[336, 640], metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-web", action="store_true", help="skip the browser page")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    state = torch.load(args.weights, weights_only=True)
    full = to_tensor(load_image(TESTDATA / "street.jpg").pixels)
    x = F.interpolate(full, size=tuple(args.size), mode="area")
    print(f"street.jpg at {args.size[1]}x{args.size[0]}, {args.threads} threads, median of {args.repeat}")
    for layout, (mode, eps) in LAYOUTS.items():
        g = Generator(upsample=mode, norm_eps=eps)
        g.load_state_dict(state)
        g.eval()
        with torch.inference_mode():
            want, base = _timed(g, x, args.repeat)
        want_u8 = from_tensor(want)[0]
        print(f"\n{layout} ({mode}, eps {eps:g}): PyTorch default path {base * 1000:.0f} ms")
        print("| format | max abs vs PyTorch | PSNR | uint8 levels | size | time / PyTorch |")
        print("|---|---|---|---|---|---|")
        with tempfile.TemporaryDirectory() as tmp:
            for name, path, runner in _formats(g, x, Path(tmp), args.threads):
                if runner is None:
                    print(f"| {name} | not run (Apple only) | | | {_size(path) / 1e6:.1f} MB | |")
                    continue
                got, seconds = _timed(runner, x, args.repeat)
                diff = (got - want).abs().max().item()
                psnr = 10 * torch.log10(4 / ((got - want) ** 2).mean()).item()  # [-1, 1]: peak-to-peak 2
                levels = int(np.abs(from_tensor(got)[0].astype(int) - want_u8.astype(int)).max())
                print(f"| {name} | {diff:.1e} | {psnr:.1f} dB | {levels} | {_size(path) / 1e6:.1f} MB | {seconds / base:.2f} |")
            if not args.no_web:
                size, levels, seconds = _web(g, x, Path(tmp), want_u8)
                ratio = f"{seconds / base:.2f} (page's own timer, WebAssembly, 1 thread)" if seconds else "?"
                print(f"| web page (ORT Web, Chromium) | | | {levels} | {size / 1e6:.1f} MB | {ratio} |")


if __name__ == "__main__":
    main()
