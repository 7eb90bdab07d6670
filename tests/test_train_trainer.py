"""The trainer on tiny synthetic data: init phase, adversarial phase, outputs, resume,
DDP (torchrun, gloo), export, guards and errors before training."""

import dataclasses
import json
import os
import subprocess
import sys

import cv2
import pytest
import torch

from animegan2 import cli, zoo
from animegan2.stylize import Stylizer
from animegan2.errors import ConfigError, TrainingError
from animegan2.train import losses, trainer
from tests.hostile import CodeRunningPickle
from tests.toy_training import config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: threads only add contention on the shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(dataset, out, resume=False, **kw):
    cfg = config(dataset, out, **kw)
    given = dataclasses.asdict(cfg)
    trainer.train(cfg, resume=resume, progress=False)
    assert dataclasses.asdict(cfg) == given  # what the run resolves is recorded, never written into the settings given
    return torch.load(out / "checkpoint.pt", weights_only=True)


def test_init_phase_lowers_content_loss(dataset, tmp_path):
    # lr 1e-4: from the original's initialisation, steps of 1e-3 overshoot on 4 noise images
    run(dataset, tmp_path / "run", epochs=4, init_epochs=4, lr_init=1e-4)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in log] == ["init"] * 4
    assert log[-1]["init_content"] < 0.8 * log[0]["init_content"]


def test_adversarial_steps_write_checkpoint_samples_and_log(dataset, tmp_path):
    out = tmp_path / "run"
    state = run(dataset, out)
    assert state["step"] == 4 and state["epoch"] == 2
    for key in ("generator", "discriminator", "opt_init", "opt_g", "opt_d", "scaler", "rng"):
        assert key in state
    assert state["opt_d"]["state"]  # D was stepped in the adversarial epoch
    grid = cv2.imread(str(out / "samples" / "epoch_002.jpg"))
    assert grid.shape == (32, 64, 3)  # one row per val photo: photo | G(photo)
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,phase") and rows[2].split(",")[:3] == ["2", "4", "gan"]
    saved = trainer.read_config_file(out / "config.yaml")
    # The original trainer's numerics, as the trainer takes them from Generator()'s defaults.
    assert saved["upsample"] == "tf" and saved["norm_eps"] == 1e-12 and len(saved["data_mean"]) == 3
    assert state["model_args"] == {"upsample": "tf", "norm_eps": 1e-12}  # the model's numerics, their own record
    assert saved["amp"] == "auto"  # float32 on CPU
    record = json.loads((out / "log.jsonl").read_text().splitlines()[1])
    assert {"d_total", "g_content", "g_style", "g_color", "g_tv", "g_adv", "g_grad_norm", "d_grad_norm"} <= set(record)


def test_resume_is_bit_identical(dataset, tmp_path):
    # 3 steps per epoch (6 photos): stopping at step 2 resumes mid-epoch, then crosses into the GAN phase.
    data6 = tmp_path / "data"
    import shutil

    shutil.copytree(dataset, data6)
    for i in (4, 5):
        shutil.copy(data6 / "train_photo" / "0.png", data6 / "train_photo" / f"{i}.png")
    straight = run(data6, tmp_path / "a", max_steps=4, epochs=3)
    run(data6, tmp_path / "b", max_steps=2, epochs=3)
    cfg = trainer.resolve_config(resume=tmp_path / "b", overrides={"max_steps": 4})
    trainer.train(cfg, resume=True, progress=False)
    resumed = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert resumed["step"] == straight["step"] == 4
    for part in ("generator", "discriminator"):
        for k, v in straight[part].items():
            assert torch.equal(v, resumed[part][k]), (part, k)
    assert torch.equal(straight["opt_d"]["state"][0]["exp_avg"], resumed["opt_d"]["state"][0]["exp_avg"])
    # The epoch row after the mid-epoch resume averages all 3 of that epoch's steps, not the 1 after it.
    rows = [[json.loads(line) for line in (tmp_path / r / "log.jsonl").read_text().splitlines()] for r in "ab"]
    assert len(rows[0]) == len(rows[1]) == 1 and rows[0][0]["step"] == rows[1][0]["step"] == 3
    assert {k: v for k, v in rows[1][0].items() if k != "seconds"} == {k: v for k, v in rows[0][0].items() if k != "seconds"}


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process_with_the_combined_batch(dataset, tmp_path):
    """Two processes with batch 1 must compute the gradient of one process with batch 2. With
    every learning rate 0 no weight moves, so all 4 steps (2 init, 2 adversarial: all three
    optimisers, D's step and G's step through D) take their gradients at the same weights on
    the same photos in both runs, and Adam's first moment, a fixed positive combination of
    them (0.5 g_2 + 0.25 g_1), compares the two runs' gradients exactly as computed."""
    args = [
        "-m", "animegan2", "train", "--quiet", "--data", str(dataset), "--style", "toy", "--preset", "hayao",
        "--vgg", str(dataset / "vgg19.npy"), "--image-size", "32", "--epochs", "2", "--init-epochs", "1",
        "--workers", "0", "--device", "cpu", "--samples", "1", "--lr-init", "0", "--lr-g", "0", "--lr-d", "0",
    ]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    subprocess.run([*ddp, *args, "--batch-size", "1", "--out", str(tmp_path / "ddp")], check=True, env=env, cwd=REPO, timeout=240)
    a = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    b = run(dataset, tmp_path / "one", batch_size=2, device="cpu", samples=1, lr_init=0.0, lr_g=0.0, lr_d=0.0)
    assert a["step"] == b["step"] == 4
    for part in ("generator", "discriminator"):
        assert all(torch.equal(a[part][k], v) for k, v in b[part].items())
    # With every learning rate 0 both runs take all their gradients at the same weights, so what
    # is left to compare is the gradient DDP all-reduces. Two parts bound the difference:
    # float32 rounding (u = 2^-24): a K-term sum errs by at most K*u of its terms' magnitudes,
    # and ~40 chained layers with K <= 2304 give 40 * 2304 * u = 5.5e-3 at worst; and the L1
    # content loss, whose gradient is a sign per feature: a feature difference within rounding
    # of 0 flips its term, moving the gradient by up to 2/256 of its scale (this tiny VGG has
    # 2 x 8 x 4 x 4 = 256 features). So each tensor's first moment agrees within 1e-2 in norm
    # (measured 1.6e-3 on an AMD EPYC Zen 5 at every ISA setting); without DDP's all-reduce
    # the runs differ by 0.93.
    for opt in ("opt_init", "opt_g", "opt_d"):
        assert a[opt]["state"].keys() == b[opt]["state"].keys() and b[opt]["state"]
        for i, s in b[opt]["state"].items():
            ours, theirs = a[opt]["state"][i]["exp_avg"].double(), s["exp_avg"].double()
            assert (ours - theirs).norm() <= 1e-2 * theirs.norm(), (opt, i)
    assert (tmp_path / "ddp" / "samples" / "epoch_002.jpg").stat().st_size > 0


def test_export_loads_through_the_zoo_with_the_same_outputs(dataset, tmp_path):
    out = tmp_path / "run"
    state = run(dataset, out, max_steps=3)
    assert cli.main(["train", "export", str(out), "-o", str(tmp_path / "toy.safetensors")]) == 0
    g = torch.hub.load(REPO, "generator", source="local", pretrained=str(tmp_path / "toy.safetensors"))
    assert (g.upsample, g.norm_eps) == ("tf", 1e-12)
    _, meta = zoo.load_state_dict(tmp_path / "toy.safetensors")
    assert (meta.style, meta.size) == ("toy", 32)
    trained = trainer.Generator(upsample="tf", norm_eps=1e-12)
    trained.load_state_dict(state["generator"])
    x = torch.rand(1, 3, 36, 28) * 2 - 1
    with torch.no_grad():
        assert torch.equal(g(x), trained.eval()(x))


def test_every_epoch_generator_is_kept_and_loads_everywhere(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    final = run(dataset, out, epochs=3, keep_generators=2)
    kept = out / "generators"
    assert sorted(p.name for p in kept.iterdir()) == ["epoch_002.safetensors", "epoch_003.safetensors"]
    assert kept.joinpath("epoch_002.safetensors").stat().st_size > 4 * sum(v.numel() for v in final["generator"].values())
    state, meta = zoo.read_safetensors(kept / "epoch_003.safetensors")
    assert all(torch.equal(state[k], v) for k, v in final["generator"].items())
    assert (meta["epoch"], meta["step"], meta["style"], meta["upsample"], meta["norm_eps"]) == ("3", "6", "toy", "tf", "1e-12")
    # Epoch 2's generator is the one a run that stops after epoch 2 ends with.
    two = run(dataset, tmp_path / "two", epochs=2)["generator"]
    assert cli.main(["train", "export", str(out), "--epoch", "2", "-o", str(tmp_path / "e2.safetensors")]) == 0
    assert cli.main(["train", "export", str(out), "--epoch", "1", "-o", str(tmp_path / "e1.safetensors")]) == 1
    assert "epoch_001.safetensors does not exist; the run keeps the generators of epochs [2, 3]" in capsys.readouterr().err
    exported, meta = zoo.read_safetensors(tmp_path / "e2.safetensors")
    assert meta["epoch"] == "2" and all(torch.equal(exported[k], v) for k, v in two.items())
    want = trainer.Generator(upsample="tf", norm_eps=1e-12)
    want.load_state_dict(two)
    hub = torch.hub.load(REPO, "generator", source="local", pretrained=str(kept / "epoch_002.safetensors"))
    x = torch.rand(1, 3, 36, 28) * 2 - 1
    with torch.no_grad():
        assert torch.equal(hub(x), want.eval()(x))
    stylizer = Stylizer(kept / "epoch_002.safetensors", device="cpu", progress=False)
    assert (stylizer.model.upsample, stylizer.model.norm_eps) == ("tf", 1e-12)
    assert torch.equal(stylizer.stylize(x), want(x))


def test_export_takes_the_numerics_from_their_record_or_from_an_older_checkpoints_config(dataset, tmp_path):
    out = tmp_path / "run"
    state = run(dataset, out, max_steps=1)
    state["config"]["upsample"] = "half_pixel"  # a config that disagrees: the numerics' own record wins
    torch.save(state, out / "checkpoint.pt")
    _, meta = zoo.read_safetensors(trainer.export(out, tmp_path / "new.safetensors"))
    assert (meta["upsample"], meta["norm_eps"]) == ("tf", "1e-12")
    del state["model_args"]  # as checkpoints were written before that record was kept
    torch.save(state, out / "checkpoint.pt")
    _, meta = zoo.read_safetensors(trainer.export(out, tmp_path / "old.safetensors"))
    assert (meta["upsample"], meta["norm_eps"]) == ("half_pixel", "1e-12")


def test_resume_and_vgg_files_refuse_code_in_pickles(dataset, tmp_path, capsys):
    """A checkpoint.pt or a VGG .pt from someone else is as dangerous as a weights file:
    both are read weights-only, so the pickle's code never runs."""
    out = tmp_path / "run"
    run(dataset, out, max_steps=1)
    evil = CodeRunningPickle(tmp_path / "pwned")
    torch.save({"step": evil}, out / "checkpoint.pt")
    assert cli.main(["train", "--quiet", "--resume", str(out)]) == 1
    assert "cannot read training checkpoint" in capsys.readouterr().err
    torch.save({"features.0.weight": evil}, tmp_path / "vgg19.pt")
    vgg_run = ["train", "--quiet", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "r2")]
    assert cli.main([*vgg_run, "--vgg", str(tmp_path / "vgg19.pt")]) == 1
    assert "as a weights-only PyTorch file" in capsys.readouterr().err
    assert not evil.marker.exists()


def test_amp_modes_train_without_nan_on_cpu_autocast(dataset, tmp_path):
    for amp in ("bf16", "fp16"):
        state = run(dataset, tmp_path / amp, amp=amp, init_epochs=0, max_steps=1)  # one adversarial step
        assert state["step"] == 1 and all(torch.isfinite(v).all() for v in state["generator"].values())
        assert state["scaler"] if amp == "fp16" else not state["scaler"]  # loss scaling for float16 only
    assert trainer.make_config(dict(data="d", style="hayao", out="o", amp=False)).amp == "off"  # YAML's `amp: off`
    with pytest.raises(ConfigError, match="--amp must be one of auto|fp16|bf16|off"):
        trainer.make_config(dict(data="d", style="hayao", out="o", amp="fp8"))


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = losses.content_loss

    def flaky(a, b):
        calls["n"] += 1
        return real(a, b) * (float("nan") if calls["n"] == 3 else 1.0)

    monkeypatch.setattr(losses, "content_loss", flaky)
    with pytest.raises(TrainingError, match=r"step 3: the init_content loss became nan.*last good checkpoint"):
        run(dataset, tmp_path / "run", init_epochs=2, checkpoint_every=1)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 2


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("empty_style", "has no images"),
        ("no_smooth", "lacks"),
        ("corrupt", "unreadable image"),
        ("unknown_key", "unknown setting.*learning_rate"),
    ],
)
def test_bad_data_or_config_fails_before_training(dataset, tmp_path, capsys, breakage, message):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data: {data}\nstyle: toy\npreset: hayao\nvgg: {data / 'vgg19.npy'}\nimage_size: 32\nworkers: 0\n")
    if breakage == "empty_style":
        for f in (data / "toy" / "style").iterdir():
            f.unlink()
    elif breakage == "no_smooth":
        shutil.rmtree(data / "toy" / "smooth")
    elif breakage == "corrupt":
        (data / "toy" / "style" / "1.png").write_bytes(b"\x89PNG broken")
    else:
        cfg.write_text(cfg.read_text() + "learning_rate: 0.1\n")
    assert cli.main(["train", "--quiet", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("animegan2: error:") and __import__("re").search(message, err)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_toml_config_and_command_line_override(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('data = "d"\nstyle = "Shinkai"\nout = "o"\nepochs = 5\ninit_epochs = 1\nw_col = 3\n')
    c = trainer.resolve_config(cfg, overrides={"epochs": 7})
    assert (c.epochs, c.init_epochs, c.batch_size, c.lr_g, c.lr_d) == (7, 1, 12, 2e-5, 4e-5)
    p = trainer.preset_of(c)
    assert (p.col, p.con, p.d_smooth) == (3.0, 1.2, 1.0)
    with pytest.raises(ConfigError, match="has no preset"):
        trainer.make_config({"data": "d", "style": "mine", "out": "o"})
    with pytest.raises(ConfigError, match="data_mean must be 3 numbers"):
        trainer.make_config({"data": "d", "style": "hayao", "out": "o", "data_mean": [1, 2, "x"]})
    with pytest.raises(ConfigError, match="epochs must be int"):
        trainer.make_config({"data": "d", "style": "hayao", "out": "o", "epochs": "many"})


def test_init_from_zoo_weights_starts_there_with_their_numerics(dataset, tmp_path):
    torch.manual_seed(5)
    start = trainer.Generator().state_dict()
    torch.save(start, tmp_path / "published.pt")  # a plain .pt: the published port's align_corners, 1e-5
    state = run(dataset, tmp_path / "run", max_steps=1, init_from=str(tmp_path / "published.pt"))
    saved = trainer.read_config_file(tmp_path / "run" / "config.yaml")
    assert (saved["upsample"], saved["norm_eps"]) == ("align_corners", 1e-5)
    assert state["model_args"] == {"upsample": "align_corners", "norm_eps": 1e-5}
    # one Adam step moves each weight by at most about lr_init (2e-4) from where it started
    assert max((state["generator"][k] - v).abs().max().item() for k, v in start.items()) <= 2.1e-4
