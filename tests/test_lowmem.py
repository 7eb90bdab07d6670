"""memory="low" (exact, bounded memory) and memory="tiled" (approximate) against the in-memory path."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from animegan2 import layerwise
from animegan2.errors import ConfigError
from animegan2.lowmem import parse_memory, run_low_memory, run_tiled
from animegan2.model import UPSAMPLE_MODES, Generator
from animegan2.stylize import Stylizer
from tests.reference import ReferenceGenerator, random_state_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _generator(mode: str, eps: float = 1e-5) -> Generator:
    g = Generator(upsample=mode, norm_eps=eps).eval()
    g.load_state_dict(random_state_dict(3))
    return g


def _input(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class _SpyStore(layerwise._Store):
    """Records whether each store went to RAM or to a memory-mapped file."""

    kinds: list[str] = []

    def __init__(self, shape, pool, path=None):
        super().__init__(shape, pool, path)
        _SpyStore.kinds.append("ram" if path is None else "file")


@pytest.mark.parametrize(("mode", "size"), zip(UPSAMPLE_MODES, [(37, 53), (48, 33), (41, 45)]))
def test_low_spilled_to_files_matches_in_memory(mode, size, tmp_path, monkeypatch):
    """Strips of 3 rows (many strips, every halo and border case) and a 1-byte budget:
    every intermediate map goes through a memory-mapped file."""
    _SpyStore.kinds = []
    monkeypatch.setattr(layerwise, "_Store", _SpyStore)
    g, x = _generator(mode), _input(*size)
    with torch.inference_mode():
        expected = g.forward_layers(x)
    got = run_low_memory(g, x, max_memory=1, tile_rows=3, tmp_dir=tmp_path)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4
    assert _SpyStore.kinds and set(_SpyStore.kinds) == {"file"}
    assert os.listdir(tmp_path) == []  # the spill folder is gone


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
def test_low_in_ram_matches_reference_generator(mode):
    """Against the independent reference implementation, TF epsilon, one-row strips, batch of 2."""
    g = _generator(mode, eps=1e-12)
    ref = ReferenceGenerator(upsample=mode, eps=1e-12).eval()
    ref.load_state_dict(random_state_dict(3))
    x = torch.cat([_input(29, 41, 1), _input(29, 41, 2)])
    with torch.inference_mode():
        expected = ref(x)
    got = run_low_memory(g, x, max_memory=None, tile_rows=1)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4


def test_temp_files_removed_after_error(tmp_path, monkeypatch):
    """An error half-way (after maps were spilled) leaves no file behind."""
    calls = []

    def failing_materialize(self, src):
        calls.append(sorted(os.listdir(self.spill_dir)))
        raise RuntimeError("injected")

    monkeypatch.setattr(layerwise._LayerwiseRun, "materialize", failing_materialize)
    with pytest.raises(RuntimeError, match="injected"):
        run_low_memory(_generator("tf"), _input(24, 24), max_memory=1, tile_rows=5, tmp_dir=tmp_path)
    assert calls and len(calls[0]) >= 2  # files existed when it failed
    assert os.listdir(tmp_path) == []


def _peak_rss_mib(code: str) -> float:
    """Run ``code`` in a fresh interpreter; its peak RSS as the kernel counted it (VmHWM).

    Not the child's ``ru_maxrss``: that starts from the parent's RSS at fork, and pytest's
    process (TensorFlow loaded) is larger than the budget under test.
    """
    report = "\nprint(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))"
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + report], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1]) / 1024  # kB


_CHILD = """
    import torch
    from animegan2.lowmem import run_low_memory
    from animegan2.model import Generator
    torch.set_num_threads(1)
    g = Generator("tf").eval()
    x = torch.rand(1, 3, 448, 448) * 2 - 1
    {call}
"""


@pytest.mark.slow
def test_low_memory_respects_budget():
    """448x448: module by module the process peaks well above 400 MiB (~590); low mode stays under it."""
    in_memory = _peak_rss_mib(_CHILD.format(call="with torch.inference_mode(): g.forward_layers(x)"))
    low = _peak_rss_mib(_CHILD.format(call="run_low_memory(g, x, max_memory='400MB')"))
    assert in_memory > 500
    assert low <= 400


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(4 / ((a - b) ** 2).mean().item())  # range [-1, 1]


def test_tiled_close_to_exact_on_a_photo(testdata):
    image = Image.open(testdata / "street.jpg").convert("RGB").resize((182, 97))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    g = _generator("tf")
    with torch.inference_mode():
        exact = g(x)
    tiled = run_tiled(g, x, tile=64, overlap=16)
    assert tiled.shape == exact.shape == (1, 3, 96, 180)
    assert 25 < _psnr(tiled, exact) < 60  # close, but not the same: each tile has its own norm statistics
    assert torch.equal(run_tiled(g, x, tile=184, overlap=16), exact)  # one tile is the whole image


def test_tiled_rejects_bad_tiles():
    with pytest.raises(ConfigError, match="multiples of 4"):
        run_tiled(_generator("tf"), _input(16, 16), tile=30, overlap=8)


def test_parse_memory():
    assert parse_memory("2GB") == 2 * 1024**3
    assert parse_memory("512 MiB") == 512 * 1024**2
    assert parse_memory("1.5k") == 1536
    assert parse_memory(4096) == 4096
    for bad in ("lots", "-1GB", 0):
        with pytest.raises(ConfigError):
            parse_memory(bad)


def test_stylizer_memory_modes():
    g = _generator("align_corners")
    image = (np.random.default_rng(0).random((45, 62, 3)) * 255).astype(np.uint8)
    normal = Stylizer(g, device="cpu", progress=False).stylize(image).astype(int)
    low = Stylizer(g, device="cpu", progress=False, memory="low", max_memory="1KB").stylize(image)
    assert np.abs(normal - low).max() <= 1  # float rounding can move a value across a level
    with pytest.raises(ConfigError, match="memory must be one of"):
        Stylizer(g, device="cpu", memory="small")
    with pytest.raises(ConfigError, match="AnimeGANv2 generators only"):
        run_low_memory(torch.nn.Identity(), _input(8, 8))


def test_cli_memory_flags(tmp_path, capsys):
    from animegan2.cli import main

    weights = tmp_path / "w.pt"
    torch.save(random_state_dict(3), weights)
    Image.fromarray((np.random.default_rng(1).random((40, 57, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    outputs = {}
    for memory in ("normal", "low"):
        out = tmp_path / f"{memory}.png"
        args = [str(tmp_path / "in.png"), "-o", str(out), "--weights", str(weights), "--memory", memory, "-q"]
        assert main(["stylize", *args, "--max-memory", "1KB"]) == 0
        outputs[memory] = np.asarray(Image.open(out)).astype(int)
    assert np.abs(outputs["normal"] - outputs["low"]).max() <= 1
    assert main(["stylize", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.png"), "--weights", str(weights),
                 "--memory", "low", "--max-memory", "lots", "-q"]) == 1  # fmt: skip
    assert "cannot read memory size 'lots'" in capsys.readouterr().err
