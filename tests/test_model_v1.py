import pytest
import torch
from torch import nn

from animegan2.model import resize_bilinear_tf
from animegan2.model_v1 import GeneratorV1, ResizeConv, SeparableConv, TwoWayDown


def test_129_tensors_and_3956096_parameters():
    sd = GeneratorV1().state_dict()
    assert len(sd) == 129
    assert sum(v.numel() for v in sd.values()) == 3_956_096
    assert sd["b1.2.strided.1.weight"].shape == (64, 1, 3, 3)
    assert sd["b1.2.resized.conv.2.weight"].shape == (128, 64, 1, 1)
    assert sd["m.8.layers.2.weight"].shape == (512, 1, 3, 3)
    assert sd["out_layer.0.weight"].shape == (3, 64, 1, 1)


def test_norm_epsilons_follow_the_original():
    eps = [m.eps for m in GeneratorV1().modules() if isinstance(m, nn.InstanceNorm2d)]
    # 8 separable convs (contrib default 1e-6); 2+1+2+1+2 conv blocks and 8 x 3 in the residual blocks
    assert eps.count(1e-6) == 8
    assert eps.count(1e-5) == 32
    assert len(eps) == 40


@pytest.mark.parametrize("size,expected", [((64, 64), (64, 64)), ((67, 45), (64, 44)), ((9, 15), (8, 12))])
def test_output_size_is_floored_to_multiples_of_4(size, expected):
    with torch.no_grad():
        y = GeneratorV1().eval()(torch.rand(2, 3, *size) * 2 - 1)
    assert y.shape == (2, 3, *expected)
    assert GeneratorV1.upsample == "tf"  # what callers read to know the output is floored
    assert y.abs().max() < 1


def test_separable_conv_strides_in_the_depthwise_step_and_pads_bottom_right():
    sep = SeparableConv(1, 1, stride=2)
    nn.init.ones_(sep[1].weight)
    nn.init.ones_(sep[2].weight)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # reflect pad bottom/right: rows/cols 0..3 then 2; 3x3 sums at (0,0), (0,2), (2,0), (2,2):
    # 0+1+2+4+5+6+8+9+10 = 45, 2+3+2+6+7+6+10+11+10 = 57, 8+9+10+12+13+14+8+9+10 = 93, ...
    pre_norm = sep[2](sep[1](sep[0](x)))
    assert pre_norm[0, 0].tolist() == [[45.0, 57.0], [93.0, 105.0]]


def test_two_way_down_sums_the_strided_and_the_resized_branch():
    block = TwoWayDown(4, 6).eval()
    x = torch.randn(1, 4, 11, 7)
    with torch.no_grad():
        resized = block.resized.conv(resize_bilinear_tf(x, (5, 3)))
        assert torch.allclose(block(x), block.strided(x) + resized)
        assert ResizeConv(4, 6, up=True)(x).shape == (1, 6, 22, 14)
