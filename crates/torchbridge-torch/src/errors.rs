//! libtorch's error text, cut down to what a person serving a model needs.

use tch::TchError;

/// How libtorch opens the error of anything raised while a TorchScript module runs.
const INTERPRETER: &str = "The following operation failed in the TorchScript interpreter.";

/// The meaningful part of a libtorch error, without the C++ backtrace.
///
/// libtorch appends `Exception raised from … (most recent call first):` and a list of
/// `frame #N:` lines to every `c10::Error`; those go. An error raised inside a module
/// comes as two tracebacks (serialized and original code) and then the exception; that
/// becomes the exception line(s), then `at File "…", line N, in f` for each frame of
/// the original code, innermost last.
pub(crate) fn libtorch_message(error: &TchError) -> String {
    match error {
        TchError::Torch(text) => {
            tracing::debug!(error = %text, "libtorch error in full");
            let text = cut_backtrace(text);
            text.strip_prefix(INTERPRETER)
                .and_then(interpreter_error)
                .unwrap_or(text)
        }
        other => other.to_string(),
    }
}

fn cut_backtrace(text: &str) -> String {
    let kept: Vec<&str> = text
        .lines()
        .take_while(|line| !line.starts_with("Exception raised from "))
        .filter(|line| !line.trim_start().starts_with("frame #"))
        .collect();
    let message = kept.join("\n").trim().to_string();
    if message.is_empty() {
        text.lines().next().unwrap_or("").to_string()
    } else {
        message
    }
}

fn interpreter_error(tracebacks: &str) -> Option<String> {
    let lines: Vec<&str> = tracebacks.lines().collect();
    let original = lines
        .iter()
        .rposition(|l| l.starts_with("Traceback of TorchScript"))?;
    let tail = &lines[original + 1..];
    // Frames are indented; the exception is the first line that is not.
    let exception = tail
        .iter()
        .position(|l| !l.is_empty() && !l.starts_with(char::is_whitespace))?;
    let mut message = tail[exception..].join("\n").trim_end().to_string();
    for frame in tail[..exception]
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("File \""))
    {
        message.push_str("\n  at ");
        message.push_str(frame);
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> String {
        libtorch_message(&TchError::Torch(text.into()))
    }

    #[test]
    fn the_cpp_backtrace_is_cut() {
        let text = "mat1 and mat2 shapes cannot be multiplied (1x3 and 4x2)\n\
                    Exception raised from meta at /pytorch/aten/src/ATen/native/LinearAlgebra.cpp:197 (most recent call first):\n\
                    frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x9d (0x7f in libc10.so)\n\
                    frame #1: <unknown function> + 0x1 (0x7f in libtorch_cpu.so)\n";
        assert_eq!(
            message(text),
            "mat1 and mat2 shapes cannot be multiplied (1x3 and 4x2)"
        );
    }

    #[test]
    fn a_raise_in_the_module_leads_with_the_exception() {
        // As libtorch 2.13 words it (seen in this crate's tests).
        let text = r#"The following operation failed in the TorchScript interpreter.
Traceback of TorchScript, serialized code (most recent call last):
  File "code/__torch__.py", line 9, in forward
    if bool(torch.any(torch.lt(x, 0))):
      ops.prim.RaiseException("negative input", "builtins.ValueError")
      ~~~~~~~~~~~~~~~~~~~~~~~ <--- HERE

Traceback of TorchScript, original code (most recent call last):
  File "/src/model.py", line 62, in forward
        if bool((x < 0).any()):
            raise ValueError("negative input")
            ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~ <--- HERE
  File "/venv/torch/nn/modules/linear.py", line 134, in forward
        return F.linear(input, self.weight, self.bias)
builtins.ValueError: negative input
"#;
        assert_eq!(
            message(text),
            "builtins.ValueError: negative input\n  \
             at File \"/src/model.py\", line 62, in forward\n  \
             at File \"/venv/torch/nn/modules/linear.py\", line 134, in forward"
        );
    }
}
