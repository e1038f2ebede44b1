//! Reading `-f` arguments: files, directories of manifests, or `-` for stdin.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use podrun_model::Object;

/// Reads and parses every `-f` argument, in order. Errors name the file.
pub fn read_all(files: &[String]) -> anyhow::Result<Vec<Object>> {
    let mut objects = Vec::new();
    for f in files {
        for (source, text) in read_sources(f)? {
            let parsed = podrun_model::parse_manifest_bytes(&text, &source)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            objects.extend(parsed);
        }
    }
    Ok(objects)
}

fn read_sources(arg: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    if arg == "-" {
        let mut text = Vec::new();
        std::io::stdin()
            .read_to_end(&mut text)
            .context("reading standard input")?;
        return Ok(vec![("STDIN".into(), text)]);
    }
    let path = Path::new(arg);
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("reading directory {arg}"))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        entries.sort();
        return entries
            .into_iter()
            .map(|p| {
                let text = std::fs::read(&p)
                    .with_context(|| format!("the path \"{}\" cannot be read", p.display()))?;
                Ok((p.display().to_string(), text))
            })
            .collect();
    }
    let text = std::fs::read(path).with_context(|| format!("the path \"{arg}\" does not exist"))?;
    Ok(vec![(arg.to_string(), text)])
}
