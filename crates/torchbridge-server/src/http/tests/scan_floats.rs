//! Float text to FP32/FP64 through the scanner: rounded once, correctly, on the fast
//! path and off it (checked against the standard library's parser).

use torchbridge_core::DataType;

use super::scan::values;

#[test]
fn floats_are_rounded_once_and_exactly() {
    // Halfway between two f32s in decimal, a hair above: f64 first would round down to
    // the halfway point, then to even; parsed straight to f32 it rounds up.
    let above_half = "1.00000005960464477539062500000000001";
    let got = values(DataType::Fp32, above_half, f32::from_le_bytes);
    assert_eq!(got, [1.0000001f32]);
    for v in [
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        -f64::MAX,
        0.1 + 0.2,
        std::f64::consts::PI,
        1.7976931348623157e308,
        f64::from_bits(0x000F_FFFF_FFFF_FFFF),
    ] {
        let text = format!("[{v:?}, {v:e}, {v}]");
        assert_eq!(
            values(DataType::Fp64, &text, f64::from_le_bytes),
            [v, v, v],
            "{text}"
        );
    }
    for v in [
        f32::MIN_POSITIVE,
        1e-45,
        f32::MAX,
        0.1,
        16777215.0,
        -3.0e-38,
    ] {
        let text = format!("[{v:?}, {v:e}]");
        assert_eq!(
            values(DataType::Fp32, &text, f32::from_le_bytes),
            [v, v],
            "{text}"
        );
    }
    // Rounded once to f64 these land exactly halfway between two f32s, the first from
    // above: `f64 as f32` would round it down to even; parsed right it rounds up.
    for text in [
        "8507059680083702e22",
        "8507059680083701e22",
        "-8507059680083702e22",
    ] {
        let want: f32 = text.parse().unwrap();
        let got = values(DataType::Fp32, text, f32::from_le_bytes);
        assert_eq!(got[0].to_bits(), want.to_bits(), "{text}");
    }
    let naive = 8507059680083702e22f64 as f32;
    assert_ne!(naive, "8507059680083702e22".parse::<f32>().unwrap());
    let zeros = values(
        DataType::Fp64,
        "[-0, -0.0, 0, 0e5, -0E-5, 1e-400, -1e-400]",
        f64::from_le_bytes,
    );
    let signs: Vec<bool> = zeros.iter().map(|z| z.is_sign_negative()).collect();
    assert!(zeros.iter().all(|z| *z == 0.0));
    assert_eq!(signs, [true, true, false, false, true, false, true]);
    let zeros = values(DataType::Fp32, "[-0, -0.0]", f32::from_le_bytes);
    assert!(zeros.iter().all(|z| *z == 0.0 && z.is_sign_negative()));
    assert_eq!(
        values(
            DataType::Fp64,
            "[1E+2, 1e-2, 2.5E-3, 123456789012345678901234567890]",
            f64::from_le_bytes
        ),
        [100.0, 0.01, 0.0025, 1.2345678901234568e29]
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

    /// Decimal text of every shape (long significands, exponents past either fast path,
    /// f32 halfway cases among them) scans to what the standard library's correctly
    /// rounded parser gives.
    #[test]
    fn floats_match_the_correctly_rounded_parse(
        negative: bool,
        int in "0|[1-9][0-9]{0,24}",
        frac in proptest::option::of("[0-9]{1,30}"),
        exp in proptest::option::of(-330i32..330),
    ) {
        let mut text = format!("{}{int}", if negative { "-" } else { "" });
        if let Some(frac) = frac {
            text += &format!(".{frac}");
        }
        if let Some(exp) = exp {
            text += &format!("e{exp}");
        }
        let want64: f64 = text.parse().unwrap();
        let want32: f32 = text.parse().unwrap();
        if want64.is_finite() {
            let got = values(DataType::Fp64, &text, f64::from_le_bytes);
            proptest::prop_assert_eq!(got[0].to_bits(), want64.to_bits(), "{}", text);
        }
        if want32.is_finite() {
            let got = values(DataType::Fp32, &text, f32::from_le_bytes);
            proptest::prop_assert_eq!(got[0].to_bits(), want32.to_bits(), "{}", text);
        }
    }
}
