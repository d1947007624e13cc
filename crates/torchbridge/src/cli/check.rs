//! `torchbridge check`: do the model's forms agree, and which bridge is fastest?
//!
//! Every form present in the version directory runs the same inputs; the first bridge
//! is the reference the others are compared with (numpy's `allclose` rule, with a
//! tolerance that suits each float datatype; integers and booleans exactly).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use torchbridge::compare::compare;
use torchbridge::random::Rng;
use torchbridge::{BackendKind, DataType, Model, ModelDir, Tensor, TensorSpec};

use super::{InputFile, read_inputs};

/// Run the same inputs through every form of a model and compare outputs and speed.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The model directory (holding config.toml and version directories).
    model_dir: PathBuf,
    /// Bridges to compare, the first being the reference [default: every form present].
    #[arg(long, value_delimiter = ',')]
    bridges: Vec<BackendKind>,
    /// Check this version instead of the highest.
    #[arg(long = "model-version")]
    version: Option<u64>,
    /// Batch sizes of the generated inputs (ignored for models without a batch dimension;
    /// one over the model's max_batch_size is checked at that size, with a note).
    #[arg(long, value_delimiter = ',', default_value = "1,8",
          value_parser = clap::value_parser!(u32).range(1..))]
    batch_sizes: Vec<u32>,
    /// Use these inputs (NAME=FILE.npy) instead of generated ones.
    #[arg(
        long = "input",
        value_name = "NAME=FILE",
        conflicts_with = "batch_sizes"
    )]
    inputs: Vec<InputFile>,
    /// Relative tolerance for float outputs [default: by datatype: FP32 1e-4, FP16 1e-2,
    /// BF16 2e-2, FP64 1e-9; integer and BOOL outputs must match exactly].
    #[arg(long, value_parser = tolerance)]
    rtol: Option<f64>,
    /// Absolute tolerance for float outputs [default: by datatype: FP32 1e-5, FP16 1e-2,
    /// BF16 2e-2, FP64 1e-12].
    #[arg(long, value_parser = tolerance)]
    atol: Option<f64>,
    /// Timed calls per bridge and batch size (after 3 untimed ones).
    #[arg(long, default_value_t = 20,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    iterations: usize,
    /// Seed of the generated inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

struct Loaded {
    model: Model,
    load_time: Duration,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let dir = ModelDir::open(&args.model_dir, args.version)?;
    let bridges = if args.bridges.is_empty() {
        let compiled = torchbridge::compiled_bridges();
        let mut found = dir.available_bridges();
        found.retain(|b| compiled.contains(b));
        found
    } else {
        let mut asked = Vec::new();
        for bridge in &args.bridges {
            if !asked.contains(bridge) {
                asked.push(*bridge);
            }
        }
        asked
    };
    if bridges.is_empty() {
        bail!(
            "{} holds no model file any bridge reads",
            dir.version_dir.display()
        );
    }
    // A form that fails to load is reported and the others are still compared.
    let mut loaded = Vec::new();
    let mut failed = Vec::new();
    for &bridge in &bridges {
        let started = Instant::now();
        match Model::from_dir(dir.clone(), bridge) {
            Ok(model) => loaded.push(Loaded {
                model,
                load_time: started.elapsed(),
            }),
            Err(e) => failed.push((bridge, e)),
        }
    }
    for (bridge, e) in &failed {
        eprintln!("{bridge}: FAILED to load: {e}");
    }
    for file in unchecked_python_forms(&dir, &bridges) {
        eprintln!(
            "note: {file} is not compared: the python bridge loads {} (its first choice of \
             model.py, model.pt2, model.pt)",
            file_of(&dir, BackendKind::Python)
        );
    }
    let Some(first) = loaded.first() else {
        bail!("no bridge could load {}", dir.version_dir.display());
    };
    let meta = first.model.metadata().clone();
    let cases: Vec<(String, Vec<Tensor>)> = if !args.inputs.is_empty() {
        vec![("given".into(), read_inputs(&args.inputs, &meta)?)]
    } else if meta.max_batch_size == 0 {
        vec![(
            "no batch".into(),
            torchbridge::random::inputs(&meta, 1, 8, &mut Rng::new(args.seed))?,
        )]
    } else {
        let mut rng = Rng::new(args.seed);
        let mut cases = Vec::new();
        let mut sizes = Vec::new();
        for &asked in &args.batch_sizes {
            let rows = asked.min(meta.max_batch_size);
            if rows < asked {
                eprintln!(
                    "note: batch {asked} is over `{}`'s max_batch_size; checking batch {rows}",
                    meta.name
                );
            }
            if !sizes.contains(&rows) {
                sizes.push(rows);
            }
        }
        for rows in sizes {
            let rows = rows as usize;
            cases.push((
                format!("batch {rows}"),
                torchbridge::random::inputs(&meta, rows, 8, &mut rng)?,
            ));
        }
        cases
    };

    println!(
        "{} v{} · reference: {} · {}\n",
        meta.name,
        meta.version,
        first.model.bridge(),
        describe_tolerances(&args, &meta.outputs)
    );
    println!(
        "{:<12} {:<17} {:>9}  {}",
        "bridge",
        "file",
        "load",
        cases
            .iter()
            .map(|(c, _)| format!("{:>14}", format!("p50 {c}")))
            .collect::<String>()
    );
    let mut outputs = Vec::new();
    let mut call_failures = Vec::new();
    let mut fastest: Vec<Option<(Duration, BackendKind)>> = vec![None; cases.len()];
    for l in &loaded {
        let mut row = format!(
            "{:<12} {:<17} {:>8.2}s  ",
            l.model.bridge().as_str(),
            file_of(&dir, l.model.bridge()),
            l.load_time.as_secs_f64()
        );
        let mut per_case = Vec::new();
        for (case, (name, inputs)) in cases.iter().enumerate() {
            match time(&l.model, inputs, args.iterations) {
                Ok((out, p50)) => {
                    if fastest[case].is_none_or(|(best, _)| p50 < best) {
                        fastest[case] = Some((p50, l.model.bridge()));
                    }
                    row.push_str(&format!("{:>11.3} ms", p50.as_secs_f64() * 1e3));
                    per_case.push(Some(out));
                }
                Err(e) => {
                    row.push_str(&format!("{:>14}", "FAILED"));
                    call_failures.push(format!("{}: FAILED at {name}: {e:#}", l.model.bridge()));
                    per_case.push(None);
                }
            }
        }
        println!("{row}");
        outputs.push(per_case);
    }
    for failure in &call_failures {
        eprintln!("{failure}");
    }
    if loaded.len() > 1 {
        let winners: Vec<String> = cases
            .iter()
            .zip(&fastest)
            .filter_map(|((case, _), f)| f.map(|(_, bridge)| format!("{bridge} at {case}")))
            .collect();
        if !winners.is_empty() {
            println!("fastest: {}", winners.join(", "));
        }
    }

    println!(
        "\n{:<12} {:<16} {:<10} {:>10} {:>10}  verdict",
        "bridge", "output", "inputs", "max abs", "max rel"
    );
    let mut disagree = false;
    for (l, per_case) in loaded.iter().zip(&outputs).skip(1) {
        for ((case, _), (outs, refs)) in cases.iter().zip(per_case.iter().zip(&outputs[0])) {
            let (Some(outs), Some(refs)) = (outs, refs) else {
                continue; // a failed call, reported above
            };
            for (out, reference) in outs.iter().zip(refs) {
                let (rtol, atol) = tolerances(&args, reference.datatype);
                let (abs, rel, ok) = match compare(out, reference, rtol, atol) {
                    Ok(d) => (
                        format!("{:.2e}", d.max_abs),
                        format!("{:.2e}", d.max_rel),
                        d.mismatched == 0,
                    ),
                    Err(why) => (why, String::new(), false),
                };
                disagree |= !ok;
                let verdict = if ok {
                    "ok".to_string()
                } else {
                    "DIFFERENT".to_string()
                };
                println!(
                    "{:<12} {:<16} {:<10} {abs:>10} {rel:>10}  {verdict}",
                    l.model.bridge().as_str(),
                    out.name,
                    case
                );
            }
        }
    }
    println!();
    let within = describe_tolerances(&args, &meta.outputs);
    if disagree {
        println!("verdict: the forms DISAGREE beyond {within}");
        return Ok(ExitCode::from(1));
    }
    if !call_failures.is_empty() {
        let ran = outputs.iter().flatten().filter(|o| o.is_some()).count();
        let rest = if ran > 1 {
            format!("what ran agrees within {within}")
        } else {
            "nothing left to compare".to_string()
        };
        println!(
            "verdict: {} call(s) FAILED (above); {rest}",
            call_failures.len()
        );
        return Ok(ExitCode::from(1));
    }
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|(b, _)| b.as_str()).collect();
        let rest = match loaded.len() {
            1 => format!("{} alone loaded: nothing compared", first.model.bridge()),
            n => format!("the {n} that loaded agree within {within}"),
        };
        println!(
            "verdict: {} FAILED to load (above); {rest}",
            names.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    if loaded.len() == 1 {
        println!(
            "verdict: one form ({}), nothing compared",
            first.model.bridge()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("verdict: the forms agree within {within}");
    Ok(ExitCode::SUCCESS)
}

/// (rtol, atol) for outputs of `datatype`: the ones given, else what suits the datatype's
/// precision (what `torchbridge.export` checks its forms with); integers are exact anyway.
fn tolerances(args: &CheckArgs, datatype: DataType) -> (f64, f64) {
    let (rtol, atol) = match datatype {
        DataType::Fp16 => (1e-2, 1e-2),
        DataType::Bf16 => (2e-2, 2e-2),
        DataType::Fp64 => (1e-9, 1e-12),
        _ => (1e-4, 1e-5),
    };
    (args.rtol.unwrap_or(rtol), args.atol.unwrap_or(atol))
}

/// The tolerances in words, for the header and the verdict: those of the datatypes
/// among `outputs`.
fn describe_tolerances(args: &CheckArgs, outputs: &[TensorSpec]) -> String {
    let mut floats: Vec<DataType> = Vec::new();
    for spec in outputs {
        if spec.datatype.is_float() && !floats.contains(&spec.datatype) {
            floats.push(spec.datatype);
        }
    }
    let mut parts: Vec<String> = floats
        .into_iter()
        .map(|dt| {
            let (rtol, atol) = tolerances(args, dt);
            format!("{dt} rtol {rtol:e} atol {atol:e}")
        })
        .collect();
    if outputs.iter().any(|spec| !spec.datatype.is_float()) {
        parts.push("integers exactly".into());
    }
    parts.join(", ")
}

/// The file `bridge` loads from `dir` (for candle, which reads a directory: its weights).
fn file_of(dir: &ModelDir, bridge: BackendKind) -> String {
    match dir.form_for(bridge) {
        // Its weights: model.safetensors, else pytorch_model.bin.
        Ok(torchbridge::ModelForm::Directory(d)) => ["model.safetensors", "pytorch_model.bin"]
            .into_iter()
            .find(|w| d.join(w).is_file())
            .unwrap_or("config.json")
            .into(),
        Ok(form) => form
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The python bridge loads one of model.py, model.pt2, model.pt: the others it would
/// load are not compared unless another bridge reads them.
fn unchecked_python_forms(dir: &ModelDir, bridges: &[BackendKind]) -> Vec<String> {
    if !bridges.contains(&BackendKind::Python) {
        return vec![];
    }
    let loaded = file_of(dir, BackendKind::Python);
    let torchscript = bridges.contains(&BackendKind::Torchscript);
    ModelDir::PYTHON_FILES
        .into_iter()
        .filter(|f| *f != loaded && dir.version_dir.join(f).is_file())
        .filter(|f| !(*f == "model.pt" && torchscript))
        .map(str::to_string)
        .collect()
}

/// Runs `inputs` `iterations` times after 3 warm-up calls; the last outputs and the median time.
fn time(
    model: &Model,
    inputs: &[Tensor],
    iterations: usize,
) -> anyhow::Result<(Vec<Tensor>, Duration)> {
    let mut out = Vec::new();
    for _ in 0..3 {
        out = model.infer(inputs.to_vec())?;
    }
    let mut times = Vec::with_capacity(iterations.max(1));
    for _ in 0..iterations.max(1) {
        let started = Instant::now();
        out = model.infer(inputs.to_vec())?;
        times.push(started.elapsed());
    }
    times.sort_unstable();
    Ok((out, times[times.len() / 2]))
}

/// A tolerance: a finite number ≥ 0 (NaN compares false with everything, so every output
/// would "disagree").
fn tolerance(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("must be a finite number ≥ 0, got {text:?}")),
    }
}
