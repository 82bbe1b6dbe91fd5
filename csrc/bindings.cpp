// The Python module llmprof._core: the only file of csrc/ that sees Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "clock.hpp"
#include "cuda_driver.hpp"
#include "process_sampler.hpp"
#include "timeline.hpp"

namespace py = pybind11;
using llmprof::Timeline;

namespace {

// Misuse of the recording API raises llmprof.errors.CaptureError, as the Python side's own checks do.
[[noreturn]] void misuse(const std::string& message) {
    static py::object error = py::module_::import("llmprof.errors").attr("CaptureError");
    PyErr_SetString(error.ptr(), message.c_str());
    throw py::error_already_set();
}

// The forward of a model, marked as a span of the current step when the timeline is armed: installed as
// the instance's `forward` (no nn.Module hook, so torch keeps its fast call path). A call inside an open
// forward (a forward that calls itself, prefill chunks inside a marked call) passes straight through. A
// CPython type of its own with vectorcall: a call passes its arguments on as they came, allocating nothing.
struct TimedCallObject {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject* fn;
    PyObject* owner;  // the Python Timeline: keeps tl alive
    Timeline* tl;
    PyObject* dict;  // attributes: __wrapped__, __signature__, __name__, ...
};

PyObject* cuda_error_type = nullptr;  // llmprof._core.CudaError, set at import

// Runs a timeline call that may throw (a failing driver call) as a Python error: false when it threw.
template <typename F>
bool guarded(F&& f) {
    try {
        f();
        return true;
    } catch (const std::exception& e) {
        PyErr_SetString(cuda_error_type ? cuda_error_type : PyExc_RuntimeError, e.what());
        return false;
    }
}

PyObject* timed_vectorcall(PyObject* self, PyObject* const* args, std::size_t nargsf, PyObject* kwnames) {
    auto* o = reinterpret_cast<TimedCallObject*>(self);
    Timeline& tl = *o->tl;
    if (tl.in_forward() || !tl.armed()) return PyObject_Vectorcall(o->fn, args, nargsf, kwnames);
    if (!guarded([&] { tl.forward_begin(); })) return nullptr;
    PyObject* out = PyObject_Vectorcall(o->fn, args, nargsf, kwnames);
    if (!out) {
        tl.forward_abort();
        return nullptr;
    }
    if (!guarded([&] { tl.forward_end(); })) {
        Py_DECREF(out);
        return nullptr;
    }
    return out;
}

int timed_traverse(PyObject* self, visitproc visit, void* arg) {
    auto* o = reinterpret_cast<TimedCallObject*>(self);
    Py_VISIT(o->fn);
    Py_VISIT(o->owner);
    Py_VISIT(o->dict);
    return 0;
}

int timed_clear(PyObject* self) {
    auto* o = reinterpret_cast<TimedCallObject*>(self);
    Py_CLEAR(o->fn);
    Py_CLEAR(o->owner);
    Py_CLEAR(o->dict);
    return 0;
}

void timed_dealloc(PyObject* self) {
    PyObject_GC_UnTrack(self);
    timed_clear(self);
    Py_TYPE(self)->tp_free(self);
}

PyObject* timed_fn(PyObject* self, void*) {
    PyObject* fn = reinterpret_cast<TimedCallObject*>(self)->fn;
    Py_INCREF(fn);
    return fn;
}

PyGetSetDef timed_getset[] = {
    {"fn", timed_fn, nullptr, "The wrapped callable.", nullptr},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyTypeObject TimedCallType = [] {
    PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
    t.tp_name = "llmprof._core.TimedCall";
    t.tp_basicsize = sizeof(TimedCallObject);
    t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL;
    t.tp_doc = "A callable marking a forward span around fn when its timeline is armed.";
    t.tp_vectorcall_offset = offsetof(TimedCallObject, vectorcall);
    t.tp_call = PyVectorcall_Call;
    t.tp_dictoffset = offsetof(TimedCallObject, dict);
    t.tp_getattro = PyObject_GenericGetAttr;
    t.tp_setattro = PyObject_GenericSetAttr;
    t.tp_traverse = timed_traverse;
    t.tp_clear = timed_clear;
    t.tp_dealloc = timed_dealloc;
    t.tp_getset = timed_getset;
    return t;
}();

py::object make_timed(const py::object& timeline, const py::object& fn) {
    auto* o = PyObject_GC_New(TimedCallObject, &TimedCallType);
    if (!o) throw py::error_already_set();
    o->vectorcall = timed_vectorcall;
    o->fn = fn.inc_ref().ptr();
    o->owner = timeline.inc_ref().ptr();
    o->tl = &timeline.cast<Timeline&>();
    o->dict = nullptr;
    PyObject_GC_Track(reinterpret_cast<PyObject*>(o));
    return py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(o));
}

// `with recorder.forward():` / `with recorder.prefill():` of the public API, checked for misuse.
class Span {
 public:
    Span(Timeline& tl, bool prefill) : tl_(tl), prefill_(prefill) {}
    void enter() {
        const char* name = prefill_ ? "prefill()" : "forward()";
        if (!tl_.open()) misuse(std::string(name) + " outside a request: open one with Recorder.request()");
        if (tl_.in_forward()) misuse(std::string(name) + " inside a forward() or prefill() block");
        if (prefill_ && tl_.step() > 0) misuse("prefill() after the first token: use forward() for decode steps");
        tl_.forward_begin();
    }
    bool exit(const py::object& exc_type, const py::object&, const py::object&) {
        if (exc_type.is_none())
            tl_.forward_end();
        else
            tl_.forward_abort();
        return false;
    }

 private:
    Timeline& tl_;
    bool prefill_;
};

// A tensor's (data pointer, bytes, on a GPU, which GPU), read through its Python attributes (no torch headers
// here); the GPU's ordinal only for a timeline of several lanes (else -1).
struct TensorView {
    std::uintptr_t ptr;
    std::size_t nbytes;
    bool on_device;
    int device;
};
TensorView view(py::handle t, const Timeline& tl) {
    static PyObject* const data_ptr = PyUnicode_InternFromString("data_ptr");
    static PyObject* const nbytes = PyUnicode_InternFromString("nbytes");
    static PyObject* const is_cuda = PyUnicode_InternFromString("is_cuda");
    static PyObject* const get_device = PyUnicode_InternFromString("get_device");
    auto get = [](PyObject* value) {  // a new reference, or the Python error raised
        if (!value) throw py::error_already_set();
        return py::reinterpret_steal<py::object>(value);
    };
    const py::object ptr = get(PyObject_CallMethodNoArgs(t.ptr(), data_ptr));
    const py::object size = get(PyObject_GetAttr(t.ptr(), nbytes));
    const py::object cuda = get(PyObject_GetAttr(t.ptr(), is_cuda));
    const std::uintptr_t address = PyLong_AsUnsignedLongLong(ptr.ptr());
    const std::size_t bytes = PyLong_AsSize_t(size.ptr());
    const bool on_device = cuda.ptr() == Py_True;
    int device = -1;
    if (on_device && tl.lanes() > 1)
        device = int(PyLong_AsLong(get(PyObject_CallMethodNoArgs(t.ptr(), get_device)).ptr()));
    if (PyErr_Occurred()) throw py::error_already_set();
    return {address, bytes, on_device, device};
}

// The token-marking criteria list's __call__, in C (no Python frame a step): stamps T_k, runs the criteria
// (StoppingCriteriaList.__call__, given at install), keeps their flags, and notes the sequences' length before
// the first token in `start_length`. Installed on the Python class as an instance method.
PyObject* criteria_call = nullptr;  // StoppingCriteriaList.__call__

PyObject* marking_call(PyObject*, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
    static PyObject* const timeline_name = PyUnicode_InternFromString("_timeline");
    static PyObject* const start_name = PyUnicode_InternFromString("start_length");
    static PyObject* const shape_name = PyUnicode_InternFromString("shape");
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 2 || !criteria_call) {
        PyErr_SetString(PyExc_TypeError, "token-marking criteria: called without input_ids");
        return nullptr;
    }
    PyObject* self = args[0];
    PyObject* owner = PyObject_GetAttr(self, timeline_name);
    if (!owner) return nullptr;
    Timeline* tl = nullptr;
    try {
        tl = &py::handle(owner).cast<Timeline&>();
    } catch (const std::exception& e) {
        Py_DECREF(owner);
        PyErr_SetString(PyExc_TypeError, e.what());
        return nullptr;
    }
    PyObject* done = nullptr;
    if (guarded([&] { tl->token(1); })) done = PyObject_Vectorcall(criteria_call, args, nargs, kwnames);
    if (done && tl->armed()) {
        try {
            const TensorView v = view(done, *tl);
            tl->keep(v.ptr, v.nbytes, v.on_device, v.device);
        } catch (py::error_already_set& e) {
            e.restore();
            Py_CLEAR(done);
        } catch (const std::exception& e) {
            PyErr_SetString(cuda_error_type ? cuda_error_type : PyExc_RuntimeError, e.what());
            Py_CLEAR(done);
        }
    }
    Py_DECREF(owner);
    if (!done) return nullptr;
    PyObject* start = PyObject_GetAttr(self, start_name);
    if (start == Py_None) {  // the first step: the length before it
        PyObject* shape = PyObject_GetAttr(args[1], shape_name);
        const Py_ssize_t rank = shape ? PySequence_Size(shape) : -1;
        PyObject* last = rank > 0 ? PySequence_GetItem(shape, rank - 1) : nullptr;
        const long length = last ? PyLong_AsLong(last) : -1;
        PyObject* before = length > 0 ? PyLong_FromLong(length - 1) : nullptr;
        if (!before || PyObject_SetAttr(self, start_name, before) < 0) PyErr_Clear();  // then unknown: None
        Py_XDECREF(before);
        Py_XDECREF(last);
        Py_XDECREF(shape);
        PyErr_Clear();
    }
    Py_XDECREF(start);
    if (!start) PyErr_Clear();
    return done;
}

PyMethodDef marking_call_def = {"__call__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(marking_call)),
                                METH_FASTCALL | METH_KEYWORDS,
                                "Mark T_k, run the criteria, keep their flags (the hot path of a decode step)."};

void install_marking_call(const py::object& cls, const py::object& list_call) {
    Py_XDECREF(criteria_call);
    criteria_call = list_call.inc_ref().ptr();
    PyObject* fn = PyCFunction_New(&marking_call_def, nullptr);
    if (!fn) throw py::error_already_set();
    PyObject* method = PyInstanceMethod_New(fn);
    Py_DECREF(fn);
    if (!method) throw py::error_already_set();
    const int rc = PyObject_SetAttrString(cls.ptr(), "__call__", method);
    Py_DECREF(method);
    if (rc < 0) throw py::error_already_set();
}

// A step's token count is kept as int32 and summed over a request's steps: bounded where it enters.
constexpr std::int64_t kMaxStepTokens = 1 << 20;

// The strict token() of the public API: misuse raises; flags may be a one-byte tensor or a sequence.
void checked_token(Timeline& tl, const py::object& finished, const py::handle& count) {
    if (!tl.open()) misuse("token() outside a request: open one with Recorder.request()");
    if (tl.in_forward()) misuse("token() inside a forward() block: the forward must end before its token");
    int overflow = 0;
    std::int64_t tokens = 0;  // an int (or anything with __index__, not a bool): else refused below
    if (!PyBool_Check(count.ptr()) && PyIndex_Check(count.ptr())) {
        const auto index = py::reinterpret_steal<py::object>(PyNumber_Index(count.ptr()));
        if (!index) throw py::error_already_set();
        tokens = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
    }
    if (tokens < 1 || tokens > kMaxStepTokens || overflow != 0)
        misuse("tokens: a step appends an int of 1 to " + std::to_string(kMaxStepTokens) + " tokens, got " +
               py::repr(count).cast<std::string>());
    if (finished.is_none()) {
        tl.token(tokens);
        return;
    }
    TensorView v{};
    std::vector<std::uint8_t> packed;
    if (py::hasattr(finished, "data_ptr")) {
        if (finished.attr("element_size")().cast<int>() != 1)
            misuse("finished flags must be a bool tensor (one byte a flag), got " +
                   py::str(finished.attr("dtype")).cast<std::string>());
        if (!finished.attr("is_contiguous")().cast<bool>()) misuse("finished flags must be a contiguous tensor");
        v = view(finished, tl);
    } else if (py::isinstance<py::sequence>(finished) && !py::isinstance<py::str>(finished)) {
        for (py::handle f : finished) packed.push_back(py::bool_(py::reinterpret_borrow<py::object>(f)) ? 1 : 0);
        v = {reinterpret_cast<std::uintptr_t>(packed.data()), packed.size(), false, -1};
    } else {
        misuse("finished flags must be a bool tensor or a sequence of bools");
    }
    if (tl.batch() && v.nbytes != tl.batch())
        misuse("finished flags must hold one flag per sequence (" + std::to_string(tl.batch()) + "), got " +
               std::to_string(v.nbytes));
    tl.token(tokens);
    tl.keep(v.ptr, v.nbytes, v.on_device, v.device);
    if (!tl.flags_error().empty()) misuse(tl.flags_error());
}

// The Python callable of set_step_observer(): called with the GIL held (every mark comes from Python).
PyObject* observer_fn = nullptr;

void call_observer(std::int64_t label, std::int64_t step) {
    PyObject* out = PyObject_CallFunction(observer_fn, "LL", static_cast<long long>(label),
                                          static_cast<long long>(step));
    if (out) {
        Py_DECREF(out);
        return;
    }
    PyErr_WriteUnraisable(observer_fn);  // an observer must not break the call it watches
}

void set_step_observer(const py::object& fn) {
    llmprof::step_observer = nullptr;
    Py_CLEAR(observer_fn);
    if (fn.is_none()) return;
    observer_fn = fn.inc_ref().ptr();
    llmprof::step_observer = call_observer;
}

template <typename T>
py::array_t<T> to_array(std::vector<T>&& values) {
    auto* heap = new std::vector<T>(std::move(values));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>(heap->size(), heap->data(), owner);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "llmprof's recorder: host clock, preallocated timeline, CUDA events through the driver API.";
    cuda_error_type = py::register_exception<llmprof::cuda::CudaError>(m, "CudaError", PyExc_RuntimeError).ptr();
    m.attr("DRIVER_ENV") = llmprof::cuda::kDriverEnv;
    m.def("host_now_ns", &llmprof::host_now_ns, "CLOCK_MONOTONIC in ns (the clock of time.monotonic_ns()).");
    m.def("cuda_driver_status", &llmprof::cuda::driver_status,
          "(ok, message): can the CUDA driver be loaded and cuInit(0) succeed? Never raises.");
    m.def("cuda_profiler_range", &llmprof::cuda::profiler_range, py::arg("device"), py::arg("start"),
          py::call_guard<py::gil_scoped_release>(),
          "cuProfilerStart() (start) or, after cuCtxSynchronize(), cuProfilerStop() in the device's primary "
          "context; raises CudaError.");
    m.def("set_step_observer", &set_step_observer, py::arg("observer"),
          "observer(label, step) after each mark that opens or closes a step (REQUEST_START, FORWARD_BEGIN, "
          "TOKEN, REQUEST_END) of any timeline, until set to None.");

    if (PyType_Ready(&TimedCallType) < 0) throw py::error_already_set();
    m.def("install_marking_call", &install_marking_call, py::arg("cls"), py::arg("criteria_call"),
          "Give the token-marking criteria class its __call__ in C, running criteria_call for the criteria.");
    m.attr("TimedCall") = py::handle(reinterpret_cast<PyObject*>(&TimedCallType));
    py::class_<Span>(m, "Span", "The context manager of Recorder.forward() / Recorder.prefill().")
        .def("__enter__", &Span::enter)
        .def("__exit__", &Span::exit);

    py::class_<llmprof::ProcessSampler>(
        m, "ProcessSampler",
        "The process's CPU time and RSS sampled by a native thread (no GIL) every interval_ns, on the host clock.")
        .def(py::init<std::int64_t>(), py::arg("interval_ns"))
        .def_property_readonly("interval_ns", &llmprof::ProcessSampler::interval_ns)
        .def_property_readonly("running", &llmprof::ProcessSampler::running)
        .def("start", &llmprof::ProcessSampler::start, py::call_guard<py::gil_scoped_release>(),
             "A first sample now, then one every interval on the native thread (idempotent).")
        .def("stop", &llmprof::ProcessSampler::stop, py::call_guard<py::gil_scoped_release>(),
             "Join the thread, then a last sample (idempotent).")
        .def(
            "probe",
            [](const llmprof::ProcessSampler& s) {
                const llmprof::ProcessSample p = s.probe();
                return py::make_tuple(p.t_ns, p.cpu_ns, p.rss_bytes);
            },
            "(t_ns, cpu_ns, rss_bytes) now, from the calling thread (rss_bytes -1 when unknown).")
        .def(
            "take",
            [](llmprof::ProcessSampler& s) {
                std::vector<llmprof::ProcessSample> samples;
                {
                    py::gil_scoped_release nogil;
                    samples = s.take();
                }
                py::list out;
                for (const auto& p : samples) out.append(py::make_tuple(p.t_ns, p.cpu_ns, p.rss_bytes));
                return out;
            },
            "The samples kept since the last take(): a list of (t_ns, cpu_ns, rss_bytes).");

    py::class_<Timeline>(m, "Timeline",
                         "Preallocated timeline of (label, step) marks; CUDA backend when device >= 0.")
        .def(py::init<std::int64_t, int>(), py::arg("capacity") = 65536, py::arg("device") = -1)
        .def(py::init<std::int64_t, const std::vector<int>&>(), py::arg("capacity"), py::arg("devices"),
             "The CUDA backend with one lane per device ordinal (a device_map model), the first where a forward "
             "starts.")
        .def_property_readonly("backend", &Timeline::backend)
        .def_property_readonly("devices", &Timeline::devices, "The lanes' device ordinals ([] on the host).")
        .def_property_readonly("capacity", &Timeline::capacity)
        .def_property_readonly("size", &Timeline::size)
        .def_property_readonly("dropped", &Timeline::dropped,
                               "Marks that did not fit since the last clear().")
        .def_property_readonly("driver_version", &Timeline::driver_version)
        .def("__len__", &Timeline::size)
        .def("reserve", &Timeline::reserve, py::arg("n"), "Grow the capacity (and the CUDA event pool) to n.")
        .def("set_stream", &Timeline::set_stream, py::arg("handle"),
             "CUstream as an int (torch.cuda.current_stream().cuda_stream); 0 = legacy default stream.")
        .def("set_streams", &Timeline::set_streams, py::arg("handles"),
             "One CUstream per lane, in the lanes' order (set_stream() sets the first).")
        .def("mark", &Timeline::mark, py::arg("label"), py::arg("step"),
             "Host stamp (+ CUDA event on the current stream). Counts a drop when full.")
        .def("mark_host", &Timeline::mark_host, py::arg("label"), py::arg("step"), "Host stamp only.")
        .def("clear", &Timeline::clear,
             "Forget the marks, the drop count, the anchor and the request; keep capacity and calibration.")
        .def("anchor", &Timeline::anchor,
             "Record the request's anchor event on the current stream, no sync (no-op on the host backend).")
        .def("calibrate", &Timeline::calibrate, py::call_guard<py::gil_scoped_release>(),
             "Synchronize the stream, pin a reference event to the host clock (no-op on the host backend).")
        // the request being recorded
        .def("begin_request", &Timeline::begin_request, py::arg("max_steps"), py::arg("batch") = 0,
             "Clear, anchor and stamp REQUEST_START; room for max_steps steps of `batch` flags (0: any).")
        .def("reserve_steps", &Timeline::reserve_steps, py::arg("max_steps"), py::arg("batch") = 0,
             "More room for the open request's steps, before its first flags.")
        .def("end_request", &Timeline::end_request, "Stamp REQUEST_END; stop recording.")
        .def("arm", &Timeline::arm, py::arg("on"), "Let forward and token marks count (only in a request).")
        .def_property_readonly("open", &Timeline::open, "A request is being recorded.")
        .def_property_readonly("armed", &Timeline::armed, "Forward and token marks count.")
        .def_property_readonly("in_forward", &Timeline::in_forward, "A forward span is open.")
        .def_property_readonly("step", &Timeline::step, "Steps whose token was marked in the request.")
        .def("mark_token", [](Timeline& tl) { tl.token(1); },
             "Hot path: step k's token (k = step + 1) when armed, else nothing.")
        .def(
            "keep",
            [](Timeline& tl, py::handle flags) {
                if (!tl.armed()) return;
                const TensorView v = view(flags, tl);
                tl.keep(v.ptr, v.nbytes, v.on_device, v.device);
            },
            py::arg("flags"),
            "Hot path: the current step's per-sequence flags (a contiguous one-byte tensor), copied without a "
            "sync when armed.")
        .def("keep_ptr", &Timeline::keep, py::arg("ptr"), py::arg("nbytes"), py::arg("on_device"),
             py::arg("device") = -1,
             "keep() from a raw pointer: host memory, or device memory on the CUDA backend (on the lane of "
             "`device` when there are several).")
        .def("token", &checked_token, py::arg("finished") = py::none(), py::arg("tokens") = 1,
             "The public API's token(): checked for misuse (CaptureError), flags a tensor or a sequence.")
        .def("timed", &make_timed, py::arg("fn"), "fn marked as a forward span of the current step when armed.")
        .def(
            "span", [](Timeline& tl, bool prefill) { return Span(tl, prefill); }, py::arg("prefill") = false,
            py::keep_alive<0, 1>(), "A checked forward (or prefill) span for the public API.")
        .def_property_readonly(
            "step_tokens", [](const Timeline& tl) { return tl.step_tokens(); },
            "Tokens each marked step appended.")
        .def_property_readonly(
            "flags",
            [](const Timeline& tl) -> py::object {
                if (!tl.flag_rows()) return py::none();
                const std::size_t n = tl.flag_rows() * tl.flag_row_bytes();
                return py::bytes(reinterpret_cast<const char*>(tl.flags()), n);
            },
            "The kept flags as bytes (steps x batch, row-major), once resolve() has run; None if none.")
        .def_property_readonly(
            "flags_shape",
            [](const Timeline& tl) { return py::make_tuple(tl.flag_rows(), tl.flag_row_bytes()); },
            "(steps, batch) of the kept flags.")
        .def_property_readonly(
            "flags_error", [](const Timeline& tl) { return tl.flags_error(); },
            "Why the kept flags cannot be used ('' when they can).")
        .def(
            "resolve",
            [](Timeline& tl) {
                llmprof::Resolved r;
                {
                    py::gil_scoped_release nogil;
                    r = tl.resolve();
                }
                std::vector<std::int64_t> device(r.device_ns.size());
                py::array_t<bool> has_device(r.device_ns.size());
                auto flags = has_device.mutable_unchecked<1>();
                for (std::size_t i = 0; i < r.device_ns.size(); ++i) {
                    flags(i) = r.device_ns[i].has_value();
                    device[i] = r.device_ns[i].value_or(0);
                }
                py::dict out;
                out["label"] = to_array(std::move(r.label));
                out["step"] = to_array(std::move(r.step));
                out["host_ns"] = to_array(std::move(r.host_ns));
                out["device_ns"] = to_array(std::move(device));
                out["has_device"] = has_device;
                const std::size_t n_lanes = tl.lanes();
                out["lanes"] = to_array(std::move(r.lanes));
                if (n_lanes > 1) {
                    py::array_t<std::int64_t> lane_ns = to_array(std::move(r.lane_ns));
                    out["lane_ns"] = lane_ns.reshape({py::ssize_t(lane_ns.size() / n_lanes), py::ssize_t(n_lanes)});
                } else {
                    out["lane_ns"] = py::none();
                }
                out["sync_uncertainty_ns"] = r.sync_uncertainty_ns;
                out["backend"] = r.backend;
                out["dropped"] = r.dropped;
                return out;
            },
            "Wait for the events and map them to host ns through the last calibration (or the nearer anchor), "
            "corrected for the device clock's drift: int64 arrays per mark field, and has_device (False for "
            "host-only marks, whose device_ns is 0); lanes (per mark, the lanes its event went on) and, with "
            "several lanes, lane_ns (marks x lanes, each lane through its own calibration; device_ns is the latest).")
        .def("drift_ns", &Timeline::drift_ns,
             "Host minus device time elapsed between the last two calibrations (else None).");
}
