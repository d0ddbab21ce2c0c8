"""Third-party noise goes to the log file only; every other warning still reaches the console."""
import io
import logging
import warnings

from lorabench import quiet


def test_noise_is_kept_in_the_file_and_real_warnings_still_print(tmp_path):
    root, ds = logging.getLogger(), logging.getLogger("DeepSpeed")
    saved = (root.handlers[:], root.level, ds.handlers[:], ds.filters[:], ds.propagate)
    console, log_file = io.StringIO(), tmp_path / "run.log"
    ds_out = io.StringIO()
    try:
        root.handlers = [logging.StreamHandler(console), logging.FileHandler(log_file)]
        root.setLevel(logging.INFO)
        ds.handlers, ds.filters, ds.propagate = [logging.StreamHandler(ds_out)], [], False   # as DeepSpeed sets it up
        quiet.install()
        quiet.install()                                         # idempotent (a sweep calls it per member)
        logging.getLogger("bitsandbytes.backends.cpu.ops").warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: no network. Please pip install kernels")
        ds.warning("Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.")
        logging.getLogger("kernels._internals.hf_hub").warning(
            "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' because Hugging Face "
            "Hub is in offline mode.")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
            warnings.warn("lora_dropout is ignored for this layer", UserWarning)     # a real one
        logging.getLogger("bitsandbytes").warning("4-bit weights are not supported on this device")
        ds.warning("ZeRO-3 offload is slow here")
        for h in root.handlers:
            h.flush()
        shown, kept = console.getvalue() + ds_out.getvalue(), log_file.read_text()
        assert "gemm_4bit_forward" not in shown and "Setting accelerator" not in shown
        assert "publisher trust check" not in shown and "publisher trust check" in log_file.read_text()
        assert "is_gradient_checkpointing" not in shown
        assert "lora_dropout is ignored" in shown and "not supported on this device" in shown and "ZeRO-3" in shown
        for line in ("gemm_4bit_forward", "Setting accelerator to CPU", "is_gradient_checkpointing", "lora_dropout"):
            assert line in kept
        assert sum(len(h.filters) for h in root.handlers) == 1 and len(ds.filters) == 1
    finally:
        for h in root.handlers:
            h.close()
        root.handlers, ds.handlers, ds.filters, ds.propagate = saved[0], saved[2], saved[3], saved[4]
        root.setLevel(saved[1])
        logging.captureWarnings(False)
