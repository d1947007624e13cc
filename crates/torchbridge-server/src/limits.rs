//! Input limits: how much one request may ask of the server before any model sees it.
//!
//! The body-size limits bound memory; the others bound the work a small body can cause
//! (a shape of a billion zero-length strings, thousands of inputs compared pairwise,
//! JSON nested thousands deep). HTTP and gRPC read the same [`Limits`]; every refusal
//! names the limit and the `torchbridge serve` flag that raises it, so an operator who
//! hits one in good faith knows what to change.

use torchbridge_core::{DataType, Error, Result};

/// What one request may hold. Each field is a `torchbridge serve` flag of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body as sent, in bytes (`--max-body-bytes`); for gRPC, the
    /// largest message, compressed or inflated.
    pub max_body_bytes: usize,
    /// Largest HTTP request body once inflated from gzip or deflate
    /// (`--max-inflated-bytes`); inflating stops as soon as it is passed.
    pub max_inflated_bytes: usize,
    /// Most inputs, and most requested outputs, in one request (`--max-tensors`).
    pub max_tensors: usize,
    /// Most dimensions in one tensor's shape (`--max-tensor-dims`).
    pub max_dims: usize,
    /// Most elements in one tensor (`--max-tensor-elements`).
    pub max_elements: usize,
    /// Longest single `BYTES` element, in bytes (`--max-bytes-element`).
    pub max_bytes_element: usize,
    /// Deepest nesting of arrays and objects in a JSON request (`--max-json-depth`).
    pub max_json_depth: usize,
}

/// serde_json refuses nesting past 128 by itself; our limit must sit below it to be
/// the one that answers.
pub const JSON_DEPTH_CEILING: usize = 120;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 << 20,
            max_inflated_bytes: 64 << 20,
            max_tensors: 128,
            max_dims: 16,
            max_elements: 1 << 26,
            max_bytes_element: 16 << 20,
            max_json_depth: 32,
        }
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidInput(message)
}

impl Limits {
    /// Fails on a setting that cannot work, naming its flag.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-inflated-bytes", self.max_inflated_bytes),
            ("--max-tensors", self.max_tensors),
            ("--max-tensor-dims", self.max_dims),
            ("--max-tensor-elements", self.max_elements),
            ("--max-json-depth", self.max_json_depth),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{flag} must be at least 1"));
        }
        if self.max_json_depth > JSON_DEPTH_CEILING {
            return Err(format!(
                "--max-json-depth must be at most {JSON_DEPTH_CEILING}, got {}",
                self.max_json_depth
            ));
        }
        if u32::try_from(self.max_body_bytes).is_err() {
            return Err(format!(
                "--max-body-bytes must be below 4 GiB (a gRPC message's length is 32 bits), got {}",
                self.max_body_bytes
            ));
        }
        Ok(())
    }

    /// Fails when a request names more than `max_tensors` `what` ("inputs", "outputs").
    pub fn check_count(&self, what: &str, count: usize) -> Result<()> {
        if count > self.max_tensors {
            return Err(invalid(format!(
                "the request has {count} {what}; the limit is {} (--max-tensors)",
                self.max_tensors
            )));
        }
        Ok(())
    }

    /// Checks a shape's rank and element count. Negative dimensions are left to the
    /// tensor's own check, which names them.
    pub fn check_shape(&self, name: &str, shape: &[i64]) -> Result<()> {
        if shape.len() > self.max_dims {
            return Err(invalid(format!(
                "input `{name}`: shape has {} dimensions; the limit is {} (--max-tensor-dims)",
                shape.len(),
                self.max_dims
            )));
        }
        if shape.iter().any(|&d| d < 0) {
            return Ok(());
        }
        let count = shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d.unsigned_abs()));
        match count {
            Some(n) if n <= self.max_elements as u64 => Ok(()),
            _ => Err(invalid(format!(
                "input `{name}`: shape {shape:?} has {} elements; the limit is {} \
                 (--max-tensor-elements)",
                count.map_or("more than 2^64".to_string(), |n| n.to_string()),
                self.max_elements
            ))),
        }
    }

    /// Checks one tensor's shape and, for `BYTES`, its elements' lengths, before the
    /// tensor is built; `data` is its raw little-endian buffer.
    pub fn check_tensor(
        &self,
        name: &str,
        datatype: DataType,
        shape: &[i64],
        data: &[u8],
    ) -> Result<()> {
        self.check_shape(name, shape)?;
        if datatype == DataType::Bytes {
            self.check_strings(name, shape, data)?;
        }
        Ok(())
    }

    /// Walks length-prefixed `BYTES` data without collecting it: refuses an element over
    /// `max_bytes_element`, and stops as soon as the data holds more elements than the
    /// shape calls for (so a body of empty strings cannot make the server list millions
    /// of them). Malformed data is left to the tensor's own check.
    fn check_strings(&self, name: &str, shape: &[i64], mut data: &[u8]) -> Result<()> {
        let wanted = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
            .unwrap_or(usize::MAX);
        let mut index = 0usize;
        while let Some((len, rest)) = data.split_first_chunk::<4>() {
            let len = u32::from_le_bytes(*len) as usize;
            if len > self.max_bytes_element {
                return Err(self.string_too_long(name, index, len));
            }
            if index == wanted {
                return Err(invalid(format!(
                    "input `{name}`: shape {shape:?} needs {wanted} BYTES elements, the data \
                     holds more"
                )));
            }
            let Some(rest) = rest.get(len..) else {
                return Ok(());
            };
            data = rest;
            index += 1;
        }
        Ok(())
    }

    /// Checks `BYTES` elements given one by one (gRPC's typed `bytes_contents`).
    pub fn check_string_lengths(
        &self,
        name: &str,
        lengths: impl IntoIterator<Item = usize>,
    ) -> Result<()> {
        for (index, len) in lengths.into_iter().enumerate() {
            if len > self.max_bytes_element {
                return Err(self.string_too_long(name, index, len));
            }
        }
        Ok(())
    }

    fn string_too_long(&self, name: &str, index: usize, len: usize) -> Error {
        invalid(format!(
            "input `{name}`: BYTES element {index} is {len} bytes long; the limit is {} \
             (--max-bytes-element)",
            self.max_bytes_element
        ))
    }

    /// Fails when JSON text nests arrays and objects deeper than `max_json_depth`.
    /// A byte scan (strings skipped), done before parsing so the parser never recurses
    /// that deep; malformed JSON is left to the parser to describe.
    ///
    /// Nesting can never exceed the number of `[` and `{` bytes, so text with no more of
    /// them than the limit (a request with flat `data` has a handful) is passed after a
    /// branch-free count, and only the rest gets the string-aware walk.
    pub fn check_json_depth(&self, json: &[u8]) -> Result<()> {
        if count_openers(json) <= self.max_json_depth {
            return Ok(());
        }
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &b in json {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > self.max_json_depth {
                        return Err(invalid(format!(
                            "the request JSON nests deeper than {} levels (--max-json-depth)",
                            self.max_json_depth
                        )));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }
}

/// How many `[` and `{` bytes `json` holds. `[` (0x5B) and `{` (0x7B) are the only bytes
/// that become `{` with bit 0x20 set; counting in 255-byte chunks with a `u8` total lets
/// the compiler use full-width vector adds.
fn count_openers(json: &[u8]) -> usize {
    json.chunks(255)
        .map(|chunk| {
            let n = chunk
                .iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b | 0x20 == b'{')));
            usize::from(n)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<()>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid_and_zero_is_not() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let zero = Limits {
            max_tensors: 0,
            ..Limits::default()
        };
        assert_eq!(
            zero.validate().unwrap_err(),
            "--max-tensors must be at least 1"
        );
        let deep = Limits {
            max_json_depth: 500,
            ..Limits::default()
        };
        assert!(deep.validate().unwrap_err().contains("at most 120"));
    }

    #[test]
    fn shapes_are_bounded_in_rank_and_size() {
        let limits = Limits {
            max_dims: 3,
            max_elements: 100,
            ..Limits::default()
        };
        assert!(limits.check_shape("x", &[2, 5, 10]).is_ok());
        assert!(limits.check_shape("x", &[0, 1 << 40]).is_ok());
        let err = message(limits.check_shape("x", &[1, 1, 1, 1]));
        assert!(
            err.contains("4 dimensions; the limit is 3 (--max-tensor-dims)"),
            "{err}"
        );
        let err = message(limits.check_shape("x", &[11, 10]));
        assert!(err.contains("110 elements; the limit is 100"), "{err}");
        let err = message(limits.check_shape("x", &[i64::MAX, i64::MAX, 4]));
        assert!(err.contains("more than 2^64 elements"), "{err}");
    }

    #[test]
    fn bytes_elements_are_bounded_and_counted_lazily() {
        let limits = Limits {
            max_bytes_element: 3,
            ..Limits::default()
        };
        let mut data = Vec::new();
        for s in ["ab", "abcd"] {
            data.extend_from_slice(&(s.len() as u32).to_le_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        let err = message(limits.check_tensor("s", DataType::Bytes, &[2], &data));
        assert!(
            err.contains("BYTES element 1 is 4 bytes long; the limit is 3"),
            "{err}"
        );
        let empties = vec![0u8; 4 * 1000];
        let err = message(limits.check_tensor("s", DataType::Bytes, &[2], &empties));
        assert!(
            err.contains("needs 2 BYTES elements, the data holds more"),
            "{err}"
        );
        assert!(
            limits
                .check_tensor("s", DataType::Bytes, &[1000], &empties)
                .is_ok()
        );
        let err = message(limits.check_string_lengths("s", [1, 2, 9]));
        assert!(err.contains("element 2 is 9 bytes"), "{err}");
    }

    #[test]
    fn json_depth_skips_brackets_in_strings() {
        let limits = Limits {
            max_json_depth: 3,
            ..Limits::default()
        };
        assert!(
            limits
                .check_json_depth(br#"{"a":[[1]],"b":"[[[[\"[["}"#)
                .is_ok()
        );
        let err = message(limits.check_json_depth(b"{\"a\":[[[1]]]}"));
        assert!(
            err.contains("deeper than 3 levels (--max-json-depth)"),
            "{err}"
        );
        let err = message(limits.check_json_depth(b"[[[[]]]]"));
        assert!(err.contains("deeper than 3 levels"), "{err}");
        let err = message(limits.check_count("inputs", 200));
        assert!(
            err.contains("200 inputs; the limit is 128 (--max-tensors)"),
            "{err}"
        );
    }

    #[test]
    fn json_depth_fast_path_ends_exactly_at_the_limit() {
        let limits = Limits {
            max_json_depth: 3,
            ..Limits::default()
        };
        assert_eq!(count_openers(br#"{"a":[1,{"b":[]}],"c":"[{x"}"#), 6);
        let long: Vec<u8> = std::iter::repeat_n(b"[{a]}".as_slice(), 300)
            .flatten()
            .copied()
            .collect();
        assert_eq!(count_openers(&long), 600, "counts past a u8 across chunks");
        // Three openers: passed by the count alone; four nested: refused by the walk.
        assert!(limits.check_json_depth(b"[[[1]]]").is_ok());
        assert!(limits.check_json_depth(b"[[[[1]]]]").is_err());
        // Four openers but depth 2: the walk runs and passes it.
        assert!(limits.check_json_depth(b"[[1],[2]]").is_ok());
        assert!(limits.check_json_depth(b"[[1],{\"a\":[2]}]").is_ok());
        // Openers inside strings still count toward the fast path, never toward depth.
        assert!(limits.check_json_depth(br#"["[[[[", "{{{{"]"#).is_ok());
    }
}
