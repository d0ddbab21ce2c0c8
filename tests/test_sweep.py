"""A sweep member that fails does not take the others down."""
import json

from conftest import FAST, run_cli


def test_failing_member_does_not_stop_the_sweep(tmp_path):
    # the first member asks for a rank larger than the layers: it fails with a clear error, the second completes.
    p = run_cli("-m", "adapter=lora", "adapter.r=100000,8", *FAST, f"paths.root={tmp_path}", timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "adapter.r=100000" in p.stderr
    records = list((tmp_path / "results" / "runs").rglob("*.json"))
    assert [json.loads(r.read_text())["adapter"] for r in records] == ["lora"]
