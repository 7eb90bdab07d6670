import json
import os
from pathlib import Path

import pytest
import torch

from animegan2.model import Generator
from tests.reference import random_state_dict

REPO = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("ANIMEGAN2_TESTDATA", REPO.parent / "shared" / "testdata"))
# Fixtures that TensorFlow builds: a test that uses one (directly or through another fixture) needs it.
_TF_FIXTURES = {"tf_v2_checkpoint", "tf_training_checkpoint", "tf_sharded_checkpoint", "tf_v1_checkpoint"}


def pytest_collection_modifyitems(items):
    """Mark ``tf`` every test that uses a TensorFlow-built fixture (pyproject.toml lists the markers)."""
    for item in items:
        if _TF_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.tf)


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The shared real photos (../shared/testdata beside the checkout)."""
    assert TESTDATA.is_dir(), f"test photos not found at {TESTDATA}; set ANIMEGAN2_TESTDATA"
    return TESTDATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test touches the user's cache or the network by accident."""
    monkeypatch.setenv("ANIMEGAN2_HOME", str(tmp_path_factory.mktemp("animegan2_home")))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tf_v2_checkpoint(tmp_path_factory):
    """An AnimeGANv2 generator checkpoint saved by TensorFlow's own Saver in the published layout
    (``.directory`` = ``generator_Hayao_weight/``, ``.prefix`` = ``.../Hayao-64.ckpt``) with TF's
    outputs ``.outputs[(h, w)] = (x, y)`` (NHWC) for 64x64, 257x383 and 130x97 inputs.
    Built once per session from ``tests/tf_reference.py``; do not modify its files."""
    from tests.tf_reference import build_v2_checkpoint

    return build_v2_checkpoint(tmp_path_factory.mktemp("tf_v2"))


@pytest.fixture(scope="session")
def tf_training_checkpoint(tmp_path_factory):
    """Prefix of a TF training checkpoint: generator, discriminator, Adam slots, global step."""
    from tests.tf_reference import build_training_checkpoint

    return build_training_checkpoint(tmp_path_factory.mktemp("tf_train") / "train")


@pytest.fixture(scope="session")
def tf_sharded_checkpoint(tf_v2_checkpoint, tmp_path_factory):
    """Prefix of the ``tf_v2_checkpoint`` tensors rewritten by TensorFlow into two data shards."""
    from tests.tf_reference import write_sharded

    prefix = tmp_path_factory.mktemp("tf_sharded") / "Hayao-64.ckpt"
    write_sharded(tf_v2_checkpoint.prefix, prefix)
    return prefix


@pytest.fixture(scope="session")
def tf_v1_checkpoint(tmp_path_factory):
    """An AnimeGAN v1 generator checkpoint saved by TensorFlow's own Saver in the published layout
    (``.directory`` = ``generator_Hayao_weight/``, ``.prefix`` = ``.../Hayao-60.ckpt``) with TF's
    outputs ``.outputs[(h, w)] = (x, y)`` (NHWC) for ``tests/tf_reference_v1.SIZES``.
    Built once per session from ``tests/tf_reference_v1.py``; do not modify its files."""
    from tests.tf_reference_v1 import build_v1_checkpoint

    return build_v1_checkpoint(tmp_path_factory.mktemp("tf_v1"))


def tf_generator(state: dict, mode: str) -> Generator:
    """A generator in eval mode with TensorFlow's norm epsilon, ``mode`` upsampling and ``state``."""
    g = Generator(upsample=mode, norm_eps=1e-12)
    g.load_state_dict(state)
    return g.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A file of random weights in the published layout, for CLI runs."""
    path = tmp_path_factory.mktemp("weights") / "random.pt"
    torch.save(random_state_dict(seed=5), path)
    return str(path)


@pytest.fixture
def fast_retries(monkeypatch):
    """Downloads retry at once, reach 127.0.0.1 without a proxy, and are not in offline mode."""
    from animegan2 import download

    monkeypatch.setattr(download, "BACKOFF", 0.01)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("ANIMEGAN2_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture
def server():
    """A weights server on 127.0.0.1 (``tests/weights_server.py``); faults are injected per request."""
    from tests.weights_server import WeightsServer

    with WeightsServer() as srv:
        yield srv


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    """write(name=entry, ...) -> installs a manifest with those entries as ANIMEGAN2_MANIFEST
    (entries from ``tests.manifests.entry``)."""

    def write(**entries):
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps({"schema": 1, "weights": entries}))
        monkeypatch.setenv("ANIMEGAN2_MANIFEST", str(path))
        return path

    return write


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A toy training data set: 4 photos and 4 anime frames (+ smooth) of 32x32 noise, and a tiny VGG19."""
    from tests.toy_training import make_dataset

    return make_dataset(tmp_path_factory.mktemp("data"))
