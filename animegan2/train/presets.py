"""Per-style loss weights of the original AnimeGANv2 trainer (DESIGN.md 2.4)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


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
    adv: float = 300.0


PRESETS: dict[str, Preset] = {
    "hayao": Preset(con=1.5, sty=2.5, col=15.0, tv=1.0, d_real=1.2, d_fake=1.2, d_gray=1.2, d_smooth=0.8),
    "shinkai": Preset(con=1.2, sty=2.0, col=10.0, tv=1.0, d_real=1.7, d_fake=1.7, d_gray=1.7, d_smooth=1.0),
    "paprika": Preset(con=2.0, sty=0.6, col=50.0, tv=0.1, d_real=1.0, d_fake=1.0, d_gray=1.0, d_smooth=0.005),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (case-insensitive).

    >>> get_preset("Hayao").col
    15.0
    """
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}") from None
