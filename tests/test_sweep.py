"""A sweep member that fails does not take the others down."""
import json

from conftest import FAST, run_cli


def test_failing_member_does_not_stop_the_sweep(tmp_path):
    # the first member asks for a rank larger than the layers: it fails with a clear error, the second completes.
    p = run_cli("-m", "adapter=lora", "adapter.r=100000,8", *FAST, f"paths.root={tmp_path}", timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "adapter.r=100000" in p.stderr
    records = [json.loads(r.read_text()) for r in sorted((tmp_path / "results" / "runs").rglob("*.json"))]
    by_status = {r["status"]: r for r in records}
    assert len(records) == 2 and set(by_status) == {"success", "failed"}
    failed = by_status["failed"]   # the failed member leaves a record saying why
    assert failed["run_id"].endswith(".failed") and failed["config"]["adapter"]["r"] == 100000
    assert "ConfigError" in failed["error"] and "adapter.r=100000" in failed["error"]
    assert by_status["success"]["config"]["adapter"]["r"] == 8
