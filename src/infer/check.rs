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
    /// batch size (at least 1) across inputs of a batchable model.
    pub fn check_inputs(&self, mut given: Vec<Tensor>) -> Result<Vec<Tensor>> {
        for t in &given {
            if !self.inputs.iter().any(|s| s.name == t.name) {
                return Err(bad(format!(
                    "model `{}` has no input `{}`; its inputs are: {}",
                    self.name(),
                    t.name,
                    names(&self.inputs)
                )));
            }
            if given.iter().filter(|o| o.name == t.name).count() > 1 {
                return Err(bad(format!("input `{}` is given more than once", t.name)));
            }
        }
        let mut ordered = Vec::with_capacity(self.inputs.len());
        for spec in &self.inputs {
            let at = given
                .iter()
                .position(|t| t.name == spec.name)
                .ok_or_else(|| bad(format!("input `{}` is missing", spec.name)))?;
            let t = given.swap_remove(at);
            check_one(spec, &t)?;
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
        Ok(ordered)
    }

    /// Indices (into `self.outputs`) of the requested outputs; all when
    /// none are named.
    pub fn check_outputs(&self, requested: Option<&[String]>) -> Result<Vec<usize>> {
        let Some(requested) = requested.filter(|r| !r.is_empty()) else {
            return Ok((0..self.outputs.len()).collect());
        };
        requested
            .iter()
            .map(|name| {
                self.outputs
                    .iter()
                    .position(|s| &s.name == name)
                    .ok_or_else(|| {
                        bad(format!(
                            "model `{}` has no output `{name}`; its outputs are: {}",
                            self.name(),
                            names(&self.outputs)
                        ))
                    })
            })
            .collect()
    }
}

fn check_one(spec: &IoSpec, t: &Tensor) -> Result<()> {
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
