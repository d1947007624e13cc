//! `NaN`, `Infinity` and `-Infinity` in a request. Triton reads and writes them and its
//! Python client sends them (rapidjson writes them for NaN and the infinities); JSON has
//! no such literals and serde_json refuses them. So a request that holds one has each
//! quoted first, outside strings, and the scanner takes the quoted forms as the values.

use memchr::memmem;

/// `json` with every `NaN`, `Infinity` and `-Infinity` outside a string quoted; `None` when
/// it holds none (two SIMD searches, so requests without them pay next to nothing).
pub fn quote_non_finite(json: &[u8]) -> Option<Vec<u8>> {
    if memmem::find(json, b"NaN").is_none() && memmem::find(json, b"Infinity").is_none() {
        return None;
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut in_string = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            out.push(b);
            match b {
                // The escaped byte is copied as it is, whatever it is.
                b'\\' if i + 1 < json.len() => {
                    out.push(json[i + 1]);
                    i += 1;
                }
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let literal = [&b"NaN"[..], b"Infinity", b"-Infinity"]
            .into_iter()
            .find(|l| json[i..].starts_with(l));
        match (b, literal) {
            (_, Some(l)) => {
                out.push(b'"');
                out.extend_from_slice(l);
                out.push(b'"');
                i += l.len();
                continue;
            }
            (b'"', None) => in_string = true,
            _ => {}
        }
        out.push(b);
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(json: &str) -> Option<String> {
        quote_non_finite(json.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn literals_outside_strings_are_quoted_and_strings_left_alone() {
        assert_eq!(quoted(r#"{"data": [1.5, -2]}"#), None);
        assert_eq!(
            quoted(r#"{"name": "NaN \"Infinity\"", "data": [NaN,Infinity, -Infinity,1]}"#).unwrap(),
            r#"{"name": "NaN \"Infinity\"", "data": ["NaN","Infinity", "-Infinity",1]}"#
        );
        // A backslash before the closing quote does not end the string early.
        assert_eq!(quoted(r#"["a\\", NaN]"#).unwrap(), r#"["a\\", "NaN"]"#);
    }
}
