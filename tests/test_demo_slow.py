"""The embedded default end to end on the real SmolLM2 (about 7 minutes on 2 cores): `make test-slow`."""
import pytest

from conftest import compose
from lorabench.run import run


@pytest.mark.slow
def test_embedded_default(tmp_path):
    rec = run(compose("logger=none", root=tmp_path))
    assert rec["model"] == "smollm2-135m-instruct-q4_1" and rec["task"] == "gsm8k_mini" and rec["steps"] == 24
    assert rec["metrics"]["n"] == 50 and 0.0 <= rec["metrics"]["values"]["accuracy"] <= 1.0
    assert rec["loss"]["valid"] < rec["curve"][0]["loss"]       # training reduced the loss
    import json
    from pathlib import Path
    adapter = json.loads((Path(rec["adapter_path"]) / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
