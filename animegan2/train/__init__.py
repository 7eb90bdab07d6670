"""Training AnimeGANv2 styles: data tools, VGG features, discriminator, losses and the trainer.

The recipe (DESIGN.md 2.4) is that of the original TensorFlow trainer. Nothing outside
this package imports it except ``animegan2.cli``.
"""
