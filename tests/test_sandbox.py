"""The code-execution sandbox: correct programs pass, and hostile completions score as failures while the host
(files, network listeners, processes) and this test process stay unharmed, with no process left behind.
Early exits and forged proofs: test_sandbox_proof.py; reading the host: test_sandbox_reads.py."""
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import textwrap
import time

import pytest

from lorabench.errors import LorabenchError
from lorabench.eval import sandbox
from lorabench.eval.sandbox import (
    Result,
    SandboxUnavailable,
    execute,
    execute_many,
    isolation,
)

ISO = isolation()
sandboxed = pytest.mark.skipif(not ISO["sufficient"], reason=f"no sandbox on this machine: {ISO.get('reason')}")


def humaneval(body: str, call: str = "check(add)") -> str:
    """A HumanEval-shaped program: prompt + completion `body` (which then returns the right answer) + test."""
    return (f"import os, sys, socket, shutil, signal, time\n\ndef add(a, b):\n{textwrap.indent(body, '    ')}\n"
            f"    return a + b\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n\n{call}\n")


def own_processes() -> list[str]:
    """Live processes started by this test process's sandboxes (launcher, init, program and its children)."""
    me = str(os.getpid()).encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and (b"_launcher_main" in cmd and b'"owner": ' + me in cmd
                               or sandbox.MARKER.encode() + b"=" + me in env):
            found.append(f"{pid}: {cmd[:80]!r}")
    return found


@pytest.fixture(autouse=True)
def no_strays():
    yield
    assert own_processes() == []   # execute() returns only once the sample's namespace is gone


@pytest.fixture(scope="module")
def bystander():
    """A process of the host (same user as the evaluator) that hostile samples try to kill."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_correct_program_passes():
    assert execute(humaneval("pass")) == Result(True, "passed", "")


@pytest.mark.parametrize("program,detail", [
    (humaneval("return a - b"), "AssertionError"),
    (humaneval("return a / 0"), "ZeroDivisionError: division by zero"),
    (humaneval("pass", call="check(add)\nsys.exit(3)"), "exit code 3"),
    ("def add(a, b) return a + b\n", "SyntaxError: expected ':'"),
])
def test_failing_programs_fail(program, detail):
    assert execute(program, timeout=5) == Result(False, "failed", detail)


def test_bad_arguments():
    with pytest.raises(ValueError):
        execute("pass", timeout=0)
    with pytest.raises(ValueError):
        execute("pass", memory_mb=1)


@sandboxed
def test_isolation_reports_what_the_program_sees():
    iso = isolation()
    json.dumps(iso)   # recorded beside pass@k
    for layer in ("net_namespace", "pid_namespace", "mount_namespace", "landlock_fs", "private_proc",
                  "private_root", "tmpfs_workdir", "no_new_privs", "capabilities_dropped", "seccomp"):
        assert iso[layer] is True, layer
    assert iso["capabilities"] == "0000000000000000"   # CapEff inside the sandbox
    assert iso["sees_pid"] == 2                         # PID 1 is the sandbox's init
    if os.geteuid() == 0:   # the private root lets a uid of its own run any interpreter, even under ~root
        assert (iso["mode"], iso["uid_per_sample"]) == ("drop_uid", True) and iso["uid"] >= sandbox._UID_BASE
    assert not any(path.startswith(("/home", "/etc/shadow", "/proc")) for path in iso["readable"])


def test_refuses_to_run_without_isolation(monkeypatch):
    weak = {**ISO, "sufficient": False, "missing": ["net_namespace"], "reason": "test"}
    monkeypatch.setattr(sandbox, "_ISOLATION", weak)
    with pytest.raises(SandboxUnavailable, match="allow_weak_isolation=True") as info:
        execute(humaneval("pass"))
    assert isinstance(info.value, LorabenchError)
    with pytest.raises(SandboxUnavailable):
        execute_many([humaneval("pass")])
    if ISO["sufficient"]:   # the explicit opt-out runs with what there is
        assert execute(humaneval("pass"), allow_weak_isolation=True).passed


# --- hostile completions: each scores as a failure; the bystander and this process survive -------------------

HOSTILE = {   # name: (completion body, statuses it may end with, memory_mb)
    "infinite_loop": ("while True:\n    pass", {"timeout"}, 1024),
    "sleep_forever": ("time.sleep(1000)", {"timeout"}, 1024),
    "fork_bomb": ("while True:\n    os.fork()", {"failed", "killed", "timeout"}, 1024),
    "fork_bomb_resilient": ("while True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
                            {"killed", "timeout"}, 1024),
    "memory_bomb": ("x = bytearray(10 ** 11)", {"failed", "killed"}, 256),
    "growing_list": ("x = []\nwhile True:\n    x.append(' ' * 10 ** 6)", {"failed", "killed"}, 256),
    "fd_exhaustion": ("fds = [open(os.devnull) for _ in range(10 ** 6)]", {"failed"}, 1024),
    "huge_stdout": ("while True:\n    print('x' * 10 ** 6)", {"timeout"}, 1024),
    "huge_stderr": ("while True:\n    sys.stderr.write('x' * 10 ** 6)", {"failed", "killed"}, 1024),
    "close_stdout": ("os.close(1)\nos.close(2)\nreturn a - b", {"failed"}, 1024),
    "kill_parent": ("os.kill(os.getppid(), signal.SIGKILL)", {"failed", "killed"}, 1024),
    "kill_own_group": ("os.killpg(0, signal.SIGKILL)", {"killed"}, 1024),
    "kill_everything": ("os.kill(-1, signal.SIGKILL)", {"failed", "killed"}, 1024),
    "kill_evaluator": ("os.kill(EVALUATOR, signal.SIGKILL)", {"failed", "killed"}, 1024),
    "kill_bystander": ("os.kill(BYSTANDER, signal.SIGKILL)", {"failed", "killed"}, 1024),
}


@sandboxed
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_completion_fails_and_harms_nothing(name, bystander):
    body, statuses, memory_mb = HOSTILE[name]
    body = body.replace("EVALUATOR", str(os.getpid())).replace("BYSTANDER", str(bystander.pid))
    fds = sorted(os.listdir("/proc/self/fd"))
    start = time.monotonic()
    result = execute(humaneval(body), timeout=1.5, memory_mb=memory_mb)
    elapsed = time.monotonic() - start
    assert not result.passed and result.status in statuses, result
    assert len(result.detail) <= sandbox.DETAIL_CHARS
    assert elapsed < 1.5 + 5, elapsed      # the wall-clock limit holds
    assert bystander.poll() is None        # the host's processes survive
    assert sorted(os.listdir("/proc/self/fd")) == fds   # the evaluator leaks nothing


@sandboxed
def test_timeout_is_reported():
    result = execute(humaneval("while True:\n    pass"), timeout=1)
    assert result == Result(False, "timeout", "wall-clock limit of 1 s exceeded")


# --- the filesystem: writes outside the working directory are refused -------------------------------------

@pytest.fixture
def host_files(tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("precious\n")
    canary.chmod(0o644)
    keep = tmp_path / "keep"
    (keep / "sub").mkdir(parents=True)
    for name in ("a.txt", "sub/b.txt"):
        (keep / name).write_text(name)
    os.chmod(tmp_path, 0o777)   # world-writable like /tmp: permission bits alone would not stop a write here
    sibling = os.path.join(tempfile.gettempdir(), f"lorabench-escape-{os.getpid()}")
    yield canary, keep, sibling
    if os.path.exists(sibling):
        os.unlink(sibling)


def tree(path):
    return sorted((os.path.relpath(os.path.join(d, f), path), open(os.path.join(d, f)).read())
                  for d, _, files in os.walk(path) for f in files)


ATTACKS = {
    "overwrite": "open(CANARY, 'w').write('pwned')",
    "append": "open(CANARY, 'a').write('pwned')",
    "truncate": "os.truncate(CANARY, 0)",
    "unlink": "os.unlink(CANARY)",
    "chmod": "os.chmod(CANARY, 0o777)",
    "utime": "os.utime(CANARY, (0, 0))",
    "xattr": "os.setxattr(CANARY, 'user.pwned', b'1')",
    "rename": "os.rename(CANARY, KEEP + '/moved')",
    "rmtree": "shutil.rmtree(KEEP)",
    "mkdir": "os.mkdir(KEEP + '/new')",
    "symlink": "os.symlink('/etc/passwd', KEEP + '/link')",
    "sibling_of_workdir": "open(os.path.join(os.path.dirname(os.getcwd()), SIBLING_NAME), 'w').write('x')",
    "tmpdir": "open(SIBLING, 'w').write('x')",
    "dev_shm": "open('/dev/shm/lorabench-escape', 'w').write('x')",
}


@sandboxed
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_writes_outside_the_workdir_are_refused(attack, host_files):
    canary, keep, sibling = host_files
    before = (canary.read_text(), stat.S_IMODE(canary.stat().st_mode), canary.stat().st_mtime_ns,
              os.listxattr(canary), tree(keep))
    body = (f"CANARY, KEEP, SIBLING = {str(canary)!r}, {str(keep)!r}, {sibling!r}\n"
            f"SIBLING_NAME = os.path.basename(SIBLING)\n{ATTACKS[attack]}")
    result = execute(humaneval(body), timeout=5)
    assert result.status == "failed" and "Error" in result.detail, result   # e.g. PermissionError
    assert (canary.read_text(), stat.S_IMODE(canary.stat().st_mode), canary.stat().st_mtime_ns,
            os.listxattr(canary), tree(keep)) == before
    assert not os.path.exists(sibling)
    assert not os.path.exists("/dev/shm/lorabench-escape")


@sandboxed
def test_workdir_is_writable_private_and_removed():
    body = ("import tempfile\nopen('here.txt', 'w').write('ok')\nwith tempfile.TemporaryFile() as f:\n"
            "    f.write(b'x' * 10 ** 6)\nassert sorted(os.listdir('.')) == ['here.txt', 'main.py']\n"
            "raise SystemExit('cwd=' + os.getcwd())")
    result = execute(humaneval(body), timeout=5)
    assert result.status == "failed" and result.detail.startswith("cwd="), result
    assert not os.path.exists(result.detail[4:])   # thrown away


# --- the network: nothing on the host is reachable --------------------------------------------------------

@sandboxed
def test_no_network(tmp_path):
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    tcp.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    path = str(tmp_path / "host.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    os.chmod(path, 0o777)
    unix.listen()
    unix.setblocking(False)
    attacks = [f"socket.create_connection(('127.0.0.1', {tcp.getsockname()[1]}), timeout=1)",
               f"socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {udp.getsockname()[1]}))",
               f"socket.socket(socket.AF_UNIX).connect({path!r})",
               "socket.create_connection(('1.1.1.1', 53), timeout=1)"]
    try:
        for attack in attacks:
            result = execute(humaneval(attack), timeout=5)
            assert result.status == "failed" and "Error" in result.detail, (attack, result)
        for listener in (tcp, unix):
            with pytest.raises(BlockingIOError):
                listener.accept()
        with pytest.raises(BlockingIOError):
            udp.recv(16)
    finally:
        for s in (tcp, udp, unix):
            s.close()


# --- parallel execution -----------------------------------------------------------------------------------

@sandboxed
def test_execute_many_runs_in_parallel_and_keeps_order():
    sleeps = [1.0 + 0.05 * (7 - i) for i in range(8)]   # the first finish last
    programs = [humaneval(f"time.sleep({s})" + ("\nreturn 0" if i % 3 == 0 else "")) for i, s in enumerate(sleeps)]
    start = time.monotonic()
    results = execute_many(programs, timeout=10, workers=8)
    elapsed = time.monotonic() - start
    assert [r.passed for r in results] == [i % 3 != 0 for i in range(8)]
    assert [r.status for r in results] == ["failed" if i % 3 == 0 else "passed" for i in range(8)]
    assert elapsed < sum(sleeps) / 2, elapsed
    assert execute_many([]) == []


# --- a uid of its own per sample (root, with an interpreter an unprivileged uid can run) -------------------

def world_usable(python):
    if os.geteuid() != 0 or not python or not shutil.which("setpriv"):
        return False
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-I", "-c", "pass"]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


@sandboxed
@pytest.mark.skipif(not world_usable(SYSTEM_PYTHON), reason="needs root and a world-usable system python3")
def test_drop_uid_mode(host_files):
    canary, _, _ = host_files
    report, tail = sandbox._launch(sandbox._PROBE, 5, 512, "drop_uid", sandbox.REQUIRED, python=SYSTEM_PYTHON,
                                   probe=True)
    assert report["status"] == "passed", report
    seen = sandbox._last_json(tail)
    assert seen["uid"] >= sandbox._UID_BASE and seen["cap_eff"] == "0000000000000000"
    report, _ = sandbox._launch(f"open({str(canary)!r}, 'w')", 5, 512, "drop_uid", sandbox.REQUIRED,
                                python=SYSTEM_PYTHON)
    assert report["status"] == "failed"
    report, _ = sandbox._launch("import os\nwhile True:\n    os.fork()", 2, 512, "drop_uid", sandbox.REQUIRED,
                                python=SYSTEM_PYTHON)
    assert report["status"] in {"failed", "killed", "timeout"}
    assert canary.read_text() == "precious\n"


def test_weak_mode_still_kills_the_program_and_its_children():
    """Without namespaces (allow_weak_isolation on a machine without them) the process group is killed."""
    program = "import os, time\nif os.fork() == 0:\n    time.sleep(300)\nwhile True:\n    pass\n"
    report, _ = sandbox._launch(program, 1, 512, "none", ())
    assert report["status"] == "timeout"
    assert not report["layers"]["pid_namespace"] and not report["layers"]["net_namespace"]
    report, _ = sandbox._launch("import os, time\nif os.fork() == 0:\n    time.sleep(300)\n", 5, 512, "none", ())
    assert report["status"] == "passed"
