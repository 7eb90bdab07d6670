"""The toy training runs of the tests: a data set of 32x32 noise, and settings that train on it in seconds."""

import cv2
import numpy as np

from animegan2.train import trainer
from tests.reference_train import fake_caffe_layers


def make_dataset(root):
    """4 photos and 4 anime frames (+ smooth) of 32x32 noise under ``root``, and a tiny VGG19."""
    rng = np.random.default_rng(0)
    for folder in ("train_photo", "toy/style", "toy/smooth", "val"):
        (root / folder).mkdir(parents=True)
    for i in range(4):
        photo = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "train_photo" / f"{i}.png"), photo)
        anime = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "toy/style" / f"{i}.png"), anime)
        cv2.imwrite(str(root / "toy/smooth" / f"{i}.png"), cv2.GaussianBlur(anime, (5, 5), 0))
    cv2.imwrite(str(root / "val" / "v.png"), photo)
    np.save(root / "vgg19.npy", fake_caffe_layers(), allow_pickle=True)
    return root


def config(dataset, out, **kw):
    """The settings of a 2-epoch run (1 init epoch) on ``dataset`` into ``out``; ``kw`` overrides them."""
    values = dict(
        data=str(dataset), style="toy", out=str(out), preset="hayao", vgg=str(dataset / "vgg19.npy"),
        image_size=32, batch_size=2, epochs=2, init_epochs=1, workers=0, samples=2,
    )  # fmt: skip
    return trainer.make_config(values | kw)
