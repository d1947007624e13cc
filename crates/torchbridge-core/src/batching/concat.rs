//! Joining requests into one batch on dim 0, and splitting a batch's outputs back.
//!
//! Joining copies each input once into one new buffer (the single copy on the way in;
//! a group of one is passed through untouched). Splitting copies nothing: each request's
//! outputs are `Bytes` slices of the batch's buffers.

use bytes::{BufMut, BytesMut};

use crate::tensor::split_strings;
use crate::{Batch, DataType, Tensor};

/// One batch of the requests' inputs, which share datatypes and shapes past dim 0.
pub(crate) fn concat(mut batches: Vec<Batch>) -> Batch {
    if batches.len() == 1 {
        return batches.pop().expect("one batch");
    }
    let rows = batches.iter().map(|b| b.rows).sum();
    let inputs = (0..batches[0].inputs.len())
        .map(|i| {
            let first = &batches[0].inputs[i];
            let bytes = batches.iter().map(|b| b.inputs[i].data.len()).sum();
            let mut data = BytesMut::with_capacity(bytes);
            for batch in &batches {
                // BYTES data is length-prefixed element by element, so it joins byte-wise.
                data.put_slice(&batch.inputs[i].data);
            }
            let mut shape = first.shape.clone();
            shape[0] = rows as i64;
            Tensor {
                name: first.name.clone(),
                datatype: first.datatype,
                shape,
                data: data.freeze(),
            }
        })
        .collect();
    Batch { inputs, rows }
}

/// Each request's share of the outputs, `rows[k]` rows for request `k`, in order.
/// The outputs were checked to have `sum(rows)` rows in dim 0.
pub(crate) fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, String> {
    if rows.len() == 1 {
        return Ok(vec![outputs]);
    }
    let total: usize = rows.iter().sum();
    let mut shares: Vec<Vec<Tensor>> = rows.iter().map(|_| Vec::new()).collect();
    for output in outputs {
        if output.shape.first() != Some(&(total as i64)) {
            return Err(format!(
                "output `{}` has shape {:?}; a batch of {total} rows was run",
                output.name, output.shape
            ));
        }
        let ends = row_ends(&output, rows, total)?;
        let mut start = 0;
        for ((share, &r), end) in shares.iter_mut().zip(rows).zip(ends) {
            let mut shape = output.shape.clone();
            shape[0] = r as i64;
            share.push(Tensor {
                name: output.name.clone(),
                datatype: output.datatype,
                shape,
                data: output.data.slice(start..end),
            });
            start = end;
        }
    }
    Ok(shares)
}

/// The byte offset where each request's rows of `t` end.
fn row_ends(t: &Tensor, rows: &[usize], total: usize) -> Result<Vec<usize>, String> {
    let per_row = t.element_count() / total;
    let mut ends = Vec::with_capacity(rows.len());
    match t.datatype.size() {
        Some(size) => {
            let mut end = 0;
            for &r in rows {
                end += r * per_row * size;
                ends.push(end);
            }
        }
        None => {
            debug_assert_eq!(t.datatype, DataType::Bytes);
            let elements = split_strings(&t.data)
                .ok_or_else(|| format!("output `{}` holds malformed BYTES", t.name))?;
            let (mut end, mut at) = (0, 0);
            for &r in rows {
                for element in &elements[at..at + r * per_row] {
                    end += 4 + element.len();
                }
                at += r * per_row;
                ends.push(end);
            }
        }
    }
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(t: Tensor) -> Batch {
        let rows = t.shape[0] as usize;
        Batch {
            inputs: vec![t],
            rows,
        }
    }

    #[test]
    fn numbers_join_on_dim_0_and_split_back_without_copying() {
        let a = Tensor::from_slice("X", vec![1, 2], &[1f32, 2.0]).unwrap();
        let b = Tensor::from_slice("X", vec![2, 2], &[3f32, 4.0, 5.0, 6.0]).unwrap();
        let joined = concat(vec![batch(a.clone()), batch(b.clone())]);
        assert_eq!(joined.rows, 3);
        let x = &joined.inputs[0];
        assert_eq!((x.name.as_str(), x.shape.clone()), ("X", vec![3, 2]));
        assert_eq!(x.to_vec::<f32>().unwrap(), vec![1., 2., 3., 4., 5., 6.]);
        x.check_bytes().unwrap();

        let shares = split(vec![x.clone()], &[1, 2]).unwrap();
        assert_eq!(shares[0], vec![a]);
        assert_eq!(shares[1], vec![b]);
        // Slices of the batch's buffer, not copies.
        assert_eq!(shares[1][0].data.as_ptr(), x.data[8..].as_ptr());
    }

    #[test]
    fn strings_join_byte_wise_and_split_by_elements() {
        let a = Tensor::from_strings("S", vec![1, 2], &["a", ""]).unwrap();
        let b = Tensor::from_strings("S", vec![2, 2], &["héllo", "b", "cc", "ddd"]).unwrap();
        let c = Tensor::from_strings("S", vec![1, 2], &["", "z"]).unwrap();
        let joined = concat(vec![batch(a.clone()), batch(b.clone()), batch(c.clone())]);
        let s = &joined.inputs[0];
        assert_eq!(s.shape, vec![4, 2]);
        s.check_bytes().unwrap();
        assert_eq!(s.strings().unwrap()[2], "héllo".as_bytes());
        let shares = split(vec![s.clone()], &[1, 2, 1]).unwrap();
        assert_eq!(shares, vec![vec![a], vec![b], vec![c]]);
    }

    #[test]
    fn several_inputs_and_outputs_keep_their_order() {
        let x = |v: f32| Tensor::from_slice("X", vec![1, 1], &[v]).unwrap();
        let ids = |v: i64| Tensor::from_slice("IDS", vec![1, 3], &[v; 3]).unwrap();
        let two = |v| Batch {
            inputs: vec![x(v as f32), ids(v)],
            rows: 1,
        };
        let joined = concat(vec![two(1), two(2)]);
        assert_eq!(joined.inputs[1].shape, vec![2, 3]);
        assert_eq!(
            joined.inputs[1].to_vec::<i64>().unwrap(),
            vec![1, 1, 1, 2, 2, 2]
        );
        let shares = split(joined.inputs, &[1, 1]).unwrap();
        assert_eq!(shares[1], vec![x(2.0), ids(2)]);
    }

    #[test]
    fn a_group_of_one_passes_through() {
        let a = Tensor::from_slice("X", vec![2, 1], &[1f32, 2.0]).unwrap();
        let joined = concat(vec![batch(a.clone())]);
        assert_eq!(joined.inputs[0].data.as_ptr(), a.data.as_ptr());
        assert_eq!(split(vec![a.clone()], &[2]).unwrap(), vec![vec![a]]);
    }

    #[test]
    fn outputs_without_the_batch_rows_are_an_error() {
        let y = Tensor::from_slice("Y", vec![2, 1], &[1f32, 2.0]).unwrap();
        let e = split(vec![y], &[1, 2]).unwrap_err();
        assert!(e.contains("shape [2, 1]; a batch of 3 rows"), "{e}");
    }
}
