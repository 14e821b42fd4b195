import torch

from spikeformer.nn import BaseNeuron, fold_batchnorm
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
