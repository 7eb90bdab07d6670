"""The architecture registry: the one place that knows each network's builder, numerics and features."""

import pytest
import torch

from animegan2 import architectures, zoo
from animegan2.architectures import ARCHITECTURES, Numerics
from animegan2.errors import ConfigError
from animegan2.export import export_onnx
from animegan2.model import Generator
from animegan2.model_v1 import GeneratorV1
from animegan2.precision import model_refusal


def test_the_v2_entry_agrees_with_the_generator_and_the_published_weights():
    v2 = ARCHITECTURES["animeganv2"]
    g = Generator()  # the class's own defaults are the original graph's numerics
    assert Numerics(g.upsample, g.norm_eps) == v2.native == Numerics("tf", 1e-12)
    assert v2.published == Numerics("align_corners", 1e-5)
    assert (zoo.WeightsMeta().upsample, zoo.WeightsMeta().norm_eps) == ("align_corners", 1e-5)
    built = v2.build(norm_eps=1e-5)
    assert (type(built), built.upsample, built.norm_eps) == (Generator, "tf", 1e-5)


def test_converted_metadata_records_the_native_numerics_as_before():
    # the strings converted files have always stored (a cached conversion is compared to them)
    assert ARCHITECTURES["animeganv2"].native.record() == {"upsample": "tf", "norm_eps": "1e-12"}
    assert ARCHITECTURES["animeganv1"].native.record() == {"upsample": "tf", "norm_eps": "1e-5,1e-6"}


def test_models_find_their_entry_and_its_features():
    assert architectures.of(Generator()).id == "animeganv2"
    assert architectures.of(GeneratorV1()).id == "animeganv1"
    assert architectures.of(torch.nn.Identity()) is None
    assert architectures.of_state_dict(GeneratorV1().state_dict()).id == "animeganv1"
    assert architectures.of_state_dict(Generator().state_dict()).id == "animeganv2"
    assert architectures.generators() == ["animeganv2", "animeganv1", "animeganv3"]
    assert architectures.trained().id == "animeganv2"


def test_features_the_registry_denies_are_refused_with_the_networks_that_have_them():
    with pytest.raises(ConfigError, match="only the AnimeGANv2 Generator exports, got GeneratorV1"):
        export_onnx(GeneratorV1().eval())
    assert "int8 quantizes the AnimeGANv2 generator only, not GeneratorV1" in model_refusal("int8", GeneratorV1())
    assert model_refusal("int8", Generator()) is None
    with pytest.raises(ConfigError, match="AnimeGAN v1 weights run with TF1 bilinear upsampling"):
        ARCHITECTURES["animeganv1"].build(norm_eps=1e-5)
    assert isinstance(ARCHITECTURES["animeganv1"].build("tf"), GeneratorV1)
