"""The flow of one run. Each step is one call into one module:

cfg -> validate -> seed -> tokenizer + task data -> base model [-> score it] -> adapter init (reads task
    batches; reused within a sweep) [-> 4-bit residual base] -> train -> score (test, valid, held-out loss)
    -> result record
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig

from lorabench import adapters, codeid, hub, init_cache, models, quantize, quiet, results, scoring, tasks
from lorabench.adapters.middle import plain
from lorabench.cluster import run_lock
from lorabench.cluster.distributed import global_rank, make_accelerator, rank_checksums, unwrap
from lorabench.cluster.tracking import NoTracker, make_tracker
from lorabench.config import to_container, validate
from lorabench.costs import measure, phases
from lorabench.data import collate, epoch_order, tokenize
from lorabench.errors import LorabenchError
from lorabench.train import train

TASK_TYPES = {"causal_lm": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "seq_cls": "SEQ_CLS"}


def say(msg: str) -> None:
    print(f"[lorabench] {msg}", file=sys.stderr, flush=True)


DEFAULT_THREADS = torch.get_num_threads()


def set_threads(threads: int | None) -> None:
    """cfg.threads, or torch's default again (a sweep's earlier member may have set it)."""
    torch.set_num_threads(threads or DEFAULT_THREADS)


def seed_everything(seed: int, deterministic: bool) -> None:
    from transformers import set_seed

    set_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def init_batches(samples: list[dict], cfg: DictConfig, pad_id: int, accelerator) -> list[dict]:
    """The init's batches: the first init_batches x init_batch_size samples of the training order,
    batch b going to process b % world (one process over all batches == several over their shards)."""
    a = cfg.adapter
    if not adapters.REGISTRY[a.init].data_driven:
        return []
    order = epoch_order(len(samples), cfg.seed, 0)
    chunks = [order[i * a.init_batch_size:(i + 1) * a.init_batch_size] for i in range(a.init_batches)]
    chunks = [c for c in chunks if c]
    mine = chunks[accelerator.process_index::accelerator.num_processes]
    return [collate([samples[j] for j in c], pad_id) for c in mine]


def save_adapter(model, cfg: DictConfig, out: Path, init_dir: Path | None) -> str | None:
    if not cfg.save_adapter or not adapters.REGISTRY[cfg.adapter.init].uses_adapter:
        return None
    target = out / "adapter"
    # Inits that change W are saved as a plain LoRA for the unmodified base (peft's rank-2r conversion).
    kwargs = {"path_initial_model_for_weight_conversion": str(init_dir)} if init_dir else {}
    # save_embedding_layers=False: we never resize a vocabulary, and peft's "auto" looks the base model's config
    # up on the hub (base_model_name_or_path is the hub id), a network call and two warnings offline
    with plain(model):   # three-factor adapters (B M A) as the plain LoRA B (M A)
        model.save_pretrained(target, save_embedding_layers=False, **kwargs)
    return str(target)


def save_initial_adapter(model, cfg: DictConfig, out: Path) -> Path | None:
    """For inits that change W: the initial adapter, marked as a plain init so reloading never re-runs it."""
    if not (cfg.save_adapter and adapters.REGISTRY[cfg.adapter.init].mutates_base):
        return None
    pc = model.peft_config["default"]
    orig, pc.init_lora_weights = pc.init_lora_weights, True
    with plain(model):
        model.save_pretrained(out / "adapter_init", save_embedding_layers=False)
    pc.init_lora_weights = orig
    return out / "adapter_init"


def run(cfg: DictConfig, choices: dict | None = None, stop_at: int | None = None, reuse_init: bool = False) -> dict:
    started = time.perf_counter()
    validate(cfg)                                   # everything checkable before a model loads
    config = to_container(cfg)
    root = Path(cfg.paths.root)
    results_dir = root / cfg.paths.results_dir
    accelerator = make_accelerator(cfg)              # the process group: the global batch is part of the identity
    world = accelerator.num_processes
    done = results.existing(results_dir, config, world)
    if done and not cfg.rerun:
        say(f"already done: {done} (pass rerun=true to write another record)")
        return json.loads(done.read_text())
    run_id = results.base_id(config, world)
    out = root / cfg.paths.output_dir / cfg.model.name / cfg.task.name / cfg.adapter.name / run_id
    claim = run_lock.Claim(out, accelerator, say)      # an identical run training now: wait for it here
    if claim.waited and not cfg.rerun and (done := results.existing(results_dir, config, world)):
        claim.release()
        say(f"already done by the run this one waited for: {done}")
        return json.loads(done.read_text())
    set_threads(cfg.threads)
    seed_everything(cfg.seed, cfg.deterministic)
    task = tasks.family(cfg.task.family)
    tracker = NoTracker()
    try:
        with measure() as load_cost:
            hub.preflight(cfg)                               # offline: every hub need and its alternative at once
            tokenizer = models.load_tokenizer(cfg.model)
            data = task.load(cfg.task, tokenizer)           # hub-only data fails here, before the model loads
            train_samples = tokenize(data.train, tokenizer, cfg.task.max_length, cfg.model.kind)
            valid_samples = tokenize(data.valid, tokenizer, cfg.task.max_length, cfg.model.kind)
            heldout_samples = tokenize(data.heldout or [], tokenizer, cfg.task.max_length, cfg.model.kind)
            say(f"{cfg.task.name}: {len(train_samples)} train / {len(valid_samples)} valid / {len(data.test)} test")
            # one wandb run per record: a requeued run resumes its own, a rerun gets the next record's
            tracker = make_tracker(cfg.logger, results.next_id(results_dir, config, world), str(out / "tracking"), config,
                                   accelerator.is_main_process)
            # 4-bit now, unless the init decomposes W first; a sweep member whose init is in memory loads nothing
            model = None
            if cfg.eval_base or not init_cache.holds(cfg, accelerator, reuse_init):
                model = models.load_model(cfg.model, quantize.at_load(cfg), num_labels=data.num_labels)
                model._lorabench_targets = list(cfg.model.target_modules)
        with measure() as base_cost:
            base = scoring.score(model, tokenizer, task, data, valid_samples, heldout_samples, cfg, accelerator,
                                 valid_metrics=False) if cfg.eval_base else None

        seed_everything(cfg.seed, cfg.deterministic)   # the adapter init sees the same RNG with or without eval_base
        batches = init_batches(train_samples, cfg, tokenizer.pad_token_id, accelerator)
        model, init_report = init_cache.initialized(cfg, accelerator, lambda: adapters.init_adapter(
            model, cfg.adapter, batches, TASK_TYPES[cfg.model.kind], accelerator, cfg.init_losses),
            enabled=reuse_init)
        model = quantize.quantize_residual(model, cfg)   # quant=nf4 after a decomposing init: QPiSSA
        trainable, total = models.count_params(model)
        say(f"adapter {cfg.adapter.name}: init {init_report.seconds:.1f}s{' (reused)' if init_report.reused else ''}, "
            f"{trainable:,} trainable / {total:,} params")
        out.mkdir(parents=True, exist_ok=True)
        init_dir = save_initial_adapter(model, cfg, out) if accelerator.is_main_process else None

        trained = train(model, train_samples, valid_samples, cfg.trainer, seed=cfg.seed, pad_id=tokenizer.pad_token_id,
                        accelerator=accelerator, ckpt_dir=out / "checkpoint", log=tracker.log, stop_at=stop_at,
                        adapter=cfg.adapter)
        model = unwrap(model, accelerator)               # ZeRO-3: whole parameters again
        checksums = rank_checksums(model, accelerator)
        with measure() as eval_cost:
            scores = scoring.score(model, tokenizer, task, data, valid_samples, heldout_samples, cfg, accelerator)
        adapter_path = save_adapter(model, cfg, out, init_dir) if accelerator.is_main_process else None
    except BaseException:
        tracker.finish(ok=False)
        claim.release()
        raise

    metrics, metrics_valid = scores["test"], scores["valid"]
    samples = metrics.pop("samples", [])
    for m in (metrics_valid, base and base["test"]):
        if m:
            m.pop("samples", None)
    record = {
        "schema": results.SCHEMA_VERSION, "status": "success", "created_at": results.now_iso(),
        "config_hash": results.config_hash(config, world), "experiment": cfg.experiment,
        "model": cfg.model.name, "task": cfg.task.name, "adapter": cfg.adapter.name, "init": cfg.adapter.init,
        "protocol": metrics["protocol"], "mini": cfg.task.mini, "seed": cfg.seed,
        "metrics": metrics, "metrics_valid": metrics_valid, "loss": scores["loss"],
        "metrics_base": base and base["test"], "loss_base": base and base["loss"],
        "items": scores["items"], "items_base": base and base["items"]["test"], "code": codeid.code_id(config),
        "costs": {"load_seconds": load_cost.seconds, "base_eval_seconds": base_cost.seconds,
                  "init_seconds": init_report.seconds, "init_reused": init_report.reused,
                  "init_peak_mb": init_report.peak_mb,
                  "train_seconds": trained.seconds, "train_peak_mb": trained.peak_mb,
                  "eval_seconds": eval_cost.seconds, "eval_peak_mb": eval_cost.peak_mb,
                  "run_seconds": time.perf_counter() - started, "device": init_report.device,
                  "num_processes": world, "distributed": cfg.distributed.name},
        "global_batch": cfg.trainer.batch_size * cfg.trainer.grad_accum * world, "rank_checksums": checksums,
        "params": {"trainable": trainable, "total": total}, "tokens": trained.tokens, "steps": trained.steps,
        "resumed_from": trained.resumed_from, "init_report": init_report.as_dict(), "curve": trained.curve,
        "data": data.source, "model_source": models.snapshot_source(cfg.model), "adapter_path": adapter_path,
        "provenance": results.provenance(), "config": config, "choices": choices or {},
    }
    if accelerator.is_main_process:
        path = results.write(results_dir, record, rerun=cfg.rerun)
        (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
        shutil.rmtree(out / "checkpoint", ignore_errors=True)   # the record is written: nothing left to resume
        tracker.summary({f"test/{k}": v for k, v in metrics["values"].items()}
                        | {f"valid/{k}": v for k, v in (metrics_valid or {}).get("values", {}).items()}
                        | {f"loss/{k}": v for k, v in scores["loss"].items()})
        say(f"{cfg.task.name} ({metrics['protocol']} protocol): {scoring.summary(scores, base)}")
        say(f"record: {path}")
        say(phases(record["costs"]))
    tracker.finish(ok=True)
    claim.release()
    accelerator.wait_for_everyone()
    return record


def record_failure(cfg: DictConfig, choices: dict, error: BaseException, world: int | None = None) -> Path | None:
    """A failed sweep member leaves a `.failed` record beside the successful ones (the leaderboard skips it)."""
    import os

    if global_rank() != 0:
        return None
    config = to_container(cfg)
    world = world or int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1")))
    record = {"schema": results.SCHEMA_VERSION, "status": "failed", "created_at": results.now_iso(),
              "config_hash": results.config_hash(config, world), "experiment": cfg.experiment, "model": cfg.model.name,
              "task": cfg.task.name if cfg.get("task") else None, "adapter": cfg.adapter.name, "seed": cfg.seed,
              "error": f"{type(error).__name__}: {error}",
              "traceback": "".join(traceback.format_exception(error))[-4000:],
              "provenance": results.provenance(), "config": config, "choices": choices}
    return results.write(Path(cfg.paths.root) / cfg.paths.results_dir, record)


def main(cfg: DictConfig) -> float | None:
    """Hydra entry point. A user error prints one clear line and exits 2; in a sweep, a failing member
    is reported and the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    quiet.install()                                  # third-party lines nobody can act on: log file only
    hc = HydraConfig.get()
    sweeping = hc.mode == RunMode.MULTIRUN
    choices = dict(hc.runtime.choices)
    try:
        record = run(cfg, choices=choices, reuse_init=sweeping)   # a sweep computes each init once
        return record["metrics"]["values"][record["metrics"]["primary"]]
    except LorabenchError as e:
        print(f"error: {e}", file=sys.stderr)
        if not sweeping:
            sys.exit(2)
        failed = e
    except Exception as e:
        if not sweeping:
            raise
        traceback.print_exc()
        failed = e
    try:
        where = record_failure(cfg, choices, failed)
    except Exception as e:   # e.g. no task selected: nowhere to file it; the sweep still goes on
        where = f"none ({type(e).__name__}: {e})"
    say(f"sweep member {hc.job.num} failed ({hc.job.override_dirname}); continuing with the others; record: {where}")
    if type(failed).__name__ == "UncompletedJobError":
        raise failed   # submitit's "timed out too many times": the job must end failed (sacct), not COMPLETED
    return None
