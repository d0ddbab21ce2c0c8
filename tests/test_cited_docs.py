"""Every document the code and tests cite by repository path (docs/<name>.md) is in the repository: a citation
of a file that only some machines hold (OFFLINE_ASSETS.md lived in a shared folder) sends readers nowhere."""
import re

from conftest import ROOT


def test_cited_docs_exist():
    cited = {}
    for path in [*ROOT.glob("lorabench/**/*.py"), *ROOT.glob("tests/*.py"), ROOT / "README.md"]:
        for name in re.findall(r"\bdocs/[\w./-]+\.md\b", path.read_text(errors="replace")):
            cited.setdefault(name, path.relative_to(ROOT))
    assert "docs/OFFLINE_ASSETS.md" in cited
    missing = {name: str(where) for name, where in cited.items() if not (ROOT / name).is_file()}
    assert not missing, missing
