"""Roofline: model shapes against hand-computed references (Llama-3-8B on the meta device), the peak table,
peak resolution and the CPU measurement, MBU/MFU on hand-built timelines of known bytes and time, the
reports, and the demo run on the CPU."""

import json
import math
import subprocess
import sys

import pytest
import torch
from run_cli import run_in_process
from timelines import PEAKS, SYNTHETIC, host_marks, record, synthetic_run
from tiny_models import TEXT, tiny_llama, tiny_llava
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from llmprof.analysis import registry
from llmprof.analysis.cards import lookup_card
from llmprof.analysis.metrics import compute_request
from llmprof.analysis.record import Label
from llmprof.analysis.roofline import ModelShape, RequestRoofline, Roofline, verdict
from llmprof.capture import peak
from llmprof.capture.model_shape import model_shape, storage_bytes
from llmprof.cli.common import rate
from llmprof.errors import RunFormatError
from llmprof.report import render
from llmprof.runfile import Run, load_run, save_run

LLAMA3_8B = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
}
H100_SXM = "NVIDIA H100 80GB HBM3"


def run_summaries(run):
    """Every request and roofline metric of ``run`` summarized over its measured repeats."""
    return registry.summaries(run.metrics()) | registry.summaries(run.roofline_analyses(), registry.ROOFLINE)


@pytest.fixture(scope="module")
def llama3_8b():
    with torch.device("meta"):  # shapes and dtypes only: no memory, no download
        return LlamaForCausalLM(LlamaConfig(**LLAMA3_8B)).to(torch.bfloat16)


def test_llama3_8b_matches_the_hand_computed_reference(llama3_8b):
    shape = model_shape(llama3_8b)
    embedding = 128256 * 4096
    norms = 32 * 2 * 4096 + 4096
    buffers = sum(b.numel() * b.element_size() for b in llama3_8b.buffers())  # rotary inv_freq: a few bytes
    assert shape.parameters == 8_030_261_248
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.cache_dtype) == (32, 8, 128, "bfloat16")
    assert shape.kv_bytes_per_token == 131_072  # 2 (K, V) x 32 layers x 8 heads x 128 x 2 bytes
    # the input embedding table is only looked up (untied): one row of 4096 bf16 per token, not the table
    assert shape.weight_bytes == 2 * (8_030_261_248 - embedding) + buffers
    assert shape.embedding_bytes_per_token == 4096 * 2
    step = shape.decode_bytes(batch=1, context=0)
    assert round(step / 1e9, 2) == 15.01
    card = lookup_card(H100_SXM)
    assert card is not None and card.bandwidth == 3.35e12
    assert round(step / card.bandwidth * 1e3, 2) == 4.48  # the floor of a decode step, ms
    # decode FLOPs: 2 per matmul weight (lm_head included, norms and the embedding lookup not) + attention
    matmul = 8_030_261_248 - embedding - norms
    assert shape.matmul_params == matmul and shape.lm_head_params == embedding
    assert shape.decode_flops(1, 0) == 2 * matmul
    assert shape.decode_flops(1, 1000) == 2 * matmul + 4 * 32 * 128 * 32 * 1000
    assert shape.decode_bytes(4, 1000) == shape.weight_bytes + 4 * (8192 + 131_072 * 1000)
    # prefill of 512 tokens: every matmul on each token but the lm_head on the last one, causal attention
    attention = 4 * 32 * 128 * 32 * (512 * 513 // 2)
    assert shape.prefill_flops(1, 512) == 2 * (matmul - embedding) * 512 + 2 * embedding + attention


def test_tied_embeddings_are_read_once_by_the_head():
    tied, untied = tiny_llama(tie_word_embeddings=True), tiny_llama(tie_word_embeddings=False)
    table = TEXT["vocab_size"] * TEXT["hidden_size"]
    buffers = sum(b.numel() * b.element_size() for b in tied.buffers())
    tied_shape, untied_shape = model_shape(tied), model_shape(untied)
    # tied: the head reads the whole table (which holds the looked-up rows): every parameter once
    assert tied_shape.weight_bytes == 4 * sum(p.numel() for p in tied.parameters()) + buffers
    assert tied_shape.embedding_bytes_per_token == 0
    # untied: the head is read, the input table only by its rows
    assert untied_shape.weight_bytes == 4 * (sum(p.numel() for p in untied.parameters()) - table) + buffers
    assert untied_shape.embedding_bytes_per_token == 4 * TEXT["hidden_size"]
    assert tied_shape.matmul_params == untied_shape.matmul_params
    assert tied_shape.lm_head_params == untied_shape.lm_head_params == table


def test_gqa_kv_bytes_come_from_the_kv_heads():
    gqa = model_shape(tiny_llama())  # 4 heads of 8, 2 KV heads, 2 layers, float32
    assert (gqa.heads, gqa.kv_heads, gqa.head_dim) == (4, 2, 8)
    assert gqa.kv_bytes_per_token == 2 * 2 * 2 * 8 * 4
    mha = model_shape(tiny_llama(num_key_value_heads=4))
    assert mha.kv_bytes_per_token == 2 * gqa.kv_bytes_per_token
    wide = model_shape(tiny_llama(head_dim=16))  # an explicit head_dim wins over hidden / heads
    assert wide.kv_bytes_per_token == 2 * gqa.kv_bytes_per_token


def test_cache_dtype_sets_the_kv_bytes():
    fp32 = model_shape(tiny_llama())
    bf16 = model_shape(tiny_llama().to(torch.bfloat16))
    assert (fp32.cache_dtype, bf16.cache_dtype) == ("float32", "bfloat16")
    assert fp32.kv_bytes_per_token == 2 * bf16.kv_bytes_per_token
    assert fp32.weight_bytes == 2 * bf16.weight_bytes
    fp8_cache = model_shape(tiny_llama().to(torch.bfloat16), cache_dtype=torch.float8_e4m3fn)
    assert fp8_cache.kv_bytes_per_token * 2 == bf16.kv_bytes_per_token
    assert fp8_cache.weight_bytes == bf16.weight_bytes


class PackedLinear(torch.nn.Module):
    """A quantized linear as bitsandbytes and GPTQ keep it: in/out features, two 4-bit weights per byte."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = torch.nn.Parameter(
            torch.zeros(out_features * in_features // 2, dtype=torch.uint8), requires_grad=False
        )


class Packed(torch.Tensor):
    """A tensor subclass as torchao's quantized weights are: a logical bf16 shape over packed inner tensors."""

    @staticmethod
    def __new__(cls, packed: torch.Tensor, shape: tuple[int, ...]):
        tensor = torch.Tensor._make_wrapper_subclass(cls, shape, dtype=torch.bfloat16)
        tensor.packed = packed
        return tensor

    def __tensor_flatten__(self):
        return ["packed"], None

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise NotImplementedError(func)


def test_quantized_weights_count_their_packed_bytes():
    model = tiny_llama()
    before = model_shape(model)
    mlp = model.model.layers[0].mlp
    out_features, in_features = mlp.down_proj.weight.shape
    mlp.down_proj = PackedLinear(in_features, out_features)
    after = model_shape(model)
    assert (
        before.weight_bytes - after.weight_bytes
        == 4 * in_features * out_features - in_features * out_features // 2
    )
    assert after.matmul_params == before.matmul_params  # the logical in x out, not the packed count
    logical = Packed(torch.zeros(16, dtype=torch.uint8), (4, 8))
    assert logical.numel() * logical.element_size() == 64 and storage_bytes(logical) == 16


def test_a_vlm_decode_step_reads_the_language_model_not_the_vision_tower():
    model, _ = tiny_llava()
    shape = model_shape(model)
    language = model.model.language_model
    table = language.embed_tokens.weight.numel()
    read = sum(p.numel() for p in language.parameters()) - table + model.lm_head.weight.numel()
    buffers = sum(b.numel() * b.element_size() for b in language.buffers())
    assert shape.weight_bytes == 4 * read + buffers
    assert shape.parameters == sum(p.numel() for p in model.parameters()) > read + table
    assert shape.layers == TEXT["num_hidden_layers"]


def test_sliding_window_layers_attend_to_at_most_the_window():
    shape = ModelShape(
        parameters=0,
        weight_bytes=0,
        embedding_bytes_per_token=0,
        matmul_params=0,
        lm_head_params=0,
        layers=3,
        heads=1,
        kv_heads=1,
        head_dim=1,
        cache_dtype="float32",
        cache_dtype_bytes=4,
        sliding_window=4,
        sliding_layers=2,
    )
    assert shape.attended(10) == 10 + 2 * 4 and shape.attended(3) == 3 * 3
    assert shape.decode_bytes(1, 10) == 2 * 4 * (10 + 2 * 4)
    for prompt in (1, 4, 5, 11):  # the closed form of the prefill's attention against the sum it stands for
        assert shape.prefill_flops(1, prompt) == 4 * sum(shape.attended(i) for i in range(1, prompt + 1))
    config = {**TEXT, "sliding_window": 16}
    mistral = model_shape(MistralForCausalLM(MistralConfig(**config)))
    assert (mistral.sliding_window, mistral.sliding_layers) == (16, 2)
    assert model_shape(tiny_llama()).sliding_layers == 0


@pytest.mark.parametrize(
    "name, card",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA A100-SXM4-40GB", "A100 SXM 40GB"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM 80GB"),
        ("NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB"),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L40", "L40"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 4090 Laptop GPU", None),
        ("NVIDIA GH200 480GB", None),
        ("NVIDIA GeForce GTX 1080", None),
        ("AMD Instinct MI300X", None),
    ],
)
def test_peak_table_lookup_by_gpu_name(name, card):
    found = lookup_card(name)
    assert (found.name if found else None) == card
    if found is not None:  # dense rates: never the "with sparsity" figures
        assert found.flops["float32"] < found.flops["float16"] <= 1e15 and found.bandwidth < 5e12


def fake_measurement(device, dtype, refresh=False):
    return peak.Measurement(bandwidth=1e11, flops=2e13, seconds=0.1, fresh=True)


@pytest.mark.parametrize(
    "gpu, dtype, overrides, measure, expected",
    [
        (H100_SXM, torch.bfloat16, {}, False, (3.35e12, "table: H100 SXM", 989.4e12, "table: H100 SXM")),
        (H100_SXM, torch.float32, {}, False, (3.35e12, "table: H100 SXM", 67e12, "table: H100 SXM")),
        (H100_SXM, torch.bfloat16, {}, True, (1e11, "measured", 2e13, "measured")),
        (H100_SXM, torch.bfloat16, {"flops": 5e14}, False, (3.35e12, "table: H100 SXM", 5e14, "override")),
        ("Tesla T4", torch.bfloat16, {}, False, (320e9, "table: T4", 2e13, "measured")),  # no bf16 on a T4
        ("NVIDIA B999", torch.bfloat16, {"bandwidth": 8e12}, False, (8e12, "override", 2e13, "measured")),
    ],
)
def test_peaks_come_from_overrides_then_the_table_then_a_measurement(
    monkeypatch, gpu, dtype, overrides, measure, expected
):
    monkeypatch.setattr(peak, "device_name", lambda device: gpu)
    monkeypatch.setattr(peak, "measured_peaks", fake_measurement)
    peaks, measurement = peak.resolve_peaks(torch.device("cuda"), dtype, measure=measure, **overrides)
    assert (peaks.bandwidth, peaks.bandwidth_source, peaks.flops, peaks.flops_source) == expected
    assert (measurement is not None) == ("measured" in expected)


def test_cpu_peaks_are_measured_quickly_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMPROF_CACHE", str(tmp_path))
    cpu = torch.device("cpu")
    first = peak.measured_peaks(cpu, torch.float32)
    assert first.fresh and first.seconds < 3.0  # about 0.4 s on the 2-core CI box (docs/benchmarks.md)
    assert 1e9 < first.bandwidth < 1e13 and 1e9 < first.flops < 1e14
    again = peak.measured_peaks(cpu, torch.float32)
    assert not again.fresh and (again.bandwidth, again.flops) == (first.bandwidth, first.flops)
    assert peak.measured_peaks(cpu, torch.float32, refresh=True).fresh
    peaks, _ = peak.resolve_peaks(cpu, torch.float32)
    assert peaks.bandwidth_source == peaks.flops_source == "measured"
    overridden, measurement = peak.resolve_peaks(cpu, torch.float32, bandwidth=1e10, flops=1e11)
    assert measurement is None and overridden.bandwidth_source == overridden.flops_source == "override"
    (tmp_path / peak.CACHE_FILE).write_text("not json")  # a damaged cache is measured again, not an error
    assert peak.measured_peaks(cpu, torch.float32).fresh
    monkeypatch.setenv("LLMPROF_CACHE", str(tmp_path / peak.CACHE_FILE))  # a file: no cache can be written
    assert peak.measured_peaks(cpu, torch.float32).fresh


# A synthetic model of known bytes: 50 MB of weights, 1 kB of KV cache per token of context, 1 GFLOP per token;
# peaks 10 GB/s and 1 TFLOP/s.
def test_mbu_is_bytes_over_time_times_bandwidth_exactly():
    # B = 50 MB per step in T = 10 ms against 10 GB/s: MBU = B / (T x BW) = 0.5
    run = synthetic_run(10.0, kv=False)
    analyses = run.roofline_analyses()
    assert len(analyses) == 3 and len({a.mbu for a in analyses}) == 1
    analysis = analyses[0]
    assert analysis.mbu == pytest.approx(0.5, rel=1e-12) and 0 < analysis.mbu < 1
    assert analysis.step_mbu == pytest.approx([0.5] * 5, rel=1e-12)
    assert analysis.mbu_forward == pytest.approx(0.5, rel=1e-12)  # no host gap, no sampling: forward = step
    assert analysis.floor_tpot == pytest.approx(50e6 / 10e9, rel=1e-12)  # 5 ms: bytes, not FLOPs, bound it
    # the prefill: 2 x 0.5 G x 10 tokens + attention, in the 40 ms prefill forward at 1 TFLOP/s
    flops = SYNTHETIC.prefill_flops(1, 10)
    assert flops == 2 * 500_000_000 * 10 + 4 * 128 * (10 * 11 // 2)
    assert analysis.mfu_prefill == pytest.approx(flops / (0.040 * 1e12), rel=1e-12)
    assert analysis.floor_ttft == pytest.approx(flops / 1e12, rel=1e-12)  # compute: 10 ms > 5 ms of reading
    decode_flops = sum(SYNTHETIC.decode_flops(1, 10 + k - 1) for k in range(2, 7))
    assert analysis.mfu_decode == pytest.approx(decode_flops / (5 * 0.010 * 1e12), rel=1e-12)


def test_mbu_counts_the_kv_cache_of_each_step_and_each_sequence():
    run = synthetic_run(10.0)
    analysis = run.roofline_analyses()[0]
    kv_per_token = 2 * 128 * 4
    expected = [(50e6 + kv_per_token * (10 + k - 1)) / (0.010 * 10e9) for k in range(2, 7)]
    assert analysis.step_mbu == pytest.approx(expected, rel=1e-12)
    assert analysis.mbu == pytest.approx(sum(expected) / 5, rel=1e-12)
    # batch 2 with ragged ends (6 and 3 tokens): weights once, KV twice; each sequence's own steps
    raw = record(host_marks(6, decode=10.0, sample=0.0, gap=0.0), [6, 3])
    shape, roofline = SYNTHETIC, Roofline(SYNTHETIC, PEAKS)
    batch2 = roofline.analyze(compute_request(raw))
    floors = [shape.decode_bytes(2, 10 + k - 1) / 10e9 for k in range(2, 7)]
    assert batch2.step_floor == pytest.approx(floors)
    assert batch2.floor_tpot == pytest.approx((sum(floors) / 5 + sum(floors[:2]) / 2) / 2)


def test_the_slower_the_steps_the_lower_the_mbu():
    fast, slow = (synthetic_run(ms).roofline_analyses()[0].mbu for ms in (5.1, 40.0))
    assert 0 < slow < fast < 1 and fast / slow == pytest.approx(40.0 / 5.1, rel=1e-6)


def analysis(mbu=0.3, forward=0.3, host=None, compute=False) -> RequestRoofline:
    return RequestRoofline(
        floor_tpot=0.001,
        floor_ttft=0.01,
        step_floor=[0.001],
        step_mbu=[mbu],
        mbu=mbu,
        mbu_forward=forward,
        mfu_decode=0.7 if compute else 0.01,
        mfu_prefill=0.5,
        compute_bound=compute,
        host_bound_share=host,
    )


@pytest.mark.parametrize(
    "a, start",
    [
        (analysis(mbu=0.8, forward=0.85), "bound: memory bandwidth"),
        (analysis(mbu=0.8, forward=0.85, host=0.9), "bound: the host. The GPU waited on it in 90%"),
        (analysis(mbu=0.2, forward=0.7), "bound: the host. The decode forwards"),
        (analysis(mbu=0.2, forward=0.25, host=0.1), "bound: the kernels"),
        (analysis(mbu=0.2, forward=0.25), "bound: neither bandwidth nor compute"),
        (analysis(mbu=0.1, compute=True), "bound: compute"),
        (analysis(mbu=None, forward=None), "bound: no decode step to judge: the prefill ran at 50%"),
    ],
)
def test_verdict(a, start):
    assert verdict([a, a, a]).startswith(start)


def test_reports_show_the_roofline_and_round_trip_it(tmp_path):
    run = synthetic_run(10.0, kv=False)
    path = tmp_path / "run.json"
    save_run(run, path)
    loaded = load_run(path)
    assert loaded.roofline == run.roofline
    md = render(loaded, "md")
    assert "#### Roofline (per request; peaks: 10 GB/s (override), 1 TFLOP/s float32 (override))" in md
    assert "| floor TPOT (ms) | 5.000 |" in md and "| MBU, decode (token to token) (%) | 50.00 |" in md
    assert "| MFU, prefill forward (%) | 25.00 |" in md
    assert "- bound: neither bandwidth nor compute. Decode moves bytes at 50%" in md
    assert "Roofline (per request" in render(loaded, "table")
    summary = run_summaries(loaded)
    assert summary["mbu"].median == pytest.approx(0.5)
    steps = render(loaded, "csv", per_step=True).splitlines()
    assert steps[0].endswith(",floor_s,mbu_ratio") and len(steps) == 1 + 3 * 5
    assert "mbu_ratio" in render(loaded, "csv").splitlines()[0].split(",")


def test_a_run_without_roofline_has_no_roofline_section(tmp_path):
    run = synthetic_run(10.0)
    run.roofline = None
    assert "Roofline" not in render(run, "md") and "floor_s" not in render(run, "csv", per_step=True)
    data = run.to_dict()
    del data["roofline"]  # a file written before the roofline existed
    assert Run.from_dict(data).roofline is None


def test_a_malformed_roofline_is_a_format_error():
    data = synthetic_run(10.0).to_dict()
    data["roofline"] = {"model": {"layers": 1}, "peaks": {}}
    with pytest.raises(RunFormatError, match="malformed llmprof run"):
        Run.from_dict(data)


def test_host_bound_gpu_steps_reach_the_verdict():
    """A device-backend request whose decode forwards all met an empty queue: the verdict says host."""
    t = 0.0
    marks = [(Label.REQUEST_START, 0, t), (Label.FORWARD_BEGIN, 0, 1.0, 1.0), (Label.FORWARD_END, 0, 2, 41.0)]
    marks.append((Label.TOKEN, 1, 41.5, 42.0))
    for k in range(2, 6):
        start = 42.0 + (k - 2) * 30.0
        marks += [
            (Label.FORWARD_BEGIN, k - 1, start, start),  # the device ran it the moment the host launched it
            (Label.FORWARD_END, k - 1, start + 1, start + 5.0),
            (Label.TOKEN, k, start + 1.5, start + 6.0),
        ]
    marks.append((Label.REQUEST_END, 5, 200.0))
    raw = record(marks, [5], backend="cuda")
    analysis = Roofline(SYNTHETIC, PEAKS).analyze(compute_request(raw))
    assert analysis.host_bound_share == 1.0
    assert verdict([analysis]).startswith("bound: the host. The GPU waited on it in 100% of decode steps")


def test_rate_option_reads_numbers_and_si_units():
    bandwidth, flops = rate("B/s", "3350GB/s"), rate("FLOP/s|FLOPS", "989TFLOP/s")
    assert bandwidth("3.35e12") == bandwidth("3350GB/s") == bandwidth("3.35 TB/s") == 3.35e12
    assert flops("989T") == flops("989 TFLOP/s") == flops("989TFLOPS") == 989e12
    for bad in (
        "fast",
        "0",
        "-1",
        "3 XB/s",
        "nan",
        "3.35 TB",
        "1e-300",
        "1e25",
        "inf",
    ):  # what a run file keeps
        with pytest.raises(Exception, match="expected a rate from 1 to 1e[+]24"):
            bandwidth(bad)


def test_demo_run_on_cpu_prints_floor_mbu_and_mfu_from_a_measured_bandwidth(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLMPROF_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "run.json"

    def llmprof(*args):
        return run_in_process(capsys, *args)

    result = llmprof("run", "--repeats", "2", "--max-new-tokens", "8", "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert "peaks measured on" in result.stderr
    for row in (
        "floor TPOT (ms)",
        "floor TTFT (ms)",
        "MBU, decode (token to token) (%)",
        "MFU, prefill forward",
    ):
        assert row in result.stdout
    assert "(measured)" in result.stdout and "bound: " in result.stdout
    data = json.loads(path.read_text())
    peaks, summary = data["roofline"]["peaks"], run_summaries(load_run(path))
    assert peaks["bandwidth_source"] == peaks["flops_source"] == "measured"
    assert 1e9 < peaks["bandwidth"] < 1e13  # a CPU's memory bandwidth, bytes/s
    assert 0 < summary["mbu"].max < 1  # plausible: below the measured peak
    assert 0 < summary["floor_tpot"].median < summary["tpot"].median
    assert 0 < summary["mfu_prefill"].median and math.isfinite(summary["mfu_prefill"].median)
    # report renders it without torch
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from llmprof.cli import main\n"
        f"raise SystemExit(main(['report', {str(path)!r}, '--format', 'md']))\n"
    )
    rendered = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert rendered.returncode == 0 and "#### Roofline" in rendered.stdout, rendered.stderr
    # overrides replace the measured figures, and nothing is measured
    overrides = ["--peak-bandwidth", "100GB/s", "--peak-flops", "1TFLOPS"]
    result = llmprof("run", "--repeats", "1", "--max-new-tokens", "4", *overrides, "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert "peaks measured" not in result.stderr
    assert "peaks: 100 GB/s (override), 1 TFLOP/s float32 (override)" in result.stdout


def meta_model(config_class, model_class, **config):
    with torch.device("meta"):
        return model_class(config_class(**config))


def test_mixture_of_experts_reads_only_the_experts_its_tokens_reach():
    from transformers import MixtralConfig, MixtralForCausalLM

    model = meta_model(
        MixtralConfig,
        MixtralForCausalLM,
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=8,
        num_experts_per_tok=2,
    )
    shape = model_shape(model)
    expert_bytes = 2 * 8 * 3 * 64 * 128 * 4  # layers x experts x (w1, w2, w3) x hidden x intermediate x fp32
    assert (shape.experts, shape.experts_per_token, shape.expert_bytes) == (8, 2, expert_bytes)
    dense = shape.weight_bytes - expert_bytes
    kv = shape.decode_bytes(1, 0) - shape._weights_read(1)  # the embedding row: no KV at context 0
    assert shape.decode_bytes(1, 0) == round(dense + expert_bytes * 2 / 8) + kv  # top-2 of 8 at batch 1
    assert shape.decode_bytes(64, 0) - 64 * kv == pytest.approx(
        shape.weight_bytes, rel=1e-6
    )  # a big batch: all
    dense_flops = 2 * (shape.matmul_params - shape.expert_params)
    assert shape.decode_flops(1, 0) == round(dense_flops + 2 * shape.expert_params * 2 / 8)


def test_falcon_multi_query_and_deepseek_latent_attention_cache_sizes():
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM, FalconConfig, FalconForCausalLM

    falcon = meta_model(
        FalconConfig,
        FalconForCausalLM,
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        multi_query=True,
        new_decoder_architecture=False,
    )
    assert (
        model_shape(falcon).kv_bytes_per_token == 2 * 2 * 1 * 16 * 4
    )  # layers x K,V x one head x dim x fp32
    deepseek = meta_model(
        DeepseekV3Config,
        DeepseekV3ForCausalLM,
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        moe_intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        kv_lora_rank=32,
        q_lora_rank=48,
        qk_rope_head_dim=8,
        qk_nope_head_dim=16,
        v_head_dim=16,
        n_routed_experts=4,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        n_group=1,
        topk_group=1,
    )
    assert model_shape(deepseek).kv_bytes_per_token == 2 * (32 + 8) * 4  # layers x (latent + rope key) x fp32


def test_the_memory_estimate_sizes_the_kv_cache_as_the_roofline_does():
    from llmprof.workloads.memory import estimate

    model = tiny_llama()
    need = estimate(model, batch=8, prompt=100, new_tokens=28)
    assert need.kv_cache == model_shape(model).kv_bytes_per_token * 8 * (100 + 28)
    assert need.logits == 3 * 8 * TEXT["vocab_size"] * 4 and need.total > need.kv_cache


def test_a_variant_copy_that_cannot_fit_is_refused(monkeypatch):
    from llmprof.errors import UsageError
    from llmprof.workloads import memory

    model = tiny_llama()
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1000)  # a nearly full device
    with pytest.raises(UsageError, match="variant\\(s\\) B run on their own copy of the model"):
        memory.check_copies(model, torch.device("cpu"), {"B": torch.float32})
    memory.check_copies(model, torch.device("cpu"), {})  # no copy, nothing to refuse
