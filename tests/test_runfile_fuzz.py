"""Mutants of a real run file through `report` (every format) and `compare`: each gives a clean one-line error
(exit 2) or a valid render (exit 0) of physically possible numbers; none a traceback, a hang or an unbounded
allocation. The mutants are generated, seeded: truncation, deleted keys, wrong types, non-finite and huge
numbers, shuffled, negated and reversed arrays, broken Unicode, deep nesting, other versions."""

import copy
import json
import math
import random
from collections import Counter

import pytest
from timelines import synthetic_run

from llmprof.cli import main
from llmprof.runfile import (
    FORMAT_VERSION,
    MARKS_ENCODING,
    MAX_NS,
    PEAK_RANGE,
    dump_run,
    encode_marks,
    load_run,
)

MUTANTS = 320
FORMATS = ("table", "md", "csv", "json", "trace")
BAD_VALUES = [
    None,
    True,
    "x",
    -1,
    0,
    2.5,
    1e300,
    -1e300,
    10**10,
    10**30,
    10**400,
    [],
    {},
    "\ud800",
    [1, 2, 3],
    {"a": 1},
]

ROOFLINE_VALUES = [10**400, -(10**400), math.inf, -math.inf, math.nan, -1, 0, 1e-300, 1e300, 2**63]


def base_document(compact: bool = False) -> dict:
    """A run with every part a run file has: warm-up and measured requests, telemetry, roofline; its marks
    plain arrays, or ``compact`` as a run file writes them."""
    run = synthetic_run(10.0)
    run.records[0].warmup = True
    start = run.records[0].host_ns[0]
    run.telemetry = {
        "kind": "process",
        "reason": "no GPU telemetry: the model runs on the CPU",
        "interval_s": 0.2,
        "devices": [{"index": "cpu", "cores": 2}],
        "errors": {},
        "samples": {
            "t_ns": [start + i * 200_000_000 for i in range(20)],
            "device": ["cpu"] * 20,
            "cpu_percent": [95.0 + i % 3 for i in range(20)],
            "rss_bytes": [400 << 20] * 20,
        },
    }
    run.config = {"model": "synthetic", "batch_size": 1, "prompt_tokens": 10, "max_new_tokens": 6}
    return json.loads(dump_run(run, compact=compact))


def paths(value, prefix=()):
    """Every path (keys and indexes) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from paths(item, (*prefix, i))


def replace(document, path, value):
    if not path:
        return value
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return document


def delete(document, path):
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return document


def get(document, path):
    for part in path:
        document = document[part]
    return document


def rearranged(values, rng):
    """A list reordered, negated, reversed, cut or doubled."""
    kind = rng.choice(["shuffle", "negate", "reverse", "cut", "double"])
    values = list(values)
    if kind == "shuffle":
        rng.shuffle(values)
    elif kind == "negate":
        values = [-v if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in values]
    elif kind == "reverse":
        values.reverse()
    elif kind == "cut":
        values = values[: rng.randrange(len(values) + 1)]
    else:
        values = values + values
    return values


def mutant(base: dict, text: str, rng: random.Random) -> str:
    """One mutant of the run file, as text."""
    kind = rng.choices(
        ["leaf", "delete", "list", "truncate", "version", "nest", "constant", "roofline"],
        [40, 15, 25, 6, 4, 4, 6, 6],
    )[0]
    if kind == "truncate":
        return text[: rng.randrange(len(text))]
    document = copy.deepcopy(base)
    if kind == "version":
        document["version"] = rng.choice(["1", 1.0, None, 0, 2, True, -1, 10**20])
        return json.dumps(document)
    if kind == "constant":  # NaN / Infinity tokens, which Python's json writes and reads by default
        all_paths = [p for p in paths(document) if p and isinstance(get(document, p), (int, float))]
        replace(document, rng.choice(all_paths), rng.choice([math.nan, math.inf, -math.inf]))
        return json.dumps(document)
    if kind == "roofline":  # a peak or a shape field past anything arithmetic survives (10**400 B/s)
        numbers = [
            p for p in paths(document["roofline"]) if isinstance(get(document["roofline"], p), (int, float))
        ]
        replace(document["roofline"], rng.choice(numbers), rng.choice(ROOFLINE_VALUES))
        return json.dumps(document)
    # bias towards the requests, where the numbers are
    pool = [p for p in paths(document) if p]
    marks = [p for p in pool if p[0] == "requests"]
    path = rng.choice(marks if rng.random() < 0.7 else pool)
    if kind == "delete":
        delete(document, path)
    elif kind == "nest":
        value = get(document, path)
        for _ in range(rng.choice([5, 40, 200])):
            value = [value]
        replace(document, path, value)
    elif kind == "list":
        lists = [p for p in pool if isinstance(get(document, p), list)]
        path = rng.choice(lists)
        replace(document, path, rearranged(get(document, path), rng))
    else:
        replace(document, path, copy.deepcopy(rng.choice(BAD_VALUES)))
    return json.dumps(document)


def physical(path) -> None:
    """A run that loaded has no impossible number in it."""
    run = load_run(path)
    for m in run.metrics():
        assert 0 <= m.ttft <= m.latency and math.isfinite(m.tps) and m.tps >= 0
        assert all(t >= 1 for t in m.output_tokens) and all(v >= 0 for v in m.itl)
        assert m.tpot is None or m.tpot >= 0


@pytest.mark.parametrize(
    "compact, mutants", [(False, MUTANTS), (True, MUTANTS // 3)], ids=["plain", "compact"]
)
def test_every_mutant_of_a_run_file_is_a_clean_error_or_a_valid_render(tmp_path, capsys, compact, mutants):
    base = base_document(compact)
    text = json.dumps(base)
    original = tmp_path / "original.json"
    original.write_text(text)
    rng = random.Random(0)
    outcomes = Counter()
    for i in range(mutants):
        path = tmp_path / f"mutant{i}.json"
        path.write_text(mutant(base, text, rng))
        codes = set()
        for fmt in FORMATS + (("plot",) if i % 40 == 0 else ()):
            codes.add(main(["report", str(path), "--format", fmt, "-o", str(tmp_path / f"out.{fmt}")]))
        codes.add(
            main(["compare", str(original), str(path), "--format", "md", "-o", str(tmp_path / "ab.md")])
        )
        err = capsys.readouterr().err
        assert codes <= {0, 2}, (i, codes, err)
        assert "Traceback" not in err, (i, err)
        if 0 in codes:
            assert codes == {0}, (i, err)  # rendered in one format, rendered in all
            physical(path)
            outcomes["rendered"] += 1
        else:
            errors = [line for line in err.splitlines() if line.startswith("llmprof: error:")]
            assert errors and len(errors) == len(err.strip().splitlines()), (i, err)
            outcomes["refused"] += 1
    print(f"run-file mutants: {mutants} tried, {outcomes['refused']} refused in one line, {outcomes['rendered']}"
          " rendered in every format with physical numbers, 0 tracebacks")  # fmt: skip
    assert outcomes["refused"] >= mutants // 2 and outcomes["rendered"] >= 10, outcomes


@pytest.mark.parametrize(
    "version, message",
    [
        ("1", f"is not a version number: this llmprof writes {FORMAT_VERSION}"),
        (1.0, f"is not a version number: this llmprof writes {FORMAT_VERSION}"),
        (None, f"is not a version number: this llmprof writes {FORMAT_VERSION}"),
        (FORMAT_VERSION + 1, "newer than this llmprof reads"),
        (0, "does not exist"),
    ],
)
def test_a_version_that_is_not_the_integer_this_llmprof_writes_is_its_own_message(tmp_path, version, message):
    document = base_document()
    document["version"] = version
    path = tmp_path / "run.json"
    path.write_text(json.dumps(document))
    with pytest.raises(Exception, match=message):
        load_run(path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda d: d["requests"][1]["marks"]["host_ns"].reverse(),
            r"requests\[1\].marks.host_ns\[1\]: not monotone",
        ),
        (lambda d: d["requests"][2].update(tokens_per_sequence=[10**10]), "more than its 6 token marks"),
        (lambda d: d["requests"][1].update(warmup="x"), r"requests\[1\].warmup: str is not its type"),
        (lambda d: d["requests"][1].update(backend=3), r"requests\[1\].backend"),
        (lambda d: d["requests"][1]["marks"]["label"].__setitem__(2, 99), "99 is no mark llmprof records"),
        (lambda d: d["telemetry"]["samples"]["cpu_percent"].pop(), "not as long as its t_ns column"),
        (lambda d: d["config"].update(model="\ud800"), "config.model: a string that is not valid Unicode"),
    ],
    ids=["non-monotone", "huge-count", "warmup-type", "backend-type", "label", "telemetry", "surrogate"],
)
def test_a_bad_field_is_named_with_its_request(tmp_path, mutate, message):
    document = base_document()
    mutate(document)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(document))
    with pytest.raises(Exception, match=message):
        load_run(path)


ROOFLINE_NUMBERS = [
    ("peaks", "bandwidth"),
    ("peaks", "flops"),
    ("model", "weight_bytes"),
    ("model", "matmul_params"),
    ("model", "layers"),
    ("model", "head_dim"),
    ("model", "cache_dtype_bytes"),
    ("model", "experts_per_token"),
    ("model", "sliding_layers"),
]


@pytest.mark.parametrize("value", ROOFLINE_VALUES, ids=lambda v: f"{v!r:.12}")
def test_a_roofline_number_out_of_range_is_one_line_naming_the_field(tmp_path, capsys, value):
    """Issue 27: a peak of 10**400 B/s ended `report` in an OverflowError; every numeric roofline field, set to
    a value no arithmetic survives (huge, infinite, NaN, negative, tiny), is refused in one line naming it, or
    (a value the field may hold) rendered in every format."""
    for part, name in ROOFLINE_NUMBERS:
        document = base_document()
        document["roofline"][part][name] = value
        path = tmp_path / "run.json"
        path.write_text(json.dumps(document))
        codes = {
            main(["report", str(path), "--format", f, "-o", str(tmp_path / f"out.{f}")]) for f in FORMATS
        }
        err = capsys.readouterr().err
        if codes == {0}:  # only a value the field may hold
            assert 0 <= value <= MAX_NS if part == "model" else PEAK_RANGE[0] <= value <= PEAK_RANGE[1]
            physical(path)
        else:
            assert codes == {2} and err.count("\n") == len(FORMATS), (name, value, err)
            named = (
                "is not a number JSON has"
                if isinstance(value, float) and not math.isfinite(value)
                else f"roofline.{part}.{name}: "
            )
            assert named in err, (name, value, err)


def _compact(document: dict) -> dict:
    """``document`` with every request's plain marks encoded as a run file encodes them."""
    for request in document["requests"]:
        request["marks"] = encode_marks(request["marks"])
    return document


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda d: d["requests"][1]["marks"]["host_ns"].reverse(),
            r"requests\[1\].marks.host_ns\[1\]: not monotone",
        ),
        (lambda d: d["requests"][1]["marks"]["label"].__setitem__(2, 99), r"marks.label\[2\]: 99 is no mark"),
        (
            lambda d: d["requests"][1]["marks"]["step"].__setitem__(3, -2),
            r"marks.step\[3\]: -2 is out of range",
        ),
        (
            lambda d: d["requests"][1]["marks"]["device_ns"].__setitem__(0, -5),
            r"device_ns\[0\]: -5 is out of",
        ),
    ],
    ids=["non-monotone", "label", "step", "device"],
)
def test_compact_marks_are_checked_as_plain_ones_are(tmp_path, mutate, message):
    """The same bad mark, plain or encoded: the same one-line error naming the same position."""
    for compact in (False, True):
        document = base_document()
        mutate(document)
        path = tmp_path / "run.json"
        path.write_text(json.dumps(_compact(document) if compact else document))
        with pytest.raises(Exception, match=message):
            load_run(path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: m.update(encoding="gzip"), r"marks.encoding: 'gzip' is no encoding this llmprof reads"),
        (lambda m: m.update(count=m["count"] + 1), r"marks.data: does not hold \d+ marks \(truncated\?\)"),
        (lambda m: m.update(count=-1), r"marks.count: -1 is out of range"),
        (lambda m: m.update(data=m["data"][:-8]), r"marks.data: not base64 of zlib data|does not hold"),
        (lambda m: m.update(data="%%%"), r"marks.data: not base64 of zlib data"),
        (lambda m: m.update(data="é" + m["data"]), r"marks.data: not base64 of zlib data"),
        (lambda m: m.update(data=None), r"marks.data: a string is needed, not null"),
        (lambda m: m.pop("count"), r"marks.count: an integer is needed, not null"),
    ],
    ids=["encoding", "count", "negative-count", "truncated", "not-base64", "not-ascii", "null", "no-count"],
)
def test_a_broken_compact_encoding_is_one_line_naming_the_field(tmp_path, mutate, message):
    document = base_document(compact=True)
    assert document["requests"][1]["marks"]["encoding"] == MARKS_ENCODING
    mutate(document["requests"][1]["marks"])
    path = tmp_path / "run.json"
    path.write_text(json.dumps(document))
    with pytest.raises(Exception, match=r"requests\[1\]\." + message):
        load_run(path)


def test_a_compact_stream_that_inflates_past_its_count_is_refused_without_inflating_it(tmp_path):
    """A zlib bomb in the marks (a GB of zeros claimed as one mark) is read no further than the one mark."""
    import base64
    import zlib

    document = base_document(compact=True)
    bomb = zlib.compress(bytes(1 << 30 >> 4), 9)  # 64 MB of zeros in ~64 kB
    document["requests"][1]["marks"].update(count=1, data=base64.b64encode(bomb).decode())
    path = tmp_path / "run.json"
    path.write_text(json.dumps(document))
    with pytest.raises(Exception, match=r"requests\[1\]\.marks.data: does not hold 1 marks"):
        load_run(path)


def test_a_file_that_claims_more_compact_marks_than_one_file_may_hold_is_refused_before_inflating(tmp_path):
    """Counts summed over every request before any stream is inflated: a small file cannot claim 17M marks."""
    from llmprof.runfile import MAX_COMPACT_MARKS

    document = base_document(compact=True)
    for request in document["requests"]:
        request["marks"]["count"] = MAX_COMPACT_MARKS // 2
    path = tmp_path / "run.json"
    path.write_text(json.dumps(document))
    with pytest.raises(Exception, match=r"claim \d+ marks, more than one file may hold \(16777216\)"):
        load_run(path)
