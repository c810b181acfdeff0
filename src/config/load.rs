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

/// The loader is total: any text, YAML or not, ends in a config or a `ConfigError`.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const SHIPPED: &str = include_str!("../../gateway.yaml");

    /// YAML-ish fragments: the config's own keys, indentation, anchors, tags and scalars of
    /// every type in places where another type is expected.
    fn yamlish() -> impl Strategy<Value = String> {
        let token = prop::sample::select(vec![
            "listeners:",
            "routes:",
            "upstreams:",
            "identity:",
            "privacy:",
            "tiktok:",
            "webhooks:",
            "state:",
            "- ",
            "  ",
            "    ",
            "\n",
            "\n",
            ": ",
            "name: a",
            "path: /x",
            "kind: proxy",
            "auth: none",
            "addr: 127.0.0.1:0",
            "timeout: 5s",
            "timeout: -1s",
            "max_body: 1MiB",
            "rate: 99999999999999999999/s",
            "&a ",
            "*a",
            "<<: *a",
            "!!binary ",
            "!!str ",
            "{",
            "}",
            "[",
            "]",
            ",",
            "\"",
            "'",
            "~",
            "null",
            "true",
            "0x10",
            "1e999",
            ".nan",
            "-",
            "#",
            "|",
            ">",
            "---",
            "...",
            "\t",
            "%YAML 1.2",
            "\u{feff}",
            "é",
        ]);
        prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
    }

    /// The shipped config cut at a random point with random text spliced in.
    fn mutated_shipped() -> impl Strategy<Value = String> {
        (
            0..=SHIPPED.len(),
            0..=SHIPPED.len(),
            "\\PC{0,16}|[ :\\-\\n]{0,8}",
        )
            .prop_map(|(a, b, insert)| {
                let (a, b) = (a.min(b), a.max(b));
                let floor = |mut i: usize| {
                    while !SHIPPED.is_char_boundary(i) {
                        i -= 1;
                    }
                    i
                };
                format!("{}{insert}{}", &SHIPPED[..floor(a)], &SHIPPED[floor(b)..])
            })
    }

    fn load(text: &str) {
        // A base directory that does not exist: nothing relative can be read from disk.
        let _ = load_str(
            text,
            Path::new("/nonexistent-config-property-base"),
            Path::new("generated.yaml"),
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            load(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn yamlish_text_never_panics(text in yamlish()) {
            load(&text);
        }

        #[test]
        fn mutated_shipped_config_never_panics(text in mutated_shipped()) {
            load(&text);
        }
    }
}
