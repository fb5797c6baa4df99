//! Rows to a batch and back: stacking equal-shaped (or, for text,
//! right-padded) rows along a new first dimension, splitting a run's
//! outputs into rows, and cutting a padded row's outputs back to its own
//! length, so a row's result never depends on the rows it was batched with.

use bytes::{Bytes, BytesMut};

use crate::{
    error::{Error, Result},
    infer::{backend::IoSpec, tensor::Tensor},
};

/// Stack rows along a new first dimension. Rows must have equal shapes,
/// unless `pad`: then each is right-padded with zero bytes along its first
/// dimension to the longest row.
pub(super) fn stack(rows: &[Vec<Tensor>], pad: bool) -> Vec<Tensor> {
    let first = &rows[0];
    (0..first.len())
        .map(|i| {
            let mut shape = first[i].shape.clone();
            if pad {
                shape[0] = rows.iter().map(|r| r[i].shape[0]).max().unwrap_or(0);
            }
            let row_bytes =
                Tensor::elements(&shape).unwrap_or(0) as usize * first[i].datatype.size();
            let mut data = BytesMut::with_capacity(row_bytes * rows.len());
            for row in rows {
                data.extend_from_slice(&row[i].data);
                data.resize(data.len() + row_bytes - row[i].data.len(), 0);
            }
            shape.insert(0, rows.len() as u64);
            Tensor {
                name: first[i].name.clone(),
                datatype: first[i].datatype,
                shape,
                data: data.freeze(),
            }
        })
        .collect()
}

/// Split each batched output along its first dimension into `rows` rows.
pub(super) fn unstack(outputs: Vec<Tensor>, rows: usize) -> Result<Vec<Vec<Tensor>>> {
    let mut per_row: Vec<Vec<Tensor>> = (0..rows)
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for output in outputs {
        if output.shape.first() != Some(&(rows as u64)) || output.data.len() % rows != 0 {
            return Err(Error::Compute(format!(
                "output `{}` has shape {:?} for a batch of {rows} rows",
                output.name, output.shape
            )));
        }
        let row_len = output.data.len() / rows;
        for (i, row) in per_row.iter_mut().enumerate() {
            let data: Bytes = output.data.slice(i * row_len..(i + 1) * row_len);
            row.push(Tensor {
                name: output.name.clone(),
                datatype: output.datatype,
                shape: output.shape[1..].to_vec(),
                data,
            });
        }
    }
    Ok(per_row)
}

/// One padded row's outputs cut back to the row's own `len` tokens: every
/// output whose declared token dimension (the one after the batch) is
/// dynamic and came out `longest` long is cut to its first `len` entries.
pub(super) fn unpad(outputs: Vec<Tensor>, len: u64, longest: u64, specs: &[IoSpec]) -> Vec<Tensor> {
    if len == longest {
        return outputs;
    }
    outputs
        .into_iter()
        .map(|mut t| {
            let dynamic = specs
                .iter()
                .any(|s| s.name == t.name && s.shape.get(1) == Some(&-1));
            if dynamic && t.shape.first() == Some(&longest) {
                let keep = t.data.len() / longest as usize * len as usize;
                t.data = t.data.slice(..keep);
                t.shape[0] = len;
            }
            t
        })
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::infer::tensor::DataType;

    /// A UINT8 tensor named `x`.
    pub(in crate::infer::batcher) fn t(shape: &[u64], bytes: &[u8]) -> Tensor {
        Tensor {
            name: "x".into(),
            datatype: DataType::Uint8,
            shape: shape.to_vec(),
            data: Bytes::copy_from_slice(bytes),
        }
    }

    #[test]
    fn stack_then_unstack_is_identity() {
        let rows = vec![
            vec![t(&[2], &[1, 2])],
            vec![t(&[2], &[3, 4])],
            vec![t(&[2], &[5, 6])],
        ];
        let stacked = stack(&rows, false);
        assert_eq!(stacked[0].shape, [3, 2]);
        assert_eq!(&stacked[0].data[..], [1, 2, 3, 4, 5, 6]);
        assert_eq!(unstack(stacked, 3).unwrap(), rows);
        assert!(unstack(vec![t(&[2, 2], &[0; 4])], 3).is_err());
    }

    #[test]
    fn padding_extends_short_rows_with_zeros() {
        let rows = vec![vec![t(&[1], &[7])], vec![t(&[3], &[1, 2, 3])]];
        let stacked = stack(&rows, true);
        assert_eq!(stacked[0].shape, [2, 3]);
        assert_eq!(&stacked[0].data[..], [7, 0, 0, 1, 2, 3]);
    }

    #[test]
    fn unpad_cuts_dynamic_token_dimensions_only() {
        let spec = |name: &str, shape: &[i64]| IoSpec {
            name: name.into(),
            datatype: DataType::Uint8,
            shape: shape.to_vec(),
        };
        let specs = [spec("x", &[-1, -1, 2]), spec("pooled", &[-1, 3])];
        let out = vec![
            t(&[3, 2], &[1, 2, 3, 4, 0, 0]),
            Tensor {
                name: "pooled".into(),
                ..t(&[3], &[5, 6, 7])
            },
        ];
        let cut = unpad(out, 2, 3, &specs);
        assert_eq!(cut[0], t(&[2, 2], &[1, 2, 3, 4]));
        assert_eq!(cut[1].shape, [3], "a fixed dimension is never cut");
    }
}
