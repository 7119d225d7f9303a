import math

import pytest
import torch

from visual_anomaly.core import AutoencoderConfig, ConvAutoencoder, OutlierExposureHead, RealNVPHead


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_shapes_of_encode_decode_forward():
    model = ConvAutoencoder(AutoencoderConfig(base_channels=8))
    images = torch.randn(5, 3, 64, 64)
    embedding = model.encode(images)
    assert embedding.shape == (5, 128)
    assert model.decode(embedding).shape == (5, 3, 64, 64)
    reconstruction, embedding2 = model(images)
    assert reconstruction.shape == images.shape
    assert torch.equal(embedding, embedding2)


def test_published_architecture_size():
    # The RA-L reference model (F=128) has about 16.6M parameters, F=64 about 5.2M.
    assert parameter_count(ConvAutoencoder(AutoencoderConfig(base_channels=128))) == pytest.approx(16.6e6, rel=0.01)
    assert parameter_count(ConvAutoencoder(AutoencoderConfig(base_channels=64))) == pytest.approx(5.2e6, rel=0.02)


def test_published_encoder_layout():
    model = ConvAutoencoder(AutoencoderConfig(base_channels=128))
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Sequential)]
    assert [c[0].out_channels for c in convs] == [128, 256, 512, 1024]
    assert all(c[0].stride == (2, 2) and c[0].kernel_size == (3, 3) for c in convs)
    assert isinstance(convs[0][1], torch.nn.LeakyReLU)


def test_same_seed_same_model_and_deterministic_forward():
    torch.manual_seed(3)
    a = ConvAutoencoder(AutoencoderConfig(base_channels=8)).eval()
    torch.manual_seed(3)
    b = ConvAutoencoder(AutoencoderConfig(base_channels=8)).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(images)[0], b(images)[0])
        assert torch.equal(a(images)[0], a(images)[0])


def test_oe_head_layers_and_output():
    head = OutlierExposureHead()
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(128, 256), (256, 64), (64, 1)]
    assert head(torch.randn(7, 128)).shape == (7,)


@pytest.mark.parametrize('kwargs', [{'base_channels': 0}, {'image_size': 60}, {'embedding_dim': -1}])
def test_invalid_config_rejected(kwargs):
    with pytest.raises(ValueError):
        AutoencoderConfig(**kwargs)


def test_real_nvp_head_is_a_normalized_density():
    torch.manual_seed(0)
    head = RealNVPHead(embedding_dim=2, couplings=4, hidden=16)
    for net in (*head.scale_nets, *head.shift_nets):
        torch.nn.init.normal_(net[4].weight, std=0.5)  # a flow far from the identity
    step = 0.05
    grid = torch.stack(torch.meshgrid(*[torch.arange(-8, 8, step)] * 2, indexing='ij'), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        mass = torch.exp(-head(grid)).sum() * step**2
        identity = RealNVPHead(embedding_dim=2)
        for net in (*identity.scale_nets, *identity.shift_nets):
            torch.nn.init.zeros_(net[4].weight), torch.nn.init.zeros_(net[4].bias)
        standard_normal_nll = 0.5 * grid.square().sum(1) + math.log(2 * math.pi)
        torch.testing.assert_close(identity(grid), standard_normal_nll)
    assert abs(float(mass) - 1.0) < 0.02  # exp(-NLL) integrates to one: the log-determinant is right
