//! `torchbridge infer`: one inference, the quickest way to see a model work.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use torchbridge::random::Rng;
use torchbridge::{BackendKind, Model, ModelDir};

use super::{InputFile, read_inputs};

/// Run one inference and print (or save) the outputs.
#[derive(Debug, clap::Args)]
pub struct InferArgs {
    /// The model directory (holding config.toml and version directories).
    model_dir: PathBuf,
    /// Run through this bridge instead of the config's `backend`.
    #[arg(long)]
    bridge: Option<BackendKind>,
    /// Serve this version instead of the highest.
    #[arg(long = "model-version")]
    version: Option<u64>,
    /// An input as NAME=FILE.npy; repeat for each input.
    #[arg(long = "input", value_name = "NAME=FILE")]
    inputs: Vec<InputFile>,
    /// Make up inputs from the model's metadata instead.
    #[arg(long, conflicts_with = "inputs")]
    random: bool,
    /// Rows of random input, for models with a batch dimension.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Save each output as DIR/NAME.npy instead of printing it.
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
    /// Values printed per output.
    #[arg(long, default_value_t = 16)]
    show: usize,
}

pub fn run(args: InferArgs) -> anyhow::Result<ExitCode> {
    let dir = ModelDir::open(&args.model_dir, args.version)?;
    let bridge = args.bridge.unwrap_or(dir.config.backend);
    let model = Model::from_dir(dir, bridge)?;
    let meta = model.metadata();
    if !args.random && args.batch != 1 {
        bail!("--batch shapes the inputs --random makes; inputs from --input keep their shape");
    }
    if meta.max_batch_size == 0 && args.batch > 1 {
        bail!(
            "--batch {}: model `{}` has no batch dimension (max_batch_size 0); leave --batch out",
            args.batch,
            meta.name
        );
    }
    let inputs = if args.random {
        let rows = args.batch as usize;
        torchbridge::random::inputs(meta, rows, 8, &mut Rng::new(args.seed))?
    } else if args.inputs.is_empty() {
        bail!("give each input as --input NAME=FILE.npy, or --random");
    } else {
        read_inputs(&args.inputs, meta)?
    };
    let started = std::time::Instant::now();
    let outputs = model.infer(inputs)?;
    let elapsed = started.elapsed();
    println!(
        "{} v{} through the {bridge} bridge: {:.3} ms",
        meta.name,
        meta.version,
        elapsed.as_secs_f64() * 1e3
    );
    for out in &outputs {
        if let Some(dir) = &args.save {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join(format!("{}.npy", out.name));
            torchbridge::npy::write(&path, out)?;
            println!(
                "{} {} {:?} → {}",
                out.name,
                out.datatype,
                out.shape,
                path.display()
            );
        } else {
            println!(
                "{} {} {:?} = {}",
                out.name,
                out.datatype,
                out.shape,
                preview(out, args.show)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The first `show` values of `t`, each as its datatype prints: integers exactly (an
/// INT64 through f64 loses digits), BOOL as true/false, floats with six decimals.
fn preview(t: &torchbridge::Tensor, show: usize) -> String {
    use torchbridge::DataType as D;
    fn each<T: torchbridge::Element>(
        t: &torchbridge::Tensor,
        show: usize,
        text: impl Fn(T) -> String,
    ) -> Vec<String> {
        t.to_vec::<T>()
            .unwrap_or_default()
            .into_iter()
            .take(show)
            .map(text)
            .collect()
    }
    let items: Vec<String> = match t.datatype {
        D::Int8 => each(t, show, |v: i8| v.to_string()),
        D::Int16 => each(t, show, |v: i16| v.to_string()),
        D::Int32 => each(t, show, |v: i32| v.to_string()),
        D::Int64 => each(t, show, |v: i64| v.to_string()),
        D::Uint8 => each(t, show, |v: u8| v.to_string()),
        D::Uint16 => each(t, show, |v: u16| v.to_string()),
        D::Uint32 => each(t, show, |v: u32| v.to_string()),
        D::Uint64 => each(t, show, |v: u64| v.to_string()),
        D::Bool => t
            .data
            .iter()
            .take(show)
            .map(|&b| (b != 0).to_string())
            .collect(),
        D::Bytes => t
            .strings()
            .unwrap_or_default()
            .iter()
            .take(show)
            .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
            .collect(),
        _ => torchbridge::compare::to_f64(t)
            .unwrap_or_default()
            .iter()
            .take(show)
            .map(|v| format!("{v:.6}"))
            .collect(),
    };
    let more = match (t.element_count() > show, items.is_empty()) {
        (false, _) => "",
        (true, true) => "…",
        (true, false) => ", …",
    };
    format!("[{}{more}]", items.join(", "))
}
