import numpy as np
import pytest
import torch

from spikeformer import load_pipeline
from spikeformer.checkpoint import IntegrityError


def test_pipeline_takes_raw_uint8_in_both_layouts(tiny_checkpoint):
    pipe = load_pipeline(tiny_checkpoint)
    assert pipe.input_shape == (1, 28, 28)
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    logits = pipe.predict_logits(images)
    assert logits.shape == (5, 10) and logits.dtype == torch.float32
    assert torch.equal(pipe.predict(images[:, None]), logits.argmax(1))
    # the manifest's preprocessing is applied: the model sees (x / 255 - mean) / std
    x = (torch.from_numpy(images).float()[:, None] / 255 - 0.2860) / 0.3530
    with torch.no_grad():
        assert torch.allclose(pipe.model(x), logits, atol=1e-5)


def test_wrong_image_size_is_a_clear_error(tiny_checkpoint):
    pipe = load_pipeline(tiny_checkpoint)
    with pytest.raises(ValueError, match="28"):
        pipe.predict(np.zeros((2, 32, 32), dtype=np.uint8))


def test_tampered_checkpoint_is_refused(tiny_checkpoint):
    w = tiny_checkpoint / "model.safetensors"
    b = bytearray(w.read_bytes())
    b[100] ^= 0xFF
    w.write_bytes(bytes(b))
    with pytest.raises(IntegrityError):
        load_pipeline(tiny_checkpoint)
