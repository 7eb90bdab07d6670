"""Per-style loss weights of the original AnimeGANv2 trainer (DESIGN.md 2.4).

Two sources, as the original repository (TachibanaYoshino/AnimeGANv2) holds them:

* ``"code"`` (the default): what its code runs. ``tools/ops.py`` (commit 8f97ab48) l. 217
  weights the discriminator's four LSGAN terms 1.7, 1.7, 1.7, 1.0 for every style; the
  per-style values sit in comments above it (l. 214-216). The generator weights are the
  per-style values of ``train.py``'s comments (commit 15268d55, l. 26-30), except Paprika's
  content and TV weights: the released Paprika-54 comes from the run folder
  ``checkpoint/AnimeGANv2_Paprika_lsgan_300_300_1_0_50_1`` (its ``checkpoint`` file names
  ``AnimeGANv2.model-54``), and ``AnimeGANv2.py``'s ``model_dir`` names that folder from
  ``int()`` of (g_adv, d_adv, con, sty, col, tv). So that run had con in [1, 2) and tv in
  [1, 2), not the comments' 2.0 and 0.1; the code's only values there are ``train.py``'s
  defaults con 1.5 (l. 26) and tv 1.0 (l. 30), the ones a run gets that sets only
  ``--sty_weight 0.6 --color_weight 50``. The Shinkai folder (``..._1_2_10_1``) agrees
  with Shinkai's comments; no Hayao run folder was published.
* ``"comments"``: every per-style value of those comments, discriminator weights included.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

SOURCES = ("code", "comments")


@dataclass(frozen=True)
class Preset:
    """Loss weights of one style.

    ``con``, ``sty``, ``col``, ``tv`` weight the generator's content, grayscale-style,
    colour and total-variation losses; ``adv`` weights both adversarial losses;
    ``d_real``, ``d_fake``, ``d_gray``, ``d_smooth`` are the discriminator's four LSGAN terms.
    """

    con: float
    sty: float
    col: float
    tv: float
    d_real: float
    d_fake: float
    d_gray: float
    d_smooth: float
    adv: float = 300.0  # train.py l. 24-25: g_adv_weight = d_adv_weight = 300


_CODE_D = {"d_real": 1.7, "d_fake": 1.7, "d_gray": 1.7, "d_smooth": 1.0}  # tools/ops.py l. 217

PRESETS: dict[str, Preset] = {
    "hayao": Preset(con=1.5, sty=2.5, col=15.0, tv=1.0, **_CODE_D),
    "shinkai": Preset(con=1.2, sty=2.0, col=10.0, tv=1.0, **_CODE_D),
    "paprika": Preset(con=1.5, sty=0.6, col=50.0, tv=1.0, **_CODE_D),  # the released run (module docstring)
}

COMMENTED: dict[str, Preset] = {
    "hayao": Preset(con=1.5, sty=2.5, col=15.0, tv=1.0, d_real=1.2, d_fake=1.2, d_gray=1.2, d_smooth=0.8),
    "shinkai": Preset(con=1.2, sty=2.0, col=10.0, tv=1.0, d_real=1.7, d_fake=1.7, d_gray=1.7, d_smooth=1.0),
    "paprika": Preset(con=2.0, sty=0.6, col=50.0, tv=0.1, d_real=1.0, d_fake=1.0, d_gray=1.0, d_smooth=0.005),
}


def get_preset(name: str, source: str = "code") -> Preset:
    """The preset called ``name`` (case-insensitive) from ``source`` (``"code"`` or ``"comments"``).

    >>> get_preset("Hayao").col, get_preset("hayao").d_real, get_preset("hayao", "comments").d_real
    (15.0, 1.7, 1.2)
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown preset source {source!r}: choose one of {', '.join(SOURCES)}")
    try:
        return (PRESETS if source == "code" else COMMENTED)[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}") from None
