//! What crosses the socket between the server and a worker process: length-prefixed
//! frames of little-endian fields. The server sends a batch; the worker answers once
//! with `Ready` (its model loaded, with the metadata) or `Failed` (it did not), then
//! once per batch with `Outputs` or `Failed`.

use std::io::{self, Read, Write};
use std::time::Duration;

use bytes::Bytes;
use torchbridge_core::{
    Batch, CallTiming, DataType, Error, ModelMetadata, PythonError, Tensor, TensorSpec,
};

/// A worker's answer.
#[derive(Debug)]
pub enum Reply {
    Ready(ModelMetadata),
    Outputs {
        tensors: Vec<Tensor>,
        timing: Option<CallTiming>,
    },
    Failed(Error),
}

/// Frames larger than this are refused as corrupt (a batch is far smaller).
const MAX_FRAME: usize = 1 << 34;

pub fn write_frame(out: &mut impl Write, body: &[u8]) -> io::Result<()> {
    out.write_all(&(body.len() as u64).to_le_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// The next frame's body; `None` at a clean end of stream.
pub fn read_frame(input: &mut impl Read) -> io::Result<Option<Bytes>> {
    let mut len = [0; 8];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
    if len > MAX_FRAME {
        return Err(corrupt(format!("a frame of {len} bytes")));
    }
    let mut body = vec![0; len];
    input.read_exact(&mut body)?;
    Ok(Some(body.into()))
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt worker frame: {what}"),
    )
}

#[derive(Default)]
pub struct Encoder(pub Vec<u8>);

impl Encoder {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn dims(&mut self, dims: &[i64]) {
        self.u64(dims.len() as u64);
        for &d in dims {
            self.i64(d);
        }
    }
    fn tensors(&mut self, tensors: &[Tensor]) {
        self.u64(tensors.len() as u64);
        for t in tensors {
            self.str(&t.name);
            self.str(t.datatype.as_str());
            self.dims(&t.shape);
            self.bytes(&t.data);
        }
    }
    fn specs(&mut self, specs: &[TensorSpec]) {
        self.u64(specs.len() as u64);
        for s in specs {
            self.str(&s.name);
            self.str(s.datatype.as_str());
            self.dims(&s.dims);
        }
    }
    fn duration(&mut self, d: Duration) {
        self.u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn batch(batch: &Batch) -> Vec<u8> {
        let mut e = Encoder::default();
        e.u64(batch.rows as u64);
        e.tensors(&batch.inputs);
        e.0
    }

    pub fn reply(reply: &Reply) -> Vec<u8> {
        let mut e = Encoder::default();
        match reply {
            Reply::Ready(m) => {
                e.u8(0);
                e.str(&m.name);
                e.u64(m.version);
                e.str(&m.platform);
                e.u64(u64::from(m.max_batch_size));
                e.specs(&m.inputs);
                e.specs(&m.outputs);
            }
            Reply::Outputs { tensors, timing } => {
                e.u8(1);
                match timing {
                    Some(t) => {
                        e.u8(1);
                        e.duration(t.input);
                        e.duration(t.compute);
                        e.duration(t.output);
                    }
                    None => e.u8(0),
                }
                e.tensors(tensors);
            }
            Reply::Failed(error) => {
                e.u8(2);
                e.error(error);
            }
        }
        e.0
    }

    /// Errors keep the kinds the front ends map to statuses; the rest become messages.
    fn error(&mut self, error: &Error) {
        match error {
            Error::Python { error, .. } => {
                self.u8(0);
                self.str(&error.kind);
                self.str(&error.message);
                self.str(&error.traceback);
            }
            Error::InvalidInput(message) => {
                self.u8(1);
                self.str(message);
            }
            Error::Load { message, .. } => {
                self.u8(2);
                self.str(message);
            }
            Error::Inference { message, .. } => {
                self.u8(3);
                self.str(message);
            }
            other => {
                self.u8(3);
                self.str(&other.to_string());
            }
        }
    }
}

/// Reads one frame; tensor data stays in the frame's buffer (no copy).
pub struct Decoder<'a> {
    frame: &'a Bytes,
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(frame: &'a Bytes) -> Self {
        Decoder { frame, rest: frame }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(corrupt(format!(
                "{n} bytes wanted, {} left",
                self.rest.len()
            )));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn len(&mut self) -> io::Result<usize> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.rest.len())
            .ok_or_else(|| corrupt(format!("a length of {n}")))
    }
    fn i64(&mut self) -> io::Result<i64> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }
    fn str(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| corrupt("a non-UTF-8 name".into()))
    }
    fn datatype(&mut self) -> io::Result<DataType> {
        let text = self.str()?;
        text.parse()
            .map_err(|_| corrupt(format!("datatype `{text}`")))
    }
    fn dims(&mut self) -> io::Result<Vec<i64>> {
        let n = self.len()?;
        (0..n).map(|_| self.i64()).collect()
    }
    fn tensors(&mut self) -> io::Result<Vec<Tensor>> {
        let n = self.len()?;
        (0..n)
            .map(|_| {
                let (name, datatype, shape) = (self.str()?, self.datatype()?, self.dims()?);
                let data = self.frame.slice_ref(self.bytes()?);
                Tensor::new(name, datatype, shape, data)
                    .map_err(|e| corrupt(format!("a tensor: {e}")))
            })
            .collect()
    }
    fn specs(&mut self) -> io::Result<Vec<TensorSpec>> {
        let n = self.len()?;
        (0..n)
            .map(|_| {
                Ok(TensorSpec {
                    name: self.str()?,
                    datatype: self.datatype()?,
                    dims: self.dims()?,
                })
            })
            .collect()
    }
    fn duration(&mut self) -> io::Result<Duration> {
        Ok(Duration::from_nanos(self.u64()?))
    }

    pub fn batch(mut self) -> io::Result<Batch> {
        let rows = usize::try_from(self.u64()?).map_err(|_| corrupt("a row count".into()))?;
        let inputs = self.tensors()?;
        Ok(Batch { inputs, rows })
    }

    /// A reply about `model` served through `bridge` (named in the errors it carries).
    pub fn reply(mut self, model: &str, bridge: &'static str) -> io::Result<Reply> {
        Ok(match self.u8()? {
            0 => Reply::Ready(ModelMetadata {
                name: self.str()?,
                version: self.u64()?,
                platform: self.str()?,
                max_batch_size: u32::try_from(self.u64()?)
                    .map_err(|_| corrupt("max_batch_size".into()))?,
                inputs: self.specs()?,
                outputs: self.specs()?,
            }),
            1 => {
                let timing = match self.u8()? {
                    0 => None,
                    _ => Some(CallTiming {
                        input: self.duration()?,
                        compute: self.duration()?,
                        output: self.duration()?,
                    }),
                };
                Reply::Outputs {
                    timing,
                    tensors: self.tensors()?,
                }
            }
            2 => Reply::Failed(self.error(model, bridge)?),
            tag => return Err(corrupt(format!("reply tag {tag}"))),
        })
    }

    fn error(&mut self, model: &str, bridge: &'static str) -> io::Result<Error> {
        let model = model.to_string();
        Ok(match self.u8()? {
            0 => Error::Python {
                model,
                error: PythonError {
                    kind: self.str()?,
                    message: self.str()?,
                    traceback: self.str()?,
                },
            },
            1 => Error::InvalidInput(self.str()?),
            2 => Error::Load {
                model,
                bridge,
                message: self.str()?,
            },
            _ => Error::Inference {
                model,
                message: self.str()?,
            },
        })
    }
}

#[cfg(test)]
mod tests;
