"""The fast inference path of ``Generator`` (layer by layer over row strips) against the
straightforward reference, and the autograd path that training uses."""

import pytest
import torch

from animegan2 import layerwise, model
from animegan2.model import Generator, upsample2x_tf, resize_bilinear_tf
from tests.reference import ReferenceGenerator, random_state_dict


@pytest.fixture(scope="module")
def state():
    return random_state_dict(seed=3)


@pytest.fixture(autouse=True)
def layerwise_at_every_size(monkeypatch):
    """These small inputs would run module by module; the engine is what is under test.
    Inputs are seeded, so every run checks the same numbers."""
    monkeypatch.setattr(model, "LAYERWISE_MIN_PIXELS", 0)
    torch.manual_seed(0)


def test_small_inputs_run_module_by_module_and_large_ones_layer_by_layer(state, monkeypatch):
    monkeypatch.setattr(model, "LAYERWISE_MIN_PIXELS", 160 * 160)
    calls = []
    monkeypatch.setattr(layerwise, "run_layerwise", lambda g, x: calls.append(x.shape) or g.forward_layers(x))
    _, g = _pair(state, "tf", 1e-5)
    with torch.inference_mode():
        g(torch.zeros(2, 3, 128, 199))
        g(torch.zeros(1, 3, 160, 160))
    assert calls == [(1, 3, 160, 160)]


def _pair(state, mode, eps):
    ref = ReferenceGenerator(upsample=mode, eps=eps)
    ref.load_state_dict(state)
    g = Generator(upsample=mode, norm_eps=eps)
    g.load_state_dict(state)
    return ref.eval(), g.eval()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["tf", "align_corners", "half_pixel"])
@pytest.mark.parametrize("size", [(37, 51), (40, 33)])
def test_fast_path_matches_reference_with_tf_epsilon(state, mode, size):
    ref, g = _pair(state, mode, 1e-12)
    x = torch.rand(3, 3, *size) * 2 - 1
    with torch.inference_mode():
        want, got = ref(x), g(x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["tf", "align_corners", "half_pixel"])
def test_fast_path_in_many_strips_matches_reference(state, mode, monkeypatch):
    """Strips of the minimum 8 rows: every pass in several strips, with halos, the
    stride-2 and upsampling row mappings, moments pooled over strips and recycled buffers."""
    monkeypatch.setattr(layerwise, "_STRIP_BYTES", 1)
    ref, g = _pair(state, mode, 1e-5)
    x = torch.rand(2, 3, 71, 45) * 2 - 1
    with torch.inference_mode():
        want, got = ref(x), g(x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-5


def test_column_moments_on_every_device_kind_equal_float64(monkeypatch):
    y = torch.randn(1, 5, 7, 9) * 3 + 1
    want = y.double().permute(3, 0, 1, 2).reshape(9, -1)
    for kind in ("cpu", "mps"):  # "mps": the var_mean branch other devices take, run on CPU
        monkeypatch.setattr(layerwise, "_uses_stats_kernel", lambda device, kind=kind: kind == "cpu")
        counts, means, variances = layerwise._moments(y)
        assert counts.tolist() == [35.0] * 9
        assert torch.allclose(means.double(), want.mean(1), atol=1e-6)
        assert torch.allclose(variances.double(), want.var(1, correction=0), atol=1e-5)


def test_pool_reuses_the_smallest_fitting_buffer_and_drops_the_rest():
    pool = layerwise._Pool(torch.device("cpu"), torch.float32)
    small, big = pool.take(10), pool.take(100)
    pool.give(big)
    pool.give(small)
    assert pool.take(8) is small
    assert pool.take(50) is big
    pool.give(small)
    fresh = pool.take(200)  # nothing fits: the free buffers are let go, not kept
    assert fresh.numel() == 200 and pool.free == []
    budgeted = layerwise._Pool(torch.device("cpu"), torch.float32, recycle=False)
    budgeted.give(budgeted.take(10))  # under a budget nothing is held back
    assert budgeted.free == []


def test_fast_path_leaves_the_input_alone_and_batches_independently(state):
    _, g = _pair(state, "tf", 1e-12)
    x = torch.rand(2, 3, 29, 30) * 2 - 1
    x0 = x.clone()
    with torch.no_grad():
        both = g(x)
        second = g(x[1:])
    assert torch.equal(x, x0)
    assert (both[1:] - second).abs().max().item() <= 1e-5  # conv rounding differs by batch


def test_tf_2x_interleave_is_bitwise_the_general_resize():
    x = torch.randn(2, 4, 9, 1)
    assert torch.equal(upsample2x_tf(x), resize_bilinear_tf(x, (18, 2)))
    x = torch.randn(1, 2, 6, 7)
    assert torch.equal(upsample2x_tf(x), resize_bilinear_tf(x, (12, 14)))


@pytest.mark.parametrize("mode", ["tf", "align_corners"])
def test_training_gradients_equal_the_reference(state, mode):
    ref, g = _pair(state, mode, 1e-5)
    ref.train(), g.train()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 28, generator=gen) * 2 - 1
    target = torch.rand(2, 3, 24, 28, generator=gen) * 2 - 1
    for net in (ref, g):
        ((net(x) - target) ** 2).mean().backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in g.named_parameters():
        want = ref_grads[name].grad
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        # relative to the tensor's largest gradient: elementwise rtol fails on the odd
        # element where terms cancel (1 input in 20 did, at 9e-5 absolute)
        assert (p.grad - want).abs().max() <= 1e-3 * want.abs().max(), name


def test_pooled_moments_of_groups_with_a_large_common_mean_equal_float64():
    """Strips of a map after a conv can share a large common offset (1e4 here, std 1). The
    inputs are float32 moments as the engine hands them over; their mean carries up to half
    an ulp at 1e4 (2^-11 = 4.9e-4), which moves the between-group term by at most
    2 * 0.5 * 4.9e-4 per unit of variance: 2e-3 relative bounds it. E[x^2] - E[x]^2 in float32
    would lose everything below float32's ulp at 1e8, which is 8."""
    gen = torch.Generator().manual_seed(0)
    groups = [1e4 + shift + torch.randn(n, generator=gen, dtype=torch.float64) for n, shift in ((5000, 0.0), (3000, 0.5), (7000, -0.3))]
    counts = torch.tensor([len(g) for g in groups])
    means = torch.stack([g.mean() for g in groups]).float()
    variances = torch.stack([g.var(correction=0) for g in groups]).float()
    mean, var = layerwise.pooled_moments(counts, means, variances)
    every = torch.cat(groups)
    assert mean == pytest.approx(every.mean().item(), abs=4.9e-4)
    assert var == pytest.approx(every.var(correction=0).item(), rel=2e-3)


def test_low_memory_path_on_a_map_with_a_large_offset_is_as_exact_as_the_straightforward_network(state):
    """The first conv's output sits at about 1.4e4 with a spread of tens, so its layer
    norm subtracts two nearly equal numbers. Against float64, the strip engine (in RAM and
    spilled to files, many strips) must be as close as the straightforward float32 network:
    within twice its distance (both do the same float32 operations in other orders)."""
    from animegan2.lowmem import run_low_memory

    offset = dict(state)
    first = offset["block_a.0.1.weight"]
    offset["block_a.0.1.weight"] = 100.0 + 0.05 * first  # 147 taps of about 100
    x = 0.9 + 0.1 * torch.rand(1, 3, 45, 61)
    exact = ReferenceGenerator(upsample="tf", eps=1e-5).double()
    exact.load_state_dict(offset)
    ref, g = _pair(offset, "tf", 1e-5)
    with torch.inference_mode():
        want = exact(x.double())
        a0 = ref.block_a[0][1](ref.block_a[0][0](x))
        assert a0.mean().item() > 1e4 and a0.std().item() < 1e-2 * a0.mean().item()
        reference_error = (ref(x).double() - want).abs().max().item()
        for got in (g(x), run_low_memory(g, x, max_memory=None, tile_rows=8), run_low_memory(g, x, max_memory=1, tile_rows=8)):
            assert (got.double() - want).abs().max().item() <= 2 * reference_error


def test_low_memory_bits_do_not_depend_on_what_the_process_holds(state, monkeypatch):
    """Under a budget the strips are sized from the budget alone: oneDNN's 1x1 convolutions
    round by strip height, so strips sized from the measured RSS gave other bits in another
    process. Here the process "holds" 100 MB, then 900 MB, of a 1 GB budget."""
    from animegan2.lowmem import run_low_memory

    _, g = _pair(state, "tf", 1e-12)
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    outputs = []
    for resident in (100 * 2**20, 900 * 2**20):
        monkeypatch.setattr(layerwise, "current_rss", lambda resident=resident: resident)
        outputs.append(run_low_memory(g, x, max_memory="1GB"))
    assert torch.equal(outputs[0], outputs[1])
