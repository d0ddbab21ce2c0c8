"""A sample passes only when its checks ran to their end: every way of ending early with exit status 0 fails, and
a program cannot forge the harness's proof (the per-run token) in the ways in-process code could look for it."""
import pytest
from test_sandbox import humaneval, no_strays, sandboxed  # noqa: F401  (no_strays: autouse fixture)

from lorabench.eval.sandbox import Result, execute

EARLY = "exit code 0 before its checks completed"

# Each runs inside the candidate (called by check) or, TOP:, before the tests are even defined.
EARLY_EXITS = {
    "sys_exit_0": "sys.exit(0)",
    "sys_exit": "sys.exit()",
    "exit": "exit()",
    "quit": "quit()",
    "os__exit": "os._exit(0)",
    "raise_SystemExit": "raise SystemExit",
    "raise_SystemExit_0": "raise SystemExit(0)",
    "excepthook": "sys.excepthook = lambda *exc: os._exit(0)\nraise ValueError('the tests would fail')",
    "atexit": "import atexit\natexit.register(os._exit, 0)\nraise ValueError('the tests would fail')",
    "thread": "import threading\nthreading.Thread(target=os._exit, args=(0,)).start()\ntime.sleep(5)",
    "caught_exit_then_exit": "try:\n    sys.exit(0)\nexcept SystemExit:\n    pass\nos._exit(0)",
    "fork_child_runs_the_checks": "if os.fork():\n    os._exit(0)",   # the child finishes check() without a guard
    "TOP:exit": "exit()",
    "TOP:quit": "quit()",
    "TOP:sys_exit_0": "import sys\nsys.exit(0)",
}


def early(name: str) -> str:
    body = EARLY_EXITS[name]
    if name.startswith("TOP:"):
        return body + "\n" + humaneval("pass")
    return humaneval(body)


@sandboxed
@pytest.mark.parametrize("name", sorted(EARLY_EXITS))
def test_early_exit_with_status_0_fails(name):
    assert execute(early(name), timeout=5) == Result(False, "failed", EARLY)


@sandboxed
def test_the_same_program_passes_once_its_checks_complete():
    # control: the exit forms above fail because of where they run, not because the harness rejects them
    program = humaneval("pass", call="check(add)\nimport atexit\natexit.register(os._exit, 3)")
    assert execute(program, timeout=5) == Result(True, "passed", "")
    assert execute(humaneval("pass", call="check(add)\nsys.exit(0)"), timeout=5) == Result(False, "failed", EARLY)


# Forgeries: each would pass if the token or the guard's state were within its reach; each must fail.
MAIN = "m = sys._getframe()\nwhile 'finish' not in m.f_locals:\n    m = m.f_back\n"   # the harness's main()
FORGERIES = {
    "guess_into_every_fd": "for fd in range(256):\n    try:\n        os.write(fd, os.urandom(32).hex().encode())\n"
                           "    except OSError:\n        pass\nos._exit(0)",
    "copy_every_fd_into_every_fd": (   # the token pipe, were it still open
        "data = b''\nfor fd in range(3, 256):\n    try:\n        data += os.read(fd, 4096)\n    except OSError:\n"
        "        pass\nfor fd in range(3, 256):\n    try:\n        os.write(fd, data)\n    except OSError:\n"
        "        pass\nos._exit(0)"),
    "token_in_any_frame": (   # the frames below the program's: the harness's main() and module
        "f = sys._getframe()\nwhile f is not None:\n"
        "    for v in list(f.f_locals.values()) + list(f.f_globals.values()):\n"
        "        if isinstance(v, bytes) and len(v) == 64:\n            os.write(4, v)\n            os._exit(0)\n"
        "    f = f.f_back\nos._exit(0)"),
    "call_finish_early": MAIN + "m.f_locals['finish']()",
    "hand_the_guard_the_program_frame": (   # its f_back is main()'s frame, but main() is not on the finish line
        MAIN + "u = sys._getframe()\nwhile u.f_back is not m:\n    u = u.f_back\n"
        "m.f_locals['box'].append(u)\nm.f_locals['done'].release()\ntime.sleep(0.5)\nos._exit(0)"),
    "finalizer_calls_finish_while_exiting": (
        MAIN + "class X:\n    __del__ = staticmethod(m.f_locals['finish'])\n[X(), sys.exit(0)]"),
    "property_in_the_guard_thread": (   # program code running in the guard's thread could walk its frame
        MAIN + "class Bad:\n    @property\n    def f_back(self):\n"
        "        os.write(4, sys._getframe(1).f_locals['token'])\n"
        "m.f_locals['box'].append(Bad())\nm.f_locals['done'].release()\ntime.sleep(0.5)\nos._exit(0)"),
    "patch_builtins_the_guard_uses": (
        MAIN + "import builtins\nF = type(m)\nsteal = lambda: os.write(4, sys._getframe(2).f_locals['token'])\n"
        "builtins.type = lambda x: (steal(), F)[1]\nbuiltins.len = lambda x: (steal(), 1)[1]\n"
        "m.f_locals['box'].append(sys._getframe())\nm.f_locals['done'].release()\ntime.sleep(0.5)\nos._exit(0)"),
    "fresh_interpreter_writes_the_pipe": (   # a new interpreter has neither guard nor token
        "os.execv(sys.executable, [sys.executable, '-c', 'import os; os.write(4, b\"0\" * 64)'])"),
}


@sandboxed
@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_proofs_fail(name):
    result = execute(humaneval(FORGERIES[name]), timeout=5)
    assert not result.passed and result.status == "failed", result


# What reaches other threads' frames or arbitrary memory is refused (the program would pass without the refusal).
REFUSED = {
    "gc_objects": ("import gc\ngc.get_objects()", "gc.get_objects"),
    "gc_referrers": ("import gc\ngc.get_referrers(os.write)", "gc.get_referrers"),
    "gc_referents": ("import gc\ngc.get_referents(os)", "gc.get_referents"),
    "other_threads_frames": ("sys._current_frames()", "sys._current_frames"),
    "settrace": ("sys.settrace(None)", "sys.settrace"),
    "setprofile": ("sys.setprofile(None)", "sys.setprofile"),
    "code_replace": ("(lambda: 0).__code__.replace()", "code.__new__"),
    "marshal": ("import marshal\nmarshal.loads(marshal.dumps(1))", "marshal.loads"),
    "ctypes": ("import ctypes", "import ctypes"),
    "_ctypes": ("import _ctypes", "import _ctypes"),
    "_testcapi": ("import _testcapi", "import _testcapi"),
}


@sandboxed
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_introspection_that_could_find_the_token_is_refused(name):
    body, event = REFUSED[name]
    assert execute(humaneval(body), timeout=5) == Result(False, "failed",
                                                          f"RuntimeError: sandbox: {event} is not allowed")


@sandboxed
def test_a_fresh_interpreter_can_neither_ptrace_nor_read_another_process():
    # The harness refuses ctypes, but a program may exec an interpreter without the harness: the kernel then
    # refuses what could read the token out of another process's memory (here a process it forked, which
    # ptrace rules would otherwise allow everywhere).
    child = ("import ctypes, os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(5)\n    os._exit(0)\n"
             "libc = ctypes.CDLL(None, use_errno=True)\nbuf = ctypes.create_string_buffer(8)\n"
             "vec = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)\n"
             "r1 = libc.ptrace(16, pid, 0, 0); e1 = ctypes.get_errno()\n"
             "r2 = libc.process_vm_readv(pid, vec, 1, vec, 1, 0); e2 = ctypes.get_errno()\n"
             "os.kill(pid, 9)\nprint(f'ptrace={r1}/{e1} vm_readv={r2}/{e2}')\n")
    body = ("import subprocess\n"
            f"out = subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True)\n"
            "raise SystemExit(out.stdout.strip() or out.stderr.strip()[-200:])")
    assert execute(humaneval(body), timeout=10) == Result(False, "failed", "ptrace=-1/1 vm_readv=-1/1")
