//! `podrun load`: images from `docker save` / `podman save` tarballs (`manifest.json`), OCI
//! archives and OCI layout directories (`oci-layout` wins when both are present), optionally
//! gzip-compressed as a whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::manifest::{self, Desc};
use crate::reference::Reference;
use crate::service::ImageService;
use crate::store::{ImageRecord, StoreError};

/// Why an archive could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

impl From<StoreError> for LoadError {
    fn from(e: StoreError) -> Self {
        Self(e.to_string())
    }
}

fn ioe(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> LoadError {
    move |e| LoadError(format!("{what}: {e}"))
}

/// Where an archive's members come from.
enum Source {
    Dir(PathBuf),
    Tar {
        file: File,
        members: HashMap<String, Member>,
    },
}

#[derive(Clone)]
enum Member {
    Data { offset: u64, size: u64 },
    Link(String),
}

fn clean(name: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

impl Source {
    fn open(
        path: &Path,
        scratch: &crate::store::Store,
    ) -> Result<(Self, Option<PathBuf>), LoadError> {
        if path.is_dir() {
            return Ok((Self::Dir(path.to_owned()), None));
        }
        let mut file = File::open(path).map_err(ioe(format!("open {}", path.display())))?;
        let mut head = [0u8; 2];
        let n = file
            .read(&mut head)
            .map_err(ioe(format!("read {}", path.display())))?;
        file.seek(SeekFrom::Start(0)).map_err(ioe("seek"))?;
        let mut temp = None;
        if n == 2 && head == [0x1f, 0x8b] {
            // A gzipped archive: decompressed once into the store's scratch area.
            let (tmp, mut out) = scratch.scratch_file()?;
            io::copy(
                &mut flate2::read::MultiGzDecoder::new(io::BufReader::new(file)),
                &mut out,
            )
            .map_err(ioe("decompress archive"))?;
            out.seek(SeekFrom::Start(0)).map_err(ioe("seek"))?;
            file = out;
            temp = Some(tmp);
        }
        let mut members = HashMap::new();
        {
            let mut archive = tar::Archive::new(&mut file);
            for entry in archive.entries().map_err(ioe("read archive"))? {
                let entry = entry.map_err(ioe("read archive"))?;
                let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
                match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        members.insert(
                            name,
                            Member::Data {
                                offset: entry.raw_file_position(),
                                size: entry.size(),
                            },
                        );
                    }
                    tar::EntryType::Symlink | tar::EntryType::Link => {
                        let target = entry
                            .link_name_bytes()
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default();
                        let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                            let parent = name.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                            clean(&format!("{parent}/{target}"))
                        } else {
                            clean(&target)
                        };
                        members.insert(name, Member::Link(resolved));
                    }
                    _ => {}
                }
            }
        }
        Ok((Self::Tar { file, members }, temp))
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Self::Dir(d) => d.join(name).exists(),
            Self::Tar { members, .. } => members.contains_key(name),
        }
    }

    /// A reader over member `name` and its size.
    fn open_member(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64), LoadError> {
        match self {
            Self::Dir(d) => {
                let p = d.join(clean(name));
                let f = File::open(&p).map_err(ioe(format!("open {}", p.display())))?;
                let len = f.metadata().map_err(ioe("stat"))?.len();
                Ok((Box::new(f), len))
            }
            Self::Tar { file, members } => {
                let mut name = clean(name);
                for _ in 0..16 {
                    match members.get(&name) {
                        Some(Member::Link(t)) => name = t.clone(),
                        Some(Member::Data { offset, size }) => {
                            let mut f = file.try_clone().map_err(ioe("dup archive"))?;
                            f.seek(SeekFrom::Start(*offset)).map_err(ioe("seek"))?;
                            return Ok((Box::new(f.take(*size)), *size));
                        }
                        None => break,
                    }
                }
                Err(LoadError(format!("archive has no member {name:?}")))
            }
        }
    }

    fn read_json(&self, name: &str) -> Result<Vec<u8>, LoadError> {
        let (r, size) = self.open_member(name)?;
        if size > crate::MAX_JSON {
            return Err(LoadError(format!(
                "{name} is larger than {} bytes",
                crate::MAX_JSON
            )));
        }
        let mut buf = Vec::new();
        r.take(crate::MAX_JSON)
            .read_to_end(&mut buf)
            .map_err(ioe(format!("read {name}")))?;
        Ok(buf)
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Loads every image of the archive or layout at `path`; returns the names loaded.
/// `tag` names an image whose archive gives none (or only a bare tag).
pub fn load(
    service: &ImageService,
    path: &Path,
    tag: Option<&str>,
) -> Result<Vec<String>, LoadError> {
    let (source, temp) = Source::open(path, service.store())?;
    let result = if source.has("oci-layout") && source.has("index.json") {
        load_oci(service, &source, tag)
    } else if source.has("manifest.json") {
        load_docker(service, &source, tag)
    } else {
        Err(LoadError(format!(
            "{}: neither a docker archive (manifest.json) nor an OCI layout (oci-layout, index.json)",
            path.display()
        )))
    };
    if let Some(t) = temp {
        let _ = std::fs::remove_file(t);
    }
    result
}

fn normalise(name: &str) -> Result<String, LoadError> {
    Reference::parse_normalized(name)
        .map(|r| r.with_default_tag().to_string())
        .map_err(|e| LoadError(format!("invalid image name {name:?}: {e}")))
}

fn copy_blob(
    service: &ImageService,
    source: &Source,
    member: &str,
    want: Option<&Desc>,
) -> Result<Desc, LoadError> {
    let store = service.store();
    if let Some(d) = want
        && store.has_blob(&d.digest, d.size)
    {
        return Ok(d.clone());
    }
    let (mut r, size) = source.open_member(member)?;
    match want {
        Some(d) => {
            let mut w = store.writer(&d.digest, d.size)?;
            copy_into(&mut r, |b| w.write(b))?;
            w.commit()?;
            Ok(d.clone())
        }
        None => {
            // Docker archives name layers by path: hash while storing.
            let (digest, size) = store.put_stream(&mut r, size)?;
            Ok(Desc {
                media_type: String::new(),
                digest,
                size,
            })
        }
    }
}

fn copy_into(
    r: &mut dyn Read,
    mut f: impl FnMut(&[u8]) -> Result<(), StoreError>,
) -> Result<(), LoadError> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf).map_err(ioe("read archive"))?;
        if n == 0 {
            return Ok(());
        }
        f(&buf[..n])?;
    }
}

fn load_docker(
    service: &ImageService,
    source: &Source,
    tag: Option<&str>,
) -> Result<Vec<String>, LoadError> {
    let ms: Vec<DockerManifest> = serde_json::from_slice(&source.read_json("manifest.json")?)
        .map_err(|e| LoadError(format!("manifest.json: {e}")))?;
    if tag.is_some() && ms.len() > 1 {
        return Err(LoadError(format!(
            "--tag names one image, and the archive holds {}",
            ms.len()
        )));
    }
    let mut names = Vec::new();
    for m in ms {
        let config_bytes = source.read_json(&m.config)?;
        let config = Desc {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            digest: Digest::of(&config_bytes),
            size: config_bytes.len() as u64,
        };
        service.store().put_blob(&config.digest, &config_bytes)?;
        let mut layers = Vec::new();
        for l in &m.layers {
            let mut d = copy_blob(service, source, l, None)?;
            let mut head = [0u8; 4];
            let (mut r, _) = source.open_member(l)?;
            let n = r.read(&mut head).map_err(ioe("read layer"))?;
            d.media_type = match crate::layer::Compression::detect(&head[..n]) {
                crate::layer::Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                crate::layer::Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                crate::layer::Compression::None => "application/vnd.oci.image.layer.v1.tar",
            }
            .into();
            layers.push(d);
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": config.media_type, "digest": config.digest.as_str(), "size": config.size},
            "layers": layers.iter().map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest.as_str(), "size": l.size})).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|e| LoadError(e.to_string()))?;
        let md = Desc {
            media_type: manifest::OCI_MANIFEST.into(),
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
        };
        service.store().put_blob(&md.digest, &bytes)?;
        let mut image_names: Vec<String> = m.repo_tags.clone().unwrap_or_default();
        if let Some(t) = tag {
            image_names = vec![t.to_owned()];
        }
        if image_names.is_empty() {
            return Err(LoadError(format!(
                "image {} has no name in the archive: give one with --tag",
                config.digest
            )));
        }
        let size = md.size + config.size + layers.iter().map(|l| l.size).sum::<u64>();
        for n in image_names {
            let name = normalise(&n)?;
            publish(service, &name, &md, &md.digest, &config.digest, size)?;
            names.push(name);
        }
    }
    Ok(names)
}

fn load_oci(
    service: &ImageService,
    source: &Source,
    tag: Option<&str>,
) -> Result<Vec<String>, LoadError> {
    #[derive(serde::Deserialize)]
    struct Index {
        manifests: Vec<IndexEntry>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct IndexEntry {
        media_type: String,
        digest: String,
        size: u64,
        #[serde(default)]
        annotations: HashMap<String, String>,
    }
    let index: Index = serde_json::from_slice(&source.read_json("index.json")?)
        .map_err(|e| LoadError(format!("index.json: {e}")))?;
    if tag.is_some() && index.manifests.len() > 1 {
        return Err(LoadError(format!(
            "--tag names one image, and the layout holds {}",
            index.manifests.len()
        )));
    }
    let mut names = Vec::new();
    for e in index.manifests {
        let top = Desc {
            media_type: e.media_type.clone(),
            digest: Digest::parse(&e.digest).map_err(LoadError)?,
            size: e.size,
        };
        let full = e
            .annotations
            .get(crate::store::ANNOTATION_NAME)
            .cloned()
            .or_else(|| {
                e.annotations
                    .get(crate::store::ANNOTATION_REF_NAME)
                    .filter(|n| n.contains([':', '/', '@']))
                    .cloned()
            });
        let name = match (tag, full) {
            (Some(t), _) => t.to_owned(),
            (None, Some(n)) => n,
            (None, None) => {
                let bare = e.annotations.get(crate::store::ANNOTATION_REF_NAME);
                return Err(LoadError(match bare {
                    Some(b) => format!(
                        "image {} is named only by the tag {b:?}: give a full name with --tag",
                        top.digest
                    ),
                    None => format!(
                        "image {} has no name in the archive: give one with --tag",
                        top.digest
                    ),
                }));
            }
        };
        let blob = |d: &Desc| {
            copy_blob(
                service,
                source,
                &format!("blobs/sha256/{}", d.digest.hex()),
                Some(d),
            )
        };
        blob(&top)?;
        let top_bytes = service.store().read_blob(&top.digest, crate::MAX_JSON)?;
        let mut size = top.size;
        let md = if manifest::is_index(&top.media_type, &top_bytes) {
            let chosen = manifest::select_platform(&top_bytes, &crate::manifest::Platform::host())
                .map_err(LoadError)?;
            blob(&chosen)?;
            size += chosen.size;
            chosen
        } else {
            top.clone()
        };
        let m = manifest::parse_manifest(&service.store().read_blob(&md.digest, crate::MAX_JSON)?)
            .map_err(LoadError)?;
        blob(&m.config)?;
        size += m.config.size;
        for l in &m.layers {
            blob(l)?;
            size += l.size;
        }
        let name = normalise(&name)?;
        publish(service, &name, &top, &md.digest, &m.config.digest, size)?;
        names.push(name);
    }
    Ok(names)
}

fn publish(
    service: &ImageService,
    name: &str,
    top: &Desc,
    manifest: &Digest,
    config: &Digest,
    size: u64,
) -> Result<(), LoadError> {
    let config_bytes = service.store().read_blob(config, crate::MAX_JSON)?;
    let diff_ids = manifest::diff_ids(&config_bytes).map_err(LoadError)?;
    let chain_id = diff_ids.iter().fold(None, |c: Option<Digest>, d| {
        Some(Digest::chain(c.as_ref(), d))
    });
    let record = ImageRecord {
        name: name.to_owned(),
        media_type: top.media_type.clone(),
        target: top.digest.clone(),
        target_size: top.size,
        manifest: manifest.clone(),
        image_id: config.clone(),
        chain_id,
        loaded: true,
        pulled_with: String::new(),
        size,
    };
    // Unpack before the name appears, as a pull does.
    service.open_image(record.clone(), None)?;
    let _lock = service.store().lock()?;
    service.store().put_record(&record)?;
    Ok(())
}
