use torchbridge_core::TensorSpec;

use super::*;

fn strings(t: &Tensor) -> Vec<String> {
    t.strings()
        .unwrap()
        .into_iter()
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

#[test]
fn each_row_gives_its_highest_values_with_their_indices() {
    let t = Tensor::from_slice(
        "probs",
        vec![2, 4],
        &[1.1f32, 3.3, 0.5, 2.4, 9.0, -1.0, 7.5, 8.0],
    )
    .unwrap();
    let c = classify(&t, 2, true, None).unwrap();
    assert_eq!(c.name, "probs");
    assert_eq!(c.datatype, DataType::Bytes);
    assert_eq!(c.shape, [2, 2]);
    assert_eq!(
        strings(&c),
        ["3.300000:1", "2.400000:3", "9.000000:0", "8.000000:3"]
    );
}

#[test]
fn without_a_batch_dimension_the_whole_tensor_is_one_row() {
    let t = Tensor::from_slice("scores", vec![2, 2], &[1i64, 5, 10, 4]).unwrap();
    let c = classify(&t, 3, false, None).unwrap();
    assert_eq!(c.shape, [3]);
    assert_eq!(strings(&c), ["10:2", "5:1", "4:3"]);
}

#[test]
fn asking_for_more_classes_than_there_are_gives_them_all() {
    let t = Tensor::from_slice("probs", vec![1, 3], &[0.25f64, 0.5, 0.25]).unwrap();
    let c = classify(&t, 10, true, None).unwrap();
    assert_eq!(c.shape, [1, 3]);
    // Ties keep index order.
    assert_eq!(strings(&c), ["0.500000:1", "0.250000:0", "0.250000:2"]);
}

#[test]
fn labels_name_the_classes_they_have() {
    let labels: Vec<String> = ["zero", "", "two"].map(String::from).to_vec();
    let t = Tensor::from_slice("digit", vec![1, 4], &[0.1f32, 0.9, 0.5, 0.7]).unwrap();
    let c = classify(&t, 4, true, Some(&labels)).unwrap();
    // Index 1 has an empty label and index 3 none at all: both go unnamed.
    assert_eq!(
        strings(&c),
        [
            "0.900000:1",
            "0.700000:3",
            "0.500000:2:two",
            "0.100000:0:zero"
        ]
    );
}

#[test]
fn nan_ranks_below_every_number() {
    let t = Tensor::from_slice("x", vec![1, 3], &[f32::NAN, -5.0, 2.0]).unwrap();
    let c = classify(&t, 3, true, None).unwrap();
    assert_eq!(strings(&c)[..2], ["2.000000:2", "-5.000000:1"]);
    assert!(strings(&c)[2].ends_with(":0"), "{:?}", strings(&c));
}

#[test]
fn half_precision_and_unsigned_values_rank_as_numbers() {
    let halves = [0.5f32, 2.0, 1.0].map(half::f16::from_f32);
    let t = Tensor::from_slice("h", vec![1, 3], &halves).unwrap();
    assert_eq!(
        strings(&classify(&t, 1, true, None).unwrap()),
        ["2.000000:1"]
    );
    let t = Tensor::from_slice("u", vec![3], &[200u8, 255, 3]).unwrap();
    assert_eq!(
        strings(&classify(&t, 2, false, None).unwrap()),
        ["255:1", "200:0"]
    );
}

#[test]
fn an_empty_batch_gives_an_empty_answer() {
    let t = Tensor::from_slice::<f32>("probs", vec![0, 4], &[]).unwrap();
    let c = classify(&t, 2, true, None).unwrap();
    assert_eq!(c.shape, [0, 0]);
    assert!(strings(&c).is_empty());
}

#[test]
fn strings_and_booleans_cannot_be_ranked() {
    let t = Tensor::from_strings("text", vec![1, 1], &["a"]).unwrap();
    let e = classify(&t, 1, true, None).unwrap_err().to_string();
    assert!(e.contains("`text`") && e.contains("BYTES"), "{e}");
}

#[test]
fn the_check_names_the_output_and_what_is_wrong() {
    let model = ModelMetadata {
        name: "m".into(),
        version: 1,
        platform: "onnx".into(),
        max_batch_size: 8,
        inputs: vec![],
        outputs: vec![
            TensorSpec {
                name: "probs".into(),
                datatype: DataType::Fp32,
                dims: vec![10],
            },
            TensorSpec {
                name: "mask".into(),
                datatype: DataType::Bool,
                dims: vec![10],
            },
        ],
    };
    assert_eq!(check(&model, "probs", 3).unwrap(), 3);
    let e = check(&model, "probs", 0).unwrap_err().to_string();
    assert!(e.contains("`probs`") && e.contains("at least 1"), "{e}");
    let e = check(&model, "mask", 2).unwrap_err().to_string();
    assert!(e.contains("`mask`") && e.contains("BOOL"), "{e}");
}
