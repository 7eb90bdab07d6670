"""torch.hub entry points for animegan2: ``generator`` and ``face2paint``.

>>> model = torch.hub.load("<owner>/animegan2", "generator", pretrained="face_paint_512_v2")  # doctest: +SKIP
>>> face2paint = torch.hub.load("<owner>/animegan2", "face2paint", size=512)  # doctest: +SKIP
>>> out = face2paint(model, Image.open("face.jpg").convert("RGB"))  # doctest: +SKIP
"""

dependencies = ["torch", "numpy", "PIL", "requests", "tqdm", "filelock", "safetensors"]


def generator(
    pretrained: bool | str = True,
    device: str = "cpu",
    progress: bool = True,
    upsample: str | None = None,
    norm_eps: float | None = None,
    check_hash: bool = True,
):
    """AnimeGANv2 generator, in eval mode on ``device``.

    pretrained: True for "face_paint_512_v2" (the established default); False for random
        initialisation (TF numerics: upsample "tf", norm_eps 1e-12); or anything animegan2's
        resolver accepts: a name of `animegan2 weights list` ("hayao", "shinkai", "paprika",
        "face_paint_512_v1", "face_paint_512_v2", "celeba_distill"/"webtoon", "paprika_pytorch"),
        a .pt/.pth/.safetensors file, a TF1 checkpoint, an https:// URL or hf://owner/repo/file.
    upsample: "tf", "align_corners" or "half_pixel"; None takes the weights' own mode
        ("tf" for TF-converted checkpoints, "align_corners" for the published PyTorch weights
        and for a .pt of unknown origin).
    norm_eps: layer-norm epsilon; None takes the weights' own (1e-12 TF-converted, 1e-5 PyTorch).
    progress: show a download progress bar.
    check_hash: re-hash cached files before use; for plain URLs, check torch.hub's
        "name-<sha256 prefix>.ext" convention. Downloads are always verified against the manifest.
    """
    from animegan2.architectures import ARCHITECTURES, DEFAULT
    from animegan2.zoo import DEFAULT_WEIGHTS, load_generator

    if pretrained is False or pretrained is None:
        model = ARCHITECTURES[DEFAULT].build(upsample, norm_eps)  # the original's numerics unless given
        return model.to(device).eval()
    weights = DEFAULT_WEIGHTS if pretrained is True else pretrained
    return load_generator(weights, device=device, upsample=upsample, norm_eps=norm_eps, progress=progress, check_hash=check_hash)


def face2paint(size: int = 512, device: str = "cpu", side_by_side: bool = False, **kwargs):
    """A function ``f(model, img, size=size, side_by_side=side_by_side) -> PIL.Image``: centre crop
    to a square, Lanczos resize to ``size``, stylize with ``model``; with ``side_by_side`` the input
    and the output side by side. Further keyword arguments (e.g. ``detect=True`` for face
    detection and alignment) go to :func:`animegan2.face.face2paint`.
    """
    from animegan2.face import face2paint as make_face2paint

    return make_face2paint(size=size, device=device, side_by_side=side_by_side, **kwargs)
