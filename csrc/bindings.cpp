// The Python module llmprof._core: the only file of csrc/ that sees Python.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "clock.hpp"
#include "cuda_driver.hpp"
#include "timeline.hpp"

namespace py = pybind11;
using llmprof::Timeline;

PYBIND11_MODULE(_core, m) {
    m.doc() = "llmprof's recorder: host clock, preallocated timeline, CUDA events through the driver API.";
    py::register_exception<llmprof::cuda::CudaError>(m, "CudaError", PyExc_RuntimeError);
    m.attr("DRIVER_ENV") = llmprof::cuda::kDriverEnv;
    m.def("host_now_ns", &llmprof::host_now_ns, "CLOCK_MONOTONIC in ns (the clock of time.monotonic_ns()).");
    m.def("cuda_driver_status", &llmprof::cuda::driver_status,
          "(ok, message): can the CUDA driver be loaded and cuInit(0) succeed? Never raises.");

    py::class_<Timeline>(m, "Timeline",
                         "Preallocated timeline of (label, step) marks; CUDA backend when device >= 0.")
        .def(py::init<std::int64_t, int>(), py::arg("capacity") = 65536, py::arg("device") = -1)
        .def_property_readonly("backend", &Timeline::backend)
        .def_property_readonly("capacity", &Timeline::capacity)
        .def_property_readonly("size", &Timeline::size)
        .def_property_readonly("dropped", &Timeline::dropped,
                               "Marks that did not fit since the last clear().")
        .def_property_readonly("driver_version", &Timeline::driver_version)
        .def("__len__", &Timeline::size)
        .def("reserve", &Timeline::reserve, py::arg("n"), "Grow the capacity (and the CUDA event pool) to n.")
        .def("set_stream", &Timeline::set_stream, py::arg("handle"),
             "CUstream as an int (torch.cuda.current_stream().cuda_stream); 0 = legacy default stream.")
        .def("mark", &Timeline::mark, py::arg("label"), py::arg("step"),
             "Host stamp (+ CUDA event on the current stream). Counts a drop when full.")
        .def("mark_host", &Timeline::mark_host, py::arg("label"), py::arg("step"), "Host stamp only.")
        .def("clear", &Timeline::clear,
             "Forget the marks, the drop count and the anchor; keep capacity and calibration.")
        .def("anchor", &Timeline::anchor,
             "Record the request's anchor event on the current stream, no sync (no-op on the host backend).")
        .def("calibrate", &Timeline::calibrate, py::call_guard<py::gil_scoped_release>(),
             "Synchronize the stream, pin a reference event to the host clock (no-op on the host backend).")
        .def(
            "resolve",
            [](Timeline& tl) {
                llmprof::Resolved r;
                {
                    py::gil_scoped_release nogil;
                    r = tl.resolve();
                }
                py::dict out;
                out["label"] = std::move(r.label);
                out["step"] = std::move(r.step);
                out["host_ns"] = std::move(r.host_ns);
                out["device_ns"] = std::move(r.device_ns);
                out["sync_uncertainty_ns"] = r.sync_uncertainty_ns;
                out["backend"] = r.backend;
                out["dropped"] = r.dropped;
                return out;
            },
            "Wait for the events and map them to host ns through the last calibration (or the nearer anchor), "
            "corrected for the device clock's drift: a dict of lists (device_ns None if host-only).")
        .def("drift_ns", &Timeline::drift_ns,
             "Host minus device time elapsed between the last two calibrations (else None).");
}
