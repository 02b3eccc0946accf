import pytest
import torch

import lrp_faces
from lrp_faces.nn import PixelNorm, Preprocessing


def test_imagenet_preset_is_the_torchvision_formula():
    images = torch.rand(2, 3, 5, 7)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = (images - mean) / std
    assert torch.allclose(PixelNorm.from_preprocessing(lrp_faces.IMAGENET)(images), expected, atol=1e-6)


def test_vggface_preset_scales_to_255_and_subtracts_the_rgb_mean():
    images = torch.rand(2, 3, 5, 7)
    expected = torch.stack([images[:, 0] * 255 - 129.186279296875, images[:, 1] * 255 - 104.76238250732422,
                            images[:, 2] * 255 - 93.59396362304688], 1)
    assert torch.allclose(PixelNorm.from_preprocessing(lrp_faces.VGGFACE)(images), expected, atol=1e-4)


def test_bgr_order_reverses_channels_before_normalising_in_model_order():
    norm = PixelNorm(mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0), scale=255.0, channel_order="BGR")
    images = torch.rand(1, 3, 4, 4)
    blue, green, red = images[:, 2], images[:, 1], images[:, 0]
    expected = torch.stack([(blue * 255 - 10) / 2, (green * 255 - 20) / 4, (red * 255 - 30) / 5], 1)
    assert torch.allclose(norm(images), expected, atol=1e-5)


@pytest.mark.parametrize("preset", [lrp_faces.IMAGENET, lrp_faces.VGGFACE,
                                    Preprocessing((90.0, 100.0, 130.0), (50.0, 60.0, 70.0), 255.0, "BGR")])
def test_neutral_pixel_normalises_to_zero(preset):
    neutral = torch.tensor(preset.neutral_pixel).view(1, 3, 1, 1)
    assert torch.allclose(PixelNorm.from_preprocessing(preset)(neutral), torch.zeros(1, 3, 1, 1), atol=1e-5)


def test_pixel_norm_buffers_do_not_enter_the_state_dict():
    assert PixelNorm.from_preprocessing(lrp_faces.IMAGENET).state_dict() == {}


@pytest.mark.parametrize("kwargs, message", [
    (dict(mean=(0, 0), std=(1, 1, 1)), "mean must have 3 values"),
    (dict(mean=(0, 0, 0), std=(1, 0, 1)), "std must be positive"),
    (dict(mean=(0, 0, 0), std=(1, 1, 1), channel_order="RBG"), "channel_order"),
    (dict(mean=(0, 0, 0), std=(1, 1, 1), scale=0), "scale must be positive"),
])
def test_invalid_preprocessing_is_rejected_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PixelNorm(**kwargs)


def test_wrong_image_shape_is_rejected():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        PixelNorm.from_preprocessing(lrp_faces.IMAGENET)(torch.rand(2, 1, 4, 4))


def test_preprocessing_round_trips_through_a_dict():
    assert Preprocessing.from_dict(lrp_faces.VGGFACE.to_dict()) == lrp_faces.VGGFACE
