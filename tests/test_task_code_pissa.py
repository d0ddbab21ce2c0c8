"""PiSSA's code setting: its Python subset of CodeFeedback as training data (task.options.train_data), its
code_process.py cuts (protocol pissa), the experiments' pinned decoding, and the offline failure."""
import pytest
from conftest import compose

from lorabench.errors import ConfigError, OfflineError
from lorabench.tasks import code

TOY_HE = {"task_id": "Toy/0", "prompt": 'def double(x):\n    """Twice x."""\n',
          "test": "def check(candidate):\n    assert candidate(2) == 4\n", "entry_point": "double"}


@pytest.mark.parametrize("text, cut", [
    ("def f():\n    return 1\n", "def f():\n    return 1"),
    ("def f():\n    return 1\n\nassert f() == 1\n", "def f():\n    return 1"),
    ('def f():\n    return 1\n\nif __name__ == "__main__":\n    print(f())\n', "def f():\n    return 1"),
    ("def f():\n    return 1\n\n# Example usage\nprint(f())\n", "def f():\n    return 1"),
])
def test_pissa_cut(text, cut):
    assert code.pissa_cut(text) == cut


def test_pissa_protocol_prompts_as_instruct_and_cuts_the_block():
    item = code.test_item(TOY_HE, "humaneval", "pissa")
    assert item["prompt"] == code.test_item(TOY_HE, "humaneval", "instruct")["prompt"]
    completion = "def double(x):\n    return 2 * x\n\nassert double(1) == 2\n```"
    prog = code.program(item, completion)
    assert "assert double(1)" not in prog and prog.endswith("check(double)\n")
    assert "assert double(1)" in code.program(code.test_item(TOY_HE, "humaneval", "instruct"), completion)


def test_pissa_python_rows_in_pissas_training_format(monkeypatch):
    import datasets

    rows = [{"instruction": f"Write f{i}.", "output": f"def f{i}(): pass", "type": "python"} for i in range(5)]
    seen = {}

    def fake(path, data_dir=None, split=None):
        seen.update(path=path, data_dir=data_dir, split=split)
        return rows

    monkeypatch.setattr(datasets, "load_dataset", fake)
    cfg = compose("experiment=pissa/llama2_humaneval").task
    pool = code._pissa_python(cfg)
    assert seen == {"path": "fxmeng/pissa-dataset", "data_dir": "python", "split": "train"}
    assert len(pool) == 5 and pool[0]["response"] == "def f0(): pass\n"
    assert pool[0]["prompt"].startswith("Below is an instruction") and "Write f0." in pool[0]["prompt"]


@pytest.mark.parametrize("experiment, subset", [("pissa/llama2_humaneval", "humaneval"), ("pissa/llama2_mbpp", "mbpp")])
def test_experiments_pin_pissas_greedy_decoding(experiment, subset):
    t = compose(f"experiment={experiment}").task
    assert (t.subset, t.protocol, t.max_length, t.max_new_tokens, t.train_size) == (subset, "pissa", 512, 1024, None)
    assert dict(t.options) == {"train_data": "pissa_python", "n_samples": 1, "temperature": 0.0, "top_p": 1.0, "ks": [1]}


def test_offline_names_the_mini_alternative():
    with pytest.raises(OfflineError, match=r"fxmeng/pissa-dataset.*task=humaneval_mini"):
        code.load(compose("experiment=pissa/llama2_humaneval").task)


def test_train_data_checks():
    model = compose().model
    with pytest.raises(ConfigError, match="train_data"):
        code.check(compose("task=humaneval", "++task.options.train_data=wizard").task, model)
    with pytest.raises(ConfigError, match="needs the hub"):
        code.check(compose("task=humaneval_mini", "++task.options.train_data=pissa_python").task, model)
    code.check(compose("task=humaneval_mini").task, model)   # the mini's default is untouched
