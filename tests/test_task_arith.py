"""arith_mini: one reasoning-gym generator in the GSM8K format, with disjoint train / valid / test."""
import re

import pytest

from conftest import compose
from lorabench import tasks
from lorabench.config import validate
from lorabench.errors import ConfigError
from lorabench.tasks import gsm8k


def test_splits_are_disjoint_and_in_the_gsm8k_format():
    cfg = compose("task=arith_mini", "logger=none")
    data = gsm8k.load(cfg.task)
    assert (len(data.train), len(data.valid), len(data.test)) == (512, 64, 200)
    prompts = [{x["prompt"] for x in split} for split in (data.train, data.valid, data.test)]
    assert not (prompts[0] & prompts[2]) and not (prompts[1] & prompts[2]) and not (prompts[0] & prompts[1])
    ex = data.test[0]
    assert re.fullmatch(r"Q: \d+( [+-] \d+)+ =\nA: ", ex["prompt"])   # the bare problem (options.instruction)
    assert data.heldout[0]["response"] == f"#### {ex['gold']}"    # no worked solution: the answer alone
    assert data.valid_eval[0]["gold"] and [x["prompt"] for x in data.heldout] == [x["prompt"] for x in data.test]
    assert gsm8k.score(" #### " + ex["gold"], ex["gold"], "lora_ga")["accuracy"]
    terms = [x["prompt"][3:].split("=")[0].split() for x in data.train]
    assert all(len(t[::2]) in (2, 3) and all(len(n) <= 2 for n in t[::2]) for t in terms)   # task.options


def test_instruction_option_keeps_the_problems_and_changes_only_their_wording():
    bare = gsm8k.load(compose("task=arith_mini", "task.eval_size=20", "logger=none").task)
    worded = gsm8k.load(compose("task=arith_mini", "task.eval_size=20", "task.options.instruction=true",
                                "logger=none").task)
    assert worded.test[0]["prompt"].startswith("Q: State the final answer to the following arithmetic problem: ")
    assert [x["prompt"].split("problem: ")[1] for x in worded.test] == [x["prompt"][3:] for x in bare.test]
    assert [x["response"] for x in worded.train] == [x["response"] for x in bare.train]


def test_unknown_generator_or_option_fails_at_config_time():
    with pytest.raises(ConfigError, match="chain_sum"):
        validate(compose("task=arith_mini", "task.subset=sudoku", "logger=none"), check_shapes=False)
    with pytest.raises(ConfigError, match="unknown task.options"):
        validate(compose("task=arith_mini", "+task.options.max_termz=3", "logger=none"), check_shapes=False)
    with pytest.raises(ConfigError, match="not allowed"):
        validate(compose("task=gsm8k_mini", "task.subset=chain_sum", "task.mini=false", "logger=none"),
                 check_shapes=False)
    assert tasks.family("gsm8k") is gsm8k


def test_decoding_options_are_checked_and_never_reach_the_generator():
    cfg = compose("task=arith_mini", "task.eval_size=20", "+task.options.temperature=0.8", "+task.options.top_p=0.95",
                  "logger=none")
    assert gsm8k.load(cfg.task).test                      # reasoning-gym never sees temperature / top_p
    with pytest.raises(ConfigError, match="temperature=-1"):
        validate(compose("task=gsm8k_mini", "+task.options.temperature=-1", "logger=none"), check_shapes=False)
    assert compose("experiment=lora_ga/llama2_gsm8k").task.options == {"temperature": 0.8, "top_p": 0.95}
