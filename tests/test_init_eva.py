"""EVA (arXiv 2410.07170v5; ml-jku/EVA src/svd.py @a5ac24b via peft's eva.py) on real SmolLM2-135M weights:
A's rows are the top principal directions of each layer's (masked, mean-centred) inputs, B = 0, the ranks
sum to the budget N*r, the result equals peft's own pipeline, and the saved adapter reloads by itself."""
import copy

import pytest
import torch
from peft import EvaConfig, LoraConfig, PeftModel, get_peft_model, initialize_lora_eva_weights

from conftest import compose, logits, two_layers
from lorabench import adapters, models
from lorabench.adapters.common import lora_layers
from lorabench.adapters.eva import check
from lorabench.config import validate
from lorabench.errors import ConfigError

# q/v share their input (one PCA for both), o_proj and down_proj each see their own: 8 layers, r = 4.
TARGETS = "adapter.target_modules=[q_proj,v_proj,o_proj,down_proj]"
N_LAYERS, R = 8, 4


def layer_inputs(model, batches, use_label_mask):
    """Every layer's selected input rows over all batches, as EVA's PCA sees them (one forward per batch)."""
    targets = [(n, m) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.endswith(("q_proj", "v_proj", "o_proj", "down_proj"))]
    rows = {}
    for b in batches:
        keep = b["attention_mask"].bool() & ((b["labels"] != -100) if use_label_mask else True)
        handles = [m.register_forward_hook(lambda mod, a, o, n=n: rows.setdefault(n, []).append(a[0][keep]))
                   for n, m in targets]
        logits(model, b)
        for h in handles:
            h.remove()
    return {k: torch.cat(v).double() for k, v in rows.items()}


def projector(rows):
    rows = rows.double()
    return rows.T @ torch.linalg.pinv(rows @ rows.T) @ rows


def init_eva(smol, use_label_mask, tau):
    cfg = smol.compose("eva", TARGETS, f"adapter.r={R}", f"adapter.options.use_label_mask={use_label_mask}",
                       f"adapter.options.tau={tau}")
    base = two_layers(smol.load(cfg))
    inputs = layer_inputs(base, smol.batches, use_label_mask)
    before = logits(base, smol.batches[0])
    torch.manual_seed(123)            # peft seeds its own random projections: the global RNG must not matter
    model, report = adapters.init_adapter(base, cfg.adapter, smol.batches)
    return cfg, model, report, inputs, before


@pytest.fixture(scope="module")
def run(smol):
    """The paper's setting: every non-padding token, tau = 0.99."""
    return init_eva(smol, False, 0.99)


@pytest.fixture(scope="module")
def run_label_mask(smol):
    """Response tokens only (labels != -100): far fewer rows per batch, so a stricter tau for a close PCA."""
    return init_eva(smol, True, 0.999)


@pytest.mark.parametrize("fixture", ["run", "run_label_mask"])
def test_ranks_sum_to_the_budget(fixture, request):
    cfg, model, report, _, _ = request.getfixturevalue(fixture)
    ranks = report.extra["ranks"]
    assert len(ranks) == N_LAYERS and sum(ranks.values()) == N_LAYERS * R == report.extra["rank_budget_used"]
    assert max(ranks.values()) <= round(cfg.adapter.options.rho * R)
    assert len(set(ranks.values())) > 1                               # redistributed, not uniform
    assert report.ranks == {k: r for k, r in ranks.items() if r > 0}  # rank-0 layers lost their adapter
    assert all(lora.r["default"] == ranks[name] for name, lora in lora_layers(model))
    # alpha follows the rank (adjust_scaling_factors): every layer keeps alpha/r
    assert {round(lora.scaling["default"], 9) for _, lora in lora_layers(model)} == {cfg.adapter.alpha / R}
    assert report.extra["batches_until_converged"] >= 2 and report.extra["init_batches_used"] == 4


@pytest.mark.parametrize("fixture", ["run", "run_label_mask"])
def test_a_spans_the_top_principal_directions_of_the_layer_inputs(fixture, request):
    _, model, report, inputs, _ = request.getfixturevalue(fixture)
    checked = 0
    for name, lora in lora_layers(model):
        A = lora.lora_A["default"].weight.detach().double()
        k = A.shape[0]
        X = inputs[name] - inputs[name].mean(0)                        # mean-centred, as IncrementalPCA
        _, S, Vh = torch.linalg.svd(X, full_matrices=False)
        torch.testing.assert_close(A @ A.T, torch.eye(k, dtype=A.dtype), atol=1e-5, rtol=0)   # orthonormal axes
        # Incremental PCA keeps rho*r components per step, so it approximates the exact PCA of the union: A
        # captures >= 99 % of the variance the top-k axes capture (measured 0.9976-0.99999 / 0.998-0.9999),
        # and the subspaces agree up to rotations among near-equal eigenvalues (measured <= 0.12 / <= 0.17;
        # a random k-dim subspace of 576 dims is at ~1).
        captured = float(torch.trace(A @ X.T @ X @ A.T) / (S[:k] ** 2).sum())
        assert captured > 0.99, f"{name}: {captured:.4f}"
        dist = float(torch.linalg.norm(projector(A) - Vh[:k].T @ Vh[:k]) / (2 * k) ** 0.5)
        assert dist < 0.25, f"{name}: subspace distance {dist:.3f}"
        exact = float((S[:k] ** 2).sum() / (S ** 2).sum())
        assert abs(report.extra["explained_variance_ratio"][name] - exact) < 0.01
        checked += 1
    assert checked == len(report.ranks)


def test_layers_with_the_same_input_share_one_pca(run):
    _, model, report, _, _ = run
    layers = dict(lora_layers(model))
    for i in range(2):
        q, v = f"model.layers.{i}.self_attn.q_proj", f"model.layers.{i}.self_attn.v_proj"
        assert report.extra["shares_input_with"][v] == q and report.extra["ranks"][q] >= report.extra["ranks"][v]
        if v in layers:
            k = layers[v].r["default"]
            assert torch.equal(layers[v].lora_A["default"].weight, layers[q].lora_A["default"].weight[:k])


def test_b_is_zero_and_the_output_unchanged(run, smol):
    _, model, _, _, before = run
    for _, lora in lora_layers(model):
        assert torch.count_nonzero(lora.lora_B["default"].weight) == 0
    torch.testing.assert_close(logits(model, smol.batches[0]), before, atol=0, rtol=0)


def test_saved_adapter_reloads_with_its_ranks(run, smol, tmp_path):
    cfg, model, _, _, _ = run
    model = copy.deepcopy(model)
    for _, lora in lora_layers(model):                                # as after training: B != 0
        torch.nn.init.normal_(lora.lora_B["default"].weight, std=0.02, generator=torch.Generator().manual_seed(0))
    model.save_pretrained(tmp_path)
    saved = LoraConfig.from_pretrained(tmp_path)
    assert saved.rank_pattern and saved.alpha_pattern                 # the shapes travel with the adapter
    loaded = PeftModel.from_pretrained(two_layers(smol.load(cfg)), tmp_path)
    ranks = lambda m: {n: lora.r["default"] for n, lora in lora_layers(m)}   # noqa: E731
    assert ranks(loaded) == ranks(model)
    torch.testing.assert_close(logits(loaded, smol.batches[1]), logits(model, smol.batches[1]), atol=1e-6, rtol=0)


def test_equals_peft_own_pipeline(run, smol):
    cfg, model, _, _, _ = run
    opts = cfg.adapter.options
    base = two_layers(smol.load(cfg))
    config = LoraConfig(r=R, lora_alpha=cfg.adapter.alpha, target_modules=list(cfg.adapter.target_modules),
                        task_type="CAUSAL_LM", init_lora_weights="eva",
                        eva_config=EvaConfig(rho=opts.rho, tau=opts.tau, use_label_mask=False))
    torch.manual_seed(7)
    theirs = get_peft_model(base, config)
    initialize_lora_eva_weights(theirs, smol.batches, show_progress_bar=False)
    ours = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert ours.keys() == {k for k in theirs.state_dict() if "lora_" in k}
    for k, v in ours.items():
        assert torch.equal(v, theirs.state_dict()[k]), k
    assert theirs.peft_config["default"].rank_pattern == model.peft_config["default"].rank_pattern


def test_batches_too_small_for_the_pca_stop_with_a_clear_error():
    cfg = compose("model=tiny_llama", "adapter=eva", "adapter.r=8")     # 16 components per layer
    torch.manual_seed(0)
    base = models.load_model(cfg.model)
    base._lorabench_targets = list(cfg.model.target_modules)
    ids = torch.randint(0, 1000, (1, 6))                              # 6 tokens < 16: peft skips every batch
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    with pytest.raises(RuntimeError, match=r"no init batch has the round\(rho\*r\) = 16 selected tokens"):
        adapters.init_adapter(base, cfg.adapter, [batch])
    assert not any(m._forward_hooks for m in base.modules())          # peft's hooks are gone


@pytest.mark.parametrize("option,value,expected", [
    ("rho", 0.5, "rho=0.5 must be a number >= 1"),
    ("tau", 1.5, r"tau=1.5 must be in \(0, 1\]"),
    ("use_label_mask", "yes", "use_label_mask='yes' must be true or false"),
])
def test_bad_options_fail_at_config_time(option, value, expected):
    cfg = compose("adapter=eva")
    opts = {**adapters.options(cfg.adapter), option: value}
    with pytest.raises(ConfigError, match=expected):
        check(cfg.adapter, opts, 192, "x")


def test_too_many_components_fail_at_config_time():
    with pytest.raises(ConfigError, match=r"round\(r\*rho\) = 256 .* lower adapter.r or adapter.options.rho"):
        validate(compose("model=smollm2_135m", "adapter=eva", "adapter.r=128"))   # k_proj is 192x576


def test_a_layer_that_sees_one_vector_per_example_decomposes_the_examples():
    """A BERT pooler's input is batch x hidden (each example's first token), not tokens: EVA takes one row per
    example there (peft's token indexing fails on it) and tokens everywhere else."""
    from lorabench.data import collate, tokenize_cls
    from lorabench.tasks import glue

    cfg = compose("task=glue_mini", "adapter=eva", "adapter.r=2", "logger=none")   # real MiniLM weights
    tokenizer = models.load_tokenizer(cfg.model)
    samples = tokenize_cls(glue.load(cfg.task).train[:64], tokenizer, 64)
    batches = [collate(samples[i:i + 16], tokenizer.pad_token_id) for i in range(0, 64, 16)]
    base = models.load_model(cfg.model, None, num_labels=2)
    base._lorabench_targets = list(cfg.model.target_modules)
    rows = []
    hook = base.bert.pooler.dense.register_forward_hook(lambda m, a, o: rows.append(a[0].detach()))
    for b in batches:
        with torch.no_grad():
            base(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    hook.remove()
    X = torch.cat(rows).double()
    assert X.shape == (64, base.config.hidden_size)
    model, report = adapters.init_adapter(base, cfg.adapter, batches, "SEQ_CLS")
    pooler = dict(lora_layers(model))["bert.pooler.dense"]
    A = pooler.lora_A["default"].weight.detach().double()
    X = X - X.mean(0)
    _, S, _ = torch.linalg.svd(X, full_matrices=False)
    k = A.shape[0]
    # the examples' top directions: peft's randomized incremental PCA captures 97.3 % of the variance of the
    # exact top-k axes here (a random k-dim subspace of 384 dims: a few %)
    assert float(torch.trace(A @ X.T @ X @ A.T) / (S[:k] ** 2).sum()) > 0.95
    assert len(report.ranks) == len(lora_layers(model))
