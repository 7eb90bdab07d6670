"""animegan2.video: frames, rate and audio kept, GIF in/out, cuts, bad input, no partial output."""

import time
from fractions import Fraction

import av
import numpy as np
import pytest

import torch

from animegan2.cli import main
from animegan2.errors import ConfigError, VideoError
from animegan2.stylize import Stylizer
from animegan2.video import parse_time, stylize_video
from tests.clips import FPS, H, N, RATE, W, make_clip, probe
from tests.reference import random_state_dict


def invert(frames):
    return [255 - f for f in frames]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def test_keeps_frames_rate_and_audio(clip, tmp_path):
    out = tmp_path / "out.mp4"
    result = stylize_video(clip, out, invert, batch_size=5, progress=False)
    frames, rate, audio = probe(out)
    src_frames, src_rate, src_audio = probe(clip)
    assert (result.frames, len(frames)) == (N, N)
    assert rate == src_rate == Fraction(FPS)
    assert result.audio_packets == len(src_audio) > 30
    assert audio == src_audio  # packet for packet, byte for byte: copied, not re-encoded
    for i in (0, 11, 23):
        assert np.abs(frames[i].astype(int) - (255 - src_frames[i])).mean() < 4  # lossy H.264, in order
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_gif_in_gif_out(tmp_path):
    gif = make_clip(tmp_path / "in.gif", audio=False, codec="gif")
    src_frames, src_rate, _ = probe(gif)
    out = tmp_path / "out.gif"
    stylize_video(gif, out, invert, batch_size=4, progress=False)
    frames, rate, audio = probe(out)
    assert len(frames) == len(src_frames) == N and rate == src_rate and audio == []
    for i in range(N):  # few colours: the per-frame palette holds them exactly
        assert np.array_equal(frames[i], 255 - src_frames[i])


def test_mp4_to_gif_drops_audio(clip, tmp_path):
    result = stylize_video(clip, tmp_path / "out.gif", invert, progress=False)
    frames, _, audio = probe(tmp_path / "out.gif")
    assert result.frames == len(frames) == N and result.audio_packets == 0 and audio == []


def test_cut_resize_and_resample(clip, tmp_path):
    out = tmp_path / "cut.mp4"
    seen = []

    def record(frames):
        seen.extend(f.shape for f in frames)
        return invert(frames)

    result = stylize_video(clip, out, record, start="0:00.5", end=1.5, fps=24, size=32, progress=False)
    frames, rate, audio = probe(out)
    # 1 s at 24 fps from a 12 fps clip: 12 source frames, each shown twice, stylized once
    assert len(frames) == result.frames == 24 and rate == 24
    assert seen == [(24, 32, 3)] * 12 and frames[0].shape == (24, 32, 3)
    src_frames, _, src_audio = probe(clip)
    first = 255 - np.asarray(src_frames[6], dtype=int)[::2, ::2]
    assert np.abs(frames[0].astype(int) - first).mean() < 12
    # audio packets from 0.5 s to 1.5 s, moved to start at 0
    kept = [(pts, data) for pts, data in src_audio if 0.5 * RATE <= pts < 1.5 * RATE]
    assert [data for _, data in audio] == [data for _, data in kept]
    assert audio[0][0] == kept[0][0] - RATE // 2


def test_no_video_stream(tmp_path):
    sound = make_clip(tmp_path / "sound.m4a", video=False)
    with pytest.raises(VideoError, match="has no video stream") as info:
        stylize_video(sound, tmp_path / "out.mp4", invert, progress=False)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sound.m4a"]


def test_audio_the_container_cannot_hold(clip, tmp_path):
    with pytest.raises(VideoError, match="webm file cannot hold the aac audio.*write .mkv"):
        stylize_video(clip, tmp_path / "out.webm", invert, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_not_a_video(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    with pytest.raises(VideoError, match="cannot open"):
        stylize_video(junk, tmp_path / "out.mp4", invert, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.mp4"]


@pytest.mark.parametrize("where", ["stylize", "encode"])
def test_interrupted_run_leaves_no_output(clip, tmp_path, where):
    calls = []

    def fails_midway(frames):
        calls.append(len(frames))
        if len(calls) == 3:
            if where == "stylize":
                raise KeyboardInterrupt
            return [f[:-2] for f in frames]  # wrong size: the encoder refuses it
        return invert(frames)

    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt if where == "stylize" else VideoError):
        stylize_video(clip, out, fails_midway, batch_size=4, progress=False)
    assert calls[:3] == [4, 4, 4] and len(calls) <= 6  # stopped within the queues' bound
    assert list(tmp_path.iterdir()) == []


def test_options_are_checked(clip, tmp_path):
    with pytest.raises(ConfigError, match="after --start"):
        stylize_video(clip, tmp_path / "o.mp4", invert, start=2, end=1)
    with pytest.raises(ConfigError, match="not a time"):
        parse_time("1:xx")
    assert parse_time("1:01:02.5") == 3662.5
    with pytest.raises(VideoError, match="no frames"):
        stylize_video(clip, tmp_path / "o.mp4", invert, start=5, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_video(clip, tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(random_state_dict(5), weights)
    out = tmp_path / "anime.mp4"
    assert main(["video", str(clip), "-o", str(out), "--weights", str(weights), "--batch-size", "3", "--crf", "30"]) == 0
    err = capsys.readouterr().err
    assert f"wrote {out}: 24 frames at 12 fps, 64x48, {len(probe(clip)[2])} audio packets copied" in err
    frames, rate, audio = probe(out)
    assert len(frames) == N and rate == FPS and audio == probe(clip)[2]
    # the frames are the model's: same as the Stylizer on the decoded input frames
    src_frames = probe(clip)[0]
    expected = Stylizer(weights, device="cpu").stylize_arrays(src_frames[:1])[0]
    assert np.abs(frames[0].astype(int) - expected).mean() < 6

    sound = make_clip(tmp_path / "sound.m4a", video=False)
    assert main(["video", str(sound), "-o", str(tmp_path / "x.mp4"), "--weights", str(weights), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no video stream" in err and "Traceback" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_decoding_stays_within_the_queue_bound(tmp_path, monkeypatch):
    import animegan2.video as video

    long_clip = make_clip(tmp_path / "long.mp4", audio=False, n=72)
    decoded, ahead = [], []
    real = video._to_rgb
    monkeypatch.setattr(video, "_to_rgb", lambda *a: decoded.append(1) or real(*a))

    def slow(frames):
        if not ahead:
            time.sleep(0.5)  # the decoder runs on meanwhile, until the queue is full
            ahead.append(len(decoded))
        return invert(frames)

    result = stylize_video(long_clip, tmp_path / "out.mp4", slow, batch_size=2, progress=False)
    assert result.frames == len(decoded) == 72
    assert 4 <= ahead[0] <= 3 * 2 + 3  # one batch in the model, 2 * 2 + 2 queued, one waiting


def test_unwritable_output(clip, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(VideoError, match="out.mp4: .*Not a directory"):
        stylize_video(clip, not_a_dir / "out.mp4", invert, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_display_rotation_is_applied(tmp_path):
    """A phone clip stores landscape pixels plus 'rotate 90 degrees counter-clockwise'."""
    src = tmp_path / "phone.mp4"
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.set_display_rotation(90)
        band = np.zeros((H, W, 3), np.uint8)
        band[:12] = 255  # top rows white: upright, they are the left columns
        for _ in range(6):
            c.mux(v.encode(av.VideoFrame.from_ndarray(band, format="rgb24")))
        c.mux(v.encode(None))
    result = stylize_video(src, tmp_path / "out.mp4", lambda frames: frames, progress=False)
    assert result.size == (H, W)
    with av.open(str(tmp_path / "out.mp4")) as c:
        frame = next(c.decode(video=0))
        assert frame.rotation == 0
        rgb = frame.to_ndarray(format="rgb24").astype(int)
    assert rgb.shape == (W, H, 3)
    assert rgb[:, :10].mean() > 240 and rgb[:, 14:].mean() < 15
