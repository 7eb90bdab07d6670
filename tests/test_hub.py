"""torch.hub: list, help, load from the checkout and from a pre-populated GitHub-form hub cache.

Weights come from a loopback copy of the bundled manifest (same entries and file names,
URLs on 127.0.0.1, digests of the generated files served there).
"""

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from animegan2 import download, zoo
from tests.reference import random_state_dict
from tests.weights_server import WeightsServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def loopback_zoo(tmp_path, monkeypatch):
    """The bundled manifest's torch-state-dict entries, served on loopback; -> {name: state_dict}."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    raw = json.loads(zoo.BUNDLED_MANIFEST.read_text())
    states = {}
    with WeightsServer() as server:
        for seed, (name, spec) in enumerate(sorted(raw["weights"].items())):
            if spec["format"] != "torch-state-dict":
                continue
            states[name] = random_state_dict(seed=seed)
            buf = io.BytesIO()
            torch.save(states[name], buf)
            body = buf.getvalue()
            (file,) = spec["files"]
            spec["files"] = [{
                "name": file["name"],
                "urls": [server.add(f"/{name}/{file['name']}", body)],
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }]
        raw["weights"] = {k: v for k, v in raw["weights"].items() if k in states}
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps(raw))
        monkeypatch.setenv("ANIMEGAN2_MANIFEST", str(path))
        yield states


@pytest.fixture
def loopback_tf_zoo(tf_v2_checkpoint, tmp_path, monkeypatch):
    """The bundled manifest's AnimeGANv2 TF1 entries, each serving the TF-made fixture checkpoint
    under the entry's own file names (digests of the served files)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    raw = json.loads(zoo.BUNDLED_MANIFEST.read_text())
    names = [n for n, s in raw["weights"].items() if s["format"] == "tf1-checkpoint" and s.get("architecture", "animeganv2") == "animeganv2"]
    with WeightsServer() as server:
        for name in names:
            files = []
            for file in raw["weights"][name]["files"]:
                suffix = file["name"][file["name"].index(".ckpt") + len(".ckpt") :]
                body = Path(str(tf_v2_checkpoint.prefix) + suffix).read_bytes()
                files.append({"name": file["name"], "urls": [server.add(f"/{name}/{file['name']}", body)],
                              "size": len(body), "sha256": hashlib.sha256(body).hexdigest()})  # fmt: skip
            raw["weights"][name]["files"] = files
        raw["weights"] = {k: raw["weights"][k] for k in names}
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps(raw))
        monkeypatch.setenv("ANIMEGAN2_MANIFEST", str(path))
        yield names


def _same(model, state):
    loaded = model.state_dict()
    return loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())


@pytest.fixture
def hub_checkout(monkeypatch):
    """This checkout as torch.hub's cache of "someone/animegan2:main"; the network is forbidden."""

    def no_network(*args, **kwargs):
        raise AssertionError("torch.hub tried to reach the network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    repo_dir = Path(torch.hub.get_dir()) / "someone_animegan2_main"
    shutil.copytree(REPO / "animegan2", repo_dir / "animegan2", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "hubconf.py", repo_dir / "hubconf.py")
    return repo_dir


def test_list_shows_exactly_the_two_entry_points(hub_checkout):
    listed = torch.hub.list("someone/animegan2:main", trust_repo=True, skip_validation=True)
    assert sorted(listed) == ["face2paint", "generator"]


def test_help_shows_the_docstrings(hub_checkout):
    text = torch.hub.help("someone/animegan2:main", "generator", trust_repo=True, skip_validation=True)
    assert '"face_paint_512_v2" (the established default)' in text
    text = torch.hub.help("someone/animegan2:main", "face2paint", trust_repo=True, skip_validation=True)
    assert "centre crop" in text


def test_load_local_every_torch_entry_with_its_metadata(loopback_zoo):
    for name, state in loopback_zoo.items():
        model = torch.hub.load(str(REPO), "generator", source="local", pretrained=name, progress=False)
        assert _same(model, state) and not model.training
        assert (model.upsample, model.norm_eps) == ("align_corners", 1e-5)
    default = torch.hub.load(str(REPO), "generator", source="local", progress=False)
    assert _same(default, loopback_zoo["face_paint_512_v2"])
    webtoon = torch.hub.load(str(REPO), "generator", source="local", pretrained="webtoon", upsample="tf", norm_eps=1e-12)
    assert _same(webtoon, loopback_zoo["celeba_distill"]) and (webtoon.upsample, webtoon.norm_eps) == ("tf", 1e-12)
    out = default(torch.zeros(1, 3, 20, 28))
    assert out.shape == (1, 3, 20, 28)


def test_load_local_every_tf_entry_converted_with_tf_numerics(loopback_tf_zoo, tf_v2_checkpoint):
    assert sorted(loopback_tf_zoo) == ["hayao", "paprika", "shinkai"]
    x, y = tf_v2_checkpoint.outputs[(64, 64)]
    for name in loopback_tf_zoo:
        model = torch.hub.load(str(REPO), "generator", source="local", pretrained=name, progress=False)
        assert (model.upsample, model.norm_eps, model.training) == ("tf", 1e-12, False)
        with torch.no_grad():
            out = model(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        assert float((out - torch.from_numpy(y)).abs().max()) < 1e-4


def test_load_random_and_from_a_file(tmp_path):
    model = torch.hub.load(str(REPO), "generator", source="local", pretrained=False)
    assert (model.upsample, model.norm_eps, model.training) == ("tf", 1e-12, False)
    state = random_state_dict(seed=7)
    torch.save(state, tmp_path / "mine.pt")
    model = torch.hub.load(str(REPO), "generator", source="local", pretrained=str(tmp_path / "mine.pt"))
    assert _same(model, state) and (model.upsample, model.norm_eps) == ("align_corners", 1e-5)


def test_github_form_with_a_prepopulated_hub_cache_needs_no_network(loopback_zoo, hub_checkout, capsys):
    model = torch.hub.load(
        "someone/animegan2:main", "generator", pretrained="face_paint_512_v1", trust_repo=True, skip_validation=True, progress=False
    )
    assert f"Using cache found in {hub_checkout}" in capsys.readouterr().err
    assert _same(model, loopback_zoo["face_paint_512_v1"])
    assert download.cache_dir().joinpath("face_paint_512_v1", "face_paint_512_v1.pt").is_file()


def test_face2paint_entry_point_is_the_drop_in():
    from PIL import Image

    paint = torch.hub.load(str(REPO), "face2paint", source="local", size=64)
    model = torch.hub.load(str(REPO), "generator", source="local", pretrained=False)
    photo = Image.new("RGB", (100, 80), (200, 150, 120))
    out = paint(model, photo)
    assert isinstance(out, Image.Image) and out.size == (64, 64)
    assert paint(model, photo, side_by_side=True).size == (128, 64)
    assert torch.hub.load(str(REPO), "face2paint", source="local", size=32, side_by_side=True)(model, photo).size == (64, 32)
