"""The package imports and stylizes where POSIX-only modules do not exist (Windows), and reads
this process's memory the way each OS reports it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from animegan2 import _memory, layerwise
from tests.conftest import REPO
from tests.reference import random_state_dict

POSIX_ONLY = ("resource", "fcntl", "termios", "pwd", "grp")

_CHILD = """
import importlib, importlib.abc, pkgutil, sys
HIDDEN = set(sys.argv[1].split(","))

class HidePosixModules(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

for name in HIDDEN:
    sys.modules.pop(name, None)
sys.meta_path.insert(0, HidePosixModules())

import animegan2
modules = [m.name for m in pkgutil.walk_packages(animegan2.__path__, "animegan2.") if m.name != "animegan2.__main__"]
for name in modules:
    importlib.import_module(name)

from PIL import Image
from animegan2 import Stylizer
from animegan2.cli import main

weights, photo, out_dir = sys.argv[2:]
image = Image.open(photo).convert("RGB").resize((240, 180))
for memory in ("normal", "low"):
    Stylizer(weights, device="cpu", progress=False, memory=memory).stylize(image).save(f"{out_dir}/{memory}.png")
status = main(["stylize", photo, "-o", out_dir, "--weights", weights, "--size", "200", "--quiet"])
print(len(modules), status, sorted(HIDDEN & set(sys.modules)))
"""


def test_imports_and_stylizes_without_posix_only_modules(testdata, tmp_path):
    weights = tmp_path / "port.pt"
    torch.save(random_state_dict(seed=1), weights)
    out = tmp_path / "out"
    out.mkdir()
    photo = testdata / "face_a.jpg"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), ",".join(POSIX_ONLY), str(weights), str(photo), str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    n_modules, status, loaded = result.stdout.split(maxsplit=2)
    assert int(n_modules) >= 20 and status == "0" and loaded.strip() == "[]"
    assert sorted(p.name for p in out.iterdir()) == ["face_a.jpg", "low.png", "normal.png"]


def test_memory_readings_are_this_process_in_bytes():
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    peak_kib = int(status["VmHWM"].split()[0])
    assert abs(_memory.current_rss() - int(status["VmRSS"].split()[0]) * 1024) < 64 * 2**20
    assert peak_kib * 1024 <= _memory.peak_rss() <= (peak_kib + 64 * 1024) * 1024


def test_no_reading_falls_back_to_the_peak_then_to_nothing(monkeypatch):
    monkeypatch.setattr(_memory, "current_rss", lambda: None)
    monkeypatch.setattr(layerwise, "current_rss", lambda: None)
    monkeypatch.setattr(layerwise, "peak_rss", lambda: 123)
    assert layerwise._resident_now() == 123
    monkeypatch.setattr(layerwise, "peak_rss", lambda: None)
    assert layerwise._resident_now() == 0


@pytest.mark.parametrize("platform", ["win32", "darwin", "freebsd13"])
def test_other_platforms_never_raise(monkeypatch, platform):
    """Off Linux the readers go to APIs this machine lacks: they must answer None, not fail."""
    monkeypatch.setattr(sys, "platform", platform)
    assert _memory.current_rss() is None or _memory.current_rss() > 0
    peak = _memory.peak_rss()
    assert peak is None or peak > 0
    _memory.trim_heap()


def test_model_imports_torch_and_the_resize_functions_only():
    """DESIGN.md's first rule: model.py is the architecture; the strip engine is reached on the
    first no_grad call, not imported with the model."""
    code = "import sys, animegan2.model; print(sorted(m for m in sys.modules if m.startswith('animegan2')))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(["animegan2", "animegan2.errors", "animegan2.model", "animegan2.resize"])


def test_the_command_line_parser_imports_no_training_code(capsys):
    """Building the parser is the cost of every command; the trainer loads only for ``train``."""
    code = "import sys; from animegan2 import cli; cli.build_parser(); print(sorted(m for m in sys.modules if m.startswith('animegan2.train')))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    from animegan2.cli import main

    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0 and "--lr-g LR_G" in capsys.readouterr().out

