//! proptest strategies for tensors of every datatype and a range of shapes, shared by
//! the codec round-trip tests of both transports.

use bytes::{BufMut, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use torchbridge_core::{DataType, Tensor};

/// Shapes of rank 0 to 4, dimensions 0 to 5 (so empty tensors too).
pub fn shape() -> impl Strategy<Value = Vec<i64>> {
    vec(0i64..=5, 0..=4)
}

/// What JSON can carry: finite floats and UTF-8 strings. Binary data carries any bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    Json,
    Raw,
}

/// One tensor named `name`, of any datatype and shape, its elements fitting `carrier`.
pub fn tensor(name: String, carrier: Carrier) -> impl Strategy<Value = Tensor> {
    (proptest::sample::select(DataType::ALL.to_vec()), shape()).prop_flat_map(
        move |(datatype, shape)| {
            let count = shape.iter().product::<i64>() as usize;
            let name = name.clone();
            elements(datatype, count, carrier).prop_map(move |data| {
                Tensor::new(name.clone(), datatype, shape.clone(), data)
                    .expect("a consistent tensor")
            })
        },
    )
}

/// Up to four tensors named `t0`, `t1`, …, each with a flag (binary or not, say).
pub fn tensors(carrier: Carrier) -> impl Strategy<Value = Vec<(Tensor, bool)>> {
    (1usize..=4).prop_flat_map(move |n| {
        (0..n)
            .map(|i| (tensor(format!("t{i}"), carrier), any::<bool>()))
            .collect::<Vec<_>>()
    })
}

fn le_bytes<T, const N: usize>(
    values: impl Strategy<Value = T> + 'static,
    count: usize,
    to_bytes: fn(T) -> [u8; N],
) -> BoxedStrategy<Vec<u8>>
where
    T: std::fmt::Debug + 'static,
{
    vec(values, count)
        .prop_map(move |v| v.into_iter().flat_map(to_bytes).collect())
        .boxed()
}

fn elements(datatype: DataType, count: usize, carrier: Carrier) -> BoxedStrategy<Vec<u8>> {
    let json = carrier == Carrier::Json;
    match datatype {
        DataType::Bool => vec(any::<bool>(), count)
            .prop_map(|v| v.into_iter().map(u8::from).collect())
            .boxed(),
        DataType::Bytes if json => vec(".{0,6}", count)
            .prop_map(|v| length_prefixed(v.iter().map(String::as_bytes)))
            .boxed(),
        DataType::Bytes => vec(vec(any::<u8>(), 0..6), count)
            .prop_map(|v| length_prefixed(v.iter().map(Vec::as_slice)))
            .boxed(),
        DataType::Fp32 if json => le_bytes(
            any::<f32>().prop_filter("finite", |v| v.is_finite()),
            count,
            f32::to_le_bytes,
        ),
        DataType::Fp64 if json => le_bytes(
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            count,
            f64::to_le_bytes,
        ),
        // Half floats: every bit pattern whose exponent is not all ones.
        DataType::Fp16 if json => le_bytes(
            any::<u16>().prop_filter("finite", |b| b & 0x7c00 != 0x7c00),
            count,
            u16::to_le_bytes,
        ),
        DataType::Bf16 if json => le_bytes(
            any::<u16>().prop_filter("finite", |b| b & 0x7f80 != 0x7f80),
            count,
            u16::to_le_bytes,
        ),
        other => vec(any::<u8>(), count * other.size().expect("fixed-size")).boxed(),
    }
}

fn length_prefixed<'a>(items: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = BytesMut::new();
    for item in items {
        out.put_u32_le(item.len() as u32);
        out.put_slice(item);
    }
    out.to_vec()
}
