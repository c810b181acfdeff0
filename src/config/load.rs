//! Reading and parsing a config file into the runtime model.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::diagnostics::ConfigError;
use super::file::ConfigFile;
use super::runtime::GatewayConfig;
use super::validate;

/// Largest config file accepted: a config is a few KiB; anything huge is a mistake or an attack.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Reads, parses and validates `path`.
pub fn load_file(path: &Path) -> Result<GatewayConfig, ConfigError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::single(shown.clone(), None, format!("cannot read: {e}")))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::single(
            shown,
            None,
            "config file is larger than 4 MiB",
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::single(shown.clone(), None, format!("cannot read: {e}")))?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    load_str(&text, base_dir, path)
}

/// Parses and validates YAML text. `base_dir` anchors relative paths; `source` is for display.
pub fn load_str(text: &str, base_dir: &Path, source: &Path) -> Result<GatewayConfig, ConfigError> {
    let file: ConfigFile = serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
        ConfigError::single(
            source.display().to_string(),
            line,
            first_line(&e.to_string()),
        )
    })?;
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    validate::build(&file, base_dir, source.to_path_buf(), hash)
}

/// The parser renders a multi-line snippet; the first line carries the message.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).to_string()
}
