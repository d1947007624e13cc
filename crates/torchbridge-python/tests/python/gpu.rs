//! On a machine with CUDA, every form runs on `cuda:0` and gives the CPU's answer.
//! Elsewhere the test says so and passes.

use pyo3::types::PyAnyMethods;
use torchbridge_core::Device;

use crate::fixtures::{check_run, fixtures};

#[test]
fn every_form_runs_on_cuda_where_there_is_one() {
    torchbridge_python::torch_version().unwrap();
    let devices: usize = pyo3::Python::attach(|py| {
        let cuda = py.import("torch.cuda").unwrap();
        cuda.call_method0("device_count")
            .unwrap()
            .extract()
            .unwrap()
    });
    if devices == 0 {
        eprintln!("no CUDA device: the python bridge's GPU path is not exercised here");
        return;
    }
    for (case, run) in [
        ("handler_multi", "batch3"),
        ("torchscript", "batch3"),
        ("torchscript_dict", "batch2"),
        ("pickled_trusted", "batch3"),
        ("exported", "batch3"),
    ] {
        let mut ctx = fixtures().context(case);
        ctx.config.device = Device::Cuda(0);
        let mut model = torchbridge_python::load(&ctx).unwrap();
        check_run(model.as_mut(), case, run);
    }
}
