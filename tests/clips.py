"""Small test videos: a clip with a moving bar and a tone, and what a video file holds."""

import av
import numpy as np

W, H, FPS, N = 64, 48, 12, 24
RATE = 16000


def frame_pixels(i: int) -> np.ndarray:
    arr = np.zeros((H, W, 3), np.uint8)
    arr[:, :, 0] = i * 10 % 250
    arr[:, (i * 2) % W : (i * 2) % W + 8, 1] = 255
    return arr


def make_clip(path, *, video=True, audio=True, codec="libx264", n=N):
    """N frames at FPS with a moving bar; 2 s of a 440 Hz AAC tone."""
    with av.open(str(path), "w") as c:
        if video:
            v = c.add_stream(codec, rate=FPS)
            v.width, v.height = W, H
            v.pix_fmt = "pal8" if codec == "gif" else "yuv420p"
        if audio:
            a = c.add_stream("aac", rate=RATE)
            a.layout = "mono"
        if video:
            for i in range(n):
                frame = frame_pixels(i)
                if codec == "gif":
                    palette = np.zeros((256, 4), np.uint8)
                    palette[:, 0] = 255
                    palette[:, 1] = np.arange(256)
                    palette[1, 1:] = (0, 255, 0)
                    index = frame[:, :, 0].copy()
                    index[frame[:, :, 1] == 255] = 1
                    vf = av.VideoFrame.from_ndarray((index, palette), format="pal8")
                else:
                    vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                c.mux(v.encode(vf))
            c.mux(v.encode(None))
        if audio:
            t = np.arange(RATE * n // FPS) / RATE
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for k in range(0, len(samples), 1024):
                af = av.AudioFrame.from_ndarray(samples[None, k : k + 1024], format="fltp", layout="mono")
                af.sample_rate = RATE
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return path


def probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        rate = v.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    audio = []
    with av.open(str(path)) as c:
        if c.streams.audio:
            audio = [(p.pts, bytes(p)) for p in c.demux(audio=0) if p.dts is not None]
    return frames, rate, audio
