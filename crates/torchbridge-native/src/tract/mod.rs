//! The tract bridge: one optimised tract plan per instance, run on the caller's thread.

mod values;

use std::time::Instant;

use torchbridge_core::{
    Backend, Batch, CallTiming, Device, Error, FileTensor, LoadContext, ModelForm, ModelMetadata,
    Result, Tensor, reconcile,
};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::ops::unimpl::UnimplementedOp;
use tract_onnx::tract_hir::tract_core::ops::nn::{Reduce, Reducer};
use tract_onnx::tract_hir::tract_core::plan::{EvalContext, SimpleState};

const BRIDGE: &str = "tract";

/// Loads `model.onnx` (`ModelForm::Onnx`) into an optimised tract plan.
pub fn load(ctx: &LoadContext) -> Result<Box<dyn Backend>> {
    Ok(Box::new(TractBackend::load(ctx)?))
}

/// The version of tract compiled in (tract exports none; Cargo.toml pins this one).
pub fn tract_version() -> &'static str {
    "0.23.9"
}

struct TractBackend {
    plan: Arc<TypedRunnableModel>,
    state: TypedSimpleState,
    /// Some operator keeps state between runs (a Scan, as an LSTM becomes): every call
    /// gets a fresh state, or one request's hidden state would feed the next.
    stateful: bool,
    metadata: ModelMetadata,
    /// Where each declared output sits among the plan's outputs.
    output_slots: Vec<usize>,
    timing: Option<CallTiming>,
}

impl std::fmt::Debug for TractBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractBackend")
            .field("model", &self.metadata.name)
            .finish_non_exhaustive()
    }
}

impl TractBackend {
    fn load(ctx: &LoadContext) -> Result<Self> {
        let fail = |message: String| Error::Load {
            model: ctx.model.clone(),
            bridge: BRIDGE,
            message,
        };
        let ModelForm::Onnx(path) = &ctx.form else {
            return Err(fail(format!(
                "the tract bridge loads `model.onnx`, not {}",
                ctx.form.path().display()
            )));
        };
        if let Device::Cuda(_) = ctx.config.device {
            return Err(fail(format!(
                "`device = \"{}\"` is not available: tract runs on the CPU; set `device = \"cpu\"`",
                ctx.config.device
            )));
        }
        let started = Instant::now();
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| fail(format!("cannot read `{}`: {e:#}", path.display())))?;
        refuse_unimplemented(&model).map_err(fail)?;
        let model = symbolic_batch(model, ctx.config.max_batch_size > 0)
            .map_err(|e| fail(format!("cannot set the batch dimension: {e:#}")))?;
        // Optimisation may fold a source into its first node and rename it: take the
        // file's names first.
        let input_names = outlet_names(&model, model.input_outlets()).map_err(fail)?;
        let output_names = outlet_names(&model, model.output_outlets()).map_err(fail)?;
        let typed = model
            .into_optimized()
            .map_err(|e| fail(format!("tract cannot optimise `{}`: {e:#}", path.display())))?;
        let inputs = file_tensors(&typed, &typed.inputs, input_names, "input").map_err(fail)?;
        let outputs = file_tensors(&typed, &typed.outputs, output_names, "output").map_err(fail)?;
        let metadata =
            reconcile(ctx.configured_metadata(BRIDGE), &inputs, &outputs).map_err(fail)?;
        let output_slots = metadata
            .outputs
            .iter()
            .map(|spec| outputs.iter().position(|t| t.name == spec.name).unwrap())
            .collect();
        // `reconcile` guarantees every model input is declared; feed them in file order.
        warn_of_narrow_sums(&typed, &ctx.model);
        let plan = typed.into_runnable().map_err(|e| fail(format!("{e:#}")))?;
        let state = fresh_state(&plan).map_err(fail)?;
        let stateful = keeps_state(&plan).map_err(|e| fail(format!("{e:#}")))?;
        tracing::info!(
            model = %ctx.model,
            version = ctx.version,
            instance = ctx.instance,
            path = %path.display(),
            load_ms = started.elapsed().as_millis() as u64,
            "loaded through tract {}",
            tract_version()
        );
        let mut metadata = metadata;
        reorder_inputs(&mut metadata, &inputs);
        Ok(TractBackend {
            plan,
            state,
            stateful,
            metadata,
            output_slots,
            timing: None,
        })
    }
}

/// Whether any operator of `plan` keeps state from one run to the next (tract's
/// streaming sessions; a server wants every call independent).
fn keeps_state(plan: &TypedRunnableModel) -> TractResult<bool> {
    let outside = EvalContext::out_of_plan();
    for node in plan.model().nodes() {
        if node.op.state(&outside)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// tract 0.23 sums integers in an `i32`: a 64-bit `ReduceSum` whose values or sum leave
/// ±2^31 comes out wrong (truncated), with no error. Refusing every such model would
/// refuse the common, harmless `attention_mask.sum()`, so the load warns, naming the
/// nodes; the onnx bridge sums in 64 bits.
fn warn_of_narrow_sums(model: &TypedModel, name: &str) {
    let nodes: Vec<&str> = model
        .nodes()
        .iter()
        .filter(|node| {
            node.op_as::<Reduce>()
                .is_some_and(|reduce| matches!(reduce.reducer, Reducer::Sum))
                && node.inputs.first().is_some_and(|input| {
                    model
                        .outlet_fact(*input)
                        .is_ok_and(|fact| matches!(fact.datum_type, DatumType::I64))
                })
        })
        .map(|node| node.name.as_str())
        .collect();
    if !nodes.is_empty() {
        tracing::warn!(
            model = name,
            "tract {} sums INT64 in 32 bits: node(s) {} give wrong results once their values or \
             sums pass ±2^31 (serve this model through the onnx bridge if they can)",
            tract_version(),
            nodes.join(", ")
        );
    }
}

/// tract-onnx keeps operators it does not know as placeholder nodes; name the first.
fn refuse_unimplemented(model: &InferenceModel) -> Result<(), String> {
    let missing: Vec<String> = model
        .nodes()
        .iter()
        .filter(|n| n.op.as_op().downcast_ref::<UnimplementedOp>().is_some())
        .map(|n| {
            let op = n.op.as_op().name();
            let op = op
                .trim_start_matches("Unimplemented(")
                .trim_end_matches(')');
            format!("operator `{op}` (node `{}`)", n.name)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "tract {} does not implement {}; serve this model through the onnx bridge instead",
        tract_version(),
        missing.join(", ")
    ))
}

/// Gives dim 0 of every input the one symbol `N` when the model batches, so tract can
/// prove that inputs agree on it and optimise once for every batch size.
fn symbolic_batch(mut model: InferenceModel, batched: bool) -> TractResult<InferenceModel> {
    if !batched {
        return Ok(model);
    }
    let n = model.symbols.sym("N");
    for ix in 0..model.input_outlets()?.len() {
        let mut fact = model.input_fact(ix)?.clone();
        let fixed = fact
            .shape
            .dim(0)
            .and_then(|d| d.concretize())
            .is_some_and(|d| d.as_i64().is_some());
        if !fixed {
            fact.shape.set_dim(0, TDim::Sym(n.clone()));
            model.set_input_fact(ix, fact)?;
        }
    }
    Ok(model)
}

/// The names the file gives `outlets` (its inputs or outputs).
fn outlet_names(
    model: &InferenceModel,
    outlets: TractResult<&[OutletId]>,
) -> Result<Vec<String>, String> {
    let outlets = outlets.map_err(|e| format!("{e:#}"))?;
    Ok(outlets
        .iter()
        .map(|&o| {
            let label = model.outlet_label(o);
            label.unwrap_or(&model.node(o.node).name).to_string()
        })
        .collect())
}

/// The inputs or outputs of the optimised model, in the file's order and under the
/// file's `names`, with -1 for symbolic sizes.
fn file_tensors(
    model: &TypedModel,
    outlets: &[OutletId],
    names: Vec<String>,
    kind: &str,
) -> Result<Vec<FileTensor>, String> {
    outlets
        .iter()
        .zip(names)
        .map(|(&outlet, name)| {
            let fact = model.outlet_fact(outlet).map_err(|e| format!("{e:#}"))?;
            let datatype = values::datatype_of(fact.datum_type).ok_or_else(|| {
                format!(
                    "the model's {kind} `{name}` holds {:?} elements, which the tract bridge cannot exchange",
                    fact.datum_type
                )
            })?;
            let shape = fact.shape.iter().map(|d| d.as_i64().unwrap_or(-1)).collect();
            Ok(FileTensor { name, datatype, shape })
        })
        .collect()
}

/// Declared inputs in the order the plan takes them (the file's order).
fn reorder_inputs(metadata: &mut ModelMetadata, file: &[FileTensor]) {
    metadata
        .inputs
        .sort_by_key(|s| file.iter().position(|t| t.name == s.name));
}

/// A state with nothing of an earlier run in it (a hidden state, bound sizes).
fn fresh_state(plan: &Arc<TypedRunnableModel>) -> Result<TypedSimpleState, String> {
    SimpleState::new(plan).map_err(|e| format!("{e:#}"))
}

impl Backend for TractBackend {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        let started = Instant::now();
        let fail = |message: String| Error::Inference {
            model: self.metadata.name.clone(),
            message,
        };
        let inputs = batch
            .inputs
            .iter()
            .map(|t| values::to_tract(t).map(TValue::from))
            .collect::<Result<TVec<_>, _>>()
            .map_err(fail)?;
        let converted = Instant::now();
        if self.stateful {
            self.state = fresh_state(&self.plan).map_err(fail)?;
        }
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.state.run(inputs)));
        let outputs = match run {
            Ok(Ok(outputs)) => outputs,
            Ok(Err(e)) => {
                // A failed run keeps what it bound (a symbol's size): the next would
                // clash with it.
                let _ = self.state.reset_turn();
                return Err(fail(format!("{e:#}")));
            }
            Err(panic) => {
                // Whatever the run left half done goes with the state it was in.
                self.state = fresh_state(&self.plan).map_err(fail)?;
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                // Only an index out of bounds is the input's doing.
                let hint = if message.contains("out of bounds") || message.contains("index") {
                    "; an input value outside what the model takes (a token id past an \
                     embedding table, an index past a dim) does this"
                } else {
                    ""
                };
                return Err(fail(format!(
                    "tract panicked running the model ({message}){hint}"
                )));
            }
        };
        let computed = Instant::now();
        let tensors = self
            .metadata
            .outputs
            .iter()
            .zip(&self.output_slots)
            .map(|(spec, &slot)| values::from_tract(spec, &outputs[slot]).map_err(fail))
            .collect::<Result<Vec<_>>>()?;
        self.timing = Some(CallTiming {
            input: converted - started,
            compute: computed - converted,
            output: computed.elapsed(),
        });
        Ok(tensors)
    }

    /// tract runs its plan on the calling thread and keeps no state per thread.
    fn runs_on_any_thread(&self) -> bool {
        true
    }

    fn last_timing(&self) -> Option<CallTiming> {
        self.timing
    }
}
