//! A hand-written scanner for numeric and `BOOL` `data`: one pass over the value's raw
//! JSON text (borrowed from the request body), writing each element straight into the
//! little-endian buffer.
//!
//! Going through serde's visitors cost a call chain per element and serde_json's float
//! parser; here each number is lexed by the JSON grammar and handed to [`Element`]. The
//! scanner checks the grammar itself (serde_json has already checked it while skipping
//! over the value, but the scanner does not rely on that), so garbage such as `NaN`,
//! `+1`, `01` or a trailing comma is refused with the byte it was found at.

use torchbridge_core::DataType;

use super::decode::{DataSeed, Decoded};
use super::element::{Element, Number, Refusal};

/// Decodes `text`, one input's `data` (a scalar, or arrays nested to any depth, flattened
/// in order), as elements of `E`, each `size` bytes.
pub(super) fn scan<E: Element>(
    text: &[u8],
    seed: DataSeed,
    size: usize,
) -> Result<Decoded, String> {
    let mut out = Vec::with_capacity(seed.capacity.saturating_mul(size));
    let mut count = 0usize;
    let mut depth = 0usize;
    let mut i = skip_whitespace(text, 0);
    'value: loop {
        // `i` is where a value must start.
        match text.get(i) {
            Some(b'[') => {
                depth += 1;
                i = skip_whitespace(text, i + 1);
                if text.get(i) != Some(&b']') {
                    continue 'value;
                }
                depth -= 1;
                i += 1;
            }
            Some(b'"' | b'N' | b'I' | b'-') if non_finite(&text[i..]).is_some() => {
                let (value, len) = non_finite(&text[i..]).expect("matched just now");
                E::non_finite(value, &mut out).map_err(|r| refused_bool(seed, r))?;
                count += 1;
                i += len;
            }
            Some(b'-' | b'0'..=b'9') => {
                let (number, end) =
                    lex_number(text, i).ok_or_else(|| malformed(seed, i, "a valid number"))?;
                E::number(&number, &mut out).map_err(|r| refused(seed, r, &number))?;
                count += 1;
                i = end;
            }
            Some(b't') if text[i..].starts_with(b"true") => {
                E::boolean(true, &mut out).map_err(|r| refused_bool(seed, r))?;
                count += 1;
                i += 4;
            }
            Some(b'f') if text[i..].starts_with(b"false") => {
                E::boolean(false, &mut out).map_err(|r| refused_bool(seed, r))?;
                count += 1;
                i += 5;
            }
            Some(b'n') if text[i..].starts_with(b"null") => return Err(invalid_type(seed, "null")),
            Some(b'{') => return Err(invalid_type(seed, "map")),
            Some(b'"') => return Err(wrong_type(seed, "a string")),
            _ => return Err(malformed(seed, i, "a number, `true`, `false` or `[`")),
        }
        // After a value: close arrays until the next value or the end.
        loop {
            i = skip_whitespace(text, i);
            if depth == 0 {
                if i != text.len() {
                    return Err(malformed(seed, i, "the end of `data`"));
                }
                return Ok(Decoded { bytes: out, count });
            }
            match text.get(i) {
                Some(b',') => {
                    i = skip_whitespace(text, i + 1);
                    continue 'value;
                }
                Some(b']') => {
                    depth -= 1;
                    i += 1;
                }
                _ => return Err(malformed(seed, i, "`,` or `]`")),
            }
        }
    }
}

/// `NaN`, `Infinity` or `-Infinity` at the start of `text`, bare (as Triton's clients
/// send them) or quoted (as [`super::quote_non_finite`] leaves them for serde_json): the
/// value and the length of its text.
#[inline]
fn non_finite(text: &[u8]) -> Option<(f64, usize)> {
    let (quote, rest) = match text.first() {
        Some(b'"') => (1, &text[1..]),
        _ => (0, text),
    };
    let (value, literal): (f64, &[u8]) = match rest.first()? {
        b'N' => (f64::NAN, b"NaN"),
        b'I' => (f64::INFINITY, b"Infinity"),
        b'-' => (f64::NEG_INFINITY, b"-Infinity"),
        _ => return None,
    };
    let closed = quote == 0 || rest.get(literal.len()) == Some(&b'"');
    (rest.starts_with(literal) && closed).then_some((value, literal.len() + 2 * quote))
}

#[inline]
fn skip_whitespace(text: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = text.get(i) {
        i += 1;
    }
    i
}

/// Lexes the JSON number at `start`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`,
/// gathering its significand and power of ten on the way. Returns it and where it ends;
/// what follows is the caller's to check. Inlined: returned through memory, the
/// number cost as much again as lexing it.
#[inline(always)]
fn lex_number(text: &[u8], start: usize) -> Option<(Number<'_>, usize)> {
    let mut i = start;
    let negative = text.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut significand = 0u64;
    let int_start = i;
    match text.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(text, i, &mut significand),
        _ => return None,
    }
    let (mut integral, mut exponent, mut count) = (true, 0i32, i - int_start);
    if text.get(i) == Some(&b'.') {
        let end = digits(text, i + 1, &mut significand);
        let fraction = end - i - 1;
        if fraction == 0 {
            return None;
        }
        exponent = -i32::try_from(fraction).unwrap_or(i32::MAX);
        (integral, count, i) = (false, count + fraction, end);
    }
    if let Some(b'e' | b'E') = text.get(i) {
        i += 1;
        let sign = match text.get(i) {
            Some(b'-') => -1,
            Some(b'+') => 1,
            _ => 0,
        };
        i += usize::from(sign != 0);
        let start = i;
        let mut power = 0i32;
        while let Some(&d @ b'0'..=b'9') = text.get(i) {
            power = (power * 10 + i32::from(d - b'0')).min(1 << 24);
            i += 1;
        }
        if i == start {
            return None;
        }
        exponent = exponent.saturating_add(if sign < 0 { -power } else { power });
        integral = false;
    }
    let text = &text[start..i];
    // Up to 19 digits cannot overflow; past that, count again with checks (rare).
    let significand = match count {
        ..=19 => Some(significand),
        _ => text
            .iter()
            .take_while(|b| !matches!(b, b'e' | b'E'))
            .filter(|b| b.is_ascii_digit())
            .try_fold(0u64, |m, &d| {
                m.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            }),
    };
    let number = Number {
        text,
        negative,
        integral,
        significand,
        exponent,
    };
    Some((number, i))
}

/// Reads the digits from `i` into `significand` (wrapping past `u64`: the caller counts
/// them), eight at a time while it can; returns where they end.
#[inline(always)]
fn digits(text: &[u8], mut i: usize, significand: &mut u64) -> usize {
    while let Some(eight) = text.get(i..i + 8).and_then(eight_digits) {
        *significand = significand.wrapping_mul(100_000_000).wrapping_add(eight);
        i += 8;
    }
    while let Some(&d @ b'0'..=b'9') = text.get(i) {
        *significand = significand
            .wrapping_mul(10)
            .wrapping_add(u64::from(d - b'0'));
        i += 1;
    }
    i
}

/// The value of eight ASCII digits read as one little-endian word (the first digit in
/// the low byte), or `None` if any byte is not a digit. Neighbouring lanes are merged
/// in three steps, each lane's value small enough never to carry into the next:
/// bytes become two-digit values, then four, then eight.
#[inline(always)]
fn eight_digits(bytes: &[u8]) -> Option<u64> {
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    let word = u64::from_le_bytes(bytes.try_into().ok()?);
    // Every byte is 0x30..=0x3F, and adding 6 keeps it below 0x40: 0x30..=0x39.
    let digits = word & HIGH_NIBBLES == ZEROS
        && word.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES == ZEROS;
    if !digits {
        return None;
    }
    let v = word - ZEROS;
    let v = (v * 10 + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v * 100 + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((v * 10_000 + (v >> 32)) & 0xFFFF_FFFF)
}

fn refused(seed: DataSeed, refusal: Refusal, number: &Number) -> String {
    let DataSeed { name, datatype, .. } = seed;
    let literal = || String::from_utf8_lossy(number.text).into_owned();
    match refusal {
        Refusal::WrongType(got) => wrong_type(seed, got),
        // The number as the client wrote it (1e39, not its 40 digits).
        Refusal::OutOfRange
            if !datatype.is_float()
                && number
                    .to_f64()
                    .is_ok_and(|v| v.is_finite() && v.fract() != 0.0) =>
        {
            format!(
                "input `{name}`: {} is not a whole number, which {datatype} needs",
                literal()
            )
        }
        Refusal::OutOfRange => {
            format!(
                "input `{name}`: {} is out of range for {datatype}",
                literal()
            )
        }
        Refusal::Unparsed => malformed_text(name, datatype, &literal()),
    }
}

/// A refused boolean, NaN or infinity (they have no literal text of their own to show).
fn refused_bool(seed: DataSeed, refusal: Refusal) -> String {
    match refusal {
        Refusal::WrongType(got) => wrong_type(seed, got),
        Refusal::OutOfRange | Refusal::Unparsed => wrong_type(seed, "a boolean"),
    }
}

fn wrong_type(seed: DataSeed, got: &str) -> String {
    let DataSeed { name, datatype, .. } = seed;
    format!("input `{name}`: {datatype} data cannot hold {got}")
}

/// serde's wording for a JSON type no element can be, as before the scanner.
fn invalid_type(seed: DataSeed, got: &str) -> String {
    let DataSeed { name, datatype, .. } = seed;
    format!(
        "invalid type: {got}, expected {datatype} data (a flat or nested array) for input `{name}`"
    )
}

fn malformed(seed: DataSeed, at: usize, expected: &str) -> String {
    let DataSeed { name, datatype, .. } = seed;
    format!("input `{name}`: malformed {datatype} `data` at byte {at}: expected {expected}")
}

fn malformed_text(name: &str, datatype: DataType, text: &str) -> String {
    format!("input `{name}`: malformed {datatype} `data`: cannot read the number `{text}`")
}
