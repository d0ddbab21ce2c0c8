"""Reading the host: a sample sees only what running Python needs (its interpreter, standard library, shared
libraries, /dev/null, /dev/urandom, its own working directory). Each attack puts what it read on stderr and in
its exit message, the two places a Result's detail comes from; each fails, and the detail holds none of it."""
import json
import os
import secrets
import subprocess

import pytest
from test_sandbox import SYSTEM_PYTHON, humaneval, no_strays, sandboxed, world_usable  # noqa: F401  (autouse)

from lorabench.eval import sandbox
from lorabench.eval.sandbox import execute

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def exfiltrate(expr: str) -> str:
    """A completion body that reads `expr` and hands it back through stderr and the exit message."""
    return (f"data = str({expr})\nprint('LEAK:' + data, file=sys.stderr)\n"
            "raise SystemExit('LEAK:' + data[-300:])")


@pytest.fixture
def private_file(tmp_path):
    """A 0600 file in a 0700 directory, holding a fresh secret."""
    folder = tmp_path / "private"
    folder.mkdir()
    folder.chmod(0o700)
    secret = "lorabench-secret-" + secrets.token_hex(8)
    path = folder / "key"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return str(path), secret


def host_root_files(limit: int = 3) -> list[str]:
    """A few regular files under /root that this test process can read (none when it is not root)."""
    found = []
    for d, _, files in os.walk("/root"):
        for f in files:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p) and 16 < os.path.getsize(p) < 100_000 \
                    and os.access(p, os.R_OK):
                found.append(p)
                if len(found) == limit:
                    return found
    return found


ATTACKS = {   # name: completion-side expression (PRIVATE, PRIVATE_DIR: the fixture's file and its directory)
    "etc_shadow": "open('/etc/shadow').read()",
    "etc_passwd": "open('/etc/passwd').read()",
    "private_file": "open(PRIVATE).read()",
    "private_dir": "os.listdir(PRIVATE_DIR)",
    "symlink_to_private_file": "os.symlink(PRIVATE, 'link') or open('link').read()",
    "root_listing": "os.listdir('/root')",
    "root_ssh": "os.listdir('/root/.ssh')",
    "home": "os.listdir('/home')",
    "repository_readme": f"open({os.path.join(REPO, 'README.md')!r}).read()",
    "repository_listing": f"os.listdir({REPO!r})",
    "this_test": f"open({os.path.abspath(__file__)!r}).read()",
    "other_runs_in_tmp": "os.listdir('/tmp')",
    "workdir_parent": "os.listdir('..')",
    "proc_of_the_init": "open('/proc/1/environ').read()",
    "root_of_the_sandbox": "os.listdir('/')",
    "etc": "os.listdir('/etc')",
}


@sandboxed
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_host_files_cannot_be_read(name, private_file):
    path, secret = private_file
    body = f"PRIVATE, PRIVATE_DIR = {path!r}, {os.path.dirname(path)!r}\n" + exfiltrate(ATTACKS[name])
    result = execute(humaneval(body), timeout=5)
    assert result.status == "failed" and result.detail.split(":")[0] in {
        "FileNotFoundError", "PermissionError"}, result
    assert "LEAK:" not in result.detail and secret not in result.detail


@sandboxed
@pytest.mark.skipif(not host_root_files(), reason="needs readable files under /root (run as root)")
def test_root_files_cannot_be_read():
    for path in host_root_files():
        with open(path, errors="replace") as f:
            content = f.read()
        result = execute(humaneval(exfiltrate(f"open({path!r}).read()")), timeout=5)
        assert result.status == "failed" and "LEAK:" not in result.detail, (path, result)
        assert not any(line.strip() in result.detail for line in content.splitlines() if len(line.strip()) > 12)


@sandboxed
def test_the_evaluators_environment_does_not_reach_the_program(monkeypatch):
    secret = "lorabench-secret-" + secrets.token_hex(8)
    monkeypatch.setenv("LORABENCH_TEST_TOKEN", secret)
    result = execute(humaneval(exfiltrate("sorted(os.environ.items())")), timeout=5)
    assert result.detail.startswith("LEAK:")           # the program did print its environment ...
    assert secret not in result.detail                 # ... which holds nothing of the evaluator's
    assert sandbox.MARKER in result.detail and "PATH" in result.detail


@sandboxed
def test_detail_is_bounded_and_printable():
    body = "sys.stderr.write('x' * 100000 + '\\x1b[2J\\x00' + 'y' * 10)\nraise SystemExit(1)"
    result = execute(humaneval(body), timeout=5)
    assert result.status == "failed" and len(result.detail) == sandbox.DETAIL_CHARS
    assert result.detail.isprintable() and result.detail.endswith("x?[2J?" + "y" * 10)


def test_landlock_alone_confines_reads(private_file):
    """Without namespaces (weak mode: no private root), Landlock still refuses reads outside what Python needs,
    while the interpreter and its standard library keep working."""
    if not sandbox.isolation().get("landlock_fs"):
        pytest.skip("no Landlock here")
    path, secret = private_file
    report, tail = sandbox._launch(f"import json, decimal\nprint(open({path!r}).read())", 5, 512, "none", ())
    assert report["status"] == "failed" and not report["layers"]["private_root"], report
    assert tail.strip().splitlines()[-1].startswith("PermissionError") and secret not in tail
    report, _ = sandbox._launch("import json, decimal\nassert json.loads('[1]') == [1]", 5, 512, "none", ())
    assert report["status"] == "passed", report


@sandboxed
def test_user_namespace_mode_confines_reads_too(private_file):
    """The mode an unprivileged evaluator gets (root takes drop_uid): the same private root and Landlock rules."""
    path, secret = private_file
    report, tail = sandbox._launch(f"print(open({path!r}).read())", 5, 512, "userns", sandbox.REQUIRED)
    assert report["status"] == "failed" and report["layers"]["user_namespace"], report
    assert report["layers"]["private_root"] and report["layers"]["landlock_fs"]
    assert tail.strip().splitlines()[-1].startswith("FileNotFoundError") and secret not in tail


@sandboxed
@pytest.mark.skipif(not world_usable(SYSTEM_PYTHON), reason="needs root and a world-usable system python3")
def test_an_unprivileged_evaluator_gets_the_same_isolation(private_file):
    path, secret = private_file
    # The evaluator's code where uid 65534 can read it: a checkout may sit in a root-only directory (mktemp -d).
    import shutil
    import tempfile

    code = tempfile.mkdtemp(prefix="lorabench-code-")
    os.chmod(code, 0o755)
    shutil.copytree(os.path.join(REPO, "lorabench"), os.path.join(code, "lorabench"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = ("import json, sys\nsys.path.insert(0, sys.argv[1])\nfrom lorabench.eval import sandbox\n"
              "iso = sandbox.isolation()\nr = sandbox.execute(f'print(open({sys.argv[2]!r}).read())', timeout=5)\n"
              "ok = sandbox.execute('assert 1 + 1 == 2', timeout=5)\n"
              "print(json.dumps([iso['mode'], iso['sufficient'], r.status, r.detail, ok.passed]))")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON, "-I", "-c",
                          script, code, path], capture_output=True, text=True, timeout=120, cwd="/")
    shutil.rmtree(code, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-2000:]
    mode, sufficient, status, detail, ok = json.loads(out.stdout.splitlines()[-1])
    assert (mode, sufficient, status, ok) == ("userns", True, "failed", True), detail
    assert detail.startswith("FileNotFoundError") and secret not in detail
