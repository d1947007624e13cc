//! Every fixture model through every form it was written in gives Python's answer.

use torchbridge::Model;

use crate::common::{assert_matches, bridges_of, manifest, model_dir, reference, row};

#[test]
fn every_form_of_every_fixture_matches_the_python_reference() {
    let manifest = manifest();
    let models = manifest["models"].as_object().unwrap();
    assert!(
        models.len() >= 10,
        "the fixture script wrote only {} models",
        models.len()
    );
    let mut checked = 0;
    for (name, entry) in models {
        if name == "pickled" {
            continue; // refused by design: see errors::a_pickle_is_refused_unless_trusted
        }
        for form in entry["forms"].as_array().unwrap() {
            let form = form.as_str().unwrap();
            for bridge in bridges_of(name, form) {
                let context = format!("{name} ({form}) through {bridge}");
                let model = Model::load_with(model_dir(name), bridge)
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
                let (inputs, expected) = reference(&model);
                let actual = model
                    .infer(inputs.clone())
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
                assert_matches(&context, &actual, &expected);
                if model.metadata().max_batch_size > 0 {
                    let one: Vec<_> = inputs.iter().map(|t| row(t, 1)).collect();
                    let actual = model
                        .infer(one)
                        .unwrap_or_else(|e| panic!("{context}, batch 1: {e}"));
                    let expected: Vec<_> = expected.iter().map(|t| row(t, 1)).collect();
                    assert_matches(&format!("{context}, batch 1"), &actual, &expected);
                }
                checked += 1;
            }
        }
    }
    let least = if torchbridge::compiled_bridges().len() >= 3 {
        35
    } else {
        1
    };
    assert!(checked >= least, "only {checked} model forms checked");
}
