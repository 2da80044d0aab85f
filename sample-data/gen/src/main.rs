//! `aina-sample --out DIR [--seed N] [--scale F] [--large BYTES]`: write the
//! demo set ([`aina_sample::demo_set`]), or one large instance
//! ([`aina_sample::large_instance`]), as Part 10 files into DIR.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: aina-sample --out DIR [--seed N] [--scale F] [--large BYTES]

Writes the seeded demo archive (CR fluorography, DX chest, MG four-view with a
prior, Latin/Russian/Kazakh names) as DICOM Part 10 files into DIR.
  --seed N    random seed (default 1); the same seed gives identical files
  --scale F   image size relative to real devices (default 1.0)
  --large B   instead, write one multi-frame instance of about B bytes";

struct Args {
    out: PathBuf,
    seed: u64,
    scale: f32,
    large: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut out = None;
    let mut seed = 1;
    let mut scale = 1.0;
    let mut large = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--seed" => {
                seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?;
            }
            "--scale" => {
                scale = value("--scale")?
                    .parse()
                    .map_err(|e| format!("--scale: {e}"))?;
                if !(scale > 0.0 && scale <= 4.0) {
                    return Err("--scale must be in (0, 4]".to_owned());
                }
            }
            "--large" => {
                large = Some(
                    value("--large")?
                        .parse()
                        .map_err(|e| format!("--large: {e}"))?,
                );
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let out = out.ok_or("--out DIR is required")?;
    Ok(Args {
        out,
        seed,
        scale,
        large,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("aina-sample: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let opts = aina_sample::Options {
        seed: args.seed,
        scale: args.scale,
    };
    let started = Instant::now();
    let set = match args.large {
        Some(bytes) => vec![aina_sample::large_instance(&opts, bytes)],
        None => aina_sample::demo_set(&opts),
    };
    let generated = started.elapsed();
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("aina-sample: create {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    let mut total = 0u64;
    for g in &set {
        let path = args.out.join(&g.file_name);
        if let Err(e) = std::fs::write(&path, &g.bytes) {
            eprintln!("aina-sample: write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        total += g.bytes.len() as u64;
    }
    println!(
        "wrote {} files, {:.1} MB, to {} (generated in {:.2?}, total {:.2?})",
        set.len(),
        total as f64 / 1e6,
        args.out.display(),
        generated,
        started.elapsed()
    );
    ExitCode::SUCCESS
}
