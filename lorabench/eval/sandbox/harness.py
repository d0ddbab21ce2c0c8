"""The first code a sandboxed interpreter runs: `python -I -B -c <this file> <finish line> [probe]`, stdlib only.

It runs main.py as __main__ and proves to the sandbox's init that main.py ran to its end. The init puts a random
token in a pipe at fd 3 and, once the program is gone, reads the pipe at fd 4: the sample passes only if that
holds exactly the token. An exit status proves nothing: sys.exit(0), exit(), quit(), os._exit(0),
raise SystemExit, an excepthook or an atexit handler all end with status 0 and no token.

Where the token lives: a guard thread reads it (closing fd 3) before main.py is read, and keeps it as a local
of its own frame, which the program cannot reach: the guard's audit hook refuses, in every thread, what walks
other threads' frames or arbitrary memory (sys._current_frames, gc's object walks, ctypes and CPython's _test*
modules, tracing, profiling, sys.monitoring, hand-made code objects: code.__new__ and marshal, whose bytecode
could read memory out of bounds), and in the guard's thread everything but the one frame check it makes, so no
program code (a finalizer, a hook) can look around there. Every name the guard uses is bound
before the program runs, so patching builtins or this module's globals changes nothing.

The guard writes the token once, and only when main()'s own frame called finish(): box holds that call's frame,
its f_back is main()'s frame and main()'s frame stands on the finish() line, which it reaches only after
exec() returned. Then main() exits at once: no atexit handler or thread of the program runs after the verdict.
"""
import _thread
import os
import sys
import types


def guard(main_frame, finish_code, finish_line, box, started, done, finished, *, read=os.read, write=os.write,
          close=os.close, ident_of=_thread.get_ident, frame_type=types.FrameType, add_hook=sys.addaudithook,
          type_=type, len_=len, str_=str, error=RuntimeError, base_exception=BaseException,
          blocked=frozenset({"sys._current_frames", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
                             "sys.settrace", "sys.setprofile", "sys._settraceallthreads",
                             "sys._setprofileallthreads", "code.__new__", "marshal.loads", "marshal.load"}),
          blocked_prefixes=("ctypes.", "sys.monitoring"),
          blocked_modules=("_ctypes", "ctypes", "_test", "_xxsubinterpreters", "_xxinterpchannels", "_interp")):
    """The guard thread: holds the token; writes it once, if and only if main() reached finish()."""
    token = read(3, 256)   # TOKEN_FD
    close(3)
    me = ident_of()

    def hook(event, args):
        if ident_of() == me:   # the guard itself reads a frame's f_code; anything else here is an intrusion
            if event == "object.__getattr__" and type_(args[0]) is frame_type and args[1] == "f_code":
                return
            raise error(f"sandbox: {event} in the guard thread")
        if event in blocked or event.startswith(blocked_prefixes):
            raise error(f"sandbox: {event} is not allowed")
        if event == "import" and type_(args[0]) is str_ and args[0].startswith(blocked_modules):
            raise error(f"sandbox: import {args[0]} is not allowed")

    add_hook(hook)
    started.release()
    done.acquire()
    try:   # real frames and a real list only: no program code (a property, __eq__, __len__) runs here
        if len_(box) == 1 and type_(box[0]) is frame_type and box[0].f_back is main_frame \
                and main_frame.f_lineno == finish_line and box[0].f_code is finish_code:
            write(4, token)   # PROOF_FD
    except base_exception:  # noqa: BLE001  an intrusion ends here: no token, no traceback to look at
        pass
    finished.release()


def capabilities() -> str:
    """CapEff as /proc/self/status shows it (there is no /proc in the sandbox). The probe only, before the guard."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    data = (ctypes.c_uint32 * 6)()   # two {effective, permitted, inheritable} words
    if ctypes.CDLL(None, use_errno=True).capget(ctypes.byref(Header(0x20080522, 0)), data) != 0:
        return "unknown"
    return f"{data[3] << 32 | data[0]:016x}"


def main():
    exit_, err, finish_line = os._exit, sys.stderr, int(sys.argv[1])
    if sys.argv[2:] == ["probe"]:
        import json
        err.write(json.dumps({"uid": os.getuid(), "pid": os.getpid(), "cap_eff": capabilities()}) + "\n")
    sys.pycache_prefix = "/nonexistent"   # modules compile from source: no marshal.loads, which the guard refuses
    box, started, done, finished = [], _thread.allocate_lock(), _thread.allocate_lock(), _thread.allocate_lock()
    for lock in (started, done, finished):
        lock.acquire()

    def finish():
        box.append(sys._getframe())
        done.release()
        finished.acquire()
        try:
            err.flush()   # the program's last words, should anyone read them; the verdict is in already
        finally:
            exit_(0)

    _thread.start_new_thread(guard, (sys._getframe(), finish.__code__, finish_line, box, started, done, finished))
    started.acquire()   # from here on the token is out of reach and the audit hook is in place
    module = types.ModuleType("__main__")
    module.__file__ = os.path.abspath("main.py")   # as `python main.py` sets it
    sys.modules["__main__"] = module
    sys.argv = ["main.py"]
    with open("main.py", "rb") as f:
        code = compile(f.read(), "main.py", "exec")
    exec(code, module.__dict__)
    finish()  # FINISH: the line the launcher passes as <finish line>


if __name__ == "__main__":   # as `python -c`; importing this module (docs, linters) runs nothing
    main()
