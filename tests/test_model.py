import pytest
import torch

from animegan2.model import UPSAMPLE_MODES, Generator, resize_bilinear_tf
from tests.reference import ReferenceGenerator, _tf_legacy_resize, random_state_dict


@pytest.fixture(scope="module")
def state():
    return random_state_dict(seed=1)


def test_published_layout_has_77_tensors_and_2143552_parameters():
    sd = Generator().state_dict()
    assert len(sd) == 77
    assert sum(v.numel() for v in sd.values()) == 2_143_552
    assert sd["block_c.1.layers.1.1.weight"].shape == (256, 1, 3, 3)
    assert sd["block_c.1.layers.1.1.bias"].shape == (256,)
    assert sd["block_c.5.1.weight"].shape == (128, 256, 3, 3)
    assert sd["out_layer.0.weight"].shape == (3, 32, 1, 1)


def test_state_dict_round_trips_strictly(state, tmp_path):
    torch.save(state, tmp_path / "w.pt")
    g = Generator()
    g.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True), strict=True)
    for k, v in g.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("mode", ["align_corners", "half_pixel", "tf"])
@pytest.mark.parametrize("size", [(64, 64), (67, 45)])
def test_matches_straightforward_implementation(state, mode, size):
    ref = ReferenceGenerator(upsample=mode, eps=1e-5)
    ref.load_state_dict(state)
    g = Generator(upsample=mode, norm_eps=1e-5)
    g.load_state_dict(state)
    x = torch.rand(2, 3, *size) * 2 - 1
    with torch.no_grad():
        want, got = ref.eval()(x), g.eval()(x)
    expected_size = size if mode == "align_corners" else (size[0] // 4 * 4, size[1] // 4 * 4)
    assert got.shape == (2, 3, *expected_size)
    assert (got - want).abs().max().item() <= 1e-5


def test_upsample_and_eps_change_on_a_built_model(state):
    g = Generator(upsample="tf")
    g.load_state_dict(state)
    g.upsample, g.norm_eps = "align_corners", 1e-5
    assert all(n.eps == 1e-5 for n in g.norms())
    x = torch.rand(1, 3, 33, 35) * 2 - 1
    assert g.eval()(x).shape == (1, 3, 33, 35)
    with pytest.raises(ValueError, match="upsample must be one of"):
        g.upsample = "nearest"
    assert set(UPSAMPLE_MODES) == {"tf", "align_corners", "half_pixel"}


def test_tf_resize_hand_computed():
    x = torch.tensor([[[[0.0, 1.0, 4.0]]]])
    # src = dst * 3/6 -> 0, .5, 1, 1.5, 2, 2.5 ; last column clamps to x[2]
    got = resize_bilinear_tf(x, (1, 6))
    assert got.flatten().tolist() == [0.0, 0.5, 1.0, 2.5, 4.0, 4.0]
    # downscale 5 -> 2: src = 0, 2.5
    y = torch.arange(5.0).view(1, 1, 1, 5)
    assert resize_bilinear_tf(y, (1, 2)).flatten().tolist() == [0.0, 2.5]


@pytest.mark.parametrize("shape,out", [((7, 9), (14, 18)), ((5, 5), (2, 3)), ((6, 4), (9, 7))])
def test_tf_resize_matches_textbook_formula(shape, out):
    x = torch.randn(2, 3, *shape)
    assert torch.allclose(resize_bilinear_tf(x, out), _tf_legacy_resize(x, *out), atol=1e-6)
