import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("ANIMEGAN2_TESTDATA", REPO.parent / "shared" / "testdata"))


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
