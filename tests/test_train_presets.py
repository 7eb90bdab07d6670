"""Every preset value pinned against the original AnimeGANv2 (TachibanaYoshino/AnimeGANv2).

Sources, read from the original repository:
* ``train.py`` (commit 15268d55) l. 24-30: g_adv_weight = d_adv_weight = 300; the per-style
  comments "1.5 for Hayao, 2.0 for Paprika, 1.2 for Shinkai" (con), "2.5 / 0.6 / 2.0" (sty),
  "15. / 50. / 10." (color), "1. / 0.1 / 1." (tv); defaults con 1.5, sty 2.5, color 10, tv 1.
* ``tools/ops.py`` (commit 8f97ab48) l. 214-217: comments "for Hayao : 1.2, 1.2, 1.2, 0.8",
  "for Paprika : 1.0, 1.0, 1.0, 0.005", "for Shinkai: 1.7, 1.7, 1.7, 1.0"; the code line
  weights (real, fake, gray, smooth) by 1.7, 1.7, 1.7, 1.0 for every style.
* ``checkpoint/AnimeGANv2_Paprika_lsgan_300_300_1_0_50_1`` and ``..._Shinkai_..._1_2_10_1``:
  the released runs' folders, named by ``AnimeGANv2.py`` ``model_dir`` from int() of
  (g_adv, d_adv, con, sty, col, tv).
"""

import dataclasses
import math

import pytest

from animegan2.errors import ConfigError
from animegan2.train import trainer
from animegan2.train.presets import COMMENTED, PRESETS, get_preset

FIELDS = ("con", "sty", "col", "tv", "adv", "d_real", "d_fake", "d_gray", "d_smooth")
CODE_D = (1.7, 1.7, 1.7, 1.0)  # tools/ops.py l. 217
ORIGINAL = {
    "code": {
        "hayao": (1.5, 2.5, 15.0, 1.0, 300.0, *CODE_D),
        "shinkai": (1.2, 2.0, 10.0, 1.0, 300.0, *CODE_D),
        "paprika": (1.5, 0.6, 50.0, 1.0, 300.0, *CODE_D),  # con, tv: train.py defaults (l. 26, 30)
    },
    "comments": {
        "hayao": (1.5, 2.5, 15.0, 1.0, 300.0, 1.2, 1.2, 1.2, 0.8),
        "shinkai": (1.2, 2.0, 10.0, 1.0, 300.0, 1.7, 1.7, 1.7, 1.0),
        "paprika": (2.0, 0.6, 50.0, 0.1, 300.0, 1.0, 1.0, 1.0, 0.005),
    },
}
RELEASED_RUN_FOLDERS = {"paprika": (300, 300, 1, 0, 50, 1), "shinkai": (300, 300, 1, 2, 10, 1)}


@pytest.mark.parametrize("source", ["code", "comments"])
@pytest.mark.parametrize("style", ["hayao", "shinkai", "paprika"])
def test_every_preset_value_is_the_originals(source, style):
    preset = get_preset(style.capitalize(), source)
    assert tuple(getattr(preset, f) for f in FIELDS) == ORIGINAL[source][style]


def test_no_preset_beyond_the_pinned_ones():
    assert set(PRESETS) == set(COMMENTED) == set(ORIGINAL["code"])
    assert {f.name for f in dataclasses.fields(PRESETS["hayao"])} == set(FIELDS)


@pytest.mark.parametrize("style", sorted(RELEASED_RUN_FOLDERS))
def test_code_presets_agree_with_the_released_run_folders(style):
    p = get_preset(style)
    assert tuple(math.floor(v) for v in (p.adv, p.adv, p.con, p.sty, p.col, p.tv)) == RELEASED_RUN_FOLDERS[style]
    c = get_preset(style, "comments")
    folder = tuple(math.floor(v) for v in (c.adv, c.adv, c.con, c.sty, c.col, c.tv))
    assert (folder == RELEASED_RUN_FOLDERS[style]) == (style == "shinkai")  # the comments' Paprika is not the released run


def test_the_trainer_picks_the_source_and_overrides():
    base = {"data": "d", "out": "o", "style": "paprika"}
    assert trainer.preset_of(trainer.make_config(base)) == PRESETS["paprika"]
    assert trainer.preset_of(trainer.make_config(base | {"preset_source": "comments"})) == COMMENTED["paprika"]
    tuned = trainer.preset_of(trainer.make_config(base | {"preset_source": "comments", "w_d_smooth": 0.5}))
    assert tuned == dataclasses.replace(COMMENTED["paprika"], d_smooth=0.5)
    with pytest.raises(ConfigError, match="--preset-source must be one of"):
        trainer.make_config(base | {"preset_source": "folklore"})
    with pytest.raises(ConfigError, match="unknown preset source"):
        get_preset("hayao", "folklore")
