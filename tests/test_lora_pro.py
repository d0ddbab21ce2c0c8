"""LoRA-Pro (arXiv 2407.18242, mrflogs/LoRA-Pro stage_1_and_2.py @fe26027) on the real SmolLM2-135M: the
equivalent gradient and the adjusted LoRA step are the closest rank-r updates (least squares) to the full
gradient and to the full-space Adam step, checked against a direct least-squares solve; one optimizer step
moves W by -lr times that projection (to first order)."""
import pytest
import torch

from conftest import compose, two_layers
from lorabench import adapters
from lorabench.adapters.common import lora_layers
from lorabench.config import validate
from lorabench.errors import ConfigError
from lorabench.optimizers import make
from lorabench.optimizers.adam import adam_direction
from lorabench.optimizers.lora_pro import adjusted_gradients, equivalent_gradient, sylvester

LAYERS = ["layers.1.self_attn.k_proj", "layers.1.mlp.down_proj"]


@pytest.fixture(scope="module")
def pissa_grads(smol):
    """A PiSSA-initialized SmolLM2 (real A, B != 0), the LoRA gradients and each layer's full gradient dL/dW."""
    cfg = smol.compose("pissa", f"adapter.target_modules=[{','.join(LAYERS)}]")
    model, _ = adapters.init_adapter(two_layers(smol.load()), cfg.adapter)   # real weights, two decoder layers
    layers = lora_layers(model)
    for _, layer in layers:
        layer.get_base_layer().weight.requires_grad_(True)
    model(**smol.batches[0]).loss.backward()
    out = []
    for _, layer in layers:
        A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        # dL/d(W_res) is the full gradient G: the layer computes (W_res + s B A) x
        out.append((A.detach().double(), B.detach().double(), A.grad.double(), B.grad.double(),
                    layer.get_base_layer().weight.grad.double(), layer.scaling["default"]))
    return model, out


def lstsq_projection(A, B, M):
    """argmin over rank-r updates B X + Y A of ||B X + Y A - M||: solved directly on the Kronecker system."""
    out_, in_ = M.shape
    A, B = A.contiguous(), B.contiguous()
    J = torch.cat([torch.kron(torch.eye(in_, dtype=M.dtype), B),
                   torch.kron(A.T.contiguous(), torch.eye(out_, dtype=M.dtype))], 1)
    vec = M.T.contiguous().reshape(-1)                                   # column-major vec
    sol = torch.linalg.lstsq(J, vec[:, None], driver="gelsd").solution
    return (J @ sol).reshape(in_, out_).T


def test_gradients_are_the_chain_rule_of_the_full_gradient(pissa_grads):
    for A, B, gA, gB, G, s in pissa_grads[1]:
        torch.testing.assert_close(gA, s * B.T @ G, atol=1e-7, rtol=1e-4)
        torch.testing.assert_close(gB, s * G @ A.T, atol=1e-7, rtol=1e-4)


def test_equivalent_and_adjusted_gradients_equal_a_direct_least_squares_solve(pissa_grads):
    for A, B, gA, gB, G, s in pissa_grads[1]:
        # a block of the real layer small enough for the Kronecker system (48 x 32, r = 8)
        a, b, g = A[:, :32], B[:48], G[:48, :32]
        equiv = equivalent_gradient(a, b, s * b.T @ g, s * g @ a.T, s, first=False)
        torch.testing.assert_close(equiv, lstsq_projection(a, b, g), atol=1e-10, rtol=1e-6)
        direction = torch.randn(48, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        dA, dB = adjusted_gradients(a, b, direction, s, first=False)
        # (entries of order 1: agreement to 1e-8, the pseudo-inverses' damping delta = 1e-8)
        torch.testing.assert_close(s * (b @ dA + dB @ a), lstsq_projection(a, b, direction), atol=1e-7, rtol=1e-5)
        # the Sylvester solve the adjustment uses
        C = torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        X = sylvester(b.T @ b, a @ a.T, C)
        torch.testing.assert_close(b.T @ b @ X + X @ a @ a.T, C, atol=1e-10, rtol=1e-8)


def test_full_size_residual_is_orthogonal_to_every_rank_r_update(pissa_grads):
    """The least-squares optimality conditions on the whole real layer: B^T R = 0 and R A^T = 0."""
    for A, B, gA, gB, G, s in pissa_grads[1]:
        R = G - equivalent_gradient(A, B, gA, gB, s, first=False)
        # (the LoRA gradients are autograd's fp32 ones: zero up to fp32 rounding)
        assert (B.T @ R).norm() < 1e-5 * (B.T @ G).norm()
        assert (R @ A.T).norm() < 1e-5 * (G @ A.T).norm()
        assert R.norm() < G.norm()


def test_first_step_from_b_zero_projects_onto_the_rows_of_a(pissa_grads):
    A, _, _, _, G, s = pissa_grads[1][0]
    B = torch.zeros(G.shape[0], 8, dtype=G.dtype)
    P_A = A.T @ torch.linalg.solve(A @ A.T, A)
    torch.testing.assert_close(equivalent_gradient(A, B, s * B.T @ G, s * G @ A.T, s, first=True), G @ P_A,
                               atol=1e-9, rtol=1e-6)


def test_one_optimizer_step_moves_w_by_the_projected_adam_step(pissa_grads):
    model, data = pissa_grads
    lr = 1e-4
    cfg = compose("adapter=lora_pro", f"trainer.lr={lr}")
    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    opt = make(model, params, cfg.trainer, cfg.adapter)
    before = [tuple(m["default"].weight.detach().double().clone() for m in (layer.lora_A, layer.lora_B))
              for _, layer in lora_layers(model)]
    opt.step()
    for (_, layer), (A0, B0), (A, B, gA, gB, G, s) in zip(lora_layers(model), before, data):
        dA = layer.lora_A["default"].weight.detach().double() - A0
        dB = layer.lora_B["default"].weight.detach().double() - B0
        step = s * (B0 @ dA + dB @ A0)                        # the first-order change of W
        adam = adam_direction({}, lstsq_projection_full(A0, B0, G)).double()   # Adam's first step: ~sign
        expected = -lr * lstsq_projection_full(A0, B0, adam)
        assert (step - expected).norm() / expected.norm() < 1e-4


def lstsq_projection_full(A, B, M):
    """The same projection in closed form, for whole layers: P_B M + M P_A - P_B M P_A."""
    P_B = B @ torch.linalg.solve(B.T @ B, B.T)
    P_A = A.T @ torch.linalg.solve(A @ A.T, A)
    return P_B @ M + M @ P_A - P_B @ M @ P_A


def test_refusals_at_config_time():
    with pytest.raises(ConfigError, match="use_dora=false"):
        validate(compose("adapter=lora_pro", "adapter.use_dora=true"))
    with pytest.raises(ConfigError, match="plain-LoRA init"):
        validate(compose("adapter=lora_sb", "adapter.optimizer=lora_pro"))
    with pytest.raises(ConfigError, match="distributed=ddp"):
        validate(compose("adapter=lora_pro", "distributed=zero2"), check_shapes=False)
    with pytest.raises(ConfigError, match="unknown"):
        validate(compose("adapter=lora", "adapter.optimizer=sgd"), check_shapes=False)
    validate(compose("adapter=pissa", "adapter.optimizer=lora_pro"))
