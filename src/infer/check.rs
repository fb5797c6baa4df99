//! Validate a request's tensors against the model's declared inputs and
//! outputs, so that everything reaching the batcher can run. Every problem
//! is a 400 that names the tensor and says what the model expects.

use super::{backend::IoSpec, registry::Model, tensor::Tensor};
use crate::error::{Error, Result};

fn bad(msg: String) -> Error {
    Error::BadRequest(msg)
}

fn names(specs: &[IoSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Model {
    /// The request's inputs in the model's input order, checked: every
    /// input present once, datatypes and fixed dimensions as declared, one
    /// batch size (at least 1) across inputs of a batchable model, and no
    /// shape larger than `max_bytes` (the request size limit) could carry.
    /// Linear in the number of inputs given, however many that is.
    pub fn check_inputs(&self, given: Vec<Tensor>, max_bytes: u64) -> Result<Vec<Tensor>> {
        let mut slots: Vec<Option<Tensor>> = vec![None; self.inputs.len()];
        for t in given {
            let Some(at) = self.inputs.iter().position(|s| s.name == t.name) else {
                return Err(bad(format!(
                    "model `{}` has no input `{}`; its inputs are: {}",
                    self.name(),
                    t.name,
                    names(&self.inputs)
                )));
            };
            if slots[at].is_some() {
                return Err(bad(format!("input `{}` is given more than once", t.name)));
            }
            slots[at] = Some(t);
        }
        let mut ordered = Vec::with_capacity(self.inputs.len());
        for (spec, t) in self.inputs.iter().zip(slots) {
            let t = t.ok_or_else(|| bad(format!("input `{}` is missing", spec.name)))?;
            check_one(spec, &t, max_bytes)?;
            ordered.push(t);
        }
        if self.batchable {
            let batch = ordered[0].shape[0];
            if batch == 0 {
                return Err(bad("the batch dimension must be at least 1".into()));
            }
            if let Some(t) = ordered.iter().find(|t| t.shape[0] != batch) {
                return Err(bad(format!(
                    "input `{}` has batch size {} but `{}` has {batch}",
                    t.name, t.shape[0], ordered[0].name
                )));
            }
        }
        if let Some(text) = &self.text {
            text.check_tokens(&ordered)?;
        }
        Ok(ordered)
    }

    /// Indices (into `self.outputs`) of the requested outputs; all when
    /// none are named. Each output may be named once: a repeated name would
    /// build (and send) the same tensor again for every repetition.
    pub fn check_outputs(&self, requested: Option<&[String]>) -> Result<Vec<usize>> {
        let Some(requested) = requested.filter(|r| !r.is_empty()) else {
            return Ok((0..self.outputs.len()).collect());
        };
        let mut seen = vec![false; self.outputs.len()];
        requested
            .iter()
            .map(|name| {
                let at = self
                    .outputs
                    .iter()
                    .position(|s| &s.name == name)
                    .ok_or_else(|| {
                        bad(format!(
                            "model `{}` has no output `{name}`; its outputs are: {}",
                            self.name(),
                            names(&self.outputs)
                        ))
                    })?;
                if std::mem::replace(&mut seen[at], true) {
                    return Err(bad(format!(
                        "output `{name}` is requested more than once; name each output once"
                    )));
                }
                Ok(at)
            })
            .collect()
    }
}

/// The bytes `shape` would take with every zero dimension counted as one:
/// what splitting, keying and answering it costs at least, even when the
/// tensor itself is empty (`[2^40, 0]` is 2^40 rows of nothing).
fn footprint(shape: &[u64], datatype_size: usize) -> Option<u64> {
    shape
        .iter()
        .try_fold(datatype_size as u64, |n, d| n.checked_mul((*d).max(1)))
}

fn check_one(spec: &IoSpec, t: &Tensor, max_bytes: u64) -> Result<()> {
    if t.datatype != spec.datatype {
        return Err(bad(format!(
            "input `{}` must be {}, got {}",
            t.name,
            spec.datatype.name(),
            t.datatype.name()
        )));
    }
    let fits = t.shape.len() == spec.shape.len()
        && t.shape
            .iter()
            .zip(&spec.shape)
            .all(|(given, want)| *want < 0 || *given == *want as u64);
    if !fits {
        return Err(bad(format!(
            "input `{}` must have shape {:?} (-1: any), got {:?}",
            t.name, spec.shape, t.shape
        )));
    }
    if footprint(&t.shape, t.datatype.size()).is_none_or(|n| n > max_bytes) {
        return Err(bad(format!(
            "input `{}`: shape {:?} is larger than a request may carry \
             (max_request_size {max_bytes} bytes, zero dimensions counted as 1)",
            t.name, t.shape
        )));
    }
    let expected = Tensor::elements(&t.shape).and_then(|n| n.checked_mul(t.datatype.size() as u64));
    if expected != Some(t.data.len() as u64) {
        return Err(bad(format!(
            "input `{}`: shape {:?} needs {} bytes of {}, got {}",
            t.name,
            t.shape,
            expected.map_or("too many".into(), |n| n.to_string()),
            t.datatype.name(),
            t.data.len()
        )));
    }
    Ok(())
}
