"""torch.hub entry points for animegan2: ``generator`` and ``face2paint``."""

dependencies = ["torch", "numpy", "PIL", "requests", "tqdm", "filelock", "safetensors"]


def generator(pretrained=True, device="cpu", progress=True, upsample=None, norm_eps=None, check_hash=True):
    """AnimeGANv2 generator, in eval mode on ``device``.

    pretrained: a weights file path, or False for random initialisation.
    upsample / norm_eps: override the weights' metadata ("tf", "align_corners", "half_pixel").
    """
    from animegan2.model import Generator
    from animegan2.zoo import load_generator

    if pretrained is False:
        return Generator(upsample=upsample or "tf", norm_eps=1e-12 if norm_eps is None else norm_eps).to(device).eval()
    return load_generator(pretrained, device=device, upsample=upsample, norm_eps=norm_eps, progress=progress, check_hash=check_hash)
