//! libtorch's error text, cut down to what a person serving a model needs.

use tch::TchError;

/// The meaningful part of a libtorch error: the message, without the C++ backtrace.
///
/// libtorch appends `Exception raised from … (most recent call first):` and a list of
/// `frame #N:` lines to every `c10::Error`; those stay out of responses and logs.
pub(crate) fn libtorch_message(error: &TchError) -> String {
    match error {
        TchError::Torch(text) => trim_backtrace(text),
        other => other.to_string(),
    }
}

fn trim_backtrace(text: &str) -> String {
    let kept: Vec<&str> = text
        .lines()
        .take_while(|line| !line.starts_with("Exception raised from "))
        .filter(|line| !line.trim_start().starts_with("frame #"))
        .collect();
    let message = kept.join("\n").trim().to_string();
    if message.is_empty() { text.lines().next().unwrap_or("").to_string() } else { message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backtrace_is_cut() {
        let text = "mat1 and mat2 shapes cannot be multiplied (1x3 and 4x2)\n\
                    Exception raised from meta at /pytorch/aten/src/ATen/native/LinearAlgebra.cpp:197 (most recent call first):\n\
                    frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x9d (0x7f in libc10.so)\n\
                    frame #1: <unknown function> + 0x1 (0x7f in libtorch_cpu.so)\n";
        let e = TchError::Torch(text.into());
        assert_eq!(libtorch_message(&e), "mat1 and mat2 shapes cannot be multiplied (1x3 and 4x2)");
    }
}
