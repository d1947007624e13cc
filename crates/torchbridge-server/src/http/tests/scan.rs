//! The numeric `data` scanner on raw JSON text: every datatype, nesting, whitespace,
//! number forms, and each refusal's message.

use half::{bf16, f16};
use torchbridge_core::DataType;

use crate::http::tensor_json::DataSeed;

pub(super) fn scan(datatype: DataType, text: &str) -> Result<(Vec<u8>, usize), String> {
    let seed = DataSeed {
        name: "x",
        datatype,
        capacity: 4,
    };
    seed.decode_text(text).map(|d| (d.bytes, d.count))
}

pub(super) fn values<T: Copy, const N: usize>(
    datatype: DataType,
    text: &str,
    from: fn([u8; N]) -> T,
) -> Vec<T> {
    let (bytes, count) = scan(datatype, text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(bytes.len(), count * N, "{text}");
    bytes
        .chunks_exact(N)
        .map(|c| from(c.try_into().unwrap()))
        .collect()
}

fn refusal(datatype: DataType, text: &str) -> String {
    scan(datatype, text).expect_err(text)
}

#[test]
fn every_numeric_datatype_scans() {
    use DataType::*;
    assert_eq!(
        values(Bool, "[true,false,1,0]", u8::from_le_bytes),
        [1, 0, 1, 0]
    );
    assert_eq!(values(Uint8, "[0,255,2.0]", u8::from_le_bytes), [0, 255, 2]);
    assert_eq!(
        values(Uint16, "[65535, 1e2]", u16::from_le_bytes),
        [65535, 100]
    );
    assert_eq!(
        values(Uint32, "[4294967295]", u32::from_le_bytes),
        [u32::MAX]
    );
    assert_eq!(
        values(Uint64, "[18446744073709551615, 0]", u64::from_le_bytes),
        [u64::MAX, 0]
    );
    assert_eq!(
        values(Int8, "[-128,127,-0,-0.0]", i8::from_le_bytes),
        [-128, 127, 0, 0]
    );
    assert_eq!(
        values(Int16, "[-32768,32767]", i16::from_le_bytes),
        [i16::MIN, i16::MAX]
    );
    assert_eq!(
        values(Int32, "[-2147483648,3.0,-4e0]", i32::from_le_bytes),
        [i32::MIN, 3, -4]
    );
    assert_eq!(
        values(
            Int64,
            "[-9223372036854775808,9223372036854775807,9007199254740992.0]",
            i64::from_le_bytes
        ),
        [i64::MIN, i64::MAX, 1 << 53]
    );
    assert_eq!(
        values(Fp16, "[0.5,-1,65504,1e-8]", f16::from_le_bytes),
        [
            f16::from_f32(0.5),
            f16::from_f32(-1.0),
            f16::MAX,
            f16::from_f64(1e-8)
        ]
    );
    assert_eq!(
        values(Bf16, "[0.5,-1,1e30]", bf16::from_le_bytes),
        [
            bf16::from_f32(0.5),
            bf16::from_f32(-1.0),
            bf16::from_f64(1e30)
        ]
    );
    assert_eq!(
        values(Fp32, "[0.1,-1,2,3.4e38,16777217]", f32::from_le_bytes),
        [0.1, -1.0, 2.0, 3.4e38, 16777216.0]
    );
    assert_eq!(
        values(
            Fp64,
            "[0.1,-1,2,1e300,9007199254740993]",
            f64::from_le_bytes
        ),
        [0.1, -1.0, 2.0, 1e300, 9007199254740992.0]
    );
}

#[test]
fn nesting_whitespace_and_scalars() {
    let flat = |text| values(DataType::Int32, text, i32::from_le_bytes);
    assert_eq!(flat("[[1,2],[3,4]]"), [1, 2, 3, 4]);
    assert_eq!(
        flat(" \n[ [ [1] , [ ] , 2 ] ,\t[ 3 ]\r, [[[]]], 4 ] \n"),
        [1, 2, 3, 4]
    );
    assert_eq!(flat("[[1],2,[[3,[4]]]]"), [1, 2, 3, 4]);
    assert_eq!(flat("7"), [7]);
    assert_eq!(flat("[]"), Vec::<i32>::new());
    assert_eq!(flat("[[],[]]"), Vec::<i32>::new());
    assert_eq!(values(DataType::Bool, " true ", u8::from_le_bytes), [1]);
}

#[test]
fn nan_and_the_infinities_are_read_bare_or_quoted_by_float_datatypes() {
    use DataType::*;
    let text = r#"[NaN, Infinity, -Infinity, "NaN", "Infinity", "-Infinity", 2]"#;
    let f32s = values(Fp32, text, f32::from_le_bytes);
    let f64s = values(Fp64, text, f64::from_le_bytes);
    let f16s = values(Fp16, text, |b| f16::from_le_bytes(b).to_f64());
    let bf16s = values(Bf16, text, |b| bf16::from_le_bytes(b).to_f64());
    for got in [
        f32s.iter().map(|&v| f64::from(v)).collect(),
        f64s,
        f16s,
        bf16s,
    ] {
        assert!(got[0].is_nan() && got[3].is_nan(), "{got:?}");
        assert_eq!(got[1..3], [f64::INFINITY, f64::NEG_INFINITY]);
        assert_eq!(got[4..], [f64::INFINITY, f64::NEG_INFINITY, 2.0]);
    }
    let err = refusal(Int32, "[1, NaN]");
    assert_eq!(err, "input `x`: INT32 data cannot hold NaN or an infinity");
    let err = refusal(Fp32, r#"["nan"]"#);
    assert_eq!(err, "input `x`: FP32 data cannot hold a string");
}

#[test]
fn malformed_text_is_refused_where_it_breaks() {
    let cases = [
        ("[1,]", 3),
        ("[,1]", 1),
        ("[1 2]", 3),
        ("[1,,2]", 3),
        ("[1", 2),
        ("[1]]", 3),
        ("[1],", 3),
        ("", 0),
        ("[NAN]", 1),
        ("[nan]", 1),
        ("[Inf]", 1),
        ("[-Infinit]", 1),
        ("[+1]", 1),
        ("[01]", 2),
        ("[-]", 1),
        ("[.5]", 1),
        ("[1.]", 1),
        ("[1.e3]", 1),
        ("[1e]", 1),
        ("[1e+]", 1),
        ("[0x10]", 2),
        ("[1.5.2]", 4),
        ("[tru]", 1),
        ("[1e5e]", 4),
        ("[nul]", 1),
        ("[1;2]", 2),
    ];
    for (text, at) in cases {
        let err = refusal(DataType::Fp32, text);
        assert!(
            err.starts_with("input `x`: malformed FP32 `data` at byte "),
            "{text}: {err}"
        );
        assert!(
            err.contains(&format!("at byte {at}: expected")),
            "{text}: {err}"
        );
    }
    let err = refusal(DataType::Bool, "[true, truee]");
    assert!(
        err.contains("malformed BOOL `data` at byte 11: expected `,` or `]`"),
        "{err}"
    );
}

#[test]
fn each_refusal_names_the_input_and_the_value() {
    use DataType::*;
    let cases = [
        (
            Fp32,
            r#"[1, "1.0"]"#,
            "input `x`: FP32 data cannot hold a string",
        ),
        (
            Int64,
            "[true]",
            "input `x`: INT64 data cannot hold a boolean",
        ),
        (
            Fp16,
            "[false]",
            "input `x`: FP16 data cannot hold a boolean",
        ),
        (Bool, "[-1]", "input `x`: BOOL data cannot hold a number"),
        (Bool, "[1.0]", "input `x`: BOOL data cannot hold a number"),
        (Bool, "[-0]", "input `x`: BOOL data cannot hold a number"),
        (
            Bool,
            "[18446744073709551616]",
            "input `x`: BOOL data cannot hold a number",
        ),
        (Bool, "[2]", "input `x`: 2 is out of range for BOOL"),
        (
            Uint8,
            "[1, 300]",
            "input `x`: 300 is out of range for UINT8",
        ),
        (Uint8, "[-1]", "input `x`: -1 is out of range for UINT8"),
        (Int8, "[-129]", "input `x`: -129 is out of range for INT8"),
        (Int8, "[3e2]", "input `x`: 3e2 is out of range for INT8"),
        (
            Int32,
            "[1.5]",
            "input `x`: 1.5 is not a whole number, which INT32 needs",
        ),
        (Uint64, "[-5]", "input `x`: -5 is out of range for UINT64"),
        (
            Uint64,
            "[18446744073709551616]",
            "input `x`: 18446744073709551616 is out of range for UINT64",
        ),
        (
            Int64,
            "[9223372036854775808]",
            "input `x`: 9223372036854775808 is out of range for INT64",
        ),
        (
            Int64,
            "[-9223372036854775809]",
            "input `x`: -9223372036854775809 is out of range for INT64",
        ),
        (Int64, "[1e16]", "input `x`: 1e16 is out of range for INT64"),
        (
            Int32,
            "[1e400]",
            "input `x`: 1e400 is out of range for INT32",
        ),
        (Fp16, "[70000]", "input `x`: 70000 is out of range for FP16"),
        (Bf16, "[-1e39]", "input `x`: -1e39 is out of range for BF16"),
        (Fp32, "[1e39]", "input `x`: 1e39 is out of range for FP32"),
        (Fp32, "[3.5e38]", "is out of range for FP32"),
        (Fp64, "[1e309]", "input `x`: 1e309 is out of range for FP64"),
        (
            Fp64,
            "[-2e308]",
            "input `x`: -2e308 is out of range for FP64",
        ),
        (
            Fp32,
            "[1, null]",
            "invalid type: null, expected FP32 data (a flat or nested array) for input `x`",
        ),
        (
            Int8,
            r#"{"a": 1}"#,
            "invalid type: map, expected INT8 data (a flat or nested array) for input `x`",
        ),
    ];
    for (datatype, text, message) in cases {
        let err = refusal(datatype, text);
        assert!(err.contains(message), "{datatype} {text}: {err}");
    }
}

#[test]
fn bytes_keep_the_serde_path() {
    let (bytes, count) = scan(DataType::Bytes, r#"[["a"], ["", "é"]]"#).unwrap();
    assert_eq!(count, 3);
    assert_eq!(bytes, b"\x01\0\0\0a\0\0\0\0\x02\0\0\0\xc3\xa9");
    let err = refusal(DataType::Bytes, "[1]");
    assert!(
        err.contains("input `x`: BYTES data cannot hold a number"),
        "{err}"
    );
    let err = refusal(DataType::Bytes, r#"["a"] x"#);
    assert!(err.contains("trailing characters"), "{err}");
}

#[test]
fn long_digit_runs_and_their_ends() {
    let ints = |text| values(DataType::Uint64, text, u64::from_le_bytes);
    assert_eq!(ints("[12345678]"), [12_345_678]);
    assert_eq!(ints("[1234567890123456789]"), [1_234_567_890_123_456_789]);
    assert_eq!(
        ints("[99999999,10000000,90000009]"),
        [99_999_999, 10_000_000, 90_000_009]
    );
    let floats = |text| values(DataType::Fp64, text, f64::from_le_bytes);
    assert_eq!(floats("[0.12345678]"), [0.12345678]);
    assert_eq!(floats("[0.1234567890123456]"), [0.1234567890123456]);
    assert_eq!(floats("[12345678.12345678e-8]"), [0.1234567812345678]);
    let err = refusal(DataType::Fp64, "[1234567:]");
    assert!(err.contains("at byte 8: expected `,` or `]`"), "{err}");
    let err = refusal(DataType::Fp64, "[12345678a]");
    assert!(err.contains("at byte 9: expected `,` or `]`"), "{err}");
}
