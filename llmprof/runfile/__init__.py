"""The run file: the :class:`Run` model, its versioned JSON format, validation on load, and the atomic write.

A run file holds every raw timeline plus the run's configuration, environment, telemetry and roofline inputs;
every metric is recomputed from the raw timelines on load, so a file stays useful when metrics are added.
A format change that old files cannot be read through bumps ``FORMAT_VERSION`` and adds the migration of the
older documents in :mod:`~llmprof.runfile.validation`. Version 2 stores each request's marks compact
(:data:`MARKS_ENCODING`) and writes one request a line; a version-1 document is a version-2 document whose
marks are plain arrays (still read, and still written by ``report --format json`` for tools that want plain
JSON). Never imports torch.

One job a module: :mod:`~llmprof.runfile.model` (``Run``), :mod:`~llmprof.runfile.marks` (the compact marks
codec), :mod:`~llmprof.runfile.validation` (checking a document, never changing it),
:mod:`~llmprof.runfile.files` (JSON text, the atomic write, loading).
"""

from llmprof.analysis import registry as registry  # the metrics table Run.summaries reads
from llmprof.analysis.fields import MALFORMED, MAX_NS
from llmprof.runfile.files import (
    dump_lines,
    dump_run,
    load_run,
    load_with,
    read_document,
    save_run,
    write_atomic,
)
from llmprof.runfile.marks import MARK_COLUMNS, MARKS_ENCODING, MAX_COMPACT_MARKS, encode_marks
from llmprof.runfile.model import Run, request_dict
from llmprof.runfile.validation import (
    CONFIG_MINIMUM,
    FORMAT_NAME,
    FORMAT_VERSION,
    PEAK_RANGE,
    check_config,
    check_document,
)

__all__ = [
    "CONFIG_MINIMUM",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MALFORMED",
    "MARKS_ENCODING",
    "MARK_COLUMNS",
    "MAX_COMPACT_MARKS",
    "MAX_NS",
    "PEAK_RANGE",
    "Run",
    "check_config",
    "check_document",
    "dump_lines",
    "dump_run",
    "encode_marks",
    "load_run",
    "load_with",
    "read_document",
    "request_dict",
    "save_run",
    "write_atomic",
]
