import torch

from spikeformer.nn import BaseNeuron, fold_batchnorm
from spikeformer.nn.fold import move_conv_bias_into_neurons
from spikeformer.nn.layers import ConvBN2d
from support import tiny_model


def _randomize_bn(model):
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(2.0, 6.0)  # large gains so that every layer spikes
            m.bias.data.uniform_(-0.2, 0.5)
    return model.eval()


def test_folded_model_matches_and_has_no_batchnorm():
    model = _randomize_bn(tiny_model())
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.rand(16, 1, 28, 28) * 3
    spikes = {}
    for name, mod in (("ref", model), ("folded", folded)):
        outs = []
        hooks = [
            m.register_forward_hook(lambda _m, _i, o, outs=outs: outs.append(o))
            for m in mod.modules()
            if isinstance(m, BaseNeuron)
        ]
        with torch.no_grad():
            spikes[name + "_logits"] = mod(x)
        for h in hooks:
            h.remove()
        spikes[name] = torch.cat([o.flatten() for o in outs])
    assert spikes["ref"].mean() > 0.01  # the comparison is meaningful (about 3 % of neurons fire)
    flips = (spikes["ref"] != spikes["folded"]).float().mean().item()
    assert flips < 1e-3, flips  # rounding may flip a spike sitting exactly on a threshold, rarely
    agree = (spikes["ref_logits"].argmax(1) == spikes["folded_logits"].argmax(1)).float().mean()
    assert agree >= 0.9


def test_conv_bias_moved_into_neurons_gives_the_same_spikes():
    """The CUDA runtime moves each folded conv bias into the neuron reading the conv (through max-pooling at most);
    the model must compute the same thing: checked here with the torch and the fused (CPU kernel) neurons."""
    folded = fold_batchnorm(_randomize_bn(tiny_model()))
    moved = fold_batchnorm(folded)
    assert move_conv_bias_into_neurons(moved) == 5  # the four stem stages and the position embedding
    assert all(c.bias is None for m in moved.modules() if isinstance(m, ConvBN2d) for c in [m.conv])
    assert move_conv_bias_into_neurons(moved) == 0  # idempotent
    x = torch.rand(8, 1, 28, 28) * 3
    for backend in ("torch", "fused"):
        for m in (*folded.modules(), *moved.modules()):
            if isinstance(m, BaseNeuron):
                m.backend = backend
        with torch.no_grad():
            assert torch.allclose(folded(x), moved(x), atol=1e-5)
    untouched = _randomize_bn(tiny_model())  # BatchNorm not folded: nothing may move
    assert move_conv_bias_into_neurons(untouched) == 0
