"""torchrun over `stylize` and `video`: every file done once, by one of the processes, with
the pixels one process gives; one summary, from rank 0."""

import os
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from PIL import Image

from animegan2.cli import main
from animegan2.shard import Shard
from tests.clips import make_clip
from tests.reference import random_state_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "animegan2"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "random.pt"
    torch.save(random_state_dict(seed=5), path)
    return str(path)


def torchrun(*args):
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    return subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=240)


@pytest.mark.slow
def test_torchrun_stylize_shards_a_folder(tmp_path, weights):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (20, 16 + i, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "bad.png").write_bytes(b"\x89PNG broken")
    r = torchrun("stylize", str(folder), "-o", str(tmp_path / "two"), "--weights", weights, "--device", "cpu")
    assert r.returncode == 1, r.stderr  # bad.png failed
    assert r.stderr.count("animegan2: failed:") == 1 and "bad.png" in r.stderr
    # The counts are the sums over both processes, printed once: each image was done once.
    assert r.stderr.count(" stylized, ") == 1 and "animegan2: 5 stylized, 0 skipped, 1 failed" in r.stderr
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the torchrun processes ran
    try:
        assert main(["stylize", str(folder), "-o", str(tmp_path / "one"), "--weights", weights, "--device", "cpu", "-q"]) == 1
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [f"{i}.png" for i in range(5)]
    for i in range(5):
        two, one = (np.asarray(Image.open(tmp_path / d / f"{i}.png")) for d in ("two", "one"))
        assert np.array_equal(two, one), i


@pytest.mark.slow
def test_torchrun_video_shards_the_clips(tmp_path, weights):
    clips = [tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"]
    for clip in clips:
        make_clip(clip, audio=False, n=3)
    (tmp_path / "out").mkdir()
    r = torchrun("video", *map(str, clips), "-o", str(tmp_path / "out"), "--weights", weights, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("animegan2: wrote") == 3 and r.stderr.count("3 videos written, 0 failed") == 1
    for clip in clips:
        with av.open(str(tmp_path / "out" / clip.name)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 3


def test_one_process_is_one_shard_and_gpus_follow_local_rank(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert Shard.from_env() == Shard(0, 1, 0) and Shard().sum([3, 4]) == [3, 4]
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    shard = Shard.from_env()
    assert shard.take(range(11)) == [3, 7] and Shard(2, 4).take(range(11)) == [2, 6, 10]
    assert shard.device(torch.device("cuda")) == torch.device("cuda", 1)
    assert shard.device(torch.device("cuda", 0)) == torch.device("cuda", 0)  # an explicit GPU is kept
    assert shard.device(torch.device("cpu")) == torch.device("cpu")
