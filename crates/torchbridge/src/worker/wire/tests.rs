use super::*;

fn round_trip(reply: &Reply) -> Reply {
    let mut stream = Vec::new();
    write_frame(&mut stream, &Encoder::reply(reply)).unwrap();
    let body = read_frame(&mut stream.as_slice()).unwrap().unwrap();
    Decoder::new(&body).reply("m", "python").unwrap()
}

#[test]
fn batches_and_outputs_cross_unchanged() {
    let x = Tensor::from_slice("X", vec![2, 3], &[1.5f32, -2.0, 0.0, 4.0, 5.5, 6.0]).unwrap();
    let ids = Tensor::from_strings("S", vec![2], &["a", "bcd"]).unwrap();
    let batch = Batch {
        inputs: vec![x.clone(), ids.clone()],
        rows: 2,
    };
    let mut stream = Vec::new();
    write_frame(&mut stream, &Encoder::batch(&batch)).unwrap();
    write_frame(&mut stream, &Encoder::batch(&batch)).unwrap();
    let mut input = stream.as_slice();
    for _ in 0..2 {
        let body = read_frame(&mut input).unwrap().unwrap();
        let got = Decoder::new(&body).batch().unwrap();
        // The tensors' data is the frame's buffer, not a copy of it.
        let frame = body.as_ptr_range();
        assert!(got.inputs.iter().all(|t| frame.contains(&t.data.as_ptr())));
        assert_eq!((got.inputs, got.rows), (vec![x.clone(), ids.clone()], 2));
    }
    assert!(read_frame(&mut input).unwrap().is_none(), "a clean end");

    let timing = CallTiming {
        input: Duration::from_micros(3),
        compute: Duration::from_micros(40),
        output: Duration::from_nanos(7),
    };
    let outputs = Reply::Outputs {
        tensors: vec![x.clone()],
        timing: Some(timing),
    };
    match round_trip(&outputs) {
        Reply::Outputs { tensors, timing: t } => assert_eq!((tensors, t), (vec![x], Some(timing))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn metadata_and_errors_keep_their_kinds() {
    let metadata = ModelMetadata {
        name: "m".into(),
        version: 3,
        platform: "python".into(),
        max_batch_size: 8,
        inputs: vec![TensorSpec {
            name: "X".into(),
            datatype: DataType::Fp32,
            dims: vec![-1, 4],
        }],
        outputs: vec![],
    };
    match round_trip(&Reply::Ready(metadata.clone())) {
        Reply::Ready(got) => assert_eq!(got, metadata),
        other => panic!("{other:?}"),
    }
    let python = Error::Python {
        model: "m".into(),
        error: PythonError {
            kind: "ValueError".into(),
            message: "bad".into(),
            traceback: "Traceback …".into(),
        },
    };
    let cases = [
        (python, "model `m` raised ValueError: bad\nTraceback …"),
        (Error::InvalidInput("input `X`: no".into()), "input `X`: no"),
        (
            Error::Timeout {
                model: "m".into(),
                waited_ms: 5,
            },
            "model `m` failed: model `m` did not start the request before its deadline (queued 5 ms)",
        ),
    ];
    for (error, shown) in cases {
        match round_trip(&Reply::Failed(error)) {
            Reply::Failed(got) => assert_eq!(got.to_string(), shown),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn corrupt_frames_are_errors() {
    let mut stream = Vec::new();
    write_frame(&mut stream, &[1, 0, 0]).unwrap();
    let body = read_frame(&mut stream.as_slice()).unwrap().unwrap();
    assert!(Decoder::new(&body).reply("m", "python").is_err());
    assert!(
        Decoder::new(&Bytes::from_static(&[9]))
            .reply("m", "python")
            .is_err()
    );
    let truncated = &stream[..stream.len() - 1];
    assert!(read_frame(&mut &truncated[..]).is_err());
}
