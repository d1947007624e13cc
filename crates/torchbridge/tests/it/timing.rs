//! Each bridge splits its calls into crossing in, the engine, and crossing out.

use std::sync::atomic::Ordering::Relaxed;

use torchbridge::{Model, ModelDir};

use crate::common::{model_dir, reference};

#[test]
fn every_bridge_reports_where_a_call_spent_its_time() {
    let dir = ModelDir::open(&model_dir("mlp"), None).unwrap();
    let compiled = torchbridge::compiled_bridges();
    for bridge in dir.available_bridges() {
        if !compiled.contains(&bridge) {
            continue;
        }
        let model = Model::load_with(model_dir("mlp"), bridge).unwrap();
        let (inputs, _) = reference(&model);
        model.infer(inputs).unwrap();
        let s = model.stats();
        assert_eq!(s.execution_count.load(Relaxed), 1, "{bridge}");
        for (stage, stat) in [
            ("input", &s.compute_input),
            ("infer", &s.compute_infer),
            ("output", &s.compute_output),
        ] {
            assert_eq!(stat.count(), 1, "{bridge} {stage}");
            assert!(
                stat.nanos() > 0,
                "{bridge}: no time recorded for compute_{stage}"
            );
        }
    }
}
