"""The embedded default end to end on the real SmolLM2 (about 7 minutes on 2 cores): `make test-slow`."""
import pytest

from conftest import compose
from lorabench.run import run


@pytest.mark.slow
def test_embedded_default(tmp_path):
    rec = run(compose("logger=none", root=tmp_path))
    assert rec["model"] == "smollm2-135m" and rec["task"] == "gsm8k_mini" and rec["steps"] == 24
    assert rec["metrics"]["n"] == 50 and 0.0 <= rec["metrics"]["values"]["accuracy"] <= 1.0
    assert rec["loss"]["valid"] < rec["curve"][0]["loss"]       # training reduced the loss
