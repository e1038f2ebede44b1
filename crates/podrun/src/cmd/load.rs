//! `podrun load -i FILE|DIR|- [--tag REF]`: images from `docker save` / `podman save`
//! tarballs, OCI archives and OCI layout directories, as `ctr images import` does.

use std::io::Read;
use std::path::PathBuf;

use crate::Global;

/// Arguments of `podrun load`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive or layout directory; `-` reads the archive from standard input.
    #[arg(short = 'i', long = "input")]
    pub input: PathBuf,
    /// The name to give an image the archive does not name fully.
    #[arg(long)]
    pub tag: Option<String>,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    let service = crate::cmd::pull::service(global, None)?;
    let mut stdin_copy = None;
    let input = if args.input.as_os_str() == "-" {
        let mut tmp = service.store().scratch_file()?;
        let mut data = std::io::stdin().lock();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = data.read(&mut buf)?;
            if n == 0 {
                break;
            }
            std::io::Write::write_all(&mut tmp.1, &buf[..n])?;
        }
        let path = tmp.0.clone();
        stdin_copy = Some(tmp.0);
        path
    } else {
        args.input.clone()
    };
    let result = podrun_images::archive::load(&service, &input, args.tag.as_deref());
    if let Some(p) = stdin_copy {
        let _ = std::fs::remove_file(p);
    }
    match result {
        Ok(names) => {
            for n in names {
                println!("Loaded image: {n}");
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: load {}: {e}", args.input.display());
            Ok(1)
        }
    }
}
