"""CorDA (arXiv 2406.05223; iboing/CorDA @baffb03 via peft's corda.py) on real SmolLM2-135M weights: s·B·A is
the top-r (ipm) / bottom-r (kpm) part of the SVD of W·C mapped back by C^-1, C the covariance of the layer's
inputs over the init samples; W_res + s·B·A = W, the output is unchanged, the result equals peft's own
pipeline (kpm to 2e-5 relative: peft sums C in float32, we in float64; ipm up to peft's float32 rounding,
and closer to the exact math), and the exported rank-2r adapter reproduces the trained model on the original base."""
import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora.config import CordaConfig
from peft.tuners.lora.corda import preprocess_corda

from conftest import compose, logits, two_layers
from lorabench import adapters, models
from lorabench.adapters.common import lora_layers
from lorabench.config import validate
from lorabench.errors import ConfigError
from lorabench.run import save_adapter, save_initial_adapter

# SmolLM2's three layer shapes: 576x576 (q), 192x576 (v), 576x1536 (down); r = 4, alpha = 8 (s = 2).
TARGETS = "adapter.target_modules=[q_proj,v_proj,down_proj]"
R = 4


def samples(batches):
    return [ids[m.bool()] for b in batches for ids, m in zip(b["input_ids"], b["attention_mask"])]


def covariances(model, batches, names=("q_proj", "v_proj", "down_proj")):
    """C = sum over samples of (X/max X)^T (X/max X) / #samples, one unpadded sample per forward (official)."""
    targets = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.endswith(names)}
    cov = {n: 0 for n in targets}

    def hook(name):
        def f(mod, args, out):
            x = args[0][0].double()
            x = x / x.max().abs()
            cov[name] = cov[name] + x.T @ x
        return f
    handles = [m.register_forward_hook(hook(n)) for n, m in targets.items()]
    xs = samples(batches)
    with torch.no_grad():
        for ids in xs:
            model(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None])
    for h in handles:
        h.remove()
    return {n: c / len(xs) for n, c in cov.items()}


def corda_part(W, C, r, top):
    """peft's corda math in float64: damp C until it inverts well, SVD of W C, V^T <- V^T C^-1; the r kept parts."""
    damp = 0.01
    while True:
        Cf = C + torch.eye(len(C), dtype=C.dtype) * C.diagonal().mean() * damp
        inv = torch.linalg.inv(Cf)
        if torch.dist(Cf @ inv, torch.eye(len(C), dtype=C.dtype)) < 0.05:
            break
        damp *= 2
    U, S, Vh = torch.linalg.svd(W.double() @ Cf, full_matrices=False)
    Vh = Vh @ inv
    k = slice(0, r) if top else slice(-r, None)
    return U[:, k] @ torch.diag(S[k]) @ Vh[k]


def peft_pipeline(base, cfg, batches) -> dict:
    """peft's documented CorDA flow, called directly: preprocess_corda with one unpadded sample per forward."""
    config = LoraConfig(r=cfg.adapter.r, lora_alpha=cfg.adapter.alpha, target_modules=list(cfg.adapter.target_modules),
                        task_type="CAUSAL_LM", init_lora_weights="corda",
                        corda_config=CordaConfig(corda_method=cfg.adapter.options.method))
    xs = samples(batches)
    preprocess_corda(base, config, run_model=lambda: [base(input_ids=x[None], attention_mask=torch.ones_like(x)[None])
                                                      for x in xs])
    return get_peft_model(base, config)


def assert_equal_to_peft(model, theirs):
    """Equal up to peft's float32 summation of C (bit for bit before ours moved to float64 sums), once peft's
    triplets take decompose.fix_signs's signs (B's column j is u_j times a positive
    factor, A's row j is v_j^T times one: negating both where B's largest entry is negative is exact)."""
    from lorabench.adapters.decompose import fix_signs

    ours, theirs = model.state_dict(), dict(theirs)
    keys = [k for k in ours if "lora_" in k or "base_layer.weight" in k]
    assert len(keys) == 18 and set(keys) <= set(theirs)
    for kb in [k for k in keys if "lora_B" in k]:
        ka = kb.replace("lora_B", "lora_A")
        B, At = fix_signs(theirs[kb], theirs[ka].T)
        theirs[kb], theirs[ka] = B, At.T
    worst = max(float((ours[k] - theirs[k]).abs().max() / theirs[k].abs().max()) for k in keys)
    assert worst < 1e-4, worst      # measured 2e-5: peft sums C in float32, ours in float64


def assert_residual_plus_adapter_is_w(model, W):
    for name, lora in lora_layers(model):
        s = lora.scaling["default"]
        rebuilt = lora.base_layer.weight + s * lora.lora_B["default"].weight @ lora.lora_A["default"].weight
        torch.testing.assert_close(rebuilt, W[name], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def run(smol):
    """IPM, the paper's mode for fine-tuning on the task, on SmolLM2's first two layers."""
    cfg = smol.compose("corda", TARGETS, f"adapter.r={R}", "adapter.alpha=8")
    base = two_layers(smol.load(cfg))
    W = {n.removesuffix(".weight"): p.detach().clone() for n, p in base.named_parameters() if p.ndim == 2}
    C = covariances(base, smol.batches)
    before = logits(base, smol.batches[0])
    model, report = adapters.init_adapter(base, cfg.adapter, smol.batches)   # 4 batches of 2: split into 8 samples
    return cfg, model, report, W, C, before


def kept_part_error(model, W, C, top):
    """max over layers of |s·B·A - expected| / |expected|."""
    errs = {}
    for name, lora in lora_layers(model):
        A, B = lora.lora_A["default"].weight.detach().double(), lora.lora_B["default"].weight.detach().double()
        expected = corda_part(W[name], C[name], A.shape[0], top)
        errs[name] = float((lora.scaling["default"] * B @ A - expected).norm() / expected.norm())
    return errs


def test_ipm_is_the_top_part_of_the_svd_of_w_c(run, smol):
    cfg, model, report, W, C, _ = run
    assert len(lora_layers(model)) == 6 and set(report.ranks.values()) == {R}
    assert {lora.scaling["default"] for _, lora in lora_layers(model)} == {2.0}
    assert report.extra == {"method": cfg.adapter.options.method, "samples": 8,
                            "tokens": sum(len(s) for s in samples(smol.batches))}
    # The product U S V^T C^-1 is free of singular-vector signs. fp32 (peft) vs float64 here, through the inverse
    # of a damped rank-deficient C: measured 0.9e-3 .. 8.8e-3.
    errs = kept_part_error(model, W, C, top=True)
    assert max(errs.values()) < 2e-2, errs


def test_kpm_is_the_bottom_part_of_the_svd_of_w_c():
    """tiny_llama (64/128 dims) with 768 tokens: C is full rank and the bottom components are well defined
    (on SmolLM2 with 500 tokens for 576-1536 dims they are not: the smallest singular values of W C are near-equal
    and fp32 vs float64 picks different ones)."""
    cfg = compose("model=tiny_llama", "adapter=corda", "adapter.options.method=kpm", "adapter.r=4", TARGETS)
    torch.manual_seed(0)
    base = models.load_model(cfg.model)
    base._lorabench_targets = list(cfg.model.target_modules)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(12):
        ids = torch.randint(0, 1000, (2, 32), generator=g)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    W = {n.removesuffix(".weight"): p.detach().clone() for n, p in base.named_parameters() if p.ndim == 2}
    C = covariances(base, batches, ("q_proj", "v_proj", "down_proj"))
    model, _ = adapters.init_adapter(base, cfg.adapter, batches)
    errs = {n: e for n, e in kept_part_error(model, W, C, top=False).items() if n in C}
    assert len(errs) == 6 and max(errs.values()) < 1e-4, errs                # measured <= 1.5e-5
    top = {n: e for n, e in kept_part_error(model, W, C, top=True).items() if n in C}
    assert min(top.values()) > 0.5                                      # and not the top part
    assert_residual_plus_adapter_is_w(model, W)
    torch.manual_seed(0)
    theirs = peft_pipeline(models.load_model(cfg.model), cfg, batches)
    assert_equal_to_peft(model, theirs.state_dict())                    # kpm: peft's operations


def test_residual_plus_adapter_is_w_and_output_unchanged(run, smol):
    _, model, _, W, _, before = run
    assert_residual_plus_adapter_is_w(model, W)
    torch.testing.assert_close(logits(model, smol.batches[0]), before, atol=1e-4, rtol=1e-4)


def test_ipm_equals_peft_own_pipeline_and_is_closer_to_the_exact_math(run, smol):
    """ipm takes the exact top-r triplets of W C in float64 where peft takes a full float32 SVD: the same
    kept part as peft's up to peft's own rounding, and on every layer at least as close to the float64
    reference (measured: ours 0.4e-3 .. 2.5e-3, peft 0.9e-3 .. 8.8e-3; the rest is the float32 inverse of
    the damped C, kept from peft because it decides the damping)."""
    cfg, model, _, W, C, _ = run
    theirs = peft_pipeline(two_layers(smol.load(cfg)), cfg, smol.batches)
    ours_err, peft_err = kept_part_error(model, W, C, top=True), kept_part_error(theirs, W, C, top=True)
    assert all(ours_err[n] <= peft_err[n] * 1.05 for n in ours_err), (ours_err, peft_err)
    for (name, a), (_, b) in zip(lora_layers(model), lora_layers(theirs)):
        s, A, B = a.scaling["default"], a.lora_A["default"].weight, a.lora_B["default"].weight
        kept, kept_peft = s * B @ A, s * b.lora_B["default"].weight @ b.lora_A["default"].weight
        assert ((kept - kept_peft).norm() / kept_peft.norm()).item() < 2 * peft_err[name], name
        torch.testing.assert_close(a.base_layer.weight + kept, b.base_layer.weight + kept_peft, atol=1e-5, rtol=1e-5)


def test_batch_size_does_not_matter(run, smol):
    """Batches are split into unpadded samples, so 8 batches of 1 give what 4 batches of 2 gave."""
    cfg, model, _, _, _, _ = run
    ones = [{k: v[i:i + 1, :int(b["attention_mask"][i].sum())] for k, v in b.items()}
            for b in smol.batches for i in range(2)]
    other, _ = adapters.init_adapter(two_layers(smol.load(cfg)), cfg.adapter, ones)
    for k, v in model.state_dict().items():
        if "lora_" in k:
            torch.testing.assert_close(other.state_dict()[k], v, atol=1e-6, rtol=1e-5)


def test_exported_adapter_reproduces_the_trained_model_on_the_original_base(run, smol, tmp_path):
    cfg, model, _, _, _, _ = run
    model = copy.deepcopy(model)
    init_dir = save_initial_adapter(model, cfg, tmp_path)              # as run.py: before training
    for _, lora in lora_layers(model):                                  # "training"
        for p in (lora.lora_A["default"].weight, lora.lora_B["default"].weight):
            p.data += 0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1))
    trained = logits(model, smol.batches[1])
    path = save_adapter(model, cfg, tmp_path, init_dir)
    saved = LoraConfig.from_pretrained(path)
    assert saved.r == 2 * R and saved.init_lora_weights is True         # plain LoRA for the unmodified base
    loaded = PeftModel.from_pretrained(two_layers(smol.load(cfg)), path)
    torch.testing.assert_close(logits(loaded, smol.batches[1]), trained, atol=1e-4, rtol=1e-4)


def test_bad_method_fails_at_config_time():
    with pytest.raises(ConfigError, match="method='svd' is unknown to CorDA; use one of ipm, kpm"):
        validate(compose("adapter=corda", "adapter.options.method=svd"))


def test_a_layer_that_sees_one_vector_per_example_gets_its_covariance():
    """A BERT pooler's input is batch x hidden: CorDA's covariance there is the sum over examples of x x^T
    (peft's hook alone squeezed it to a vector and a scalar); the init keeps the model's output."""
    from lorabench.data import collate, tokenize_cls
    from lorabench.tasks import glue

    cfg = compose("task=glue_mini", "adapter=corda", "logger=none")   # real MiniLM weights
    tokenizer = models.load_tokenizer(cfg.model)
    samples = tokenize_cls(glue.load(cfg.task).train[:16], tokenizer, 64)
    batches = [collate(samples[i:i + 8], tokenizer.pad_token_id) for i in (0, 8)]
    base = models.load_model(cfg.model, None, num_labels=2).eval()
    base._lorabench_targets = list(cfg.model.target_modules)
    before = logits(base, batches[0])
    model, report = adapters.init_adapter(base, cfg.adapter, batches, "SEQ_CLS")
    assert report.extra["samples"] == 16
    assert "bert.pooler.dense" in dict(lora_layers(model))
    torch.testing.assert_close(logits(model.eval(), batches[0]), before, atol=1e-4, rtol=1e-4)
