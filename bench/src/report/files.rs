//! The result files a report is made of: a directory's, and the compared runs'.

use super::md::{io, ReportError};
use crate::output::{Envelope, SCHEMA};
use std::path::{Path, PathBuf};

/// A result file of the directory.
pub struct Loaded {
    pub stem: String,
    pub env: Envelope,
}

/// Reads every `*.json` result envelope in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<(Vec<Loaded>, Vec<String>), ReportError> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        match serde_json::from_str::<Envelope>(&text) {
            Ok(env) if env.schema == SCHEMA => out.push(Loaded { stem, env }),
            Ok(env) => skipped.push(format!("{stem}.json: schema {:?}", env.schema)),
            Err(e) => skipped.push(format!("{stem}.json: {e}")),
        }
    }
    Ok((out, skipped))
}

/// Reads one result file.
pub fn load_file(path: &Path) -> Result<Loaded, ReportError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let not = |msg: String| ReportError::NotAResult {
        path: path.to_path_buf(),
        msg,
    };
    let env: Envelope = serde_json::from_str(&text).map_err(|e| not(e.to_string()))?;
    if env.schema != SCHEMA {
        return Err(not(format!("schema {:?}", env.schema)));
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Loaded { stem, env })
}

/// The runs named by `--compare` (result directories or files), each with the name of the
/// directory it came from.
pub fn load_compared(paths: &[PathBuf]) -> Result<Vec<(String, Loaded)>, ReportError> {
    let dir_name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let (loaded, _) = load_dir(p)?;
            out.extend(loaded.into_iter().map(|l| (dir_name(p), l)));
        } else {
            let parent = p.parent().map(dir_name).unwrap_or_default();
            out.push((parent, load_file(p)?));
        }
    }
    Ok(out)
}
